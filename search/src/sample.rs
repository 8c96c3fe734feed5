//! Sample-N: draw `N` chains per root from the evaluator's policy and pick one by majority vote
//! over answers (self-consistency), by value, or by likelihood.

use crate::answer::{Answer, LastAction};
use crate::chain::Arena;
use crate::error::SearchError;
use crate::evaluator::{EvalItem, Evaluator};
use crate::output::{Candidate, SearchOutput, Searcher};
use crate::util::{categorical, NO_PARENT};
use envs::{Env, EnvRng};
use std::collections::BTreeMap;

/// How [`Sample`] picks one of its chains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SampleSelect {
    /// Majority vote over the answers of the terminated chains (ties: the answer whose best
    /// chain is most likely); the chosen chain is the most likely one with the winning answer.
    #[default]
    Vote,
    /// The chain whose final state the evaluator values most (costs one more evaluation per
    /// chain, for its final state).
    BestValue,
    /// The chain with the highest prior log-probability.
    BestLikelihood,
}

/// Parameters of [`Sample`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleConfig {
    /// Chains drawn per root.
    pub num_samples: usize,
    /// Sampling temperature on the prior logits; 0 is greedy (all chains equal).
    pub temperature: f32,
    /// How the answer is chosen among the chains.
    pub select: SampleSelect,
}

impl Default for SampleConfig {
    fn default() -> Self {
        SampleConfig {
            num_samples: 8,
            temperature: 1.0,
            select: SampleSelect::Vote,
        }
    }
}

struct Chain {
    root: usize,
    slot: u32,
    node: u32,
    actions: Vec<usize>,
    log_prob: f32,
    value: Option<f32>,
    ret: f32,
    terminated: bool,
    done: bool,
    /// Cut by the budget before its episode ended.
    cut: bool,
    log_prior: Vec<f32>,
    legal: Vec<bool>,
}

/// Sample-N with a selection rule, batched over roots and chains: every step evaluates the
/// states of all live chains of all roots in one call.
///
/// Budget: 1 for the root state (shared by the `N` chains), then one per non-terminal state a
/// chain reaches, plus one per final state with [`SampleSelect::BestValue`] (unless the oracle
/// knows it). A chain that would exceed the root's budget is cut (not terminated) and takes no
/// part in the vote. Choose `num_samples ≈ (budget - 1) / chain length` to spend the budget.
///
/// Only terminated chains are eligible; if none is, the most likely chain is returned with
/// `done = false`. Output: the chosen chain; `policy` = share of the selected chains (the
/// winning voters, else the chosen one) starting with each action; `value` = the chosen chain's
/// value for `BestValue`, the winning vote share for `Vote`, the root's evaluator value for
/// `BestLikelihood`; `candidates` = all chains, the selected ones first.
pub struct Sample<E> {
    config: SampleConfig,
    answer: Box<dyn Answer<E>>,
    arena: Arena<E>,
}

impl<E: Env> Sample<E> {
    /// A sampler voting over [`LastAction`] answers; checks the configuration.
    pub fn new(config: SampleConfig) -> Result<Self, SearchError> {
        if config.num_samples == 0 {
            return Err(SearchError::invalid("num_samples", 0, ">= 1"));
        }
        if !(config.temperature >= 0.0 && config.temperature.is_finite()) {
            return Err(SearchError::invalid(
                "temperature",
                config.temperature,
                ">= 0",
            ));
        }
        Ok(Sample {
            config,
            answer: Box::new(LastAction),
            arena: Arena::default(),
        })
    }

    /// Votes over answers extracted by `answer` instead (e.g. [`crate::AfterAction`]).
    pub fn with_answer(mut self, answer: impl Answer<E> + 'static) -> Self {
        self.answer = Box::new(answer);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &SampleConfig {
        &self.config
    }

    fn sample_action(&self, c: &Chain, weights: &mut Vec<f32>, rng: &mut EnvRng) -> Option<usize> {
        let na = c.legal.len();
        if self.config.temperature == 0.0 {
            let mut best: Option<usize> = None;
            for a in (0..na).filter(|&a| c.legal[a]) {
                if best.is_none_or(|b| c.log_prior[a] > c.log_prior[b]) {
                    best = Some(a);
                }
            }
            return best;
        }
        let inv_t = 1.0 / self.config.temperature;
        let max = (0..na)
            .filter(|&a| c.legal[a])
            .map(|a| c.log_prior[a])
            .fold(f32::NEG_INFINITY, f32::max);
        weights.clear();
        weights.extend((0..na).map(|a| {
            if c.legal[a] {
                ((c.log_prior[a] - max) * inv_t).exp()
            } else {
                0.0
            }
        }));
        categorical(weights, rng)
    }
}

impl<E: Env> Searcher<E> for Sample<E> {
    fn name(&self) -> String {
        let sel = match self.config.select {
            SampleSelect::Vote => "vote",
            SampleSelect::BestValue => "value",
            SampleSelect::BestLikelihood => "likelihood",
        };
        format!(
            "sample(n={},t={},{sel})",
            self.config.num_samples, self.config.temperature
        )
    }

