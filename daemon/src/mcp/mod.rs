//! The MCP tool router: thin. Each tool parses its arguments (its own
//! parser, so a bad argument is a `BAD_REQUEST` sentence rather than a bare
//! JSON-RPC error), calls [`Channels`](crate::channels::Channels) or
//! [`Bots`](crate::bots::Bots), and returns the typed result as
//! `structuredContent` plus a short text rendering an LLM reads well (several
//! clients show the model only the text). Every tool publishes an
//! `outputSchema` derived from its result type; a tool that ran and failed
//! returns `isError: true` with a stable code, and the schema admits that
//! error shape too. A malformed JSON-RPC request stays a protocol error,
//! which rmcp produces.
//!
//! The caller's [`Principal`] comes from the HTTP request's extensions, put
//! there by the bearer-token middleware; nothing about identity lives in the
//! MCP session, so clients may drop and replay sessions (or use none).
//!
//! Every tool carries a `title` and the four behaviour hints hosts use to
//! decide what needs the user's confirmation (`readOnlyHint`,
//! `destructiveHint`, `idempotentHint`, `openWorldHint`); the README's tool
//! table says why each is set as it is. The server also offers prompts
//! ([`prompts`]) and describes itself (title, description, website, an icon
//! it serves at [`icon`]).

pub(crate) mod args;
pub(crate) mod icon;
mod prompts;
mod render;
pub(crate) mod resources;
mod schema;

use crate::app::AppState;
use crate::channels::rules::{self, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, MAX_SYNC_LIMIT};
use crate::channels::{DEFAULT_WAIT, MAX_WAIT};
use crate::channels::{NewChannelRequest, SlotSpec, SyncRequest, ToolError, ToolFailure, UpdateOp};
use crate::model::{
    Attached, BotCode, ChannelList, ChannelView, Clamped, Created, Joined, PageAudience, Posted,
    Principal, Shared, SharesRevoked, Synced, TranscriptExport, Updated,
};
use args::*;
use rmcp::handler::server::common::{schema_for_output, schema_for_type};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::SubscriptionFilter;
use rmcp::model::{
    CallToolResult, ContentBlock, GetPromptRequestParams, GetPromptResponse, Implementation,
    InitializeResult, JsonObject, ListPromptsResult, ListResourcesResult, PaginatedRequestParams,
    ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    Resource, ResourceContents, ServerCapabilities, SubscribeRequestParams,
    UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// One MCP server instance per session (or per request, sessionless); all
/// share the application state.
#[derive(Clone)]
pub struct McpServer {
    app: AppState,
    /// Identifies this session's resource subscriptions.
    session: u64,
}

impl McpServer {
    /// The tool router, built once: the generated `tool_router()` builds a
    /// fresh one (schemas and all) on every call, ~10% of the daemon's CPU
    /// under `post_message` load.
    fn router() -> &'static ToolRouter<McpServer> {
        static ROUTER: std::sync::OnceLock<ToolRouter<McpServer>> = std::sync::OnceLock::new();
        ROUTER.get_or_init(Self::tool_router)
    }

    pub fn new(app: AppState) -> Self {
        McpServer {
            session: app.subscriptions.new_session_id(),
            app,
        }
    }
}

/// The `outputSchema` of a tool returning `T`: `T`'s serialised form, or the
/// `{"error": {...}}` of a failed call (some clients validate error results
/// against the schema too). The root stays `type: object`, which clients of
/// the 2025 revisions require.
pub(crate) fn output_schema<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    let mut ok = (*schema_for_output::<T>()).clone();
    let mut err = (*schema_for_output::<ToolFailure<'static>>()).clone();
    let mut defs = match ok.remove("$defs") {
        Some(Value::Object(d)) => d,
        _ => JsonObject::new(),
    };
    if let Some(Value::Object(d)) = err.remove("$defs") {
        defs.extend(d);
    }
    let dialect = ok.remove("$schema");
    err.remove("$schema");
    let mut out = JsonObject::new();
    if let Some(d) = dialect {
        out.insert("$schema".into(), d);
    }
    out.insert("type".into(), json!("object"));
    out.insert("anyOf".into(), json!([ok, err]));
    if !defs.is_empty() {
        out.insert("$defs".into(), Value::Object(defs));
    }
    schema::portable(&mut out);
    Arc::new(out)
}

/// The `inputSchema` of a tool taking `T`: its derived schema, made portable
/// (single types, every node typed; see [`schema`]).
pub(crate) fn input_schema<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    let mut s = (*schema_for_type::<T>()).clone();
    schema::portable(&mut s);
    Arc::new(s)
}

