//! What a search returns per root, and the [`Searcher`] trait.

use crate::error::SearchError;
use crate::evaluator::Evaluator;
use envs::{Env, EnvRng};

/// One complete (or abandoned) chain a chain-level searcher considered.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The actions from the root.
    pub actions: Vec<usize>,
    /// Sum of the prior log-probabilities (temperature 1) of the actions.
    pub log_prob: f32,
    /// The value the searcher gave the chain's final state, when it evaluated it.
    pub value: Option<f32>,
    /// The chain ends in a terminated state (an answer was given). False for truncated chains
    /// and chains cut by the budget.
    pub terminated: bool,
}

/// The result of a search from one root.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchOutput {
    /// Chain-level searchers (greedy, sample, beam): the whole chosen chain. Tree searchers
    /// (MCTS, Gumbel): the one action to take now.
    pub actions: Vec<usize>,
    /// The improved policy over all `num_actions` actions (0 on illegal ones): visit
    /// distribution (MCTS), completed-Q policy (Gumbel), or the share of selected chains
    /// starting with each action (chain-level searchers).
    pub policy: Vec<f32>,
    /// The search's estimate of the root's value (see each searcher's documentation).
    pub value: f32,
    /// Evaluator calls (states evaluated) spent on this root; never above the budget.
    pub evals: usize,
    /// Taking `actions` from the root ends the episode.
    pub done: bool,
    /// Tree searchers: visit counts of the root's children; empty for chain-level searchers.
    pub visit_counts: Vec<u32>,
    /// Chain-level searchers: the chains considered, best first; empty for tree searchers.
    pub candidates: Vec<Candidate>,
}

/// A batched search algorithm: from `B` root states and a budget of evaluator calls per root,
/// one result per root.
///
/// Implementations call `evaluator` with all the states one search step needs across all roots
/// at once, spend at most `budget` evaluated states per root (reported in
/// [`SearchOutput::evals`]), draw randomness only from `rng` (same seed, same result) and never
/// read env rewards unless `evaluator.reward_use()` is [`crate::RewardUse::Oracle`].
pub trait Searcher<E: Env> {
    /// A short name with the main parameters, e.g. `"mcts"` or `"beam(k=4,logprob)"`.
    fn name(&self) -> String;

    /// Searches from every root in `roots` (live states, all with the same action count).
    fn search(
        &mut self,
        roots: &[E],
        evaluator: &mut dyn Evaluator<E>,
        budget: usize,
        rng: &mut EnvRng,
    ) -> Result<Vec<SearchOutput>, SearchError>;

    /// [`Searcher::search`] with a budget per root (`budgets[b]` for `roots[b]`), e.g. for a
    /// caller that lets a root spend what earlier searches of its episode left unspent.
    ///
    /// The default searches the roots of each distinct budget together, in increasing budget
    /// order; the tree searchers search all roots in one batch.
    fn search_each(
        &mut self,
        roots: &[E],
        evaluator: &mut dyn Evaluator<E>,
        budgets: &[usize],
        rng: &mut EnvRng,
    ) -> Result<Vec<SearchOutput>, SearchError> {
        if budgets.len() != roots.len() {
            return Err(SearchError::invalid(
                "budgets",
                budgets.len(),
                format!("one per root ({})", roots.len()),
            ));
        }
        let Some(&first) = budgets.first() else {
            return self.search(roots, evaluator, 0, rng);
        };
        if budgets.iter().all(|&b| b == first) {
            return self.search(roots, evaluator, first, rng);
        }
        let mut distinct = budgets.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let mut outputs: Vec<Option<SearchOutput>> = vec![None; roots.len()];
        for budget in distinct {
            let members: Vec<usize> = (0..roots.len()).filter(|&i| budgets[i] == budget).collect();
            let group: Vec<E> = members.iter().map(|&i| roots[i].clone()).collect();
            let outs = self.search(&group, evaluator, budget, rng)?;
            if outs.len() != group.len() {
                return Err(SearchError::invalid(
                    "outputs",
                    outs.len(),
                    format!("one per root ({})", group.len()),
                ));
            }
            for (i, out) in members.into_iter().zip(outs) {
                outputs[i] = Some(out);
            }
        }
        // Every root belongs to exactly one group, and each search returns one output per root.
        Ok(outputs.into_iter().flatten().collect())
    }
}
