//! Fixtures for tests of agents, this crate's and a user's: a run config from TOML text
//! with `--set`-style overrides, a CPU runner for it, and a tiny policy for an env. They
//! panic on bad input, as test fixtures do.
//!
//! ```
//! use agents::testing::{config, runner};
//!
//! let cfg = config(
//!     "[env]\nname = \"cycle\"\nlength = 5\n[algo]\nname = \"cot_supervised\"\n",
//!     &["train.steps=2", "train.batch_size=8", "eval.every=0", "eval.episodes=4"],
//! );
//! let summary = runner(cfg).train()?;
//! assert_eq!(summary.steps, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use envs::Env;
use tch::Device;

use crate::agent::AnyAgent;
use crate::config::{Override, RunConfig};
use crate::model::{ModelConfig, ModelLayout};
use crate::policy::CotPolicy;
use crate::runner::Runner;

/// The run config of TOML `text` with `sets` (`"key=value"`, as `--set` takes them) applied.
///
/// # Panics
/// On a bad override or config: the message names the key.
pub fn config(text: &str, sets: &[&str]) -> RunConfig {
    let sets: Vec<Override> = sets
        .iter()
        .map(|s| Override::parse(s).unwrap_or_else(|e| panic!("override {s:?}: {e}")))
        .collect();
    RunConfig::from_toml_str(text, "test", "test", &sets).unwrap_or_else(|e| panic!("{e}"))
}

/// A runner for `cfg` on the CPU, without a run directory, its agent built by name.
///
/// # Panics
/// When the env or the agent cannot be built.
pub fn runner(cfg: RunConfig) -> Runner<AnyAgent> {
    let env = cfg.env.build().unwrap_or_else(|e| panic!("env: {e}"));
    let agent =
        crate::registry::build(&cfg, &env, Device::Cpu).unwrap_or_else(|e| panic!("agent: {e}"));
    Runner::new(cfg, env, agent).unwrap_or_else(|e| panic!("runner: {e}"))
}

/// An untrained policy for `env` (a `CotEnv`) with 2 heads of width 8, an MLP factor of 2
/// and `decoder_layers` decoder layers, its weights drawn from `seed`, on the CPU.
///
/// # Panics
/// When `env` is not a chain-of-thought env.
pub fn tiny_policy<E: Env>(env: &E, decoder_layers: usize, seed: u64) -> CotPolicy {
    let spec = env.spec();
    let layout = ModelLayout::from_spec(spec).unwrap_or_else(|e| panic!("layout: {e}"));
    let cfg = ModelConfig {
        heads: 2,
        head_dim: 8,
        mlp_factor: 2.0,
        decoder_layers,
        ..ModelConfig::default()
    };
    CotPolicy::new(spec, &layout, &cfg, seed, Device::Cpu).unwrap_or_else(|e| panic!("{e}"))
}