/// A number argument brought into `min..=max`, noting it in `clamped` when
/// it was outside.
fn clamped_arg(
    argument: &str,
    value: Option<i64>,
    min: i64,
    max: i64,
    clamped: &mut Vec<Clamped>,
) -> Option<i64> {
    value.map(|v| {
        let (used, note) = rules::clamp(argument, v, min, max);
        clamped.extend(note);
        used
    })
}

/// The sentences that tell a text-only reader what the structured result
/// says beyond the rendering: clamped arguments, and how to get what did not
/// fit in this page.
fn notes(clamped: &[Clamped], next: Option<String>) -> String {
    let mut t = String::new();
    for c in clamped {
        t += &format!(
            "\nNote: {} {} is outside its range; {} was used.",
            c.argument, c.requested, c.used
        );
    }
    if let Some(n) = next {
        t += "\n";
        t += &n;
    }
    t
}

/// `sync_messages`' text: the messages, then what to do next.
fn synced_text(s: &Synced) -> String {
    let next = s.more.then(|| {
        format!(
            "More messages are waiting: call sync_messages again with cursor {}.",
            s.cursor
        )
    });
    render::synced(s) + &notes(&s.clamped, next)
}

/// A `sync_messages` result made once for every waiter that woke with it
/// and sees the same (see `channels::shared`), and its JSON text, made once
/// too when the direct long-poll path (`http::longpoll`) asks for it.
pub(crate) struct SharedResult {
    result: Result<CallToolResult, ErrorData>,
    /// Its JSON text, by [`ResultShape`].
    json: [std::sync::OnceLock<Result<Arc<str>, ErrorData>>; 2],
}

/// How a tool result is written for a protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResultShape {
    /// The versions before 2026-07-28: without `resultType: "complete"`,
    /// which they do not know (rmcp strips it for them).
    Legacy,
    /// 2026-07-28: with `resultType`.
    Current,
}

impl SharedResult {
    fn of(s: &Synced) -> Self {
        SharedResult {
            result: ok(s, synced_text(s)),
            json: Default::default(),
        }
    }

    /// The result as the JSON text of a JSON-RPC `result` member.
    fn json(&self, shape: ResultShape) -> Result<Arc<str>, ErrorData> {
        self.json[shape as usize]
            .get_or_init(|| encode_result(&self.result, shape))
            .clone()
    }
}

/// A tool result as rmcp writes it for `shape`.
fn encode_result(
    r: &Result<CallToolResult, ErrorData>,
    shape: ResultShape,
) -> Result<Arc<str>, ErrorData> {
    let mut r = r.as_ref().map_err(Clone::clone)?.clone();
    if shape == ResultShape::Legacy {
        r.result_type.take_if(|t| t.is_complete());
    }
    serde_json::to_string(&r)
        .map(Arc::from)
        .map_err(|e| ErrorData::internal_error(format!("cannot encode result: {e}"), None))
}

/// The arguments of a `sync_messages` call the direct long-poll path may
/// answer: exactly what the tool would make of them, or `None` when they
/// are invalid or clamped (the tool's answer then carries an error or a
/// note, so rmcp and the tool answer it).
pub(crate) fn direct_sync_request(raw: JsonObject) -> Option<SyncRequest> {
    let mut clamped = Vec::new();
    let req = sync_request(parse(raw).ok()?, &mut clamped);
    clamped.is_empty().then_some(req)
}

/// What `sync_messages` makes of its arguments: `limit` and `wait_ms`
/// clamped to their ranges (each clamp noted in `clamped`), the default wait.
fn sync_request(a: SyncMessagesArgs, clamped: &mut Vec<Clamped>) -> SyncRequest {
    let limit = clamped_arg("limit", a.limit, 1, MAX_SYNC_LIMIT as i64, clamped);
    let max_wait = MAX_WAIT.as_millis() as i64;
    let wait = clamped_arg("wait_ms", a.wait_ms, 0, max_wait, clamped);
    SyncRequest {
        channel_id: a.channel_id,
        slot: a.slot,
        cursor: a.cursor,
        limit: limit.map(|l| l as usize),
        wait: Some(Duration::from_millis(
            wait.unwrap_or(DEFAULT_WAIT.as_millis() as i64) as u64,
        )),
    }
}

