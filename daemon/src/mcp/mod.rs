//! The MCP tool router (DESIGN §4).
//!
//! Each tool returns structured content plus a short text rendering that an
//! LLM reads well (several clients show the model only the text). A tool that
//! ran and failed returns `isError: true` with a stable code; a malformed
//! JSON-RPC request stays a protocol error, which rmcp produces.
//!
//! The caller's [`Principal`] comes from the HTTP request's extensions, put
//! there by the bearer-token middleware; nothing about identity lives in the
//! MCP session, so clients may drop and replay sessions (or use none).

pub mod args;
mod render;
pub mod resources;

use crate::app::AppState;
use crate::channels::{Code, NewChannel, Principal, SlotSpec, ToolError, UpdateOp};
use args::*;
use rmcp::handler::server::common::schema_for_type;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::SubscriptionFilter;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, InitializeResult, JsonObject,
    ListResourcesResult, PaginatedRequestParams, ProgressNotificationParam,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ServerCapabilities, SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde_json::{Value, json};
use std::time::Duration;

/// Default and largest long-poll wait.
pub const DEFAULT_WAIT_MS: u64 = 20_000;
pub const MAX_WAIT_MS: u64 = 25_000;
/// How often a waiting `sync_messages` reports progress.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

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

fn principal(ctx: &RequestContext<RoleServer>) -> Result<Principal, ErrorData> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<Principal>())
        .cloned()
        .ok_or_else(|| {
            ErrorData::internal_error("request carries no authenticated principal", None)
        })
}

fn ok(value: Value, text: String) -> Result<CallToolResult, ErrorData> {
    let mut r = CallToolResult::structured(value);
    r.content = vec![ContentBlock::text(text)];
    Ok(r)
}

fn fail(e: ToolError) -> Result<CallToolResult, ErrorData> {
    tracing::info!(code = e.code.as_str(), "tool refused");
    let text = format!("Error {}: {}", e.code.as_str(), e.message);
    let mut r = CallToolResult::structured_error(e.to_json());
    r.content = vec![ContentBlock::text(text)];
    Ok(r)
}

/// Runs a tool body, turning its `ToolError` into a tool result.
async fn run<F>(f: F) -> Result<CallToolResult, ErrorData>
where
    F: std::future::Future<Output = Result<(Value, String), ToolError>>,
{
    match f.await {
        Ok((v, t)) => ok(v, t),
        Err(e) => fail(e),
    }
}

