//! Gumbel MuZero (Danihelka et al. 2022; mctx's `gumbel_muzero_policy`): Gumbel-top-k sampling
//! of the considered root actions with Sequential Halving over the simulations, deterministic
//! interior selection matching `softmax(logits + σ(completed Q))`, and the completed-Q improved
//! policy as the training target.

use crate::error::SearchError;
use crate::evaluator::Evaluator;
use crate::output::{SearchOutput, Searcher};
use crate::qtransform::MixValue;
use crate::tree::{Rule, TreeSearch, TreeStats};
use crate::util::gumbel;
use envs::{Env, EnvRng};

/// Parameters of [`GumbelMuZero`]; `Default` gives mctx's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GumbelConfig {
    /// Root actions considered by Sequential Halving (`m`); fewer when fewer are legal.
    pub max_num_considered_actions: usize,
    /// Scale of the root Gumbel noise; 0 makes the search deterministic (test time on
    /// perfect-information problems).
    pub gumbel_scale: f32,
    /// The σ transform of completed Q-values.
    pub qtransform: MixValue,
    /// Discount of the backed-up returns.
    pub discount: f32,
}

impl Default for GumbelConfig {
    fn default() -> Self {
        GumbelConfig {
            max_num_considered_actions: 16,
            gumbel_scale: 1.0,
            qtransform: MixValue::default(),
            discount: 1.0,
        }
    }
}

impl GumbelConfig {
    fn validate(&self) -> Result<(), SearchError> {
        if self.max_num_considered_actions == 0 {
            return Err(SearchError::invalid(
                "max_num_considered_actions",
                0,
                ">= 1",
            ));
        }
        if !(self.gumbel_scale >= 0.0 && self.gumbel_scale.is_finite()) {
            return Err(SearchError::invalid(
                "gumbel_scale",
                self.gumbel_scale,
                ">= 0",
            ));
        }
        if !(0.0..=1.0).contains(&self.discount) {
            return Err(SearchError::invalid("discount", self.discount, "in [0, 1]"));
        }
        Ok(())
    }
}

/// The visit count an action must have to be chosen at each root simulation, by Sequential
/// Halving with `max_considered` actions over `num_sims` simulations (mctx's
/// `get_sequence_of_considered_visits`).
pub fn considered_visits(max_considered: usize, num_sims: usize) -> Vec<u32> {
    if max_considered <= 1 {
        return (0..num_sims as u32).collect();
    }
    let log2max = (max_considered as f64).log2().ceil() as usize;
    let mut seq = Vec::with_capacity(num_sims);
    let mut visits = 0u32;
    let mut considered = max_considered;
    while seq.len() < num_sims {
        let extra = (num_sims / (log2max * considered)).max(1);
        for _ in 0..extra {
            seq.extend(std::iter::repeat_n(visits, considered));
            visits += 1;
        }
        considered = (considered / 2).max(2);
    }
    seq.truncate(num_sims);
    seq
}

/// Gumbel MuZero, batched over roots.
///
/// Budget: as [`crate::Mcts`], one call for the root and at most one per simulation
/// (`budget - 1` simulations). Output: `actions = [action]` (the best of the most visited
/// considered actions by `g + logits + σ(q)`), `policy = softmax(logits + σ(completed q))` over
/// legal actions, `value` = the root's backed-up mean value, `visit_counts` = root child visits.
pub struct GumbelMuZero<E> {
    config: GumbelConfig,
    tree: TreeSearch<E>,
    rule: GumbelRule,
}

