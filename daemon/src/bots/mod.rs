//! Bots: preparing a bot for attachment, and running its hooks.
//!
//! Preparing reads the exact source (a builtin preset from `bots_dir`, or the
//! creator's inline code), hashes those bytes, and runs the `inspect` hook in
//! the sandbox: the language layer's verdict and the manifest come from the
//! same harness that will run the bot, so a bot that would be refused at run
//! time is refused at attach time, with the line.

pub(crate) mod context;
pub(crate) mod dispatch;
pub(crate) mod pool;
pub(crate) mod presets;
pub(crate) mod runner;
pub mod seed;
pub(crate) mod templates;

#[cfg(test)]
mod tests;

use crate::channels::{Code, ToolError};
use crate::config::BotsConfig;
use crate::model::Manifest;
use crate::store::PreparedBot;
use crate::transcript;
use hook_protocol::{
    BotSpec, Hook, HookContext, HookError, HookJob, HookOutcome, Limits, NetworkPolicy, Origin,
    PROTOCOL_VERSION, Runtime,
};
use runner::HookRunner;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Largest inline bot source.
pub const MAX_SOURCE_BYTES: usize = 256 * 1024;

/// Bot services shared by the tools and the dispatcher: the configuration
/// jobs are built from, and what runs them.
#[derive(Clone)]
pub struct Bots {
    pub cfg: Arc<BotsConfig>,
    pub(crate) runner: Arc<dyn HookRunner>,
    /// The real runner's pool of pre-warmed sandboxes, if any.
    pool: Option<Arc<pool::WarmPool>>,

    /// The limits every job carries (the protocol's defaults).
    limits: Limits,
}

impl Bots {
    /// Bots run by the real `sandbox-runner` named in the config, through
    /// a pool of pre-warmed sandboxes unless `warm_max` is 0. Inside a tokio
    /// runtime the pool starts warming the most common kind of hook (no
    /// network, the first sandbox uid) at once.
    pub fn new(cfg: BotsConfig) -> Self {
        let pool = (cfg.warm_max > 0).then(|| {
            pool::WarmPool::new(
                cfg.runner.clone(),
                cfg.warm_min,
                cfg.warm_max,
                std::time::Duration::from_secs(cfg.warm_idle_secs),
            )
        });
        let inspect_uid = cfg
            .sandbox_uid
            .saturating_add(cfg.max_parallel_hooks as u32);
        let mut sandbox = runner::Sandbox::new(cfg.runner.clone(), pool, inspect_uid);
        if cfg.fork_templates {
            // Their uids follow the hooks' and the inspections' uid.
            sandbox = sandbox.with_templates(Arc::new(templates::Templates::new(
                cfg.runner.clone(),
                std::time::Duration::from_secs(cfg.warm_idle_secs),
                inspect_uid.saturating_add(1),
            )));
        }
        let primed = sandbox.pool().cloned();
        let mut bots = Self::with_runner(cfg, Arc::new(sandbox));
        bots.pool = primed.clone();

        if let Some(pool) = primed {
            let spec = BotSpec {
                name: String::new(),
                source: String::new(),
                params: json!({}),
                compiled: None,
            };
            let context = HookContext {
                channel_id: String::new(),
                bot_id: String::new(),
                players: Vec::new(),
            };
            pool.prime(&bots.job(spec, Hook::OnInit, context, json!({}), false));
        }
        bots
    }

    /// Bots run by `runner` (a scripted one in tests).
    pub(crate) fn with_runner(cfg: BotsConfig, runner: Arc<dyn HookRunner>) -> Self {
        Bots {
            cfg: Arc::new(cfg),
            runner,
            pool: None,
            limits: Limits::default(),
        }
    }

    /// Hooks run in a pre-warmed sandbox since the daemon started.
    pub fn hooks_prewarmed(&self) -> u64 {
        self.pool.as_ref().map_or(0, |p| p.served())
    }

