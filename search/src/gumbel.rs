//! Gumbel MuZero (Danihelka et al. 2022; mctx's `gumbel_muzero_policy`): Gumbel-top-k sampling
//! of the considered root actions with Sequential Halving over the simulations, deterministic
//! interior selection matching `softmax(logits + σ(completed Q))`, and the completed-Q improved
//! policy as the training target.

use crate::anytime::EarlyStop;
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
    /// Stop a root's search where its last complete Sequential Halving round ends, rather
    /// than partway through the next one (mctx spends the whole budget). A truncated round
    /// visits only the best-scored part of the surviving actions once more, and the final
    /// choice, among the most visited, is then made over that part alone, with its values
    /// taken one level deeper than the others'; ending at the round boundary makes the
    /// choice over all survivors at equal visits. Unspent simulations are not made (the
    /// search's `evals` say what it spent).
    pub whole_rounds: bool,
    /// Anytime search: a root stops once the largest probability of its improved policy
    /// reaches this threshold (after a minimum of simulations); `None` spends the whole
    /// budget.
    pub early_stop: Option<EarlyStop>,
}

impl Default for GumbelConfig {
    fn default() -> Self {
        GumbelConfig {
            max_num_considered_actions: 16,
            gumbel_scale: 1.0,
            qtransform: MixValue::default(),
            discount: 1.0,
            whole_rounds: false,
            early_stop: None,
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
        self.early_stop.map_or(Ok(()), |s| s.validate())
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

/// The simulations of `num_sims` that end at the last complete round of the Sequential
/// Halving schedule of [`considered_visits`] (a round gives one more visit to each action
/// still considered): `num_sims` itself when it ends a round or when not even the first
/// round fits (nothing to cut back to).
pub fn whole_rounds(max_considered: usize, num_sims: usize) -> usize {
    if max_considered <= 1 {
        return num_sims;
    }
    let log2max = (max_considered as f64).log2().ceil() as usize;
    let mut done = 0;
    let mut considered = max_considered;
    loop {
        let extra = (num_sims / (log2max * considered)).max(1);
        for _ in 0..extra {
            if done + considered > num_sims {
                return if done == 0 { num_sims } else { done };
            }
            done += considered;
            if done == num_sims {
                return num_sims;
            }
        }
        considered = (considered / 2).max(2);
    }
}

/// Gumbel MuZero, batched over roots.
///
/// Budget: as [`crate::Mcts`], one call for the root and at most one per simulation
/// (`budget - 1` simulations). Output: `actions = [action]` (the best of the most visited
/// considered actions by `g + logits + σ(q)`), `policy = softmax(logits + σ(completed q))` over
/// legal actions, `value` = the root's backed-up mean value, `visit_counts` = root child visits.
///
/// With a budget per root ([`Searcher::search_each`]), each root follows the Sequential
/// Halving schedule of its own simulation count. With [`GumbelConfig::early_stop`], a root
/// stops simulating once its improved policy's largest probability reaches the threshold;
/// its action is then chosen as at the end of a full search (the best of the most visited).
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
            rule: GumbelRule::new(config),
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
    /// Sequential Halving schedules by simulation count: `(sims, table)` with `table[m]` the
    /// considered visits with `m` considered actions, for `m <= max`.
    tables: Vec<(usize, Vec<Vec<u32>>)>,
    /// Per root of the current search, its schedule's index in `tables`.
    root_table: Vec<usize>,
    /// Per root of the current search, the simulations it may run.
    root_sims: Vec<usize>,
    /// Interior selection scores of one node, `[a]`, reused at every node.
    scores: Vec<f32>,
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
    /// The σ of node `idx`: at the root for Sequential Halving, the chosen action and the
    /// improved policy, below it for interior selection.
    ///
    /// With `rescale_values`, completed Q-values are shifted and divided by their minimum and
    /// maximum over the node's **legal** actions only: the Q-values of the visited ones, and
    /// the completion value (mixed or raw) only while some legal action is unvisited. Illegal
    /// actions take no part. This deliberately differs from mctx, which completes and rescales
    /// every action, illegal ones included: as an illegal action is never visited, it carries
    /// the completion value for the whole search, so once every legal action has been visited
    /// mctx still stretches the range to that value, which belongs to no action that can be
    /// chosen, and the σ of the legal actions then depends on whether some action happens to
    /// be illegal. Restricting the range to legal actions makes σ depend only on the actions it
    /// scores. The two agree whenever every action is legal or some legal action is unvisited.
    ///
    /// `unvisited` is meaningful only while some legal action is unvisited; otherwise the
    /// completion value took no part in the range and its σ may be arbitrarily large.
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

/// Writes the interior selection score of every action of node `idx` into `out`:
/// `π'(a) - N(a) / (1 + ΣN)` for legal actions, with the improved policy
/// `π' = softmax(log prior + σ(completed q))` over the legal actions, and `-inf` for illegal
/// ones. Selecting the argmax makes the visit frequencies track `π'`.
///
/// The softmax is a log-sum-exp over exactly the terms it normalizes: one per visited action,
/// `ln prior(a) + σ(a)`, and one for all unvisited actions together, `ln Σ prior + σ_unvisited`
/// (they share one σ, so an unvisited action's share of that term is its share of the prior).
/// Shifting by the largest of these terms makes every weight at most 1 and the normalizer at
/// least 1: nothing overflows, an underflowing prior only zeroes its own weight, and the scores
/// stay finite whenever the priors are a softmax over the legal actions and σ is finite.
/// Visited actions cost one `ln` and one `exp` each; unvisited ones a division.
fn interior_scores(tree: &TreeStats, idx: usize, cfg: &MixValue, out: &mut [f32]) {
    let na = tree.na;
    let base = idx * na;
    let c = Completed::of(tree, idx, cfg);
    // The log-weights of the visited actions (kept in `out`), the unvisited actions' total prior
    // and the visit total.
    let mut max = f32::NEG_INFINITY;
    let mut total = 0u32;
    let mut unvisited_prior = 0.0f32;
    let mut any_unvisited = false;
    for a in 0..na {
        let e = base + a;
        if !tree.legal[e] {
            out[a] = f32::NEG_INFINITY;
            continue;
        }
        let n = tree.child_visits[e];
        if n > 0 {
            let x = tree.prior[e].ln() + c.t(tree, e);
            out[a] = x;
            max = max.max(x);
            total += n;
        } else {
            unvisited_prior += tree.prior[e];
            any_unvisited = true;
        }
    }
    // `c.unvisited` is a score only when some legal action is unvisited: otherwise the mixed
    // value took no part in the rescaling and its σ can be arbitrarily large.
    let unvisited_log = if any_unvisited {
        unvisited_prior.ln() + c.unvisited
    } else {
        f32::NEG_INFINITY
    };
    max = max.max(unvisited_log);
    if max == f32::NEG_INFINITY {
        // No legal action has a positive prior: every weight is 0.
        max = 0.0;
    }
    let mut z = 0.0f32;
    for a in 0..na {
        let e = base + a;
        if tree.legal[e] && tree.child_visits[e] > 0 {
            out[a] = (out[a] - max).exp();
            z += out[a];
        }
    }
    let unvisited_weight = (unvisited_log - max).exp();
    z += unvisited_weight;
    let inv_z = if z > 0.0 { 1.0 / z } else { 0.0 };
    let unvisited_share = unvisited_weight * inv_z;
    let inv_n = 1.0 / (1.0 + total as f32);
    for a in 0..na {
        let e = base + a;
        if !tree.legal[e] {
            continue;
        }
        let n = tree.child_visits[e];
        out[a] = if n > 0 {
            out[a] * inv_z - n as f32 * inv_n
        } else if unvisited_prior > 0.0 {
            // The ratio first: it lies in [0, 1], where `unvisited_share / unvisited_prior`
            // could overflow for a subnormal total prior.
            tree.prior[e] / unvisited_prior * unvisited_share
        } else {
            0.0
        };
    }
}

impl GumbelRule {
    fn new(config: GumbelConfig) -> Self {
        GumbelRule {
            config,
            gumbels: Vec::new(),
            tables: Vec::new(),
            root_table: Vec::new(),
            root_sims: Vec::new(),
            scores: Vec::new(),
        }
    }

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

/// Distinct simulation counts whose schedules are kept between searches (beyond, the cache
/// starts again).
const MAX_SCHEDULES: usize = 64;

impl Rule for GumbelRule {
    /// The largest probability of the root's improved policy.
    fn confidence(&mut self, tree: &TreeStats, b: usize) -> f32 {
        let mut scores = std::mem::take(&mut self.scores);
        self.policy(tree, b, &mut scores[..tree.na]);
        let top = scores[..tree.na].iter().copied().fold(0.0f32, f32::max);
        self.scores = scores;
        top
    }

    fn begin(&mut self, tree: &mut TreeStats, sims: &[usize], rng: &mut EnvRng) {
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
        if self.tables.len() > MAX_SCHEDULES {
            self.tables.clear();
        }
        self.root_table.clear();
        self.root_sims.clear();
        self.root_sims.extend_from_slice(sims);
        for &n in sims {
            let at = match self.tables.iter().position(|(s, _)| *s == n) {
                Some(at) => at,
                None => {
                    let table = (0..=self.config.max_num_considered_actions)
                        .map(|m| considered_visits(m, n))
                        .collect();
                    self.tables.push((n, table));
                    self.tables.len() - 1
                }
            };
            self.root_table.push(at);
        }
        self.scores.resize(na, 0.0);
    }

    fn finished(&self, tree: &TreeStats, b: usize, done: usize) -> bool {
        if !self.config.whole_rounds {
            return false;
        }
        let idx = tree.idx(b, 0);
        let m = (tree.num_legal[idx] as usize).min(self.config.max_num_considered_actions);
        done >= whole_rounds(m, self.root_sims[b])
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
            let row = &self.tables[self.root_table[b]].1[m];
            let considered = row[sim.min(row.len().saturating_sub(1))];
            return self.root_argmax(tree, b, considered);
        }
        let na = tree.na;
        let scores = &mut self.scores[..na];
        interior_scores(tree, idx, &self.config.qtransform, scores);
        let legal = &tree.legal[idx * na..(idx + 1) * na];
        let mut best: Option<(usize, f32)> = None;
        for a in 0..na {
            if legal[a] && best.is_none_or(|(_, s)| scores[a] > s) {
                best = Some((a, scores[a]));
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
        let budgets = vec![budget; roots.len()];
        self.search_each(roots, evaluator, &budgets, rng)
    }

    fn search_each(
        &mut self,
        roots: &[E],
        evaluator: &mut dyn Evaluator<E>,
        budgets: &[usize],
        rng: &mut EnvRng,
    ) -> Result<Vec<SearchOutput>, SearchError> {
        self.tree.run(
            Searcher::<E>::name(self),
            roots,
            evaluator,
            budgets,
            self.config.early_stop,
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
    use super::{considered_visits, Completed, GumbelConfig, GumbelRule};
    use crate::qtransform::{MixValue, QTransform};
    use crate::tree::{Rule, TreeStats};
    use crate::util::masked_softmax;
    use envs::EnvRng;
    use proptest::prelude::*;
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
    fn whole_rounds_end_where_a_round_of_the_schedule_ends() {
        use super::whole_rounds;
        // 11 considered (log2 = 4): a round of 11, then rounds of 5, then of 2.
        assert_eq!(whole_rounds(11, 11), 11);
        for n in 11..16 {
            assert_eq!(whole_rounds(11, n), 11, "{n}");
        }
        assert_eq!(whole_rounds(11, 16), 16);
        assert_eq!(whole_rounds(11, 19), 18);
        // Under one round there is nothing to cut back to; one action is never cut.
        assert_eq!(whole_rounds(11, 7), 7);
        assert_eq!(whole_rounds(1, 9), 9);
        // Every cut lands where the schedule's visit counts are equal among the considered.
        for m in 2..=16 {
            for n in 1..200 {
                let w = whole_rounds(m, n);
                assert!(w <= n && (w == n || w >= m), "m {m} n {n}: {w}");
                if w < n {
                    let seq = considered_visits(m, n);
                    // A round's simulations share one visit count: a new round starts
                    // where the count changes.
                    assert_ne!(seq[w - 1], seq[w], "m {m} n {n}: cut at {w} inside a round");
                }
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

    /// One interior node (flat index 0) with the given edges; `visits[a] > 0` marks a visited
    /// child whose Q-value is `q[a]` (the tree's discount is 1 and rewards are unused).
    fn node(prior: &[f32], legal: &[bool], visits: &[u32], q: &[f32], raw: f32) -> TreeStats {
        let na = prior.len();
        let mut t = TreeStats::default();
        t.prepare(1, 1, na, 1.0);
        t.raw_value[0] = raw;
        t.num_legal[0] = legal.iter().filter(|&&l| l).count() as u32;
        t.leaf_end[0] = false;
        t.prior[..na].copy_from_slice(prior);
        t.legal[..na].copy_from_slice(legal);
        t.child_visits[..na].copy_from_slice(visits);
        t.child_value[..na].copy_from_slice(q);
        t
    }

    /// The interior selection (depth 1) at node 0 of `t`, and the scores it chose from.
    fn select_interior(mut t: TreeStats, qtransform: MixValue) -> (Option<usize>, Vec<f32>) {
        let mut rule = GumbelRule::new(GumbelConfig {
            gumbel_scale: 0.0,
            qtransform,
            ..GumbelConfig::default()
        });
        let mut rng = EnvRng::seed_from_u64(0);
        rule.begin(&mut t, &[8], &mut rng);
        let chosen = rule.select(&t, 0, 0, 1, 0, &mut rng);
        (chosen, rule.scores.clone())
    }

    #[test]
    fn interior_selection_follows_the_prior_when_all_visited_q_values_are_equal() {
        // Both children visited once with the same Q-value, the node's own value above it: the
        // mixed value (1 + 2 * 0.5) / 3 lies above every Q-value, but no action is unvisited, so
        // it must not enter the scores. Equal σ makes π' the prior, which favours action 1:
        // π' - N / (1 + ΣN) = [0.3 - 1/3, 0.7 - 1/3].
        let t = node(&[0.3, 0.7], &[true, true], &[1, 1], &[0.5, 0.5], 1.0);
        let (chosen, scores) = select_interior(t, MixValue::default());
        assert_eq!(chosen, Some(1), "scores {scores:?}");
    }

    /// Logits, Q-values and values from ordinary to far beyond `exp`'s range, with exact ties.
    const EXTREMES: [f32; 9] = [0.0, 0.5, -0.5, 3.0, -100.0, 1e20, -1e20, 1e30, -1e30];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn interior_selection_is_legal_finite_and_follows_the_improved_policy(
            edges in proptest::collection::vec(
                (0..9usize, any::<bool>(), 0..4u32, 0..9usize),
                1..7,
            ),
            equal_q in any::<bool>(),
            raw in 0..9usize,
            rescale_values in any::<bool>(),
            use_mixed_value in any::<bool>(),
        ) {
            let na = edges.len();
            let mut legal: Vec<bool> = edges.iter().map(|e| e.1).collect();
            legal[0] = legal[0] || legal.iter().all(|&l| !l);
            let logits: Vec<f32> = (0..na)
                .map(|a| if legal[a] { EXTREMES[edges[a].0] } else { f32::NEG_INFINITY })
                .collect();
            let visits: Vec<u32> = (0..na)
                .map(|a| if legal[a] { edges[a].2 } else { 0 })
                .collect();
            let q: Vec<f32> = (0..na)
                .map(|a| EXTREMES[if equal_q { edges[0].3 } else { edges[a].3 }])
                .collect();
            let raw = EXTREMES[raw];
            let mut prior = vec![0.0; na];
            prop_assert!(masked_softmax(&logits, &legal, &mut prior));
            let cfg = MixValue { rescale_values, use_mixed_value, ..MixValue::default() };
            let t = node(&prior, &legal, &visits, &q, raw);

            // The reference: σ by the reference transform, π' = softmax(logits + σ) in f64, the
            // logits shifted by their maximum first (softmax ignores the shift) so that equal
            // huge logits do not swallow σ.
            let mut sigma = vec![0.0; na];
            let mut qbuf = vec![0.0; na];
            QTransform::CompletedByMixValue(cfg).apply(&t.node_stats(0, &mut qbuf), &mut sigma);
            let top = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l)) as f64;
            let x: Vec<f64> = (0..na)
                .map(|a| (logits[a] as f64 - top) + sigma[a] as f64)
                .collect();
            let max = (0..na)
                .filter(|&a| legal[a])
                .map(|a| x[a])
                .fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = (0..na).filter(|&a| legal[a]).map(|a| (x[a] - max).exp()).sum();
            let total: u32 = visits.iter().sum();
            let want: Vec<f64> = (0..na)
                .map(|a| (x[a] - max).exp() / z - visits[a] as f64 / (1.0 + total as f64))
                .collect();

            let (chosen, scores) = select_interior(t, cfg);
            let chosen = chosen.expect("a legal action exists");
            prop_assert!(legal[chosen], "chose illegal {chosen}: scores {scores:?}");
            let mut policy_mass = 0.0f64;
            for a in 0..na {
                if legal[a] {
                    prop_assert!(scores[a].is_finite(), "action {a}: scores {scores:?}");
                    policy_mass += scores[a] as f64 + visits[a] as f64 / (1.0 + total as f64);
                } else {
                    prop_assert_eq!(scores[a], f32::NEG_INFINITY);
                }
            }
            prop_assert!((policy_mass - 1.0).abs() < 1e-5, "π' sums to {policy_mass}");
            // A huge σ (Q-values of 1e20 and more without rescaling) swamps the logits in f32's
            // `ln prior + σ` and in f64's `logits + σ` at different magnitudes: compare with the
            // reference only where σ is moderate.
            if sigma.iter().all(|s| s.abs() <= 1e3) {
                for a in (0..na).filter(|&a| legal[a]) {
                    prop_assert!(
                        (scores[a] as f64 - want[a]).abs() < 1e-4,
                        "action {a}: scores {scores:?}, want {want:?}"
                    );
                }
                let best = (0..na)
                    .filter(|&a| legal[a])
                    .map(|a| want[a])
                    .fold(f64::NEG_INFINITY, f64::max);
                prop_assert!(want[chosen] >= best - 1e-4, "chose {chosen}: want {want:?}");
            }
        }
    }
}
