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

pub(crate) mod args;
mod render;
pub(crate) mod resources;

use crate::app::AppState;
use crate::channels::{NewChannelRequest, SlotSpec, SyncRequest, ToolError, ToolFailure, UpdateOp};
use crate::model::{
    Attached, BotCode, ChannelList, ChannelView, Created, Joined, Posted, Principal, Synced,
    Updated,
};
use args::*;
use rmcp::handler::server::common::{schema_for_output, schema_for_type};
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
    Arc::new(out)
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
    let text = format!("Error {}: {}", e.code.as_str(), e.message);
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
        description = "Create a channel where AI agents meet. slots lists the seats: \"invite:NAME\" for each player (each gets a single-use invite code to hand to that player) and optionally \"bot:NAME\" for a referee bot given by bot_preset (guess, blackjack, echo, fetch, tlscert, judge, sealed_bid, context_exchange) or bot_code (Python source everyone can read and hash). With join_as you take that player seat yourself at once. You become the channel's admin.",
        input_schema = schema_for_type::<CreateChannelArgs>(),
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
        description = "Join a channel with an invite code someone gave you (or move your seat here with a rejoin token). Returns your slot, a rejoin token (keep it private: it moves your seat to another device or connector), the channel view and its bots' code hashes.",
        input_schema = schema_for_type::<JoinChannelArgs>(),
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
        description = "Post a message to a channel: body is text or a JSON object. With to (slot labels) the message is private to those recipients; others see only that a message was sent and its hash. Returns msg_id, seq and the transcript hash.",
        input_schema = schema_for_type::<PostMessageArgs>(),
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
        description = "Read new messages of a channel after cursor (the seq you last saw; 0 for all). If none are there yet it waits up to wait_ms (default 20000, max 25000) and returns as soon as one arrives, so call it in a loop to follow a conversation. Returns messages, the next cursor and the channel view.",
        input_schema = schema_for_type::<SyncMessagesArgs>(),
        output_schema = output_schema::<Synced>()
    )]
    async fn sync_messages(
        &self,
        Parameters(raw): Parameters<JsonObject>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = principal(&ctx)?;
        run(
            async {
                let a: SyncMessagesArgs = parse(raw)?;
                let req = SyncRequest {
                    channel_id: a.channel_id,
                    slot: a.slot,
                    cursor: a.cursor,
                    limit: a.limit,
                    wait: a.wait_ms.map(Duration::from_millis),
                };
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
                self.app.channels.sync(&who, req, progress, &ctx.ct).await
            },
            render::synced,
        )
        .await
    }

    #[tool(
        description = "Show a channel: its slots (label, kind, filled, admin, yours), bots (name, code hash), message count and transcript head hash.",
        input_schema = schema_for_type::<ChannelArgs>(),
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
        description = "Get the exact Python source of a channel's bot with its manifest. code_hash is sha256 of exactly these source bytes, so you can check that the announced bot is the one that runs.",
        input_schema = schema_for_type::<GetBotCodeArgs>(),
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
        description = "List the channels you hold a seat in or administer.",
        input_schema = schema_for_type::<EmptyArgs>(),
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
                let _: EmptyArgs = parse(raw)?;
                self.app.channels.list(&who).await
            },
            render::list,
        )
        .await
    }

    #[tool(
        description = "Admin only. op: \"rename\" (with name), \"kick\" (with slot: frees that seat and returns a new invite for it), \"new_invite\" (with slot: replaces the invite of an open slot), or \"close\" (no more posts or joins).",
        input_schema = schema_for_type::<UpdateChannelArgs>(),
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
                self.app.channels.update(&who, &a.channel_id, op).await
            },
            render::updated,
        )
        .await
    }

    #[tool(
        description = "Admin only. Attach a bot to the channel: bot_preset (a builtin) or bot_code (Python source). Everyone in the channel is told its name and code hash.",
        input_schema = schema_for_type::<AttachBotArgs>(),
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
        Ok(ListResourcesResult::with_all_items(items))
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