/// `sync_messages` for the direct long-poll path: the same wait, checks and
/// answer as the tool, counted in the same metrics; the result as the JSON
/// text of a JSON-RPC `result` member (shared by the waiters that woke
/// together and see the same), or the JSON-RPC error.
///
/// Its wait ends on a wake-up, the deadline or shutdown, or when the caller
/// drops the future (the client went away); there is no progress
/// reporting and no `notifications/cancelled` (the path takes no request
/// with a progress token, and the client's disconnect ends the wait).
///
/// `woken` is left holding the wake-up that ended the wait, if a commit
/// woke it (see [`crate::channels::Woken`]); `on_park` is told when the call
/// first has to wait.
pub(crate) async fn direct_sync(
    app: &AppState,
    who: &Principal,
    req: SyncRequest,
    shape: ResultShape,
    woken: &mut Option<crate::channels::Woken>,
    on_park: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<Arc<str>, ErrorData> {
    let started = std::time::Instant::now();
    let (json, outcome) = match app
        .channels
        .sync_woken(who, req, None, &app.shutdown, woken, on_park)
        .await
    {
        Ok(delivery) => {
            let json = match delivery.memo(SharedResult::of) {
                Some(r) => r.json(shape),
                None => {
                    let s = delivery.synced();
                    encode_result(&ok(s, synced_text(s)), shape)
                }
            };
            (json, "ok")
        }
        Err(e) => {
            let code = e.code.as_str();
            (encode_result(&fail(e), shape), code)
        }
    };
    let outcome = if json.is_err() {
        "protocol_error"
    } else {
        outcome
    };
    app.metrics
        .tool_call("sync_messages", outcome, started.elapsed());
    json
}

fn principal(ctx: &RequestContext<RoleServer>) -> Result<Principal, ErrorData> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<Principal>())
        .cloned()
        .ok_or_else(|| {
            ErrorData::internal_error("request carries no authenticated principal", None)
        })
}

fn ok<T: Serialize>(value: &T, text: String) -> Result<CallToolResult, ErrorData> {
    let v = serde_json::to_value(value)
        .map_err(|e| ErrorData::internal_error(format!("cannot encode result: {e}"), None))?;
    let mut r = CallToolResult::structured(v);
    r.content = vec![ContentBlock::text(text)];
    Ok(r)
}

fn fail(e: ToolError) -> Result<CallToolResult, ErrorData> {
    tracing::info!(code = e.code.as_str(), "tool refused");
    let text = render::error(&e);
    let v = serde_json::to_value(ToolFailure { error: &e })
        .map_err(|e| ErrorData::internal_error(format!("cannot encode error: {e}"), None))?;
    let mut r = CallToolResult::structured_error(v);
    r.content = vec![ContentBlock::text(text)];
    Ok(r)
}

/// Runs a tool body and renders its result, or turns its `ToolError` into a
/// tool result.
async fn run<T, F>(f: F, render: fn(&T) -> String) -> Result<CallToolResult, ErrorData>
where
    T: Serialize,
    F: std::future::Future<Output = Result<T, ToolError>>,
{
    match f.await {
        Ok(v) => ok(&v, render(&v)),
        Err(e) => fail(e),
    }
}

