//! Chain-level searchers that build whole chains in lockstep over roots: beam search (by
//! log-probability or by value) and greedy decoding (beam of width 1). Also the small arena
//! both they and sampling use to batch evaluator calls.

use crate::error::SearchError;
use crate::evaluator::{EvalBatch, EvalItem, Evaluator, RewardUse};
use crate::output::{Candidate, SearchOutput, Searcher};
use crate::tree::check_roots;
use crate::util::{masked_log_softmax, NO_PARENT};
use envs::{Env, EnvRng, Observation};

/// Env storage and evaluation buffers shared by the chain-level searchers.
pub(crate) struct Arena<E> {
    pub(crate) envs: Vec<E>,
    pub(crate) items: Vec<EvalItem>,
    pub(crate) logits: Vec<f32>,
    pub(crate) values: Vec<f32>,
    probs: Vec<f32>,
    obs: Option<Observation>,
    /// States evaluated per root in the running search.
    pub(crate) evals: Vec<usize>,
    /// Node ids handed out per root.
    pub(crate) next_node: Vec<u32>,
    pub(crate) na: usize,
    pub(crate) budget: usize,
    pub(crate) oracle: bool,
}

impl<E> Default for Arena<E> {
    fn default() -> Self {
        Arena {
            envs: Vec::new(),
            items: Vec::new(),
            logits: Vec::new(),
            values: Vec::new(),
            probs: Vec::new(),
            obs: None,
            evals: Vec::new(),
            next_node: Vec::new(),
            na: 0,
            budget: 0,
            oracle: false,
        }
    }
}

/// The most chains a chain-level search keeps at once across its roots (beams or samples):
/// each holds a clone of the env.
pub(crate) const MAX_LIVE_CHAINS: usize = 1 << 22;

/// Refuses `width` chains per root over `roots` roots when they cannot all be held.
pub(crate) fn check_width(roots: usize, width: usize) -> Result<(), SearchError> {
    if roots.checked_mul(width).is_none_or(|n| n > MAX_LIVE_CHAINS) {
        return Err(SearchError::invalid(
            "width",
            width,
            format!("at most {MAX_LIVE_CHAINS} chains in all ({roots} roots x {width} chains)"),
        ));
    }
    Ok(())
}

impl<E: Env> Arena<E> {
    /// Checks the roots and budget, resets the arena and calls `begin_search`.
    pub(crate) fn begin(
        &mut self,
        name: &str,
        roots: &[E],
        evaluator: &mut dyn Evaluator<E>,
        budget: usize,
    ) -> Result<(), SearchError> {
        self.na = check_roots(roots)?;
        if budget == 0 {
            return Err(SearchError::BudgetTooSmall {
                searcher: name.to_string(),
                budget,
                min: 1,
            });
        }
        self.budget = budget;
        self.oracle = evaluator.reward_use() == RewardUse::Oracle;
        self.envs.clear();
        self.evals.clear();
        self.evals.resize(roots.len(), 0);
        self.next_node.clear();
        self.next_node.resize(roots.len(), 1);
        self.obs = Some(Observation::zeros(roots[0].spec()));
        evaluator.begin_search(roots)
    }

    /// A fresh node id in root `b`.
    pub(crate) fn node_id(&mut self, b: usize) -> u32 {
        let id = self.next_node[b];
        self.next_node[b] += 1;
        id
    }

    /// Reserves one evaluation for root `b` if its budget allows.
    pub(crate) fn reserve(&mut self, b: usize) -> bool {
        if self.evals[b] < self.budget {
            self.evals[b] += 1;
            true
        } else {
            false
        }
    }

    /// The legal mask of the env in `slot`, written into `legal`.
    pub(crate) fn legal(&mut self, slot: usize, legal: &mut Vec<bool>) {
        let obs = self
            .obs
            .get_or_insert_with(|| Observation::zeros(self.envs[slot].spec()));
        self.envs[slot].observe(obs.as_mut());
        legal.clear();
        legal.extend_from_slice(&obs.action_mask);
    }

    /// Evaluates the queued items (already reserved) in one call; afterwards row `i` of
    /// `logits` and `values[i]` belong to `items[i]`.
    pub(crate) fn evaluate(
        &mut self,
        evaluator: &mut dyn Evaluator<E>,
        num_roots: usize,
    ) -> Result<(), SearchError> {
        let n = self.items.len();
        if n == 0 {
            return Ok(());
        }
        let na = self.na;
        self.logits.resize(n * na, 0.0);
        self.values.resize(n, 0.0);
        let batch = EvalBatch::new(&self.envs, &self.items, num_roots);
        evaluator.evaluate(&batch, &mut self.logits[..n * na], &mut self.values[..n])?;
        for (i, it) in self.items.iter().enumerate() {
            if !self.values[i].is_finite() {
                return Err(SearchError::NonFinite {
                    what: "value",
                    root: it.root as usize,
                });
            }
        }
        Ok(())
    }

