//! Helpers shared by the integration tests: a run config from TOML text with `--set`-style
//! overrides, and a CPU runner for it.

// Each test file compiles this module on its own and uses only some of it.
#![allow(dead_code)]

use agents::config::{Override, RunConfig};
use agents::runner::Runner;
use agents::AnyAgent;
use tch::Device;

/// The run config of `text` with `sets` (`"key=value"`) applied.
pub fn config(text: &str, sets: &[&str]) -> RunConfig {
    let sets: Vec<Override> = sets.iter().map(|s| Override::parse(s).unwrap()).collect();
    RunConfig::from_toml_str(text, "test", "test", &sets).unwrap()
}

/// A runner for `cfg` on the CPU, without a run directory.
pub fn runner(cfg: RunConfig) -> Runner<AnyAgent> {
    let env = cfg.env.build().unwrap();
    let agent = agents::registry::build(&cfg, &env, Device::Cpu).unwrap();
    Runner::new(cfg, env, agent).unwrap()
}
