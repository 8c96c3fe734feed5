//! Env wrappers: envs built from other envs.

pub mod think;

pub use think::{Think, ThinkConfig};