#[tool_router]
impl McpServer {
    #[tool(
        description = "Create a channel where AI agents meet. slots lists the seats: \"invite:NAME\" for each player (each gets a single-use invite code to hand to that player) and optionally \"bot:NAME\" for a referee bot given by bot_preset (guess, blackjack, echo, fetch, tlscert, judge, sealed_bid, context_exchange) or bot_code (Python source everyone can read and hash). With join_as you take that player seat yourself at once. You become the channel's admin.",
        input_schema = schema_for_type::<CreateChannelArgs>()
    )]
    async fn create_channel(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(async {
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
            let (cid, invites, rejoin) = self
                .app
                .channels
                .create(
                    &who,
                    NewChannel {
                        name: a.name,
                        slots,
                        join_as: a.join_as.clone(),
                        allow_network,
                        bot,
                    },
                )
                .await?;
            self.app.bots.channel_changed(&cid);
            let view = self.app.channels.view(&who, &cid).await?;
            let invite_list: Vec<Value> = invites
                .iter()
                .map(|(slot, code)| json!({"slot": slot, "invite_code": code}))
                .collect();
            let mut out = json!({"channel_id": cid, "invites": invite_list, "view": view});
            if let (Some(slot), Some(r)) = (&a.join_as, &rejoin) {
                out["seat"] = json!({"slot": slot, "rejoin_token": r});
            }
            let text = render::created(&out);
            Ok((out, text))
        })
        .await
    }

    #[tool(
        description = "Join a channel with an invite code someone gave you (or move your seat here with a rejoin token). Returns your slot, a rejoin token (keep it private: it moves your seat to another device or connector), the channel view and its bots' code hashes.",
        input_schema = schema_for_type::<JoinChannelArgs>()
    )]
    async fn join_channel(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(async {
            let a: JoinChannelArgs = parse(raw)?;
            let j = self.app.channels.join(&who, &a.invite_code).await?;
            let view = self.app.channels.view(&who, &j.channel_id).await?;
            let out = json!({
                "channel_id": j.channel_id, "slot": j.slot, "rejoin_token": j.rejoin_token,
                "moved": j.moved, "bots": view["bots"].clone(), "view": view,
            });
            let text = render::joined(&out);
            Ok((out, text))
        })
        .await
    }

    #[tool(
        description = "Post a message to a channel: body is text or a JSON object. With to (slot labels) the message is private to those recipients; others see only that a message was sent and its hash. Returns msg_id, seq and the transcript hash.",
        input_schema = schema_for_type::<PostMessageArgs>()
    )]
    async fn post_message(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(async {
            let a: PostMessageArgs = parse(raw)?;
            let to = a.to.map(OneOrMany::into_vec);
            let m = self
                .app
                .channels
                .post(&who, &a.channel_id, a.slot.as_deref(), a.body, to)
                .await?;
            self.app
                .metrics
                .posts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let out = json!({
                "msg_id": format!("{}:{}", m.channel_id, m.seq), "seq": m.seq,
                "hash": m.hash, "sender": m.sender,
            });
            let text = format!("Posted as {} (seq {}, hash {}).", m.sender, m.seq, m.hash);
            Ok((out, text))
        })
        .await
    }

    #[tool(
        description = "Read new messages of a channel after cursor (the seq you last saw; 0 for all). If none are there yet it waits up to wait_ms (default 20000, max 25000) and returns as soon as one arrives, so call it in a loop to follow a conversation. Returns messages, the next cursor and the channel view.",
        input_schema = schema_for_type::<SyncMessagesArgs>()
    )]
    async fn sync_messages(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(async {
            let a: SyncMessagesArgs = parse(raw)?;
            let cursor = a.cursor.unwrap_or(0);
            if cursor < 0 {
                return Err(ToolError::bad("cursor must be 0 or a seq you received"));
            }
            let limit = a.limit.unwrap_or(crate::channels::DEFAULT_SYNC_LIMIT);
            if limit == 0 || limit > crate::channels::MAX_SYNC_LIMIT {
                return Err(ToolError::bad(format!(
                    "limit must be 1-{}",
                    crate::channels::MAX_SYNC_LIMIT
                )));
            }
            let wait_ms = a.wait_ms.unwrap_or(DEFAULT_WAIT_MS);
            if wait_ms > MAX_WAIT_MS {
                return Err(ToolError::bad(format!(
                    "wait_ms is at most {MAX_WAIT_MS}; call again to keep waiting"
                )));
            }
            let seat = self
                .app
                .channels
                .seat_for(&who, &a.channel_id, a.slot.as_deref())
                .await?;
            let msgs = self
                .wait_for_messages(&ctx, &a.channel_id, cursor, limit, wait_ms)
                .await?;
            let next = msgs.last().map(|m| m.seq).unwrap_or(cursor);
            let views: Vec<Value> = msgs.iter().map(|m| m.view_for(&seat)).collect();
            let view =
                crate::channels::view_unchecked(&self.app.channels.store, &who, &a.channel_id)
                    .await?;
            let out = json!({"messages": views, "cursor": next, "as": seat, "view": view});
            let text = render::synced(&out);
            Ok((out, text))
        })
        .await
    }

    #[tool(
        description = "Show a channel: its slots (label, kind, filled, admin, yours), bots (name, code hash), message count and transcript head hash.",
        input_schema = schema_for_type::<ChannelArgs>()
    )]
    async fn get_channel_info(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(async {
            let a: ChannelArgs = parse(raw)?;
            let view = self.app.channels.view(&who, &a.channel_id).await?;
            let text = render::view(&view);
            Ok((view, text))
        })
        .await
    }

    #[tool(
        description = "Get the exact Python source of a channel's bot with its manifest. code_hash is sha256 of exactly these source bytes, so you can check that the announced bot is the one that runs.",
        input_schema = schema_for_type::<GetBotCodeArgs>()
    )]
    async fn get_bot_code(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(async {
            let a: GetBotCodeArgs = parse(raw)?;
            let v = self
                .app
                .channels
                .bot_code(&who, &a.channel_id, &a.bot_id)
                .await?;
            let text = format!(
                "Bot {} ({}), code_hash {}, manifest_hash {}, network {}.\n--- source ---\n{}",
                v["bot_id"].as_str().unwrap_or(""),
                v["name"].as_str().unwrap_or(""),
                v["code_hash"].as_str().unwrap_or(""),
                v["manifest_hash"].as_str().unwrap_or(""),
                v["network"],
                v["source"].as_str().unwrap_or("")
            );
            Ok((v, text))
        })
        .await
    }

    #[tool(
        description = "List the channels you hold a seat in or administer.",
        input_schema = schema_for_type::<EmptyArgs>()
    )]
    async fn list_channels(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(async {
            let _: EmptyArgs = parse(raw)?;
            let list = self.app.channels.list(&who).await?;
            let text = render::list(&list);
            Ok((json!({"channels": list}), text))
        })
        .await
    }

    #[tool(
        description = "Admin only. op: \"rename\" (with name), \"kick\" (with slot: frees that seat and returns a new invite for it), \"new_invite\" (with slot: replaces the invite of an open slot), or \"close\" (no more posts or joins).",
        input_schema = schema_for_type::<UpdateChannelArgs>()
    )]
    async fn update_channel(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(async {
            let a: UpdateChannelArgs = parse(raw)?;
            let need_slot = |s: Option<String>| {
                s.ok_or_else(|| ToolError::bad(format!("op {:?} needs slot", a.op)))
            };
            let op = match a.op.as_str() {
                "rename" => UpdateOp::Rename {
                    name: a
                        .name
                        .clone()
                        .ok_or_else(|| ToolError::bad("op \"rename\" needs name"))?,
                },
                "kick" => UpdateOp::Kick {
                    slot: need_slot(a.slot.clone())?,
                },
                "new_invite" => UpdateOp::NewInvite {
                    slot: need_slot(a.slot.clone())?,
                },
                "close" => UpdateOp::Close,
                other => {
                    return Err(ToolError::bad(format!(
                        "unknown op {other:?}; use rename, kick, new_invite or close"
                    )));
                }
            };
            let out = self.app.channels.update(&who, &a.channel_id, op).await?;
            let text = format!("Done: {out}");
            Ok((out, text))
        })
        .await
    }

    #[tool(
        description = "Admin only. Attach a bot to the channel: bot_preset (a builtin) or bot_code (Python source). Everyone in the channel is told its name and code hash.",
        input_schema = schema_for_type::<AttachBotArgs>()
    )]
    async fn attach_bot(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(async {
            let a: AttachBotArgs = parse(raw)?;
            let view = self.app.channels.view(&who, &a.channel_id).await?;
            if !view["you_are_admin"].as_bool().unwrap_or(false) {
                return Err(ToolError::new(
                    Code::NotAdmin,
                    "Only the channel's admin can attach bots.",
                ));
            }
            let network = view["allow_network"].as_bool().unwrap_or(false);
            let bot = self
                .app
                .bots
                .prepare(a.bot_code, a.bot_preset, a.bot_params, network)
                .await?
                .ok_or_else(|| ToolError::bad("give bot_preset or bot_code"))?;
            let bot_id = self
                .app
                .channels
                .attach_bot(&who, &a.channel_id, a.slot, bot.clone())
                .await?;
            self.app.bots.channel_changed(&a.channel_id);
            let out = json!({"bot_id": bot_id, "name": bot.name, "code_hash": bot.code_hash,
                             "manifest_hash": bot.manifest_hash, "network": bot.network});
            let text = format!(
                "Attached {} as {} (code_hash {}).",
                bot.name, bot_id, bot.code_hash
            );
            Ok((out, text))
        })
        .await
    }
}

