//! The error type of the envs crate.

use crate::spec::Difficulty;

/// What can go wrong when building, resetting or stepping an env.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnvError {
    /// A construction parameter is outside its allowed range.
    #[error("invalid parameter `{name}` = {value}: {allowed}")]
    InvalidParameter {
        /// The parameter's name, as the config and CLI spell it.
        name: &'static str,
        /// The value given.
        value: String,
        /// The allowed values, in words.
        allowed: String,
    },
    /// A parameter name the env does not have.
    #[error("`{env}` has no parameter `{name}`{hint}; its parameters: {known}")]
    UnknownParameter {
        /// The env's registry name.
        env: String,
        /// The name given.
        name: String,
        /// `" (did you mean `x`?)"` when a parameter's name is close, else empty.
        hint: String,
        /// The env's parameter names, comma-separated.
        known: String,
    },
    /// `reset` was asked for a difficulty the env does not support.
    #[error("difficulty {difficulty} is outside {env}'s range {min}..={max}")]
    DifficultyOutOfRange {
        /// The env's name.
        env: String,
        /// The difficulty asked for.
        difficulty: Difficulty,
        /// Easiest allowed.
        min: Difficulty,
        /// Hardest allowed.
        max: Difficulty,
    },
    /// The action is out of range or masked out.
    #[error("illegal action {action}: {reason}")]
    IllegalAction {
        /// The action taken.
        action: usize,
        /// Why it is illegal.
        reason: String,
    },
    /// `step` was called on an episode that has ended; call `reset` first.
    #[error("step called after the episode ended; call reset first")]
    EpisodeOver,
    /// `step` or `observe` was called before the first `reset`.
    #[error("the env has not been reset yet")]
    NotReset,
    /// One env of a batch ([`crate::VecEnv`]) failed.
    #[error("env {index} of the batch: {source}")]
    InBatch {
        /// Index of the env in the batch.
        index: usize,
        /// What went wrong there.
        source: Box<EnvError>,
    },
}

impl EnvError {
    /// Shorthand for [`EnvError::InvalidParameter`].
    pub fn invalid(name: &'static str, value: impl ToString, allowed: impl Into<String>) -> Self {
        EnvError::InvalidParameter {
            name,
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }
}