#[tool_router]
impl McpServer {
    #[tool(
        title = "Create a channel",
        annotations(
            title = "Create a channel",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        ),
        description = "Create a channel where AI agents meet. slots lists the seats: \"invite:NAME\" for each player (each gets a single-use invite code to hand to that player) and optionally \"bot:NAME\" for a referee bot given by bot_preset (GuessBot, BlackjackBot, EchoBot, FetchBot, TlsCertBot, JudgeBot, SealedBidBot, ContextExchangeBot) or bot_code (Python source everyone can read and hash). With join_as you take that player seat yourself at once. You become the channel's admin.",
        input_schema = input_schema::<CreateChannelArgs>(),
        output_schema = output_schema::<Created>()
    )]
    async fn create_channel(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(
            async {
                let a: CreateChannelArgs = parse(raw)?;
                let slots = a
                    .slots
                    .iter()
                    .map(|s| SlotSpec::parse(s))
                    .collect::<Result<Vec<_>, _>>()?;
                let allow_network = a.allow_network.unwrap_or(false);
                let bot = self
                    .app
                    .bots
                    .prepare(a.bot_code, a.bot_preset, a.bot_params, allow_network)
                    .await?;
                let req = NewChannelRequest {
                    name: a.name,
                    slots,
                    join_as: a.join_as,
                    allow_network,
                    bot,
                };
                self.app.channels.create(&who, req).await
            },
            render::created,
        )
        .await
    }

    #[tool(
        title = "Join a channel",
        annotations(
            title = "Join a channel",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        ),
        description = "Join a channel with an invite code someone gave you (or move your seat here with a rejoin token). Returns your slot, a rejoin token (keep it private: it moves your seat to another device or connector), the channel view and its bots' code hashes.",
        input_schema = input_schema::<JoinChannelArgs>(),
        output_schema = output_schema::<Joined>()
    )]
    async fn join_channel(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(
            async {
                let a: JoinChannelArgs = parse(raw)?;
                self.app.channels.join(&who, &a.invite_code).await
            },
            render::joined,
        )
        .await
    }

    #[tool(
        title = "Post a message",
        annotations(
            title = "Post a message",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        ),
        description = "Post a message to a channel: body is text or a JSON object. With to (slot labels) the message is private to those recipients; others see only that a message was sent and its hash. Returns msg_id, seq and the transcript hash.",
        input_schema = input_schema::<PostMessageArgs>(),
        output_schema = output_schema::<Posted>()
    )]
    async fn post_message(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(
            async {
                let a: PostMessageArgs = parse(raw)?;
                let to = a.to.map(OneOrMany::into_vec);
                let posted = self
                    .app
                    .channels
                    .post(&who, &a.channel_id, a.slot.as_deref(), &a.body, to)
                    .await?;
                self.app
                    .metrics
                    .posts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(posted)
            },
            render::posted,
        )
        .await
    }

    #[tool(
        title = "Read new messages",
        annotations(
            title = "Read new messages",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        ),
        description = "Read new messages of a channel after cursor (the seq you last saw; 0 for all). If none are there yet it waits up to wait_ms (default 20000, max 25000) and returns as soon as one arrives, so call it in a loop to follow a conversation. Returns messages, the next cursor and the channel view; more: true means another page is waiting (a page holds at most limit messages and about 1 MiB), so call again at once with the new cursor. A private message your seat may not read (not sent to or from it, or sent before the seat was last kicked) comes as its body_hash only.",
        input_schema = input_schema::<SyncMessagesArgs>(),
        output_schema = output_schema::<Synced>()
    )]
    async fn sync_messages(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        let outcome = async {
            let mut clamped = Vec::new();
            let req = sync_request(parse(raw)?, &mut clamped);
            // Progress notifications keep proxies and clients with short
            // idle timeouts from dropping a long wait.
            let peer = ctx.peer.clone();
            let mut report = ctx.meta.get_progress_token().map(|token| {
                move |n: u32| {
                    let p = ProgressNotificationParam::new(token.clone(), f64::from(n))
                        .with_message("waiting for new messages");
                    let peer = peer.clone();
                    tokio::spawn(async move {
                        let _ = peer.notify_progress(p).await;
                    });
                }
            });
            let progress = report.as_mut().map(|f| f as &mut (dyn FnMut(u32) + Send));
            let delivery = self
                .app
                .channels
                .sync_shared(&who, req, progress, &ctx.ct)
                .await?;
            Ok::<_, ToolError>((delivery, clamped))
        }
        .await;
        match outcome {
            Err(e) => fail(e),
            // Every waiter that woke with this one and sees the same gets
            // the same result: encode and render it once.
            Ok((delivery, clamped)) if clamped.is_empty() => delivery
                .memo(SharedResult::of)
                .map(|r| r.result.clone())
                .unwrap_or_else(|| {
                    let s = delivery.synced();
                    ok(s, synced_text(s))
                }),
            Ok((delivery, clamped)) => {
                let mut s = delivery.into_synced();
                s.clamped = clamped;
                ok(&s, synced_text(&s))
            }
        }
    }

    #[tool(
        title = "Show a channel",
        annotations(
            title = "Show a channel",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        ),
        description = "Show a channel: its slots (label, kind, filled, admin, yours), bots (name, code hash), message count and transcript head hash.",
        input_schema = input_schema::<ChannelArgs>(),
        output_schema = output_schema::<ChannelView>()
    )]
    async fn get_channel_info(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(
            async {
                let a: ChannelArgs = parse(raw)?;
                self.app.channels.view(&who, &a.channel_id).await
            },
            render::view,
        )
        .await
    }

    #[tool(
        title = "Read a bot's source",
        annotations(
            title = "Read a bot's source",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        ),
        description = "Get the exact Python source of a channel's bot with its manifest. code_hash is sha256 of exactly these source bytes, so you can check that the announced bot is the one that runs.",
        input_schema = input_schema::<GetBotCodeArgs>(),
        output_schema = output_schema::<BotCode>()
    )]
    async fn get_bot_code(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(
            async {
                let a: GetBotCodeArgs = parse(raw)?;
                self.app
                    .channels
                    .bot_code(&who, &a.channel_id, &a.bot_id)
                    .await
            },
            render::bot_code,
        )
        .await
    }

    #[tool(
        title = "Export the transcript",
        annotations(
            title = "Export the transcript",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        ),
        description = "Export the channel's transcript as one self-contained JSON document anyone can verify offline: every message as your seat sees it (private messages you cannot read as their hash only), each bot's exact source, manifest and params, the server's signatures on the transcript head and its public keys. Save the structured result as a file and check it with `mcp-multiplayer verify FILE`. A channel too big for one answer comes in pages: when page.more is true, call again with after = page.cursor.",
        input_schema = input_schema::<ExportTranscriptArgs>(),
        output_schema = output_schema::<TranscriptExport>()
    )]
    async fn export_transcript(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(
            async {
                let a: ExportTranscriptArgs = parse(raw)?;
                self.app
                    .channels
                    .export_page(&who, &a.channel_id, a.slot, a.after.unwrap_or(0))
                    .await
            },
            render::exported,
        )
        .await
    }

    #[tool(
        title = "List your channels",
        annotations(
            title = "List your channels",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        ),
        description = "List the channels you hold a seat in or administer, newest first, one page at a time (limit, default 50). When next_cursor is present, pass it as cursor for the next page.",
        input_schema = input_schema::<ListChannelsArgs>(),
        output_schema = output_schema::<ChannelList>()
    )]
    async fn list_channels(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(
            async {
                let a: ListChannelsArgs = parse(raw)?;
                let mut clamped = Vec::new();
                let limit = clamped_arg("limit", a.limit, 1, MAX_LIST_LIMIT as i64, &mut clamped)
                    .map_or(DEFAULT_LIST_LIMIT, |l| l as usize);
                let mut list = self
                    .app
                    .channels
                    .list_page(&who, a.cursor.as_deref(), limit)
                    .await?;
                list.clamped = clamped;
                Ok(list)
            },
            |l: &ChannelList| {
                let next = l.next_cursor.as_ref().map(|c| {
                    format!("More channels follow: call list_channels with cursor \"{c}\".")
                });
                render::list(l) + &notes(&l.clamped, next)
            },
        )
        .await
    }

    #[tool(
        title = "Change a channel (admin)",
        annotations(
            title = "Change a channel (admin)",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        ),
        description = "Admin only. op: \"rename\" (with name), \"kick\" (with slot: frees that seat and returns a new invite for it; the seat's private messages until the kick stay sealed for whoever holds it next), \"new_invite\" (with slot: replaces the invite of an open slot), or \"close\" (no more posts or joins).",
        input_schema = input_schema::<UpdateChannelArgs>(),
        output_schema = output_schema::<Updated>()
    )]
    async fn update_channel(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(
            async {
                let a: UpdateChannelArgs = parse(raw)?;
                let need_slot = |s: Option<String>, op: &str| {
                    s.ok_or_else(|| ToolError::bad(format!("op \"{op}\" needs slot")))
                };
                let op = match a.op {
                    UpdateOpName::Rename => UpdateOp::Rename {
                        name: a
                            .name
                            .clone()
                            .ok_or_else(|| ToolError::bad("op \"rename\" needs name"))?,
                    },
                    UpdateOpName::Kick => UpdateOp::Kick {
                        slot: need_slot(a.slot.clone(), "kick")?,
                    },
                    UpdateOpName::NewInvite => UpdateOp::NewInvite {
                        slot: need_slot(a.slot.clone(), "new_invite")?,
                    },
                    UpdateOpName::Close => UpdateOp::Close,
                };
                self.app.channels.update(&who, &a.channel_id, op).await
            },
            render::updated,
        )
        .await
    }

    #[tool(
        title = "Share a channel's web page",
        annotations(
            title = "Share a channel's web page",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        ),
        description = "Make a link to the channel's web page, where people watch it live and their browser verifies the transcript (hash chain, the server's signatures, the referee's commitments). audience \"spectators\" (default): read-only for anyone holding the link (public messages; private ones without bodies), for a week unless expires_in_hours says otherwise. audience \"me\": a one-time link, valid ten minutes, that opens the page as your own seat. The admin can revoke links with revoke_shares.",
        input_schema = input_schema::<ShareChannelArgs>(),
        output_schema = output_schema::<Shared>()
    )]
    async fn share_channel(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(
            async {
                let a: ShareChannelArgs = parse(raw)?;
                let req = crate::page::links::ShareRequest {
                    channel_id: a.channel_id,
                    audience: a.audience.unwrap_or(PageAudience::Spectators),
                    slot: a.slot,
                    expires_in: a
                        .expires_in_hours
                        .map(|h| Duration::from_secs(u64::from(h) * 3600)),
                };
                let origin = self.app.config.public_origin();
                crate::page::links::share(self.app.channels.store(), &origin, &who, req).await
            },
            render::shared,
        )
        .await
    }

    #[tool(
        title = "Revoke links to a channel's page (admin)",
        annotations(
            title = "Revoke links to a channel's page (admin)",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        ),
        description = "Admin only. Revoke one link to the channel's web page (link_id, from share_channel) or, without link_id, every one: spectator links and members' page sessions. Pages open with them stop updating at once.",
        input_schema = input_schema::<RevokeSharesArgs>(),
        output_schema = output_schema::<SharesRevoked>()
    )]
    async fn revoke_shares(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(
            async {
                let a: RevokeSharesArgs = parse(raw)?;
                crate::page::links::revoke(
                    self.app.channels.store(),
                    &who,
                    &a.channel_id,
                    a.link_id,
                )
                .await
            },
            render::shares_revoked,
        )
        .await
    }

    #[tool(
        title = "Attach a bot (admin)",
        annotations(
            title = "Attach a bot (admin)",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        ),
        description = "Admin only. Attach a bot to the channel: bot_preset (a builtin) or bot_code (Python source). Everyone in the channel is told its name and code hash.",
        input_schema = input_schema::<AttachBotArgs>(),
        output_schema = output_schema::<Attached>()
    )]
    async fn attach_bot(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(
            async {
                let a: AttachBotArgs = parse(raw)?;
                // Checked before the sandbox inspects the bot, and again in
                // the write that attaches it.
                let ch = self.app.channels.bot_admin(&who, &a.channel_id).await?;
                let bot = self
                    .app
                    .bots
                    .prepare(a.bot_code, a.bot_preset, a.bot_params, ch.allow_network)
                    .await?
                    .ok_or_else(|| ToolError::bad("give bot_preset or bot_code"))?;
                self.app
                    .channels
                    .attach_bot(&who, &a.channel_id, a.slot, bot)
                    .await
            },
            render::attached,
        )
        .await
    }
}

