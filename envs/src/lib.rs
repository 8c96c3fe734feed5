//! The token MDP for factorized computation: the [`Env`] trait (Gymnasium semantics, Jumanji
//! masks), the [`Task`] trait for problem generators with oracle chains, and the tasks,
//! vectorization, wrappers and checker built on them. No libtorch.

#![warn(missing_docs)]

pub mod env;
pub mod error;
pub mod spec;
pub mod task;

pub use env::{Difficulty, Env, EnvRng, Info, ObsMut, Observation, Step};
pub use error::EnvError;
pub use spec::{DifficultyRange, EnvSpec, FeatureField, ObsLayout, TokenField};
pub use task::{Problem, Task, TaskSpec};
