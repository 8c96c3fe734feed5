//! FactorExe-rs: very small models that think in chains of tokens, trained by supervision or
//! reinforcement learning and made stronger by search.
//!
//! This facade re-exports the member crates:
//! - [`envs`]: the token MDP (no libtorch);
//! - [`search`]: batched searchers over any env (no libtorch);
//! - [`agents`]: policies, training algorithms, the Runner (libtorch).

pub use agents;
pub use envs;
pub use search;