    fn search(
        &mut self,
        roots: &[E],
        evaluator: &mut dyn Evaluator<E>,
        budget: usize,
        rng: &mut EnvRng,
    ) -> Result<Vec<SearchOutput>, SearchError> {
        let name = Searcher::<E>::name(self);
        crate::chain::check_width(roots.len(), self.config.num_samples)?;
        self.arena.begin(&name, roots, evaluator, budget)?;
        let batch = roots.len();
        let na = self.arena.na;
        let n = self.config.num_samples;
        let want_final_value = self.config.select == SampleSelect::BestValue;

        // The root states, evaluated once each.
        let mut root_legal = vec![Vec::new(); batch];
        self.arena.items.clear();
        for (b, root) in roots.iter().enumerate() {
            let slot = self.arena.envs.len();
            self.arena.envs.push(root.clone());
            self.arena.legal(slot, &mut root_legal[b]);
            if !root_legal[b].iter().any(|&x| x) {
                return Err(SearchError::RootDone { root: b });
            }
            self.arena.reserve(b);
            self.arena.items.push(EvalItem {
                root: b as u32,
                node: 0,
                parent: NO_PARENT,
                action: NO_PARENT,
                depth: 0,
                slot: slot as u32,
            });
        }
        self.arena.evaluate(evaluator, batch)?;
        let root_value: Vec<f32> = self.arena.values[..batch].to_vec();
        let mut chains: Vec<Chain> = Vec::with_capacity(batch * n);
        for b in 0..batch {
            let mut log_prior = Vec::new();
            self.arena.log_prior(b, &root_legal[b], &mut log_prior)?;
            for _ in 0..n {
                let slot = self.arena.envs.len();
                self.arena.envs.push(roots[b].clone());
                chains.push(Chain {
                    root: b,
                    slot: slot as u32,
                    node: 0,
                    actions: Vec::new(),
                    log_prob: 0.0,
                    value: None,
                    ret: 0.0,
                    terminated: false,
                    done: false,
                    cut: false,
                    log_prior: log_prior.clone(),
                    legal: root_legal[b].clone(),
                });
            }
        }

        let mut weights = Vec::with_capacity(na);
        let mut waiting: Vec<usize> = Vec::new();
        let mut legal_scratch = Vec::new();
        loop {
            self.arena.items.clear();
            waiting.clear();
            for ci in 0..chains.len() {
                let c = &chains[ci];
                if c.done || c.cut {
                    continue;
                }
                let Some(a) = self.sample_action(c, &mut weights, rng) else {
                    chains[ci].done = true;
                    continue;
                };
                let b = c.root;
                let slot = c.slot as usize;
                let step = self.arena.envs[slot].step(a)?;
                let parent = c.node;
                let node = self.arena.node_id(b);
                let oracle = self.arena.oracle;
                let c = &mut chains[ci];
                c.log_prob += c.log_prior[a];
                c.actions.push(a);
                c.node = node;
                c.value = None;
                if oracle {
                    c.ret += step.reward;
                }
                c.terminated = step.terminated;
                c.done = step.done();
                if !c.done {
                    self.arena.legal(slot, &mut legal_scratch);
                    std::mem::swap(&mut c.legal, &mut legal_scratch);
                    if !c.legal.iter().any(|&x| x) {
                        c.done = true;
                    }
                }
                let needs_eval = if c.done {
                    want_final_value && !(oracle && c.terminated)
                } else {
                    true
                };
                if c.done && !needs_eval && want_final_value {
                    c.value = Some(c.ret);
                }
                if needs_eval {
                    if self.arena.reserve(b) {
                        self.arena.items.push(EvalItem {
                            root: b as u32,
                            node,
                            parent,
                            action: a as u32,
                            depth: c.actions.len() as u32,
                            slot: slot as u32,
                        });
                        waiting.push(ci);
                    } else if !c.done {
                        c.cut = true;
                    }
                }
            }
            if waiting.is_empty() {
                break;
            }
            self.arena.evaluate(evaluator, batch)?;
            for (i, &ci) in waiting.iter().enumerate() {
                let v = self.arena.values[i];
                let c = &mut chains[ci];
                c.value = Some(c.ret + v);
                if !c.done {
                    let legal = std::mem::take(&mut c.legal);
                    let mut lp = std::mem::take(&mut c.log_prior);
                    self.arena.log_prior(i, &legal, &mut lp)?;
                    c.legal = legal;
                    c.log_prior = lp;
                }
            }
        }

        let mut out = Vec::with_capacity(batch);
        for b in 0..batch {
            let mine: Vec<&Chain> = chains[b * n..(b + 1) * n].iter().collect();
            let eligible: Vec<usize> = (0..n).filter(|&i| mine[i].terminated).collect();
            let by_likelihood =
                |x: &usize, y: &usize| mine[*y].log_prob.total_cmp(&mine[*x].log_prob);
            // `selected`: the chains behind the choice, best first; `value`: per the docs.
            let (selected, value): (Vec<usize>, f32) = if eligible.is_empty() {
                let mut all: Vec<usize> = (0..n).collect();
                all.sort_by(by_likelihood);
                (all[..1].to_vec(), root_value[b])
            } else {
                match self.config.select {
                    SampleSelect::Vote => {
                        let mut groups: BTreeMap<Vec<usize>, Vec<usize>> = BTreeMap::new();
                        for &i in &eligible {
                            let c = mine[i];
                            let key = self
                                .answer
                                .answer(&c.actions, &self.arena.envs[c.slot as usize]);
                            groups.entry(key).or_default().push(i);
                        }
                        let best_lp = |g: &Vec<usize>| {
                            g.iter()
                                .map(|&i| mine[i].log_prob)
                                .fold(f32::NEG_INFINITY, f32::max)
                        };
                        let mut winner: Option<&Vec<usize>> = None;
                        for g in groups.values() {
                            let better = match winner {
                                None => true,
                                Some(w) => {
                                    g.len() > w.len()
                                        || (g.len() == w.len() && best_lp(g) > best_lp(w))
                                }
                            };
                            if better {
                                winner = Some(g);
                            }
                        }
                        let mut sel = winner.cloned().unwrap_or_default();
                        sel.sort_by(by_likelihood);
                        let share = sel.len() as f32 / eligible.len() as f32;
                        (sel, share)
                    }
                    SampleSelect::BestValue => {
                        let mut e = eligible.clone();
                        e.sort_by(by_likelihood);
                        e.sort_by(|x, y| {
                            let (vx, vy) = (
                                mine[*x].value.unwrap_or(f32::MIN),
                                mine[*y].value.unwrap_or(f32::MIN),
                            );
                            vy.total_cmp(&vx)
                        });
                        let v = mine[e[0]].value.unwrap_or(root_value[b]);
                        (e[..1].to_vec(), v)
                    }
                    SampleSelect::BestLikelihood => {
                        let mut e = eligible.clone();
                        e.sort_by(by_likelihood);
                        (e[..1].to_vec(), root_value[b])
                    }
                }
            };
            let chosen = mine[selected[0]];
            let mut policy = vec![0.0f32; na];
            for &i in &selected {
                if let Some(&a) = mine[i].actions.first() {
                    policy[a] += 1.0 / selected.len() as f32;
                }
            }
            let mut order: Vec<usize> = (0..n).filter(|i| !selected.contains(i)).collect();
            order.sort_by(by_likelihood);
            let candidates = selected
                .iter()
                .chain(order.iter())
                .map(|&i| {
                    let c = mine[i];
                    Candidate {
                        actions: c.actions.clone(),
                        log_prob: c.log_prob,
                        value: c.value,
                        terminated: c.terminated,
                    }
                })
                .collect();
            out.push(SearchOutput {
                actions: chosen.actions.clone(),
                policy,
                value,
                evals: self.arena.evals[b],
                done: chosen.done,
                visit_counts: Vec::new(),
                candidates,
            });
        }
        Ok(out)
    }
}
