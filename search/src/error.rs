//! The error type of the search crate.

use envs::EnvError;

/// What can go wrong when a searcher runs.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// `search` was called with an empty slice of roots.
    #[error("no root states given")]
    NoRoots,
    /// A root is a finished episode (or has no legal action): there is nothing to search.
    #[error("root {root} is a finished episode or has no legal action; search needs a live state")]
    RootDone {
        /// Index of the root in the slice given to `search`.
        root: usize,
    },
    /// The roots do not all have the same number of actions.
    #[error("root {root} has {got} actions but root 0 has {expected}")]
    ActionCountMismatch {
        /// Index of the offending root.
        root: usize,
        /// Actions of root 0.
        expected: usize,
        /// Actions of this root.
        got: usize,
    },
    /// The budget cannot pay for even the root evaluation.
    #[error(
        "budget {budget} is too small: {searcher} needs at least {min} evaluator calls per root"
    )]
    BudgetTooSmall {
        /// The searcher's name.
        searcher: String,
        /// The budget given.
        budget: usize,
        /// The smallest budget it accepts.
        min: usize,
    },
    /// A configuration value is outside its allowed range.
    #[error("invalid search parameter `{name}` = {value}: {allowed}")]
    InvalidConfig {
        /// The parameter's name.
        name: &'static str,
        /// The value given.
        value: String,
        /// The allowed values, in words.
        allowed: String,
    },
    /// The evaluator wrote a NaN or infinite logit or value for a legal action.
    #[error("the evaluator returned a non-finite {what} for a state of root {root}")]
    NonFinite {
        /// `"logit"` or `"value"`.
        what: &'static str,
        /// The root whose state it was.
        root: usize,
    },
    /// An env refused a step (a bug in the env's mask or in the searcher).
    #[error(transparent)]
    Env(#[from] EnvError),
    /// The evaluator failed (e.g. a libtorch error in a policy evaluator).
    #[error("evaluator failed: {0}")]
    Evaluator(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl SearchError {
    /// Shorthand for [`SearchError::InvalidConfig`].
    pub fn invalid(name: &'static str, value: impl ToString, allowed: impl Into<String>) -> Self {
        SearchError::InvalidConfig {
            name,
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }
}