impl McpServer {
    /// The caller and a channel it may read, from a `channel://ID` URI.
    async fn resource_access(
        &self,
        uri: &str,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<(Principal, String), ErrorData> {
        let who = principal(ctx)?;
        let cid = resources::channel_of(uri).ok_or_else(|| {
            ErrorData::invalid_params(format!("{uri:?} is not a channel://ID resource"), None)
        })?;
        self.app
            .channels
            .view(&who, cid)
            .await
            .map_err(|e| ErrorData::resource_not_found(e.message, None))?;
        Ok((who, cid.to_string()))
    }
}

#[tool_handler(router = Self::router())]
impl ServerHandler for McpServer {
    /// The router's dispatch, timed and counted by tool and outcome for
    /// `/metrics`.
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, ErrorData> {
        let name = request.name.clone();
        let started = std::time::Instant::now();
        let tcc = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        let r = Self::router().call(tcc).await;
        let outcome = match &r {
            Ok(rmcp::model::CallToolResponse::Complete(res)) if res.is_error == Some(true) => res
                .structured_content
                .as_ref()
                .and_then(|v| v["error"]["code"].as_str())
                .unwrap_or("other_error"),
            Ok(_) => "ok",
            Err(_) => "protocol_error",
        };
        self.app
            .metrics
            .tool_call(&name, outcome, started.elapsed());
        r
    }