impl<E: Env> GumbelMuZero<E> {
    /// A Gumbel MuZero searcher; checks the configuration.
    pub fn new(config: GumbelConfig) -> Result<Self, SearchError> {
        config.validate()?;
        Ok(GumbelMuZero {
            config,
            tree: TreeSearch::default(),
            rule: GumbelRule {
                config,
                gumbels: Vec::new(),
                table: Vec::new(),
                table_sims: usize::MAX,
            },
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GumbelConfig {
        &self.config
    }
}

struct GumbelRule {
    config: GumbelConfig,
    /// `gumbel_scale * g` per root action, `[root * na + a]`.
    gumbels: Vec<f32>,
    /// `table[m]` = considered visits with `m` considered actions, for `m <= max`.
    table: Vec<Vec<u32>>,
    table_sims: usize,
}

/// σ(completed Q) of one node in closed form: visited actions get `(q - shift) * mul`, every
/// unvisited legal action the same `unvisited` value. The same arithmetic as
/// [`QTransform::apply`] with [`QTransform::CompletedByMixValue`], in one pass over the edges and
/// without buffers (selection runs this at every node of every simulation).
#[derive(Debug, Clone, Copy)]
struct Completed {
    shift: f32,
    mul: f32,
    unvisited: f32,
}

impl Completed {
    fn of(tree: &TreeStats, idx: usize, cfg: &MixValue) -> Self {
        let base = idx * tree.na;
        let mut sum_visits = 0.0f32;
        let mut sum_probs = 0.0f32;
        let mut weighted = 0.0f32;
        let mut lo = f32::INFINITY;
        let mut hi = f32::NEG_INFINITY;
        let mut max_visits = 0u32;
        let mut any_unvisited = false;
        for a in 0..tree.na {
            let e = base + a;
            if !tree.legal[e] {
                continue;
            }
            let n = tree.child_visits[e];
            if n > 0 {
                let q = tree.q(e);
                let p = tree.prior[e].max(f32::MIN_POSITIVE);
                sum_visits += n as f32;
                sum_probs += p;
                weighted += p * q;
                lo = lo.min(q);
                hi = hi.max(q);
                max_visits = max_visits.max(n);
            } else {
                any_unvisited = true;
            }
        }
        let raw = tree.raw_value[idx];
        let fill = if !cfg.use_mixed_value || sum_visits == 0.0 {
            raw
        } else {
            (raw + sum_visits * weighted / sum_probs) / (sum_visits + 1.0)
        };
        if any_unvisited {
            lo = lo.min(fill);
            hi = hi.max(fill);
        }
        let scale = (cfg.maxvisit_init + max_visits as f32) * cfg.value_scale;
        let (shift, mul) = if cfg.rescale_values && lo.is_finite() {
            (lo, scale / (hi - lo).max(cfg.epsilon))
        } else {
            (0.0, scale)
        };
        Completed {
            shift,
            mul,
            unvisited: (fill - shift) * mul,
        }
    }

    /// σ(completed Q) of edge `e`.
    #[inline(always)]
    fn t(&self, tree: &TreeStats, e: usize) -> f32 {
        if tree.child_visits[e] > 0 {
            (tree.q(e) - self.shift) * self.mul
        } else {
            self.unvisited
        }
    }
}

impl GumbelRule {
    /// Sequential Halving's score at the root: `g + logits + σ(q)` for the actions whose visit
    /// count is `considered`, `-inf` for the others.
    fn root_argmax(&self, tree: &TreeStats, b: usize, considered: u32) -> Option<usize> {
        let na = tree.na;
        let base = tree.idx(b, 0) * na;
        let c = Completed::of(tree, tree.idx(b, 0), &self.config.qtransform);
        let mut best: Option<(usize, f32)> = None;
        for a in 0..na {
            if !tree.legal[base + a] {
                continue;
            }
            let score = if tree.child_visits[base + a] == considered {
                (self.gumbels[b * na + a] + tree.root_log_prior[b * na + a] + c.t(tree, base + a))
                    .max(-1e9)
            } else {
                f32::NEG_INFINITY
            };
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((a, score));
            }
        }
        best.map(|(a, _)| a)
    }

    /// Writes the improved policy `softmax(logits + σ(completed q))` of root `b` into `out`.
    fn policy(&self, tree: &TreeStats, b: usize, out: &mut [f32]) {
        let idx = tree.idx(b, 0);
        let base = idx * tree.na;
        let c = Completed::of(tree, idx, &self.config.qtransform);
        let mut max = f32::NEG_INFINITY;
        for a in 0..tree.na {
            out[a] = if tree.legal[base + a] {
                let x = tree.root_log_prior[b * tree.na + a] + c.t(tree, base + a);
                max = max.max(x);
                x
            } else {
                f32::NEG_INFINITY
            };
        }
        let mut z = 0.0;
        for x in out.iter_mut() {
            *x = (*x - max).exp();
            z += *x;
        }
        out.iter_mut().for_each(|x| *x /= z);
    }
}

impl Rule for GumbelRule {
    fn begin(&mut self, tree: &mut TreeStats, num_sims: usize, rng: &mut EnvRng) {
        let na = tree.na;
        self.gumbels.clear();
        self.gumbels.resize(tree.batch * na, 0.0);
        if self.config.gumbel_scale > 0.0 {
            for b in 0..tree.batch {
                let base = tree.idx(b, 0) * na;
                for a in 0..na {
                    if tree.legal[base + a] {
                        self.gumbels[b * na + a] = self.config.gumbel_scale * gumbel(rng);
                    }
                }
            }
        }
        if self.table_sims != num_sims {
            self.table = (0..=self.config.max_num_considered_actions)
                .map(|m| considered_visits(m, num_sims))
                .collect();
            self.table_sims = num_sims;
        }
    }

    fn select(
        &mut self,
        tree: &TreeStats,
        b: usize,
        idx: usize,
        depth: u32,
        sim: usize,
        _rng: &mut EnvRng,
    ) -> Option<usize> {
        if depth == 0 {
            let m = (tree.num_legal[idx] as usize).min(self.config.max_num_considered_actions);
            let row = &self.table[m];
            let considered = row[sim.min(row.len().saturating_sub(1))];
            return self.root_argmax(tree, b, considered);
        }
        // Deterministic selection: visit frequencies track π' = softmax(logits + σ(q)), i.e.
        // argmax of π'(a) - N(a) / (1 + ΣN). Unvisited actions share one σ, so
        // π'(a) ∝ prior(a) * exp(σ(a) - M) needs an exp only per visited action.
        let na = tree.na;
        let base = idx * na;
        let c = Completed::of(tree, idx, &self.config.qtransform);
        let mut m = c.unvisited;
        let mut total = 0u32;
        for a in 0..na {
            let e = base + a;
            if tree.legal[e] && tree.child_visits[e] > 0 {
                m = m.max(c.t(tree, e));
                total += tree.child_visits[e];
            }
        }
        let unvisited_weight = (c.unvisited - m).exp();
        let mut z = 0.0f32;
        for a in 0..na {
            let e = base + a;
            if tree.legal[e] {
                let w = if tree.child_visits[e] > 0 {
                    (c.t(tree, e) - m).exp()
                } else {
                    unvisited_weight
                };
                z += tree.prior[e] * w;
            }
        }
        let inv_z = 1.0 / z;
        let inv_n = 1.0 / (1.0 + total as f32);
        let mut best: Option<(usize, f32)> = None;
        for a in 0..na {
            let e = base + a;
            if tree.legal[e] {
                let n = tree.child_visits[e];
                let w = if n > 0 {
                    (c.t(tree, e) - m).exp()
                } else {
                    unvisited_weight
                };
                let score = tree.prior[e] * w * inv_z - n as f32 * inv_n;
                if best.is_none_or(|(_, s)| score > s) {
                    best = Some((a, score));
                }
            }
        }
        best.map(|(a, _)| a)
    }
}

impl<E: Env> Searcher<E> for GumbelMuZero<E> {
    fn name(&self) -> String {
        format!("gumbel(m={})", self.config.max_num_considered_actions)
    }

    fn search(
        &mut self,
        roots: &[E],
        evaluator: &mut dyn Evaluator<E>,
        budget: usize,
        rng: &mut EnvRng,
    ) -> Result<Vec<SearchOutput>, SearchError> {
        if budget == 0 {
            return Err(SearchError::BudgetTooSmall {
                searcher: Searcher::<E>::name(self),
                budget,
                min: 1,
            });
        }
        self.tree.run(
            roots,
            evaluator,
            budget - 1,
            self.config.discount,
            &mut self.rule,
            rng,
        )?;
        let st = &self.tree.stats;
        let na = st.na;
        let mut out = Vec::with_capacity(roots.len());
        for b in 0..roots.len() {
            let idx = st.idx(b, 0);
            let visits = st.root_visits(b).to_vec();
            let legal = st.root_legal(b);
            let considered = (0..na)
                .filter(|&a| legal[a])
                .map(|a| visits[a])
                .max()
                .unwrap_or(0);
            let action = self
                .rule
                .root_argmax(st, b, considered)
                .ok_or(SearchError::RootDone { root: b })?;
            let mut policy = vec![0.0f32; na];
            self.rule.policy(st, b, &mut policy);
            let done = roots[b].clone().step(action)?.done();
            out.push(SearchOutput {
                actions: vec![action],
                policy,
                value: st.value[idx],
                evals: self.tree.evals[b],
                done,
                visit_counts: visits,
                candidates: Vec::new(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::{considered_visits, Completed};
    use crate::qtransform::{MixValue, QTransform};
    use crate::tree::TreeStats;
    use envs::EnvRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn fused_completed_q_equals_the_reference_transform() {
        let mut rng = EnvRng::seed_from_u64(0);
        let na = 7;
        for case in 0..200 {
            let mut t = TreeStats::default();
            t.prepare(1, 1, na, if case % 3 == 0 { 0.9 } else { 1.0 });
            t.use_rewards = case % 2 == 0;
            t.raw_value[0] = rng.random_range(-1.0..1.0);
            for a in 0..na {
                t.legal[a] = rng.random_bool(0.8);
                t.child_visits[a] = if t.legal[a] && rng.random_bool(0.5) {
                    rng.random_range(1..9)
                } else {
                    0
                };
                t.child_value[a] = rng.random_range(-1.0..1.0);
                t.reward[a] = rng.random_range(-1.0..1.0);
                t.prior[a] = rng.random::<f32>();
            }
            let cfg = MixValue {
                rescale_values: case % 5 != 0,
                use_mixed_value: case % 7 != 0,
                ..MixValue::default()
            };
            let mut q = vec![0.0; na];
            let mut want = vec![0.0; na];
            let stats = t.node_stats(0, &mut q);
            QTransform::CompletedByMixValue(cfg).apply(&stats, &mut want);
            let c = Completed::of(&t, 0, &cfg);
            for a in (0..na).filter(|&a| t.legal[a]) {
                assert_eq!(c.t(&t, a), want[a], "case {case} action {a}");
            }
        }
    }

    #[test]
    fn considered_visits_match_mctx_tables() {
        assert_eq!(
            considered_visits(8, 24),
            [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
        );
        assert_eq!(
            considered_visits(8, 47),
            [
                0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7,
                8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15, 16, 16, 17
            ]
        );
        assert_eq!(considered_visits(8, 2), [0, 0]);
        assert_eq!(
            considered_visits(8, 13),
            [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2]
        );
        assert_eq!(
            considered_visits(7, 24),
            [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8]
        );
        assert_eq!(considered_visits(0, 16), (0..16).collect::<Vec<u32>>());
        assert_eq!(considered_visits(1, 16), (0..16).collect::<Vec<u32>>());
    }
}