    /// The same, with jobs carrying `limits`.
    #[cfg(test)]
    pub(crate) fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Reads, hashes and inspects a bot. `Ok(None)` when neither code nor
    /// preset was given.
    pub async fn prepare(
        &self,
        code: Option<String>,
        preset: Option<String>,
        params: Option<Map<String, Value>>,
        network: bool,
    ) -> Result<Option<PreparedBot>, ToolError> {
        let (source, preset) = match (code, preset) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(ToolError::bad(
                    "give either bot_code or bot_preset, not both",
                ));
            }
            (Some(code), None) => (code, None),
            (None, Some(asked)) => {
                let Some(p) = presets::resolve(&asked) else {
                    return Err(ToolError::bad(format!(
                        "unknown bot_preset {asked:?}; the builtin bots are {}",
                        presets::names().join(", ")
                    )));
                };
                let path = self.cfg.bots_dir.join(format!("{}.py", p.file));
                let source = std::fs::read_to_string(&path).map_err(|e| {
                    ToolError::internal(format!("cannot read builtin bot {}: {e}", path.display()))
                })?;
                (source, Some(p.name.to_string()))
            }
        };
        if source.len() > MAX_SOURCE_BYTES {
            return Err(ToolError::bad(format!(
                "bot_code is {} bytes; the limit is {MAX_SOURCE_BYTES}",
                source.len()
            )));
        }
        let params = params.unwrap_or_default();
        let code_hash = transcript::sha256_tagged(source.as_bytes());
        let mut job = self.job(
            BotSpec {
                name: preset.clone().unwrap_or_else(|| "bot".into()),
                source: source.clone(),
                params: Value::Object(params.clone()),
                compiled: None,
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
        let outcome =
            job.limits
                .enforce(self.runner.run(&job).await, &job.hook, &[], Origin::Runner);
        let manifest = match outcome {
            HookOutcome::Ok {
                manifest: Some(m), ..
            } => m,
            HookOutcome::Ok { manifest: None, .. } => {
                return Err(ToolError::internal("inspect returned no manifest"));
            }
            HookOutcome::Error { error } => return Err(refusal(&error)),
        };
        let manifest = announced_manifest(manifest, network)?;
        // A custom bot may not pass for a builtin by its name; pasting a
        // builtin's exact source attaches that builtin.
        let preset = match (preset, presets::impersonated(&manifest.name)) {
            (Some(p), _) => Some(p),
            (None, None) => None,
            (None, Some(p)) => {
                let path = self.cfg.bots_dir.join(format!("{}.py", p.file));
                if std::fs::read_to_string(&path).is_ok_and(|builtin| builtin == source) {
                    Some(p.name.to_string())
                } else {
                    return Err(ToolError::bad(format!(
                        "bot_code announces the name {:?}, which is the builtin {}'s, but it is \
                         not that builtin's source: a custom bot may not pass for a builtin. \
                         Give it a name of its own (MANIFEST['name'], or its class name), \
                         or attach the builtin with bot_preset {:?}",
                        manifest.name, p.name, p.name
                    )));
                }
            }
        };
        let manifest_hash = transcript::sha256_tagged(transcript::canonical(&manifest).as_bytes());
        Ok(Some(PreparedBot {
            name: manifest.name.clone(),
            preset,
            source,
            code_hash,
            manifest,
            manifest_hash,
            params,
            network,
            seed: seed::draw(),
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
            limits: self.limits.clone(),
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
            entropy: None,
            now: None,
            hash_seed: None,
        }
    }
}

/// The manifest as the harness reports it (with defaults for what a bot
/// left out; `class_name` and other keys are not announced).
#[derive(Deserialize)]
struct InspectedManifest {
    #[serde(default = "default_name")]
    name: String,
    #[serde(default = "default_version")]
    version: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    hooks: Vec<String>,
    #[serde(default)]
    params: Map<String, Value>,
}

fn default_name() -> String {
    "bot".into()
}

fn default_version() -> String {
    "0".into()
}

/// The manifest as announced: only the documented keys, with `network`.
fn announced_manifest(m: Value, network: bool) -> Result<Manifest, ToolError> {
    let m: InspectedManifest = serde_json::from_value(m)
        .map_err(|e| ToolError::internal(format!("inspect returned a malformed manifest: {e}")))?;
    Ok(Manifest {
        name: m.name,
        version: m.version,
        summary: m.summary,
        hooks: m.hooks,
        params: m.params,
        network,
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
                Code::BotError,
                format!("the bot sandbox is not working: {}", e.short_reason()),
            )
        }
        other => ToolError::new(
            Code::BotError,
            format!("bot refused: {}", other.short_reason()),
        ),
    }
}
