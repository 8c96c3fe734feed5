//! Transformer policies on libtorch (`tch`), the [`Agent`] trait, the training algorithms,
//! the Runner, TensorBoard logging, checkpoints and configs.

#![warn(missing_docs)]

pub mod agent;
pub mod algos;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod device;
pub mod eval;
pub mod logging;
pub mod model;
pub mod optim;
pub mod probe;
pub mod runner;
pub mod search_eval;

pub use agent::{ActMode, ActOutput, Agent, AgentError, BatchObs, Episodes, Experience, Metrics};
pub use runner::{Collector, Runner};
