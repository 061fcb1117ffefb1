//! Bots: preparing a bot for attachment, and running its hooks.
//!
//! Preparing reads the exact source (a builtin preset from `bots_dir`, or the
//! creator's inline code), hashes those bytes, and runs the `inspect` hook in
//! the sandbox: the language layer's verdict and the manifest come from the
//! same harness that will run the bot, so a bot that would be refused at run
//! time is refused at attach time, with the line.

pub mod dispatch;
pub mod runner;

use crate::channels::{BotAttachment, ToolError};
use crate::config::BotsConfig;
use crate::transcript;
use hook_protocol::{
    BotSpec, Hook, HookContext, HookError, HookJob, HookOutcome, Limits, NetworkPolicy,
    PROTOCOL_VERSION, Runtime,
};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Largest inline bot source.
pub const MAX_SOURCE_BYTES: usize = 256 * 1024;

/// Bot services shared by the tools and the dispatcher.
#[derive(Clone)]
pub struct Bots {
    pub cfg: Arc<BotsConfig>,
    pub dispatcher: Option<dispatch::Dispatcher>,
}

impl Bots {
    pub fn new(cfg: BotsConfig) -> Self {
        Bots {
            cfg: Arc::new(cfg),
            dispatcher: None,
        }
    }

    /// Names of the builtin presets (the `*.py` files in `bots_dir`).
    pub fn presets(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.cfg.bots_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                (p.extension()? == "py").then(|| p.file_stem()?.to_str().map(str::to_string))?
            })
            .collect();
        v.sort();
        v
    }

    /// Reads, hashes and inspects a bot. `Ok(None)` when neither code nor
    /// preset was given.
    pub async fn prepare(
        &self,
        code: Option<String>,
        preset: Option<String>,
        params: Option<Map<String, Value>>,
        network: bool,
    ) -> Result<Option<BotAttachment>, ToolError> {
        let (source, preset) = match (code, preset) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(ToolError::bad(
                    "give either bot_code or bot_preset, not both",
                ));
            }
            (Some(code), None) => (code, None),
            (None, Some(p)) => {
                let valid = !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c == '_');
                let path = self.cfg.bots_dir.join(format!("{p}.py"));
                let source = if valid {
                    std::fs::read_to_string(&path).ok()
                } else {
                    None
                };
                match source {
                    Some(s) => (s, Some(p)),
                    None => {
                        return Err(ToolError::bad(format!(
                            "unknown bot_preset {p:?}; builtin bots: {}",
                            self.presets().join(", ")
                        )));
                    }
                }
            }
        };
        if source.len() > MAX_SOURCE_BYTES {
            return Err(ToolError::bad(format!(
                "bot_code is {} bytes; the limit is {MAX_SOURCE_BYTES}",
                source.len()
            )));
        }
        let params = Value::Object(params.unwrap_or_default());
        let code_hash = transcript::sha256_tagged(source.as_bytes());
        let mut job = self.job(
            BotSpec {
                name: preset.clone().unwrap_or_else(|| "bot".into()),
                source: source.clone(),
                params: params.clone(),
            },
            Hook::Inspect,
            HookContext {
                channel_id: String::new(),
                bot_id: String::new(),
                players: Vec::new(),
            },
            json!({}),
            network,
        );
        // Inspections run beside hooks on a uid of their own (the one after
        // the hook slots'), not sharing a hook's process budget.
        job.runtime.sandbox_uid = self
            .cfg
            .sandbox_uid
            .saturating_add(self.cfg.max_parallel_hooks as u32);
        let manifest = match runner::run_job(&self.cfg.runner, &job).await {
            HookOutcome::Ok {
                manifest: Some(m), ..
            } => m,
            HookOutcome::Ok { manifest: None, .. } => {
                return Err(ToolError::internal("inspect returned no manifest"));
            }
            HookOutcome::Error { error } => return Err(refusal(&error)),
        };
        let manifest = normalise_manifest(manifest, network);
        let manifest_hash = transcript::sha256_tagged(transcript::canonical(&manifest).as_bytes());
        let name = manifest["name"].as_str().unwrap_or("bot").to_string();
        Ok(Some(BotAttachment {
            name,
            preset,
            source,
            code_hash,
            manifest,
            manifest_hash,
            params,
            network,
        }))
    }

    /// A job with this daemon's runtime settings.
    pub fn job(
        &self,
        bot: BotSpec,
        hook: Hook,
        context: HookContext,
        state: Value,
        network: bool,
    ) -> HookJob {
        HookJob {
            version: PROTOCOL_VERSION,
            bot,
            hook,
            context,
            state,
            limits: Limits::default(),
            network: NetworkPolicy {
                allowed: network,
                allow_cidrs: self.cfg.network_allow_cidrs.clone(),
                deny_cidrs: Vec::new(),
            },
            runtime: Runtime {
                python: self.cfg.python.clone(),
                python_args: self.cfg.python_args.clone(),
                harness_dir: self.cfg.bots_dir.join("harness"),
                python_path: self.cfg.python_path.clone(),
                sandbox_uid: self.cfg.sandbox_uid,
                sandbox_gid: self.cfg.sandbox_gid,
                system_dirs: self.cfg.system_dirs.clone(),
            },
        }
    }

    /// Tells the dispatcher that a channel may have gained a bot or messages.
    pub fn channel_changed(&self, channel_id: &str) {
        if let Some(d) = &self.dispatcher {
            d.register(channel_id);
            d.poke(channel_id);
        }
    }
}

/// The manifest as announced: only the documented keys, with `network`.
fn normalise_manifest(m: Value, network: bool) -> Value {
    json!({
        "name": m.get("name").cloned().unwrap_or(json!("bot")),
        "version": m.get("version").cloned().unwrap_or(json!("0")),
        "summary": m.get("summary").cloned().unwrap_or(json!("")),
        "hooks": m.get("hooks").cloned().unwrap_or(json!([])),
        "params": m.get("params").cloned().unwrap_or(json!({})),
        "network": network,
    })
}

/// A bot the harness refused, as the creator sees it.
fn refusal(e: &HookError) -> ToolError {
    match e {
        HookError::Syntax { .. } | HookError::Policy { .. } => {
            ToolError::bad(format!("bot refused: {}", e.short_reason()))
        }
        HookError::Confinement { .. } | HookError::Internal { .. } => {
            tracing::error!(error = ?e, "bot inspection failed in the sandbox");
            ToolError::new(
                crate::channels::Code::BotError,
                format!("the bot sandbox is not working: {}", e.short_reason()),
            )
        }
        other => ToolError::new(
            crate::channels::Code::BotError,
            format!("bot refused: {}", other.short_reason()),
        ),
    }
}
