//! AlphaZero/MuZero MCTS with PUCT (mctx's `muzero_policy`): priors from the evaluator, value
//! backup, Dirichlet noise at the root, action from visit counts with a temperature.

use crate::anytime::EarlyStop;
use crate::error::SearchError;
use crate::evaluator::Evaluator;
use crate::output::{SearchOutput, Searcher};
use crate::qtransform::QTransform;
use crate::tree::{Rule, TreeSearch, TreeStats};
use crate::util::{categorical, dirichlet, Argmax};
use envs::{Env, EnvRng};

/// Parameters of [`Mcts`]. `Default` gives mctx's `muzero_policy` defaults (training-time:
/// root noise on, actions sampled from visits); [`MctsConfig::evaluation`] turns both off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MctsConfig {
    /// `c_1` of the PUCT formula.
    pub pb_c_init: f32,
    /// `c_2` of the PUCT formula.
    pub pb_c_base: f32,
    /// Concentration of the root's Dirichlet noise.
    pub dirichlet_alpha: f32,
    /// Weight of the noise in the root prior; 0 disables it.
    pub dirichlet_fraction: f32,
    /// The action is drawn from `visits^(1 / temperature)`; 0 takes the most visited.
    pub temperature: f32,
    /// How child Q-values are normalized before PUCT.
    pub qtransform: QTransform,
    /// Discount of the backed-up returns.
    pub discount: f32,
    /// Anytime search: a root stops once its most visited child holds this share of the
    /// root's visits (after a minimum of simulations); `None` spends the whole budget.
    pub early_stop: Option<EarlyStop>,
}

impl Default for MctsConfig {
    fn default() -> Self {
        MctsConfig {
            pb_c_init: 1.25,
            pb_c_base: 19652.0,
            dirichlet_alpha: 0.3,
            dirichlet_fraction: 0.25,
            temperature: 1.0,
            qtransform: QTransform::default(),
            discount: 1.0,
            early_stop: None,
        }
    }
}

impl MctsConfig {
    /// Test-time settings: no root noise, the most visited action.
    pub fn evaluation() -> Self {
        MctsConfig {
            dirichlet_fraction: 0.0,
            temperature: 0.0,
            ..MctsConfig::default()
        }
    }

