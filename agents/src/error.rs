//! [`AgentError`]: what can go wrong inside an agent, with the source of each failure kept.

use envs::EnvError;

/// What can go wrong inside an agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A libtorch call failed.
    #[error(transparent)]
    Tch(#[from] tch::TchError),
    /// An env call failed (collecting or evaluating).
    #[error(transparent)]
    Env(#[from] EnvError),
    /// The optimizer refused to step (diverged) or could not restore its state.
    #[error(transparent)]
    Optim(#[from] crate::optim::OptimError),
    /// The agent cannot work with this env or config; the message says why.
    #[error("{0}")]
    Incompatible(String),
    /// Saved tensors do not fit the agent; the message lists every difference.
    #[error("the saved state does not match this agent: {0}")]
    StateMismatch(String),
    /// The agent's settings (`[algo]`) are invalid; the message names the key.
    #[error("{0}")]
    Config(String),
    /// A search (expert iteration's player, a searcher over the policy) failed.
    #[error("search: {0}")]
    Search(#[from] search::SearchError),
    /// The model cannot be built for this env or config.
    #[error("model: {0}")]
    Model(#[from] crate::model::ModelError),
    /// The weights to start from (`algo.init`) could not be used.
    #[error("algo.init = {path}: {source}")]
    Init {
        /// The run directory or checkpoint named by `algo.init`.
        path: String,
        /// Why it could not be used.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
