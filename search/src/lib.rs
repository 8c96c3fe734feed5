//! Batched searchers over any clonable [`envs::Env`]: greedy, sample-and-vote, beam, MCTS
//! (PUCT) and Gumbel MuZero, calling a batched [`Evaluator`]. No libtorch.
//!
//! # Shape
//!
//! A [`Searcher`] takes `B` root states, an [`Evaluator`] and a budget, and returns one
//! [`SearchOutput`] per root. Every algorithm is batched in mctx's style: each search step
//! gathers the states all `B` searches need and makes **one** evaluator call for them. The
//! env itself is the model of the world: searchers clone a state and step the clone; a
//! transformer policy implements [`Evaluator`] and receives, per state, its root index, node
//! id and parent node id (see [`EvalRequest`]), so it can encode each root's input once and
//! extend cached prefixes.
//!
//! MCTS and Gumbel MuZero share one generic tree loop (simulate, expand, evaluate, backward)
//! over a struct-of-arrays tree indexed `[root, node]`, allocated once per searcher and reused;
//! they differ only in their selection rule, [`QTransform`] and output. Greedy, beam and
//! sampling build chains in lockstep.
//!
//! # Budget
//!
//! The budget is **evaluator calls per root**: every state put in an evaluator batch counts
//! one for its root. No searcher exceeds it, and [`SearchOutput::evals`] reports what was
//! spent:
//!
//! | searcher | spending |
//! |---|---|
//! | [`Greedy`] | one per non-terminal state of the chain: `T` for a chain of `T` actions |
//! | [`Beam`] by log-prob, width `k` | 1 (root) + at most `k` per depth |
//! | [`Beam`] by value, `c` candidates | 1 (root) + at most `c` per depth |
//! | [`Sample`], `N` chains | 1 (shared root) + one per non-terminal state reached (+1 per final state with `BestValue`) |
//! | [`Mcts`], [`GumbelMuZero`] | 1 (root) + at most one per simulation, `budget - 1` simulations |
//!
//! # Rewards
//!
//! Searches never read env rewards unless the evaluator is the labelled
//! [`OracleEvaluator`]; see [`RewardUse`] for the rule and why.
//!
//! # Determinism
//!
//! All randomness (Dirichlet noise, Gumbel draws, sampling, tie-breaking) comes from the
//! [`envs::EnvRng`] passed to `search`: the same seed gives the same result.
//!
//! # Example
//!
//! Gumbel MuZero from two Cycle problems, with a uniform evaluator standing in for a policy:
//!
//! ```
//! use envs::tasks::Cycle;
//! use envs::{CotEnv, Env, EnvRng};
//! use rand::SeedableRng;
//! use search::{GumbelConfig, GumbelMuZero, Searcher, UniformEvaluator};
//!
//! let mut rng = EnvRng::seed_from_u64(0);
//! let mut roots = Vec::new();
//! for _ in 0..2 {
//!     let mut env = CotEnv::new(Cycle::new(8)?)?;
//!     env.reset(&mut rng, 3)?;
//!     roots.push(env);
//! }
//! let mut gumbel = GumbelMuZero::new(GumbelConfig::default())?;
//! let outputs = gumbel.search(&roots, &mut UniformEvaluator::new(0.0), 16, &mut rng)?;
//! assert_eq!(outputs.len(), 2);
//! for out in &outputs {
//!     assert!(out.evals <= 16); // the budget is evaluator calls per root
//!     assert_eq!(out.policy.len(), roots[0].spec().num_actions);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
// Node and edge statistics live in parallel flat arrays; index loops over them read better
// than zipped iterators of four slices.
#![allow(clippy::needless_range_loop)]

mod answer;
mod anytime;
pub mod bench;
mod chain;
mod error;
mod evaluator;
mod gumbel;
mod mcts;
mod output;
mod qtransform;
mod sample;
pub mod testing;
mod tree;
mod util;

pub use answer::{AfterAction, Answer, LastAction, WholeChain};
pub use anytime::EarlyStop;
pub use chain::{Beam, BeamConfig, BeamScore, Greedy};
pub use error::SearchError;
pub use evaluator::{
    CountingEvaluator, EvalBatch, EvalQueue, EvalRequest, Evaluator, NodeId, OracleEvaluator,
    RewardUse, ScriptedEvaluator, UniformEvaluator,
};
pub use gumbel::{considered_visits, whole_rounds, GumbelConfig, GumbelMuZero};
pub use mcts::{Mcts, MctsConfig};
pub use output::{Candidate, SearchOutput, Searcher};
pub use qtransform::{mixed_value, MixValue, NodeStats, QTransform};
pub use sample::{Sample, SampleConfig, SampleSelect};