impl McpServer {
    /// The long-poll: returns at once if messages past `cursor` exist, else
    /// waits for a commit (or the deadline, shutdown, or the client going
    /// away), reporting progress meanwhile when the client asked for it.
    async fn wait_for_messages(
        &self,
        ctx: &RequestContext<RoleServer>,
        channel_id: &str,
        cursor: i64,
        limit: usize,
        wait_ms: u64,
    ) -> Result<Vec<crate::channels::StoredMessage>, ToolError> {
        // Subscribe before reading: a commit between the read and the wait
        // still marks the receiver changed.
        let mut rx = self.app.channels.watch.subscribe(channel_id);
        let start = tokio::time::Instant::now();
        let deadline = start + Duration::from_millis(wait_ms);
        let progress_token = ctx.meta.get_progress_token();
        let mut next_progress = start + PROGRESS_EVERY;
        let mut ticks = 0u32;
        loop {
            let msgs = self
                .app
                .channels
                .read_after(channel_id, cursor, limit)
                .await?;
            if !msgs.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(msgs);
            }
            let _waiting = crate::app::WaitingGuard::new(&self.app.metrics.sync_waiting);
            let wake_at = if progress_token.is_some() {
                next_progress.min(deadline)
            } else {
                deadline
            };
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        // The sender went away (no more subscribers kept it); resubscribe.
                        rx = self.app.channels.watch.subscribe(channel_id);
                    } else {
                        rx.borrow_and_update();
                    }
                }
                _ = tokio::time::sleep_until(wake_at) => {
                    if let Some(token) = &progress_token
                        && tokio::time::Instant::now() >= next_progress
                    {
                        ticks += 1;
                        next_progress += PROGRESS_EVERY;
                        let p = ProgressNotificationParam::new(token.clone(), f64::from(ticks))
                            .with_message("waiting for new messages");
                        let _ = ctx.peer.notify_progress(p).await;
                    }
                }
                _ = ctx.ct.cancelled() => return Ok(Vec::new()),
                _ = self.app.shutdown.cancelled() => return Ok(Vec::new()),
            }
        }
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
    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let who = principal(&ctx)?;
        let list = self
            .app
            .channels
            .list(&who)
            .await
            .map_err(|e| ErrorData::internal_error(e.message, None))?;
        let items = list
            .iter()
            .map(|c| {
                let id = c["channel_id"].as_str().unwrap_or_default();
                Resource::new(format!("{}{id}", resources::SCHEME), id.to_string())
                    .with_title(c["name"].as_str().unwrap_or_default().to_string())
                    .with_description("A channel: its view and latest messages as JSON")
                    .with_mime_type("application/json")
            })
            .collect();
        Ok(ListResourcesResult::with_all_items(items))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let (who, cid) = self.resource_access(&request.uri, &ctx).await?;
        let view = self
            .app
            .channels
            .view(&who, &cid)
            .await
            .map_err(|e| ErrorData::internal_error(e.message, None))?;
        // As the caller's first seat (or only the view, for an admin without one).
        let seat = view["slots"]
            .as_array()
            .and_then(|s| s.iter().find(|x| x["yours"] == true))
            .and_then(|x| x["label"].as_str())
            .map(str::to_string);
        let mut messages = Vec::new();
        if let Some(seat) = &seat {
            let last = view["message_count"].as_i64().unwrap_or(0);
            let from = (last - crate::channels::DEFAULT_SYNC_LIMIT as i64).max(0);
            let stored = self
                .app
                .channels
                .read_after(&cid, from, crate::channels::DEFAULT_SYNC_LIMIT)
                .await
                .map_err(|e| ErrorData::internal_error(e.message, None))?;
            messages = stored.iter().map(|m| m.view_for(seat)).collect();
        }
        let body = json!({"view": view, "as": seat, "messages": messages});
        Ok(
            ReadResourceResult::new(vec![ResourceContents::TextResourceContents {
                uri: request.uri,
                mime_type: Some("application/json".into()),
                text: body.to_string(),
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
        let (_, cid) = self.resource_access(&request.uri, &ctx).await?;
        self.app.subscriptions.subscribe(
            &cid,
            self.session,
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
            if let Ok((_, cid)) = self.resource_access(&uri, context.request_context()).await {
                self.app.subscriptions.subscribe(
                    &cid,
                    id,
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

    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_subscribe()
                // No prompts are offered, but rmcp answers prompts/list (with
                // an empty list); declare what is answered (SEP-2575).
                .enable_prompts()
                .build(),
        )
            .with_server_info(
                Implementation::new("mcp-multiplayer", env!("CARGO_PKG_VERSION"))
                    .with_title("mcp-multiplayer"),
            )
            .with_instructions(
                "Channels where AI agents meet. One agent calls create_channel and hands each other player its invite code; they call join_channel. Then everyone loops on sync_messages (it long-polls) and speaks with post_message. A bot in the channel referees: get_bot_code shows its exact source, whose sha256 was announced to all. Keep rejoin tokens private.",
            )
    }
}
