//! The token MDP for factorized computation: the [`Env`] trait (Gymnasium semantics, Jumanji
//! masks), the [`Task`] trait for problem generators with oracle chains, and the tasks,
//! vectorization, wrappers and checker built on them. No libtorch.

#![warn(missing_docs)]

pub mod binpack;
pub mod checker;
pub mod cot;
pub mod difficulty;
pub mod env;
pub mod error;
pub mod registry;
pub mod spec;
pub mod task;
pub mod tasks;
pub mod throughput;
pub mod vec_env;
pub mod wrappers;

pub use checker::{check_env, check_env_with, CheckError, CheckOptions, CheckReport};
pub use cot::{CotConfig, CotEnv, OnCap, Phase, RewardConfig};
pub use difficulty::{Curriculum, DifficultySampler};
pub use env::{Difficulty, Env, EnvRng, Info, ObsMut, Observation, Step};
pub use error::EnvError;
pub use registry::{AnyEnv, CustomEnv, EnvParams, NamedTask};
pub use spec::{AnswerSpec, DifficultyRange, EnvSpec, FeatureField, ObsLayout, TokenField};
pub use task::{Problem, Task, TaskSpec};
pub use tasks::{Cvpr, Cycle, Multiplication};
pub use vec_env::{derive_seed, VecEnv};
pub use wrappers::{Think, ThinkConfig};