    fn validate(&self) -> Result<(), SearchError> {
        let checks: [(&'static str, f32, bool, &str); 5] = [
            ("pb_c_base", self.pb_c_base, self.pb_c_base > 0.0, "> 0"),
            (
                "dirichlet_alpha",
                self.dirichlet_alpha,
                self.dirichlet_alpha > 0.0,
                "> 0",
            ),
            (
                "dirichlet_fraction",
                self.dirichlet_fraction,
                (0.0..=1.0).contains(&self.dirichlet_fraction),
                "in [0, 1]",
            ),
            (
                "temperature",
                self.temperature,
                self.temperature >= 0.0,
                ">= 0",
            ),
            (
                "discount",
                self.discount,
                (0.0..=1.0).contains(&self.discount),
                "in [0, 1]",
            ),
        ];
        for (name, value, ok, allowed) in checks {
            if !ok || !value.is_finite() {
                return Err(SearchError::invalid(name, value, allowed));
            }
        }
        self.early_stop.map_or(Ok(()), |s| s.validate())
    }
}

/// MCTS with PUCT selection, batched over roots.
///
/// Budget: the root costs one evaluator call and each of the `budget - 1` simulations at most
/// one more (the state it adds to the tree); a simulation that ends on a terminal state already
/// in the tree costs nothing. With [`MctsConfig::early_stop`], a root stops simulating once
/// its most visited child's share of the visits reaches the threshold. Output: `actions = [action]`, `policy` = root visit distribution
/// (the root prior, noise included, when `budget == 1`), `value` = the root's backed-up mean
/// value, `visit_counts` = root child visits.
pub struct Mcts<E> {
    config: MctsConfig,
    tree: TreeSearch<E>,
    rule: Puct,
}

impl<E: Env> Mcts<E> {
    /// An MCTS searcher; checks the configuration.
    pub fn new(config: MctsConfig) -> Result<Self, SearchError> {
        config.validate()?;
        Ok(Mcts {
            config,
            tree: TreeSearch::default(),
            rule: Puct {
                config,
                q: Vec::new(),
                t: Vec::new(),
                noise: Vec::new(),
            },
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MctsConfig {
        &self.config
    }
}

struct Puct {
    config: MctsConfig,
    q: Vec<f32>,
    t: Vec<f32>,
    noise: Vec<f32>,
}

impl Rule for Puct {
    /// The most visited root child's share of the root's child visits (0 before any).
    fn confidence(&mut self, tree: &TreeStats, b: usize) -> f32 {
        let visits = tree.root_visits(b);
        let total: u32 = visits.iter().sum();
        let top = visits.iter().copied().max().unwrap_or(0);
        if total == 0 {
            0.0
        } else {
            top as f32 / total as f32
        }
    }

    fn begin(&mut self, tree: &mut TreeStats, _sims: &[usize], rng: &mut EnvRng) {
        let na = tree.na;
        self.q.resize(na, 0.0);
        self.t.resize(na, 0.0);
        self.noise.resize(na, 0.0);
        let frac = self.config.dirichlet_fraction;
        if frac <= 0.0 {
            return;
        }
        for b in 0..tree.batch {
            let base = tree.idx(b, 0) * na;
            let r = base..base + na;
            dirichlet(
                self.config.dirichlet_alpha as f64,
                &tree.legal[r.clone()],
                &mut self.noise,
                rng,
            );
            for a in 0..na {
                if tree.legal[base + a] {
                    let p = (1.0 - frac) * tree.prior[base + a] + frac * self.noise[a];
                    tree.prior[base + a] = p;
                    tree.root_log_prior[b * na + a] = p.max(f32::MIN_POSITIVE).ln();
                }
            }
        }
    }

    fn select(
        &mut self,
        tree: &TreeStats,
        _b: usize,
        idx: usize,
        _depth: u32,
        _sim: usize,
        rng: &mut EnvRng,
    ) -> Option<usize> {
        let na = tree.na;
        let base = idx * na;
        let n = tree.visits[idx] as f32;
        let c = &self.config;
        let pb_c = c.pb_c_init + ((n + c.pb_c_base + 1.0) / c.pb_c_base).ln();
        let coef = n.sqrt() * pb_c;
        if let QTransform::ParentAndSiblings { epsilon } = c.qtransform {
            // The default transform, fused: the same arithmetic as `QTransform::apply`.
            let scores = &mut self.t[..na];
            if tree.use_rewards {
                puct_scores::<true>(tree, idx, coef, epsilon, scores);
            } else {
                puct_scores::<false>(tree, idx, coef, epsilon, scores);
            }
            return argmax_legal(scores, &tree.legal[base..base + na], rng);
        }
        let stats = tree.node_stats(idx, &mut self.q);
        c.qtransform.apply(&stats, &mut self.t);
        let mut best = Argmax::new();
        for a in 0..na {
            if tree.legal[base + a] {
                let visits = tree.child_visits[base + a] as f32;
                let score = self.t[a] + coef * tree.prior[base + a] / (visits + 1.0);
                best.offer(a, score, rng);
            }
        }
        best.get()
    }
}

/// PUCT scores of node `idx` with Q normalized by parent and siblings, in two passes over the
/// node's edge rows; illegal actions get `-inf`. `REWARDS`: edge rewards enter Q (the oracle).
fn puct_scores<const REWARDS: bool>(
    tree: &TreeStats,
    idx: usize,
    coef: f32,
    epsilon: f32,
    scores: &mut [f32],
) {
    let na = scores.len();
    let r = idx * na..(idx + 1) * na;
    let visits = &tree.child_visits[r.clone()];
    let value = &tree.child_value[r.clone()];
    let prior = &tree.prior[r.clone()];
    let legal = &tree.legal[r.clone()];
    let reward = if REWARDS { &tree.reward[r] } else { &[][..] };
    let discount = tree.discount;
    let q = |a: usize| {
        if REWARDS {
            reward[a] + discount * value[a]
        } else {
            discount * value[a]
        }
    };
    let mut lo = tree.value[idx];
    let mut hi = lo;
    for a in 0..na {
        if visits[a] > 0 {
            lo = lo.min(q(a));
            hi = hi.max(q(a));
        }
    }
    let inv = 1.0 / (hi - lo).max(epsilon);
    for a in 0..na {
        let t = if visits[a] > 0 {
            (q(a) - lo) * inv
        } else {
            0.0
        };
        let s = t + coef * prior[a] / (visits[a] as f32 + 1.0);
        scores[a] = if legal[a] { s } else { f32::NEG_INFINITY };
    }
}

/// The legal index with the highest score, exact ties broken at random.
fn argmax_legal(scores: &[f32], legal: &[bool], rng: &mut EnvRng) -> Option<usize> {
    let max = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut best = Argmax::new();
    for a in 0..scores.len() {
        if scores[a] == max && legal[a] {
            best.offer(a, scores[a], rng);
        }
    }
    best.get()
}

impl<E: Env> Searcher<E> for Mcts<E> {
    fn name(&self) -> String {
        "mcts".to_string()
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
            let visits = st.root_visits(b).to_vec();
            let legal = st.root_legal(b);
            let total: u32 = visits.iter().sum();
            let base = st.idx(b, 0) * na;
            let policy: Vec<f32> = if total > 0 {
                visits.iter().map(|&v| v as f32 / total as f32).collect()
            } else {
                st.prior[base..base + na].to_vec()
            };
            let action = if self.config.temperature > 0.0 {
                let inv_t = 1.0 / self.config.temperature;
                let max = policy.iter().cloned().fold(0.0f32, f32::max);
                let weights: Vec<f32> = policy
                    .iter()
                    .zip(legal)
                    .map(|(&p, &ok)| {
                        if ok && p > 0.0 {
                            (p / max).powf(inv_t)
                        } else {
                            0.0
                        }
                    })
                    .collect();
                categorical(&weights, rng)
            } else {
                let mut best = Argmax::new();
                for a in (0..na).filter(|&a| legal[a]) {
                    best.offer(a, policy[a], rng);
                }
                best.get()
            };
            let action = action.ok_or(SearchError::RootDone { root: b })?;
            let done = roots[b].clone().step(action)?.done();
            out.push(SearchOutput {
                actions: vec![action],
                policy,
                value: st.value[st.idx(b, 0)],
                evals: self.tree.evals[b],
                done,
                visit_counts: visits,
                candidates: Vec::new(),
            });
        }
        Ok(out)
    }
}