    /// Channel resources, one page of the caller's channels at a time
    /// (the same pages as `list_channels`, with its cursor).
    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let who = principal(&ctx)?;
        let cursor = request.and_then(|r| r.cursor);
        let list = self
            .app
            .channels
            .list_page(&who, cursor.as_deref(), DEFAULT_LIST_LIMIT)
            .await
            .map_err(|e| ErrorData::invalid_params(e.message, None))?;
        let items = list
            .channels
            .into_iter()
            .map(|c| {
                Resource::new(
                    format!("{}{}", resources::SCHEME, c.channel_id),
                    c.channel_id,
                )
                .with_title(c.name)
                .with_description("A channel: its view and latest messages as JSON")
                .with_mime_type("application/json")
            })
            .collect();
        let mut page = ListResourcesResult::with_all_items(items);
        page.next_cursor = list.next_cursor;
        Ok(page)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let (who, cid) = self.resource_access(&request.uri, &ctx).await?;
        let snap = self
            .app
            .channels
            .snapshot(&who, &cid)
            .await
            .map_err(|e| ErrorData::internal_error(e.message, None))?;
        let body = json!({"view": snap.view, "as": snap.seat, "messages": snap.messages});
        Ok(
            ReadResourceResult::new(vec![ResourceContents::TextResourceContents {
                uri: request.uri,
                mime_type: Some("application/json".into()),
                text: render::resource(&body),
                meta: None,
            }])
            .into(),
        )
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let (who, cid) = self.resource_access(&request.uri, &ctx).await?;
        // Notifications go through the live session: it must not sleep.
        if let Some(id) = ctx
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.headers.get(crate::http::sessions::SESSION_HEADER))
            .and_then(|v| v.to_str().ok())
        {
            self.app.sessions.pin(id);
        }
        self.app.subscriptions.subscribe(
            &cid,
            self.session,
            who,
            resources::Sink::Session(ctx.peer.clone()),
        );
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // Channel resources only; membership is checked in `listen`.
        let mut accepted = SubscriptionFilter::new();
        accepted.resource_subscriptions = requested.resource_subscriptions.as_ref().map(|uris| {
            uris.iter()
                .filter(|u| resources::channel_of(u).is_some())
                .cloned()
                .collect()
        });
        Some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let id = self.app.subscriptions.new_session_id();
        let mut channels = Vec::new();
        let uris = context
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default();
        for uri in uris {
            // A channel the caller may not read is silently not watched.
            if let Ok((who, cid)) = self.resource_access(&uri, context.request_context()).await {
                self.app.subscriptions.subscribe(
                    &cid,
                    id,
                    who,
                    resources::Sink::Listen(context.sink().clone()),
                );
                channels.push(cid);
            }
        }
        context.cancelled().await;
        for cid in channels {
            self.app.subscriptions.unsubscribe(&cid, id);
        }
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if let Some(cid) = resources::channel_of(&request.uri) {
            self.app.subscriptions.unsubscribe(cid, self.session);
        }
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult::with_all_items(prompts::list()))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        prompts::get(&request.name, request.arguments.as_ref())
            .map(Into::into)
            .map_err(|message| ErrorData::invalid_params(message, None))
    }

    fn get_info(&self) -> InitializeResult {
        let origin = self.app.config.public_origin();
        InitializeResult::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_prompts()
                .build(),
        )
        .with_server_info(
            Implementation::new("mcp-multiplayer", env!("CARGO_PKG_VERSION"))
                .with_title("mcp-multiplayer")
                .with_description(
                    "Channels where AI agents meet: invite another agent, talk, and play or agree under a referee bot whose exact source and SHA-256 every participant can check.",
                )
                .with_website_url(env!("CARGO_PKG_REPOSITORY"))
                .with_icons(icon::icons(&origin)),
        )
        .with_instructions(
            "Channels where AI agents meet. One agent calls create_channel and hands each other player its invite code; they call join_channel. Then everyone loops on sync_messages (it long-polls) and speaks with post_message. A bot in the channel referees: get_bot_code shows its exact source, whose sha256 was announced to all. Keep rejoin tokens private.",
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::channels::Code;

    #[test]
    fn an_output_schema_admits_the_result_and_the_tool_error_only() {
        let schema = Value::Object((*output_schema::<Posted>()).clone());
        assert_eq!(schema["type"], "object");
        let v = jsonschema::validator_for(&schema).unwrap();
        let posted = Posted {
            msg_id: "ch:1".into(),
            seq: 1,
            hash: "h".into(),
            sender: "alice".into(),
        };
        assert!(v.is_valid(&serde_json::to_value(&posted).unwrap()));
        let e = ToolError::new(Code::NotMember, "no").with_data(json!({"x": 1}));
        assert!(v.is_valid(&serde_json::to_value(ToolFailure { error: &e }).unwrap()));
        assert!(!v.is_valid(&json!({"msg_id": "ch:1", "seq": "one", "hash": "h", "sender": "a"})));
        assert!(!v.is_valid(&json!({"error": {"code": "NOPE", "message": "x"}})));
        assert!(!v.is_valid(&json!({})));
    }
}

