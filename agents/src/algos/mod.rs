//! The built-in training algorithms, each an [`crate::Agent`] registered by name exactly as
//! a user's agent is ([`crate::BuildAgent`]):
//!
//! - [`Supervised`] (`supervised`): answers without a chain (the baseline that shows what
//!   chains buy);
//! - [`CotSupervised`] (`cot_supervised`): teacher forcing on the oracle chain, loss = chain
//!   CE + answer CE;
//! - [`Reinforce`] (`reinforce`): policy gradient from the answer's reward, with a choice of
//!   baselines;
//! - [`Clipped`] (`ppo`): multi-epoch clipped policy gradient (PPO, GRPO, Dr. GRPO, RLOO,
//!   DAPO's clip-higher and dynamic sampling);
//! - [`Poppy`] (`poppy`): a population of policies trained winner-takes-all;
//! - [`ExpertIteration`] (`expert_iteration`): a searcher's improved policy and the outcome
//!   as targets.
//!
//! Each drives a [`crate::model::CotTransformer`] through [`crate::policy::CotPolicy`]; the
//! policy-gradient pieces they share are in [`rl`].

pub mod clipped;
mod cot_supervised;
mod expert_iteration;
mod init;
pub mod poppy;
mod reinforce;
pub mod rl;
mod supervised;

pub use clipped::{AdvantageKind, Clipped, ClippedConfig, LossAggregation};
pub use cot_supervised::{CotSupervised, CotSupervisedConfig};
pub use expert_iteration::{
    ExpertIteration, ExpertIterationConfig, PolicyTarget, SearchRewards, ValueTarget,
};
pub use init::InitFrom;
pub use poppy::{Poppy, PoppyConfig};
pub use reinforce::{Reinforce, ReinforceConfig};
pub use supervised::{Readout, Supervised, SupervisedConfig};

use crate::agent::AgentEntry;

/// The built-in agents' entries, in listing order.
pub fn builtin() -> Vec<AgentEntry> {
    vec![
        AgentEntry::of::<Supervised>(),
        AgentEntry::of::<CotSupervised>(),
        AgentEntry::of::<Reinforce>(),
        AgentEntry::of::<Clipped>(),
        AgentEntry::of::<Poppy>(),
        AgentEntry::of::<ExpertIteration>(),
    ]
}