    /// Row `i`'s log-softmax over `legal` into `log_prior`.
    pub(crate) fn log_prior(
        &mut self,
        i: usize,
        legal: &[bool],
        log_prior: &mut Vec<f32>,
    ) -> Result<(), SearchError> {
        let na = self.na;
        log_prior.resize(na, 0.0);
        self.probs.resize(na, 0.0);
        let logits = &self.logits[i * na..(i + 1) * na];
        if masked_log_softmax(logits, legal, log_prior, &mut self.probs) {
            Ok(())
        } else {
            Err(SearchError::NonFinite {
                what: "logit",
                root: self.items[i].root as usize,
            })
        }
    }
}

/// How beam search ranks extensions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BeamScore {
    /// Cumulative prior log-probability: keep the `width` most likely extensions per depth and
    /// evaluate only those that are not terminal (cost at most `width` per depth).
    LogProb,
    /// Evaluator value of the extended state: the `candidates` most likely extensions are
    /// evaluated (terminal ones included, for their value) and the `width` best by value kept
    /// (cost at most `candidates` per depth).
    Value {
        /// Extensions evaluated per depth (at least `width`).
        candidates: usize,
    },
}

/// Parameters of [`Beam`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BeamConfig {
    /// Beam width `k`.
    pub width: usize,
    /// Ranking of extensions.
    pub score: BeamScore,
}

impl Default for BeamConfig {
    fn default() -> Self {
        BeamConfig {
            width: 4,
            score: BeamScore::LogProb,
        }
    }
}

struct Hyp {
    slot: u32,
    node: u32,
    actions: Vec<usize>,
    log_prob: f32,
    /// Evaluator value (plus the oracle's collected rewards), once known.
    value: Option<f32>,
    /// Rewards collected on the way (oracle only; 0 otherwise).
    ret: f32,
    terminated: bool,
    done: bool,
    log_prior: Vec<f32>,
    legal: Vec<bool>,
}

impl Hyp {
    fn candidate(&self) -> Candidate {
        Candidate {
            actions: self.actions.clone(),
            log_prob: self.log_prob,
            value: self.value,
            terminated: self.terminated,
        }
    }
}

/// Beam search over chains, batched over roots: each depth evaluates the kept extensions of all
/// roots in one call.
///
/// Budget: 1 for the root, then at most `width` (by log-prob) or `candidates` (by value)
/// evaluations per depth; extensions beyond the remaining budget are dropped. With log-prob
/// scores, beams whose log-probability cannot beat the `width`-th finished chain stop early
/// (log-probabilities only decrease). Output: the best finished chain (by log-prob or value;
/// the best unfinished one, with `done = false`, if none finished within the budget), `policy`
/// one-hot on its first action, `value` = its value for [`BeamScore::Value`] else the root's
/// evaluator value, `candidates` = the finished chains, best first, at most `width`.
pub struct Beam<E> {
    config: BeamConfig,
    name: String,
    arena: Arena<E>,
}

