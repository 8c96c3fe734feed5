//! The agents a config can name. The built-in ones ([`crate::algos::builtin`]) register
//! exactly as a user's agent does: `register_agent::<MyAgent>()` with `MyAgent:
//! `[`BuildAgent`]. After that, `[algo] name = "my_agent"` trains it, its settings are
//! checked and written to the run's `config.toml` and hyperparameters, and `eval`,
//! `search compare` and `--resume` rebuild it by name.

use std::sync::{LazyLock, RwLock};

use envs::AnyEnv;
use tch::Device;

use crate::agent::{AgentContext, AgentEntry, AgentError, AnyAgent, BuildAgent};
use crate::config::{ConfigError, RunConfig};

static AGENTS: LazyLock<RwLock<Vec<AgentEntry>>> =
    LazyLock::new(|| RwLock::new(crate::algos::builtin()));

/// Registers `A` under [`BuildAgent::NAME`]; a name already taken is an error.
pub fn register_agent<A: BuildAgent>() -> Result<(), AgentError> {
    register(AgentEntry::of::<A>())
}

/// Registers `entry`; a name already taken is an error.
pub fn register(entry: AgentEntry) -> Result<(), AgentError> {
    let mut list = AGENTS.write().unwrap_or_else(|e| e.into_inner());
    if list.iter().any(|e| e.name == entry.name) {
        return Err(AgentError::Config(format!(
            "an agent named `{}` is already registered",
            entry.name
        )));
    }
    list.push(entry);
    Ok(())
}

/// Every registered agent, the built-in ones first.
pub fn agents() -> Vec<AgentEntry> {
    AGENTS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The agent called `name`, or an error listing the registered names.
pub fn agent(name: &str) -> Result<AgentEntry, ConfigError> {
    let list = agents();
    list.iter()
        .find(|e| e.name == name)
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = list.iter().map(|e| e.name).collect();
            ConfigError::Invalid(format!(
                "algo.name = {name:?}: no such agent; registered agents: {}",
                names.join(", ")
            ))
        })
}

/// Checks `cfg.algo` against its agent's settings type and fills in every default, so the
/// config written to the run directory says everything the run used.
pub fn resolve(cfg: &mut RunConfig) -> Result<(), ConfigError> {
    let entry = agent(&cfg.algo.name)?;
    cfg.algo.settings = (entry.resolve)(&cfg.algo.settings).map_err(ConfigError::Invalid)?;
    Ok(())
}

/// Builds the agent `cfg.algo` names for `env` (its settings checked first), its weights
/// drawn from `cfg.seed`.
pub fn build(cfg: &RunConfig, env: &AnyEnv, device: Device) -> Result<AnyAgent, AgentError> {
    let entry = agent(&cfg.algo.name).map_err(|e| AgentError::Config(e.to_string()))?;
    let settings = (entry.resolve)(&cfg.algo.settings).map_err(AgentError::Config)?;
    // An allocation too large for memory aborts the process; refuse it while that is an error.
    if device == Device::Cpu {
        crate::memory::check_fits(cfg, envs::Env::spec(env), crate::memory::available_bytes())
            .map_err(AgentError::Config)?;
    }
    (entry.build)(&AgentContext::new(cfg, env, device), &settings)
}