#[cfg(test)]
mod surface_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::bots::presets;

    /// Every subschema of `v` with its JSON path.
    fn nodes<'a>(v: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
        out.push((path.clone(), v));
        if let Value::Object(m) = v {
            for (k, sub) in m {
                match (k.as_str(), sub) {
                    ("properties" | "$defs", Value::Object(map)) => {
                        for (name, s) in map {
                            nodes(s, format!("{path}.{k}.{name}"), out);
                        }
                    }
                    ("anyOf" | "oneOf" | "allOf", Value::Array(list)) => {
                        for (i, s) in list.iter().enumerate() {
                            nodes(s, format!("{path}.{k}[{i}]"), out);
                        }
                    }
                    ("items" | "not" | "additionalProperties", s @ Value::Object(_)) => {
                        nodes(s, format!("{path}.{k}"), out);
                    }
                    _ => {}
                }
            }
        }
    }

    fn tools() -> Vec<rmcp::model::Tool> {
        McpServer::router().list_all()
    }

    #[test]
    fn every_tool_has_a_title_and_all_four_behaviour_hints() {
        let tools = tools();
        assert_eq!(tools.len(), 12);
        for t in &tools {
            assert!(
                t.title.as_deref().is_some_and(|s| !s.is_empty()),
                "{}",
                t.name
            );
            let a = t
                .annotations
                .as_ref()
                .unwrap_or_else(|| panic!("{}", t.name));
            assert!(
                a.read_only_hint.is_some()
                    && a.destructive_hint.is_some()
                    && a.idempotent_hint.is_some()
                    && a.open_world_hint.is_some(),
                "{}: {a:?}",
                t.name
            );
            // A read-only tool is never destructive and always idempotent.
            if a.read_only_hint == Some(true) {
                assert_eq!(
                    (a.destructive_hint, a.idempotent_hint),
                    (Some(false), Some(true)),
                    "{}",
                    t.name
                );
            }
        }
        let read_only: Vec<&str> = tools
            .iter()
            .filter(|t| t.annotations.as_ref().unwrap().read_only_hint == Some(true))
            .map(|t| t.name.as_ref())
            .collect();
        assert_eq!(
            read_only,
            [
                "export_transcript",
                "get_bot_code",
                "get_channel_info",
                "list_channels",
                "sync_messages"
            ]
        );
        let destructive: Vec<&str> = tools
            .iter()
            .filter(|t| t.annotations.as_ref().unwrap().destructive_hint == Some(true))
            .map(|t| t.name.as_ref())
            .collect();
        assert_eq!(destructive, ["revoke_shares", "update_channel"]);
    }

    #[test]
    fn schemas_are_single_typed_typed_everywhere_and_standard() {
        for t in tools() {
            let input = Value::Object((*t.input_schema).clone());
            let output = Value::Object((*t.output_schema.clone().unwrap()).clone());
            for (which, schema) in [("input", &input), ("output", &output)] {
                let mut all = Vec::new();
                nodes(schema, String::new(), &mut all);
                for (path, n) in all {
                    let at = format!("{} {which}{path}", t.name);
                    assert!(n.is_object(), "{at}: a bare boolean schema");
                    let m = n.as_object().unwrap();
                    assert!(
                        !m.get("type").is_some_and(Value::is_array),
                        "{at}: type union {n}"
                    );
                    assert!(
                        m.keys()
                            .any(|k| !["description", "title", "default"].contains(&k.as_str())),
                        "{at}: constrains nothing {n}"
                    );
                    if let Some(f) = m.get("format") {
                        panic!("{at}: format {f}");
                    }
                    if let Some(r) = m.get("$ref") {
                        assert!(r.as_str().unwrap().starts_with("#/$defs/"), "{at}: {r}");
                    }
                }
            }
            // Every argument says what it is.
            for (name, p) in input["properties"].as_object().unwrap() {
                assert!(
                    p["description"].as_str().is_some_and(|d| d.len() > 10),
                    "{}.{name} is undescribed: {p}",
                    t.name
                );
                if p["type"] == "integer" {
                    assert!(
                        p.get("minimum").is_some(),
                        "{}.{name} has no minimum",
                        t.name
                    );
                }
            }
        }
    }

    #[test]
    fn closed_sets_are_enums_and_numbers_carry_their_ranges_and_defaults() {
        let tools = tools();
        let input = |tool: &str| {
            let t = tools.iter().find(|t| t.name == tool).unwrap();
            Value::Object((*t.input_schema).clone())
        };
        for tool in ["create_channel", "attach_bot"] {
            assert_eq!(
                input(tool)["properties"]["bot_preset"]["enum"],
                json!(presets::names())
            );
        }
        let op = &input("update_channel")["properties"]["op"];
        let ops = op.get("enum").or_else(|| op.pointer("/anyOf/0/enum"));
        let ops = ops.cloned().unwrap_or_else(|| {
            // schemars may reference the enum through $defs.
            let r = op["$ref"].as_str().unwrap().trim_start_matches("#/$defs/");
            input("update_channel")["$defs"][r]["enum"].clone()
        });
        assert_eq!(ops, json!(["rename", "kick", "new_invite", "close"]));
        let sync = input("sync_messages");
        let p = &sync["properties"];
        assert_eq!(
            (
                &p["wait_ms"]["minimum"],
                &p["wait_ms"]["maximum"],
                &p["wait_ms"]["default"]
            ),
            (&json!(0), &json!(25000), &json!(20000))
        );
        assert_eq!(
            (
                &p["limit"]["minimum"],
                &p["limit"]["maximum"],
                &p["limit"]["default"]
            ),
            (&json!(1), &json!(500), &json!(100))
        );
        let list = input("list_channels");
        assert_eq!(list["properties"]["limit"]["maximum"], json!(200));
        let body = &input("post_message")["properties"]["body"]["anyOf"];
        assert_eq!(body[0]["type"], "string");
        assert_eq!(body[1]["type"], "object");
    }
}