impl<E: Env> Beam<E> {
    /// A beam searcher; checks the configuration.
    pub fn new(config: BeamConfig) -> Result<Self, SearchError> {
        if config.width == 0 {
            return Err(SearchError::invalid("width", 0, ">= 1"));
        }
        let name = match config.score {
            BeamScore::LogProb => format!("beam(k={},logprob)", config.width),
            BeamScore::Value { candidates } => {
                if candidates < config.width {
                    return Err(SearchError::invalid(
                        "candidates",
                        candidates,
                        format!(">= width ({})", config.width),
                    ));
                }
                format!("beam(k={},value,c={candidates})", config.width)
            }
        };
        Ok(Beam {
            config,
            name,
            arena: Arena::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BeamConfig {
        &self.config
    }

    /// Queues `h` for evaluation if root `b`'s budget allows.
    fn queue(&mut self, b: usize, parent: u32, h: &Hyp) -> bool {
        if !self.arena.reserve(b) {
            return false;
        }
        self.arena.items.push(EvalItem {
            root: b as u32,
            node: h.node,
            parent,
            action: h.actions.last().map_or(NO_PARENT, |&a| a as u32),
            depth: h.actions.len() as u32,
            slot: h.slot,
        });
        true
    }
}

impl<E: Env> Searcher<E> for Beam<E> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn search(
        &mut self,
        roots: &[E],
        evaluator: &mut dyn Evaluator<E>,
        budget: usize,
        rng: &mut EnvRng,
    ) -> Result<Vec<SearchOutput>, SearchError> {
        let _ = rng; // beam search is deterministic
        let name = self.name.clone();
        check_width(roots.len(), self.config.width)?;
        self.arena.begin(&name, roots, evaluator, budget)?;
        let batch = roots.len();
        let na = self.arena.na;
        let width = self.config.width;
        let by_value = matches!(self.config.score, BeamScore::Value { .. });
        let take = match self.config.score {
            BeamScore::LogProb => width,
            BeamScore::Value { candidates } => candidates,
        };

        let mut alive: Vec<Vec<Hyp>> = (0..batch).map(|_| Vec::new()).collect();
        let mut finished: Vec<Vec<Hyp>> = (0..batch).map(|_| Vec::new()).collect();
        let mut unfinished: Vec<Vec<Hyp>> = (0..batch).map(|_| Vec::new()).collect();
        let mut root_value = vec![0.0f32; batch];
        // Hypotheses waiting for their evaluation, with their parent node, in item order.
        let mut pending: Vec<(usize, Hyp)> = Vec::new();

        self.arena.items.clear();
        for (b, root) in roots.iter().enumerate() {
            let slot = self.arena.envs.len();
            self.arena.envs.push(root.clone());
            let mut h = Hyp {
                slot: slot as u32,
                node: 0,
                actions: Vec::new(),
                log_prob: 0.0,
                value: None,
                ret: 0.0,
                terminated: false,
                done: false,
                log_prior: Vec::new(),
                legal: Vec::new(),
            };
            self.arena.legal(slot, &mut h.legal);
            if !h.legal.iter().any(|&x| x) {
                return Err(SearchError::RootDone { root: b });
            }
            self.queue(b, NO_PARENT, &h);
            pending.push((b, h));
        }

        let mut scored: Vec<(f32, usize, usize)> = Vec::new();
        loop {
            self.arena.evaluate(evaluator, batch)?;
            let mut fresh: Vec<Vec<Hyp>> = (0..batch).map(|_| Vec::new()).collect();
            for (i, (b, mut h)) in pending.drain(..).enumerate() {
                let v = self.arena.values[i];
                h.value = Some(h.ret + v);
                if h.node == 0 {
                    root_value[b] = v;
                }
                if !h.done {
                    self.arena.log_prior(i, &h.legal, &mut h.log_prior)?;
                }
                fresh[b].push(h);
            }
            for b in 0..batch {
                let mut kids = std::mem::take(&mut fresh[b]);
                // Known-value extensions (oracle-terminated) join the evaluated ones.
                kids.append(&mut alive[b]);
                if by_value {
                    // Stable sort: equal values keep the extension order (by log-prob).
                    kids.sort_by(|x, y| {
                        let (vx, vy) = (x.value.unwrap_or(f32::MIN), y.value.unwrap_or(f32::MIN));
                        vy.total_cmp(&vx)
                    });
                    kids.truncate(width);
                }
                for h in kids {
                    if h.done {
                        finished[b].push(h);
                    } else {
                        alive[b].push(h);
                    }
                }
                if !by_value && finished[b].len() >= width {
                    finished[b].sort_by(|x, y| y.log_prob.total_cmp(&x.log_prob));
                    let bar = finished[b][width - 1].log_prob;
                    alive[b].retain(|h| h.log_prob > bar);
                }
            }
            if alive.iter().all(|a| a.is_empty()) {
                break;
            }

            // Extend every alive beam by every legal action; keep the best `take` per root.
            self.arena.items.clear();
            for b in 0..batch {
                let beams = std::mem::take(&mut alive[b]);
                scored.clear();
                for (hi, h) in beams.iter().enumerate() {
                    for a in (0..na).filter(|&a| h.legal[a]) {
                        scored.push((h.log_prob + h.log_prior[a], hi, a));
                    }
                }
                scored.sort_by(|x, y| y.0.total_cmp(&x.0));
                scored.truncate(take);
                for &(lp, hi, a) in scored.iter() {
                    let parent = &beams[hi];
                    let mut env = self.arena.envs[parent.slot as usize].clone();
                    let step = env.step(a)?;
                    let slot = self.arena.envs.len();
                    self.arena.envs.push(env);
                    let mut actions = Vec::with_capacity(parent.actions.len() + 1);
                    actions.extend_from_slice(&parent.actions);
                    actions.push(a);
                    let mut h = Hyp {
                        slot: slot as u32,
                        node: self.arena.node_id(b),
                        actions,
                        log_prob: lp,
                        value: None,
                        ret: parent.ret + if self.arena.oracle { step.reward } else { 0.0 },
                        terminated: step.terminated,
                        done: step.done(),
                        log_prior: Vec::new(),
                        legal: Vec::new(),
                    };
                    if !h.done {
                        self.arena.legal(slot, &mut h.legal);
                        if !h.legal.iter().any(|&x| x) {
                            // A live state with no legal action is a dead end.
                            h.done = true;
                        }
                    }
                    let needs_eval = if by_value {
                        !(self.arena.oracle && h.terminated)
                    } else {
                        !h.done
                    };
                    if !needs_eval {
                        if by_value {
                            h.value = Some(h.ret);
                        }
                        // Ranked with this depth's evaluated extensions at the top of the loop.
                        alive[b].push(h);
                    } else if self.queue(b, parent.node, &h) {
                        pending.push((b, h));
                    } else {
                        unfinished[b].push(h);
                    }
                }
            }
            // `alive` now holds only the extensions that need no evaluation; the loop's first
            // half moves them where they belong.
            if pending.is_empty() && alive.iter().all(|a| a.is_empty()) {
                break;
            }
        }

        let mut out = Vec::with_capacity(batch);
        for b in 0..batch {
            let pool = &mut finished[b];
            if by_value {
                pool.sort_by(|x, y| {
                    let (vx, vy) = (x.value.unwrap_or(f32::MIN), y.value.unwrap_or(f32::MIN));
                    vy.total_cmp(&vx)
                });
            } else {
                pool.sort_by(|x, y| y.log_prob.total_cmp(&x.log_prob));
            }
            pool.truncate(width);
            let mut candidates: Vec<Candidate> = pool.iter().map(Hyp::candidate).collect();
            let chosen = match pool.first() {
                Some(h) => h,
                None => {
                    let rest = &mut unfinished[b];
                    rest.sort_by(|x, y| y.log_prob.total_cmp(&x.log_prob));
                    match rest.first() {
                        Some(h) => {
                            candidates.push(h.candidate());
                            h
                        }
                        None => return Err(SearchError::RootDone { root: b }),
                    }
                }
            };
            let mut policy = vec![0.0; na];
            if let Some(&a) = chosen.actions.first() {
                policy[a] = 1.0;
            }
            out.push(SearchOutput {
                actions: chosen.actions.clone(),
                policy,
                value: if by_value {
                    chosen.value.unwrap_or(root_value[b])
                } else {
                    root_value[b]
                },
                evals: self.arena.evals[b],
                done: chosen.done,
                visit_counts: Vec::new(),
                candidates,
            });
        }
        Ok(out)
    }
}

/// Greedy decoding: from each root, repeatedly take the action with the highest prior logit
/// until the episode ends (ties to the lowest action). A beam of width 1 by log-probability.
///
/// Budget: one evaluator call per non-terminal state of the chain (a chain of `T` actions costs
/// `T`); if the budget runs out first, the partial chain is returned with `done = false`.
/// Output: the chain, `policy` one-hot on its first action, `value` = the root's evaluator value.
pub struct Greedy<E> {
    beam: Beam<E>,
}

impl<E: Env> Greedy<E> {
    /// A greedy searcher.
    pub fn new() -> Self {
        Greedy {
            beam: Beam {
                config: BeamConfig {
                    width: 1,
                    score: BeamScore::LogProb,
                },
                name: "greedy".to_string(),
                arena: Arena::default(),
            },
        }
    }
}

impl<E: Env> Default for Greedy<E> {
    fn default() -> Self {
        Greedy::new()
    }
}

impl<E: Env> Searcher<E> for Greedy<E> {
    fn name(&self) -> String {
        "greedy".to_string()
    }

    fn search(
        &mut self,
        roots: &[E],
        evaluator: &mut dyn Evaluator<E>,
        budget: usize,
        rng: &mut EnvRng,
    ) -> Result<Vec<SearchOutput>, SearchError> {
        self.beam.search(roots, evaluator, budget, rng)
    }
}
