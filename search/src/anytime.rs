//! Anytime tree search: a root's search may stop before its budget once the root is confident.

use crate::error::SearchError;

/// When a tree search ([`crate::Mcts`], [`crate::GumbelMuZero`]) stops simulating a root
/// before its budget: after at least `min_simulations` simulations, as soon as the root's
/// confidence reaches `confidence`. The confidence is the searcher's own view of how settled
/// its choice is: for MCTS the most visited child's share of the root's child visits, for
/// Gumbel MuZero the largest probability of its improved policy
/// `softmax(logits + σ(completed q))`. Other roots of the batch go on; a stopped root's
/// unspent calls are simply not made (its [`crate::SearchOutput::evals`] says what it spent),
/// and a caller may give them to later decisions ([`crate::Searcher::search_each`] takes a
/// budget per root).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EarlyStop {
    /// The confidence at which a root stops, in `(0, 1]`.
    pub confidence: f32,
    /// Simulations every root runs before it may stop (fewer only when its budget is smaller).
    pub min_simulations: usize,
}

impl EarlyStop {
    pub(crate) fn validate(&self) -> Result<(), SearchError> {
        if !(self.confidence > 0.0 && self.confidence <= 1.0) {
            return Err(SearchError::invalid(
                "early_stop.confidence",
                self.confidence,
                "in (0, 1]",
            ));
        }
        Ok(())
    }
}
