//! Transformer policies on libtorch (`tch`), the [`Agent`] trait, the training algorithms,
//! the Runner, TensorBoard logging, checkpoints and configs.
//!
//! # Example
//!
//! Chain supervision on Cycle(L=6) at 1..2 hops, built from a TOML config the way
//! `factorexe train` does it (no run directory, so nothing is written):
//!
//! ```
//! use agents::config::RunConfig;
//! use agents::{registry, ActMode, Runner};
//!
//! let toml = r#"
//! seed = 0
//! [env]
//! name = "cycle"
//! length = 6
//! [train]
//! steps = 60
//! batch_size = 64
//! levels = [1, 2]
//! [algo]
//! name = "cot_supervised"
//! [model]
//! heads = 2
//! head_dim = 16
//! decoder_layers = 1
//! [optim]
//! lr = 1e-2
//! [eval]
//! every = 0
//! episodes = 100
//! sampled = false
//! "#;
//! let cfg = RunConfig::from_toml_str(toml, "example", "example", &[])?;
//! let env = cfg.env.build()?;
//! let agent = registry::build(&cfg, &env, tch::Device::Cpu)?;
//! let mut runner = Runner::new(cfg, env, agent)?;
//! let summary = runner.train()?;
//! let report = summary.eval.expect("the run ends with an evaluation");
//! println!("{}", report.table());
//! assert!(report.accuracy(1, ActMode::Greedy).is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

// Layers, each using only those above it: files, profile, optim, model, checkpoint, logging,
// config, device, error; searchers; act, policy, parallel, rollout; agent; search_eval; algos;
// registry; eval, probe, compare; runner; train; testing.
pub mod act;
pub mod agent;
pub mod algos;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod device;
pub mod error;
pub mod eval;
mod files;
pub mod logging;
pub mod memory;
pub mod model;
pub mod optim;
pub mod parallel;
pub mod policy;
pub mod probe;
pub mod profile;
pub mod registry;
pub mod rollout;
pub mod runner;
pub mod search_eval;
pub mod searchers;
pub mod testing;
pub mod train;

pub use act::{ActMode, ActOutput, BatchObs};
pub use agent::{Agent, AgentContext, AnyAgent, BuildAgent, Experience, Metrics};
pub use error::AgentError;
pub use policy::CotPolicy;
pub use rollout::{Collector, Episodes};
pub use runner::Runner;
