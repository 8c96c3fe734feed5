//! Test-time search compared at measured compute: accuracy per difficulty, per searcher and
//! per nominal budget over a trained policy ([`PolicyEvaluator`]), with 95% intervals and
//! paired tests, as a table, CSV files, a PNG plot of accuracy against evaluator calls per
//! problem and TensorBoard scalars.
//!
//! # Budget and compute
//!
//! The nominal budget `k` is a knob each searcher reads its own way
//! ([`crate::searchers::BuildSearcher::search_budget`]): equal `k` is not equal compute. Each
//! cell (searcher, `k`, difficulty) therefore records what it spent:
//!
//! - **evaluator calls**: states put in an evaluator batch, summed from the searchers'
//!   [`search::SearchOutput::evals`] (tested against an independent count of the states the
//!   evaluator was asked for). This is the x-axis of the plot and of the compute levels below;
//! - **wall time** of the cell (batched, so per problem it is an amortized figure);
//! - **model tokens** (with [`compare`], which reads [`PolicyEvaluator::stats`]): decoder
//!   positions computed plus input tokens encoded.
//!
//! With `T` the decisions of a chain (its steps, the answer marker and the answer) and `L`
//! the env's episode length, the built-in searchers turn `k` into compute as follows:
//!
//! | searcher | what `k` is | evaluator calls per problem | model tokens per problem |
//! |---|---|---|---|
//! | `greedy` | nothing: it runs once | `T` | one encoding, `T` decoder positions |
//! | `vote` | chains sampled at temperature 1, majority answer | `1 + k (T - 1)` at most: the chains share the root | one encoding, one position per call |
//! | `beam` | width, by log-probability | `1 + k (T - 1)` at most (fewer while the tree is narrower than `k`) | as `vote` |
//! | `mcts` | calls per decision: the root and `k - 1` simulations, each evaluating at most one new state | `k T` at most (a simulation ending in a known terminal state evaluates nothing) | `T` encodings: each decision's search starts from a cold cache and decodes its root's prefix again (`t + 1` positions at decision `t`) |
//! | `gumbel` | the same, Sequential Halving over `max_considered` root actions | `k T` at most | as `mcts` |
//!
//! So at equal `k` the tree searchers spend about as many evaluator calls as `vote` and
//! `beam`, but more model tokens (their prefixes are decoded once per decision). At `k = 1`
//! MCTS and Gumbel take the prior's best action and beam keeps one hypothesis: all three are
//! greedy decoding. A registered searcher says itself what it makes of `k`; the measured
//! figures hold for any.
//!
//! # Statistics
//!
//! Every accuracy carries a 95% Wilson interval ([`stats::wilson`]). Problem `j` of level `d`
//! is the same for every searcher and budget, so two arms (a searcher at a budget) are
//! compared **paired**, on the same problems ([`CompareReport::paired`]): the difference of
//! accuracies, a 95% percentile interval from a paired bootstrap (problems resampled within
//! each level, [`CompareConfig::resamples`] times, seeded by the report's seed and the pair)
//! and McNemar's exact two-sided test on the problems only one arm solved. A difference is
//! called significant when the interval excludes 0 **and** McNemar's `p < 0.05`: with a
//! handful of discordant problems the percentile bootstrap is too optimistic, and the exact
//! test is then the stricter of the two.
//!
//! Each arm is compared with the reference (greedy, or the first budget-free searcher), and
//! arms of similar measured compute with each other: an arm's compute level is
//! `2^round(log2 r)` where `r` is its evaluator calls per problem over the reference's, and
//! each level keeps, per searcher, the arm closest to it ([`CompareReport::compute_levels`]).
//! The summary ([`CompareReport::verdicts`]) names the best searcher of a level only where
//! every paired difference to the others is significant, and says "no significant
//! difference" otherwise.
//!
//! # Honesty
//!
//! Searches never read the true answer: the evaluator is the policy (its
//! [`search::Evaluator::reward_use`] is `Ignore`, so no searcher reads env rewards;
//! [`compare_with`] refuses an evaluator that would), and the only place the answer is
//! consulted is the scoring of a finished episode (`Info::solved`). Problem `j` of level `d`
//! is drawn from `derive_seed(derive_seed(seed, d), j)`, as `factorexe eval` draws them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use envs::{derive_seed, AnyEnv, Difficulty, Env, EnvError, EnvRng};
use rand::SeedableRng;
use search::{Evaluator, RewardUse, SearchError};

use crate::agent::AgentError;
use crate::logging::{markdown_table, LogError, Logger};
use crate::policy::CotPolicy;
use crate::search_eval::{PolicyEvaluator, ValueSource};
use crate::searchers::{BudgetPool, Plays, SearchContext, SearchPurpose, SearchSpec};

/// The TensorBoard image tag under which `factorexe search compare` logs its plot
/// ([`CompareReport::plot`]'s PNG), at step 0.
pub const PLOT_TAG: &str = "search/plot";

/// Salt of the searchers' random streams.
const SEARCH_SALT: u64 = 0x7365_6172_6368_0007;
/// Salt of the paired bootstrap's random streams (apart from the searchers').
const BOOTSTRAP_SALT: u64 = 0x626f_6f74_7374_7261;
/// Two-sided level of every interval and test.
const ALPHA: f64 = 0.05;

/// Confidence intervals and paired tests of [`CompareReport`], on counts of right answers.
pub mod stats {
    use rand::{Rng, SeedableRng};

    /// The standard normal quantile of a two-sided 95% interval.
    pub const Z95: f64 = 1.959_963_984_540_054;

    /// The Wilson score interval of `successes` out of `n` at normal quantile `z` (`Z95`
    /// for 95%), clamped to `[0, 1]`; `(0, 1)` when `n = 0`. Unlike the normal
    /// approximation it stays inside `[0, 1]` and is not empty at 0% or 100%.
    pub fn wilson(successes: usize, n: usize, z: f64) -> (f64, f64) {
        if n == 0 {
            return (0.0, 1.0);
        }
        let nf = n as f64;
        let p = successes as f64 / nf;
        let z2 = z * z;
        let denom = 1.0 + z2 / nf;
        let center = (p + z2 / (2.0 * nf)) / denom;
        let half = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / denom;
        // At 0% and 100% the bound is exactly 0 (resp. 1); rounding would miss it by an ulp.
        let lo = if successes == 0 {
            0.0
        } else {
            (center - half).max(0.0)
        };
        let hi = if successes >= n {
            1.0
        } else {
            (center + half).min(1.0)
        };
        (lo, hi)
    }

    /// Two arms on the same `n` problems: how many only `a` solved and how many only `b`
    /// solved (the rest were solved by both or by neither).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct PairCounts {
        /// Problems.
        pub n: usize,
        /// Solved by `a` only.
        pub a_only: usize,
        /// Solved by `b` only.
        pub b_only: usize,
    }

    impl PairCounts {
        /// Counts from per-problem correctness, problem `j` of `a` paired with problem `j`
        /// of `b`; `None` when the lengths differ (not the same problems).
        pub fn from_correct(a: &[bool], b: &[bool]) -> Option<PairCounts> {
            if a.len() != b.len() {
                return None;
            }
            let mut c = PairCounts {
                n: a.len(),
                ..PairCounts::default()
            };
            for (&x, &y) in a.iter().zip(b) {
                c.a_only += usize::from(x && !y);
                c.b_only += usize::from(y && !x);
            }
            Some(c)
        }

        /// Accuracy of `a` minus accuracy of `b` (0 when there is no problem).
        pub fn diff(&self) -> f64 {
            (self.a_only as f64 - self.b_only as f64) / self.n.max(1) as f64
        }
    }

    impl std::ops::Add for PairCounts {
        type Output = PairCounts;

        /// The counts of two strata together.
        fn add(self, o: PairCounts) -> PairCounts {
            PairCounts {
                n: self.n + o.n,
                a_only: self.a_only + o.a_only,
                b_only: self.b_only + o.b_only,
            }
        }
    }

    /// McNemar's exact two-sided test: the probability, if either arm were as likely as the
    /// other to be the one right on a discordant problem, of a split at least as uneven as
    /// `a_only : b_only`. `min(1, 2 P(X <= min))` with `X ~ Binomial(a_only + b_only, 1/2)`.
    pub fn mcnemar_exact(a_only: usize, b_only: usize) -> f64 {
        let m = a_only + b_only;
        let k = a_only.min(b_only);
        if m == 0 {
            return 1.0;
        }
        // ln C(m, i) for i = 0..=k; the terms grow with i up to m / 2, so the last is the
        // largest: summing relative to it keeps thousands of discordant pairs finite.
        let mut ln_c = Vec::with_capacity(k + 1);
        let mut acc = 0.0f64;
        for i in 0..=k {
            ln_c.push(acc);
            acc += ((m - i) as f64).ln() - ((i + 1) as f64).ln();
        }
        let top = ln_c[k];
        let sum: f64 = ln_c.iter().map(|&l| (l - top).exp()).sum();
        let ln_p = std::f64::consts::LN_2 + top + sum.ln() - m as f64 * std::f64::consts::LN_2;
        ln_p.exp().min(1.0)
    }

    /// The `1 - alpha` percentile interval of the paired difference `acc(a) - acc(b)` over
    /// `strata` (the levels), from `resamples` bootstrap resamples: each resample draws every
    /// stratum's `n` problems with replacement from that stratum, and the statistic is the
    /// difference over all problems drawn. Deterministic in `seed`. `(d, d)` when no
    /// problem is discordant or `resamples = 0` (`d` the observed difference).
    pub fn paired_bootstrap(
        strata: &[PairCounts],
        resamples: usize,
        alpha: f64,
        seed: u64,
    ) -> (f64, f64) {
        let total = strata.iter().fold(PairCounts::default(), |s, &c| s + c);
        if total.n == 0 || total.a_only + total.b_only == 0 || resamples == 0 {
            let d = total.diff();
            return (d, d);
        }
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let mut diffs = Vec::with_capacity(resamples);
        for _ in 0..resamples {
            let mut s = 0i64;
            for c in strata {
                if c.a_only + c.b_only == 0 {
                    continue;
                }
                // Problems are drawn by index; the first `a_only` indices stand for the
                // problems only `a` solved, the next `b_only` for those only `b` solved.
                let (a, ab) = (c.a_only, c.a_only + c.b_only);
                for _ in 0..c.n {
                    let u = rng.random_range(0..c.n);
                    if u < a {
                        s += 1;
                    } else if u < ab {
                        s -= 1;
                    }
                }
            }
            diffs.push(s as f64 / total.n as f64);
        }
        diffs.sort_by(f64::total_cmp);
        let r = diffs.len();
        let lo = ((alpha / 2.0 * r as f64).floor() as usize).min(r - 1);
        let hi = (((1.0 - alpha / 2.0) * r as f64).ceil() as usize)
            .saturating_sub(1)
            .min(r - 1);
        (diffs[lo], diffs[hi])
    }
}

/// What can go wrong in a comparison.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The policy cannot be used (no decoder, layout mismatch).
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// A search failed.
    #[error("search: {0}")]
    Search(#[from] SearchError),
    /// An env failed to reset or step.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// The comparison was asked for nothing, or for something impossible.
    #[error("{0}")]
    Invalid(String),
    /// Writing an output file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Drawing the plot failed.
    #[error("plotting {path}: {reason}")]
    Plot {
        /// The file.
        path: PathBuf,
        /// What plotters said.
        reason: String,
    },
    /// Writing TensorBoard events failed.
    #[error("logging: {0}")]
    Log(#[from] LogError),
}

/// The built-in searchers with their test-time settings, in table order.
pub fn default_searchers() -> Vec<SearchSpec> {
    ["greedy", "vote", "beam", "mcts", "gumbel"]
        .into_iter()
        .filter_map(|n| SearchSpec::parse(n, SearchPurpose::Evaluate).ok())
        .collect()
}

/// What to compare.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareConfig {
    /// The searchers (any registered ones, each named once), with their settings.
    pub searchers: Vec<SearchSpec>,
    /// The nominal budgets (`>= 1` each); see the module doc for what each searcher spends.
    pub budgets: Vec<usize>,
    /// The difficulty levels.
    pub levels: Vec<Difficulty>,
    /// Problems per level, `>= 1`.
    pub episodes: usize,
    /// Seed of the problems, of the searchers' randomness and of the bootstrap.
    pub seed: u64,
    /// Problems searched together (one evaluator batch), `>= 1`.
    pub batch_size: usize,
    /// Where the evaluator takes values from.
    pub value: ValueSource,
    /// Take values as probabilities in `[0, 1]` (both value sources are): MCTS normalizes Q
    /// by these bounds and Gumbel does not rescale. Off, Q is min-max normalized over each
    /// node's children (mctx's defaults), which turns the smallest value difference into a
    /// full-scale preference: with a noisy value head, deep searches then chase its noise.
    pub bounded_values: bool,
    /// Bootstrap resamples of every paired interval (2000 gives interval ends stable to
    /// about a tenth of their width).
    pub resamples: usize,
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            searchers: default_searchers(),
            budgets: vec![1, 2, 4, 8, 16, 32, 64],
            levels: vec![1, 2, 3],
            episodes: 200,
            seed: 0x5ea7_c400,
            batch_size: 256,
            value: ValueSource::Head,
            bounded_values: true,
            resamples: 2000,
        }
    }
}

impl CompareConfig {
    /// Checks that there is something to compare and that the numbers are in range.
    pub fn validate(&self) -> Result<(), CompareError> {
        let bad = |m: String| Err(CompareError::Invalid(m));
        if self.searchers.is_empty() {
            return bad("no searcher to compare (--algos)".into());
        }
        for (i, spec) in self.searchers.iter().enumerate() {
            if self.searchers[..i].iter().any(|s| s.name == spec.name) {
                return bad(format!("searcher `{}` is named twice", spec.name));
            }
            spec.resolved(SearchPurpose::Evaluate)
                .map_err(CompareError::Invalid)?;
        }
        if self.budgets.is_empty() || self.budgets.contains(&0) {
            return bad(format!(
                "budgets {:?}: expected at least one budget, each >= 1",
                self.budgets
            ));
        }
        if self.levels.is_empty() {
            return bad("no difficulty level to evaluate".into());
        }
        if self.episodes == 0 || self.batch_size == 0 {
            return bad("episodes and batch size must be >= 1".into());
        }
        if self.resamples == 0 {
            return bad("resamples must be >= 1".into());
        }
        Ok(())
    }
}

/// One (searcher, budget, level) result.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareCell {
    /// The searcher's name.
    pub searcher: String,
    /// The nominal budget; for a budget-free searcher, the one it was built with (it has no
    /// use for it).
    pub budget: usize,
    /// The searcher has no use for a budget (it ran once; see
    /// [`CompareReport::budget_free`]).
    pub budget_free: bool,
    /// The difficulty level.
    pub difficulty: Difficulty,
    /// Problems played.
    pub problems: usize,
    /// Problems answered right.
    pub solved: usize,
    /// Per problem, in problem order: answered right. Problem `j` is the same in every cell
    /// of the level, which is what makes the paired tests paired.
    pub correct: Vec<bool>,
    /// Evaluator calls (states evaluated) spent in all, as the searches reported them.
    pub evals: u64,
    /// Decoder positions the model computed, when the evaluator counts them.
    pub decoder_tokens: Option<u64>,
    /// Input tokens the model encoded, when the evaluator counts them.
    pub encoder_tokens: Option<u64>,
    /// Wall time of the whole cell, seconds.
    pub seconds: f64,
}

/// Problems played and solved and the compute spent on them, with the figures derived from
/// them: what a cell and an arm pooled over levels ([`Pooled`]) share.
pub trait Tally {
    /// Problems played.
    fn problems(&self) -> usize;
    /// Problems answered right.
    fn solved(&self) -> usize;
    /// Evaluator calls spent.
    fn evals(&self) -> u64;
    /// Model tokens, when the evaluator counts them.
    fn tokens(&self) -> Option<u64>;
    /// Wall time, seconds.
    fn seconds(&self) -> f64;

    /// Fraction solved.
    fn accuracy(&self) -> f64 {
        self.solved() as f64 / self.problems().max(1) as f64
    }

    /// The 95% Wilson interval of [`accuracy`](Self::accuracy).
    fn interval(&self) -> (f64, f64) {
        stats::wilson(self.solved(), self.problems(), stats::Z95)
    }

    /// Evaluator calls per problem.
    fn evals_per_problem(&self) -> f64 {
        self.evals() as f64 / self.problems().max(1) as f64
    }

    /// Wall time per problem, milliseconds (amortized over the batch).
    fn ms_per_problem(&self) -> f64 {
        1e3 * self.seconds() / self.problems().max(1) as f64
    }

    /// Model tokens (decoder positions plus encoded input tokens) per problem, when counted.
    fn tokens_per_problem(&self) -> Option<f64> {
        self.tokens()
            .map(|t| t as f64 / self.problems().max(1) as f64)
    }
}

impl Tally for CompareCell {
    fn problems(&self) -> usize {
        self.problems
    }
    fn solved(&self) -> usize {
        self.solved
    }
    fn evals(&self) -> u64 {
        self.evals
    }
    fn tokens(&self) -> Option<u64> {
        Some(self.decoder_tokens? + self.encoder_tokens?)
    }
    fn seconds(&self) -> f64 {
        self.seconds
    }
}

/// A searcher at one nominal budget (`None` for a budget-free searcher): one line of the
/// table, one series point of the plot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Arm {
    /// The searcher's name.
    pub searcher: String,
    /// The nominal budget, `None` when the searcher has no use for one.
    pub budget: Option<usize>,
}

impl fmt::Display for Arm {
    /// `gumbel k=4`, or the bare name of a budget-free searcher.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.budget {
            Some(k) => write!(f, "{} k={k}", self.searcher),
            None => f.write_str(&self.searcher),
        }
    }
}

/// An arm's cells over several levels, pooled (equal problems per level, so pooled accuracy
/// is the mean over levels).
#[derive(Debug, Clone, PartialEq)]
pub struct Pooled {
    /// Problems played.
    pub problems: usize,
    /// Problems answered right.
    pub solved: usize,
    /// Evaluator calls spent.
    pub evals: u64,
    /// Model tokens, when counted.
    pub tokens: Option<u64>,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl Tally for Pooled {
    fn problems(&self) -> usize {
        self.problems
    }
    fn solved(&self) -> usize {
        self.solved
    }
    fn evals(&self) -> u64 {
        self.evals
    }
    fn tokens(&self) -> Option<u64> {
        self.tokens
    }
    fn seconds(&self) -> f64 {
        self.seconds
    }
}

/// A paired comparison of two arms on the same problems: `a` minus `b`.
#[derive(Debug, Clone, PartialEq)]
pub struct Paired {
    /// The first arm.
    pub a: Arm,
    /// The second arm.
    pub b: Arm,
    /// The level compared, `None` for all levels pooled.
    pub difficulty: Option<Difficulty>,
    /// The problems and their discordant counts.
    pub counts: stats::PairCounts,
    /// Accuracy of `a` minus accuracy of `b`.
    pub diff: f64,
    /// The 95% paired bootstrap interval of `diff`.
    pub interval: (f64, f64),
    /// McNemar's exact two-sided p-value.
    pub p: f64,
}

impl Paired {
    /// The interval excludes 0 and McNemar's test agrees (`p < 0.05`).
    pub fn significant(&self) -> bool {
        (self.interval.0 > 0.0 || self.interval.1 < 0.0) && self.p < ALPHA
    }

    /// `+4.7 [+3.1, +6.3] pts, p=0.0012`.
    pub fn describe(&self) -> String {
        format!(
            "{} {} pts, p{}",
            pts(self.diff),
            interval_pts(self.interval),
            p_rel(self.p)
        )
    }
}

/// One compute level: the arms whose measured compute is closest to `ratio` times the
/// reference's, one per searcher, with the best of them compared to each other.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputeLevel {
    /// The level: a power of two, times the reference's evaluator calls per problem.
    pub ratio: f64,
    /// The arms of the level with their pooled results and measured compute ratio, best
    /// (by pooled accuracy, then least compute) first.
    pub members: Vec<(Arm, Pooled, f64)>,
    /// The best arm minus each other member, in `members` order.
    pub versus: Vec<Paired>,
    /// The best arm of all that spent at most `ratio` times the reference's compute (this
    /// level's and lower), against the reference; `None` without a reference.
    pub best_so_far: Option<Paired>,
}

impl ComputeLevel {
    /// The best arm is better than every other member, significantly.
    pub fn clear_winner(&self) -> bool {
        self.members.len() > 1 && self.versus.iter().all(Paired::significant)
    }
}

/// The results of [`compare`]: one cell per searcher, budget and level; a searcher that has
/// no use for a budget, like greedy, runs once and has one cell per level.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareReport {
    /// Cells in (searcher, budget, level) order, searchers in the config's order.
    pub cells: Vec<CompareCell>,
    /// The searchers that ran once, whatever the budget.
    pub budget_free: Vec<String>,
    /// The value source the searches used.
    pub value: ValueSource,
    /// The seed of the problems (and of the bootstrap).
    pub seed: u64,
    /// Bootstrap resamples of the paired intervals.
    pub resamples: usize,
}

/// Plays `envs` (fresh problems, in place) to the end with `spec` at nominal `budget`;
/// returns the evaluator calls spent. Each finished env's `info().solved` then says whether
/// it was right.
fn play(
    spec: &SearchSpec,
    budget: usize,
    cfg: &CompareConfig,
    envs: &mut [AnyEnv],
    evaluator: &mut dyn Evaluator<AnyEnv>,
    rng: &mut EnvRng,
) -> Result<u64, CompareError> {
    let Some(first) = envs.first() else {
        return Ok(0);
    };
    let ctx = SearchContext {
        spec: first.spec(),
        budget,
        bounded_values: cfg.bounded_values,
    };
    let mut searcher = spec.build(&ctx)?;
    let search_budget = spec.search_budget(&ctx)?;
    let plays = spec.entry()?.plays;
    let mut evals = 0u64;
    if plays == Plays::EachAction {
        let mut pool = BudgetPool::new(envs.len(), search_budget, spec.carries_unspent()?);
        let mut live: Vec<usize> = Vec::with_capacity(envs.len());
        let mut roots: Vec<AnyEnv> = Vec::with_capacity(envs.len());
        let mut budgets: Vec<usize> = Vec::with_capacity(envs.len());
        loop {
            live.clear();
            live.extend((0..envs.len()).filter(|&i| !envs[i].is_done()));
            if live.is_empty() {
                break;
            }
            roots.clear();
            roots.extend(live.iter().map(|&i| envs[i].clone()));
            budgets.clear();
            budgets.extend(live.iter().map(|&i| pool.budget(i)));
            let outs = searcher.search_each(&roots, evaluator, &budgets, rng)?;
            for ((&i, out), &budget) in live.iter().zip(&outs).zip(&budgets) {
                evals += out.evals as u64;
                pool.spent(i, budget, out.evals);
                let Some(&a) = out.actions.first() else {
                    return Err(CompareError::Invalid(format!(
                        "searcher `{}` returned no action",
                        spec.name
                    )));
                };
                envs[i].step(a)?;
            }
        }
        return Ok(evals);
    }
    let outs = searcher.search(envs, evaluator, search_budget, rng)?;
    for (env, out) in envs.iter_mut().zip(&outs) {
        evals += out.evals as u64;
        // An unfinished chain (cut by the budget) stays unfinished: not solved.
        for &a in &out.actions {
            if env.is_done() {
                break;
            }
            env.step(a)?;
        }
    }
    Ok(evals)
}

/// Runs every (searcher, budget) on `cfg.episodes` fresh problems per level with `policy`,
/// calling `progress` after each cell. Cells count model tokens (see the module doc).
pub fn compare(
    env: &AnyEnv,
    policy: &CotPolicy,
    cfg: &CompareConfig,
    progress: impl FnMut(&CompareCell),
) -> Result<CompareReport, CompareError> {
    cfg.validate()?;
    let mut evaluator = PolicyEvaluator::new(policy, cfg.value)?;
    let input = policy.model().layout().input_len as u64;
    run_cells(
        env,
        &mut evaluator,
        |e: &PolicyEvaluator<'_>| {
            let s = e.stats();
            Some((s.positions as u64, s.roots as u64 * input))
        },
        cfg,
        progress,
    )
}

/// [`compare`] with any evaluator (`cfg.value` is then only recorded in the report): a
/// wrapped policy evaluator, a stand-in model, a counter. Cells do not count model tokens.
/// An evaluator that lets searches read env rewards ([`RewardUse::Oracle`]) is refused: a
/// comparison of test-time search must not see the answer.
pub fn compare_with<V: Evaluator<AnyEnv>>(
    env: &AnyEnv,
    evaluator: &mut V,
    cfg: &CompareConfig,
    progress: impl FnMut(&CompareCell),
) -> Result<CompareReport, CompareError> {
    cfg.validate()?;
    if evaluator.reward_use() == RewardUse::Oracle {
        return Err(CompareError::Invalid(
            "the evaluator reads env rewards (an oracle): test-time search must not".into(),
        ));
    }
    run_cells(env, evaluator, |_: &V| None, cfg, progress)
}

fn run_cells<V: Evaluator<AnyEnv>>(
    env: &AnyEnv,
    evaluator: &mut V,
    tokens: impl Fn(&V) -> Option<(u64, u64)>,
    cfg: &CompareConfig,
    mut progress: impl FnMut(&CompareCell),
) -> Result<CompareReport, CompareError> {
    let range = env.spec().difficulty;
    if let Some(bad) = cfg.levels.iter().find(|&&d| !range.contains(d)) {
        return Err(CompareError::Invalid(format!(
            "difficulty {bad} is outside the env's range {}..={}",
            range.min, range.max
        )));
    }
    let mut cells = Vec::new();
    let mut problems: Vec<AnyEnv> = Vec::with_capacity(cfg.episodes);
    let mut budget_free = Vec::new();
    for (ai, spec) in cfg.searchers.iter().enumerate() {
        let uses_budget = spec.entry()?.uses_budget;
        let budgets: &[usize] = if uses_budget {
            &cfg.budgets
        } else {
            budget_free.push(spec.name.clone());
            &cfg.budgets[..1]
        };
        for &budget in budgets {
            for &d in &cfg.levels {
                let level_seed = derive_seed(cfg.seed, d as usize);
                problems.clear();
                for j in 0..cfg.episodes {
                    let mut e = env.clone();
                    let mut rng = EnvRng::seed_from_u64(derive_seed(level_seed, j));
                    e.reset(&mut rng, d)?;
                    problems.push(e);
                }
                let before = tokens(evaluator);
                let start = Instant::now();
                let mut evals = 0u64;
                for (ci, chunk) in problems.chunks_mut(cfg.batch_size).enumerate() {
                    let s = derive_seed(
                        derive_seed(derive_seed(level_seed ^ SEARCH_SALT, ai), budget),
                        ci,
                    );
                    let mut rng = EnvRng::seed_from_u64(s);
                    evals += play(spec, budget, cfg, chunk, evaluator, &mut rng)?;
                }
                let seconds = start.elapsed().as_secs_f64();
                let spent = before
                    .zip(tokens(evaluator))
                    .map(|((d0, e0), (d1, e1))| (d1.saturating_sub(d0), e1.saturating_sub(e0)));
                let correct: Vec<bool> = problems
                    .iter()
                    .map(|e| e.info().solved == Some(true))
                    .collect();
                let cell = CompareCell {
                    searcher: spec.name.clone(),
                    budget,
                    budget_free: !uses_budget,
                    difficulty: d,
                    problems: problems.len(),
                    solved: correct.iter().filter(|&&c| c).count(),
                    correct,
                    evals,
                    decoder_tokens: spent.map(|s| s.0),
                    encoder_tokens: spent.map(|s| s.1),
                    seconds,
                };
                progress(&cell);
                cells.push(cell);
            }
        }
    }
    let order = |name: &str| cfg.searchers.iter().position(|s| s.name == name);
    cells.sort_by_key(|c| (order(&c.searcher), c.budget, c.difficulty));
    Ok(CompareReport {
        cells,
        budget_free,
        value: cfg.value,
        seed: cfg.seed,
        resamples: cfg.resamples,
    })
}

/// A difference in points, signed: `+4.7`.
fn pts(x: f64) -> String {
    format!("{:+.1}", 100.0 * x)
}

/// An interval of differences in points: `[+3.1, +6.3]`.
fn interval_pts((lo, hi): (f64, f64)) -> String {
    format!("[{}, {}]", pts(lo), pts(hi))
}

/// An accuracy with its interval in percent: `71.5 [68.6, 74.2]`.
fn acc_text(acc: f64, (lo, hi): (f64, f64)) -> String {
    format!("{:.1} [{:.1}, {:.1}]", 100.0 * acc, 100.0 * lo, 100.0 * hi)
}

/// A p-value, floored where more digits mean nothing.
fn p_text(p: f64) -> String {
    if p < 1e-4 {
        "<1e-4".into()
    } else {
        format!("{p:.4}")
    }
}

/// A p-value after `p`: `=0.0123` or `<1e-4`.
fn p_rel(p: f64) -> String {
    let t = p_text(p);
    if t.starts_with('<') {
        t
    } else {
        format!("={t}")
    }
}

/// FNV-1a of `s`: a seed that depends on the compared pair, not on the order of calls.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl CompareReport {
    /// The searchers present, in table order.
    pub fn searchers(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.cells.iter().map(|c| c.searcher.as_str()).collect();
        v.dedup();
        v
    }

    /// Whether `searcher` ran once, whatever the budget.
    fn is_budget_free(&self, searcher: &str) -> bool {
        self.budget_free.iter().any(|s| s == searcher)
    }

    /// The budgets present, ascending.
    pub fn budgets(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.cells.iter().map(|c| c.budget).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The levels present, ascending.
    pub fn levels(&self) -> Vec<Difficulty> {
        let mut v: Vec<Difficulty> = self.cells.iter().map(|c| c.difficulty).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The cell of `searcher` at `budget` and level `d`; a budget-free searcher's one cell of
    /// the level whatever `budget`.
    pub fn get(&self, searcher: &str, budget: usize, d: Difficulty) -> Option<&CompareCell> {
        let free = self.is_budget_free(searcher);
        self.cells
            .iter()
            .find(|c| c.searcher == searcher && (free || c.budget == budget) && c.difficulty == d)
    }

    /// Mean accuracy over the levels of `searcher` at `budget` (any budget for a budget-free
    /// searcher).
    pub fn mean_accuracy(&self, searcher: &str, budget: usize) -> Option<f64> {
        let v: Vec<f64> = self
            .levels()
            .into_iter()
            .filter_map(|d| self.get(searcher, budget, d))
            .map(CompareCell::accuracy)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// Every arm, in table order: a budget-free searcher once, the others at each budget.
    pub fn arms(&self) -> Vec<Arm> {
        let budgets = self.budgets();
        let mut arms = Vec::new();
        for s in self.searchers() {
            if self.is_budget_free(s) {
                arms.push(Arm {
                    searcher: s.to_string(),
                    budget: None,
                });
                continue;
            }
            for &b in &budgets {
                if self.cells.iter().any(|c| c.searcher == s && c.budget == b) {
                    arms.push(Arm {
                        searcher: s.to_string(),
                        budget: Some(b),
                    });
                }
            }
        }
        arms
    }

    /// The cell of `arm` at level `d`.
    pub fn cell(&self, arm: &Arm, d: Difficulty) -> Option<&CompareCell> {
        self.cells
            .iter()
            .find(|c| c.difficulty == d && in_arm(c, arm))
    }

    /// `arm`'s cells at `level`, or all its levels pooled when `level` is `None`.
    pub fn pooled(&self, arm: &Arm, level: Option<Difficulty>) -> Option<Pooled> {
        let mut p = Pooled {
            problems: 0,
            solved: 0,
            evals: 0,
            tokens: Some(0),
            seconds: 0.0,
        };
        let mut any = false;
        for c in self.cells.iter().filter(|c| in_arm(c, arm)) {
            if level.is_some_and(|d| d != c.difficulty) {
                continue;
            }
            any = true;
            p.problems += c.problems;
            p.solved += c.solved;
            p.evals += c.evals;
            p.seconds += c.seconds;
            p.tokens = p
                .tokens
                .zip(c.decoder_tokens.zip(c.encoder_tokens))
                .map(|(t, (d, e))| t + d + e);
        }
        any.then_some(p)
    }

    /// The arm every other is compared with: greedy when present, else the first budget-free
    /// searcher.
    pub fn reference(&self) -> Option<Arm> {
        let name = if self.is_budget_free("greedy") && self.searchers().contains(&"greedy") {
            "greedy"
        } else {
            self.searchers()
                .into_iter()
                .find(|s| self.is_budget_free(s))?
        };
        Some(Arm {
            searcher: name.to_string(),
            budget: None,
        })
    }

    /// `a` minus `b` on the same problems, at `level` or over all levels (the bootstrap then
    /// resamples within each level); `None` when either arm lacks a level the other has.
    pub fn paired(&self, a: &Arm, b: &Arm, level: Option<Difficulty>) -> Option<Paired> {
        let mut strata = Vec::new();
        for d in self.levels() {
            if level.is_some_and(|l| l != d) {
                continue;
            }
            match (self.cell(a, d), self.cell(b, d)) {
                (Some(x), Some(y)) => {
                    strata.push(stats::PairCounts::from_correct(&x.correct, &y.correct)?)
                }
                (None, None) => {}
                _ => return None,
            }
        }
        if strata.is_empty() {
            return None;
        }
        let counts = strata
            .iter()
            .fold(stats::PairCounts::default(), |s, &c| s + c);
        let key = format!("{a}|{b}|{level:?}");
        let seed = derive_seed(self.seed ^ BOOTSTRAP_SALT, fnv(&key) as usize);
        Some(Paired {
            a: a.clone(),
            b: b.clone(),
            difficulty: level,
            counts,
            diff: counts.diff(),
            interval: stats::paired_bootstrap(&strata, self.resamples, ALPHA, seed),
            p: stats::mcnemar_exact(counts.a_only, counts.b_only),
        })
    }

    /// The evaluator calls per problem (all levels) that compute ratios are relative to: the
    /// reference's, else the least any arm spent.
    fn unit_compute(&self) -> Option<f64> {
        if let Some(r) = self.reference() {
            if let Some(p) = self.pooled(&r, None) {
                if p.evals > 0 {
                    return Some(p.evals_per_problem());
                }
            }
        }
        self.arms()
            .iter()
            .filter_map(|a| self.pooled(a, None))
            .map(|p| p.evals_per_problem())
            .filter(|&e| e > 0.0)
            .min_by(f64::total_cmp)
    }

    /// `arm`'s evaluator calls per problem over the reference's (all levels).
    pub fn compute_ratio(&self, arm: &Arm) -> Option<f64> {
        let unit = self.unit_compute()?;
        Some(self.pooled(arm, None)?.evals_per_problem() / unit)
    }

    /// The best arm (pooled accuracy, then least compute) among those that spent at most
    /// `max_ratio` times the reference's evaluator calls, against the reference.
    pub fn best_within(&self, max_ratio: f64) -> Option<Paired> {
        let reference = self.reference()?;
        let unit = self.unit_compute()?;
        let best = self
            .arms()
            .into_iter()
            .filter(|a| *a != reference)
            .filter_map(|a| {
                let p = self.pooled(&a, None)?;
                // A hair of slack: 16x is 16x even after a float division.
                (p.evals_per_problem() <= max_ratio * unit * (1.0 + 1e-9)).then_some((a, p))
            })
            // `max_by` keeps the last of equals: reversed, ties go to the first in table order.
            .rev()
            .max_by(|(_, x), (_, y)| {
                x.accuracy()
                    .total_cmp(&y.accuracy())
                    .then(y.evals.cmp(&x.evals))
            })?;
        self.paired(&best.0, &reference, None)
    }

    /// The compute levels of the arms (see the module doc), lowest first.
    pub fn compute_levels(&self) -> Vec<ComputeLevel> {
        let Some(unit) = self.unit_compute() else {
            return Vec::new();
        };
        let reference = self.reference();
        // (level exponent, distance to the level in log2, arm, pooled, ratio)
        let mut placed: Vec<(i32, f64, Arm, Pooled, f64)> = Vec::new();
        for arm in self.arms() {
            let Some(p) = self.pooled(&arm, None) else {
                continue;
            };
            if p.evals == 0 {
                continue;
            }
            let ratio = p.evals_per_problem() / unit;
            let m = ratio.log2().round() as i32;
            let dist = (ratio.log2() - f64::from(m)).abs();
            // One arm per searcher and level: the closest to the level.
            if let Some(old) = placed
                .iter_mut()
                .find(|x| x.0 == m && x.2.searcher == arm.searcher)
            {
                if dist < old.1 {
                    *old = (m, dist, arm, p, ratio);
                }
                continue;
            }
            placed.push((m, dist, arm, p, ratio));
        }
        let mut exps: Vec<i32> = placed.iter().map(|x| x.0).collect();
        exps.sort_unstable();
        exps.dedup();
        exps.into_iter()
            .map(|m| {
                let mut members: Vec<(Arm, Pooled, f64)> = placed
                    .iter()
                    .filter(|x| x.0 == m)
                    .map(|x| (x.2.clone(), x.3.clone(), x.4))
                    .collect();
                members.sort_by(|x, y| {
                    y.1.accuracy()
                        .total_cmp(&x.1.accuracy())
                        .then(x.1.evals.cmp(&y.1.evals))
                });
                let versus = members
                    .iter()
                    .skip(1)
                    .filter_map(|o| self.paired(&members[0].0, &o.0, None))
                    .collect();
                let ratio = 2f64.powi(m);
                ComputeLevel {
                    ratio,
                    members,
                    versus,
                    best_so_far: reference.as_ref().and_then(|_| self.best_within(ratio)),
                }
            })
            .collect()
    }

    /// The paired verdicts as text: per compute level, the best arm against each other arm
    /// of the level and whether the data support naming a best one; then the best arm at or
    /// below the level's compute against the reference.
    pub fn verdicts(&self) -> String {
        let mut out = String::new();
        let levels = self.levels();
        let n: usize = self
            .reference()
            .or_else(|| self.arms().into_iter().next())
            .and_then(|a| self.pooled(&a, None))
            .map_or(0, |p| p.problems);
        out.push_str(&format!(
            "paired verdicts over all {} difficulties ({n} problems per arm): 95% paired \
             bootstrap intervals ({} resamples, within each difficulty) and McNemar's exact \
             test; significant = interval excludes 0 and p < 0.05\n",
            levels.len(),
            self.resamples
        ));
        let reference = self.reference();
        let unit = self.unit_compute().unwrap_or(1.0);
        let rel = reference
            .as_ref()
            .map_or("the least compute".to_string(), |r| format!("{r}'s"));
        for level in self.compute_levels() {
            out.push_str(&format!(
                "~{}x {rel} compute ({:.1} evaluator calls per problem):\n",
                level.ratio,
                level.ratio * unit
            ));
            let (best, bp, br) = &level.members[0];
            out.push_str(&format!(
                "  best: {best} {} ({br:.2}x, {:.1} calls)\n",
                acc_text(bp.accuracy(), bp.interval()),
                bp.evals_per_problem()
            ));
            for (v, (arm, _, r)) in level.versus.iter().zip(&level.members[1..]) {
                out.push_str(&format!(
                    "    vs {arm} ({r:.2}x): {} {}\n",
                    v.describe(),
                    if v.significant() {
                        "-> better"
                    } else {
                        "-> no significant difference"
                    }
                ));
            }
            let tied: Vec<String> = level
                .versus
                .iter()
                .filter(|v| !v.significant())
                .map(|v| v.b.to_string())
                .collect();
            let verdict = if level.members.len() == 1 {
                format!("only {best} at this compute")
            } else if level.clear_winner() {
                format!("{best} is the best at this compute")
            } else {
                format!(
                    "no significant difference between {best} and {}",
                    tied.join(", ")
                )
            };
            out.push_str(&format!("  verdict: {verdict}\n"));
            if let Some(b) = &level.best_so_far {
                out.push_str(&format!(
                    "  best at <= {}x {rel} compute: {} vs {}: {}{}\n",
                    level.ratio,
                    b.a,
                    b.b,
                    b.describe(),
                    if b.significant() {
                        ""
                    } else {
                        " (no significant difference)"
                    }
                ));
            }
        }
        out
    }

    /// The header of the table (levels as `d<level>`).
    fn header(&self) -> Vec<String> {
        let mut h = vec![
            "searcher".to_string(),
            "budget".to_string(),
            "evals/problem".to_string(),
        ];
        let reference = self.reference();
        if let Some(r) = &reference {
            h.push(format!("x {r}"));
        }
        h.push("ms/problem".into());
        if self.cells.iter().any(|c| c.decoder_tokens.is_some()) {
            h.push("tokens/problem".into());
        }
        h.extend(self.levels().iter().map(|d| format!("d{d}")));
        h.push("mean".into());
        if let Some(r) = &reference {
            h.push(format!("vs {r}"));
            h.push("p".into());
        }
        h
    }

    /// Rows of the table, one per arm: compute (evaluator calls, ratio to the reference, wall
    /// time, tokens), accuracy (%) with its 95% interval per level and over all levels, and
    /// the paired difference to the reference over all levels.
    fn rows(&self) -> Vec<Vec<String>> {
        let levels = self.levels();
        let reference = self.reference();
        let tokens = self.cells.iter().any(|c| c.decoder_tokens.is_some());
        let mut rows = Vec::new();
        for arm in self.arms() {
            let Some(all) = self.pooled(&arm, None) else {
                continue;
            };
            let mut row = vec![
                arm.searcher.clone(),
                arm.budget.map_or("-".into(), |b| b.to_string()),
                format!("{:.1}", all.evals_per_problem()),
            ];
            if reference.is_some() {
                row.push(
                    self.compute_ratio(&arm)
                        .map_or("-".into(), |r| format!("{r:.2}")),
                );
            }
            row.push(format!("{:.2}", all.ms_per_problem()));
            if tokens {
                row.push(
                    all.tokens_per_problem()
                        .map_or("-".into(), |t| format!("{t:.0}")),
                );
            }
            for &d in &levels {
                row.push(
                    self.cell(&arm, d)
                        .map_or("-".into(), |c| acc_text(c.accuracy(), c.interval())),
                );
            }
            row.push(acc_text(all.accuracy(), all.interval()));
            if let Some(r) = &reference {
                match self.paired(&arm, r, None).filter(|_| arm != *r) {
                    Some(p) => {
                        row.push(format!("{} {}", pts(p.diff), interval_pts(p.interval)));
                        row.push(p_text(p.p));
                    }
                    None => row.extend(["-".to_string(), "-".to_string()]),
                }
            }
            rows.push(row);
        }
        rows
    }

    /// A plain-text table, one row per arm (a budget-free searcher once): compute spent per
    /// problem, accuracy (%) with 95% Wilson intervals per level and over all levels, and the
    /// paired difference to the reference (points, 95% bootstrap interval, McNemar's p):
    ///
    /// ```text
    /// searcher  budget  evals/problem  x greedy  ms/problem  tokens/problem                 d1  ...               mean             vs greedy       p
    /// greedy         -            4.6      1.00        0.09              15  97.2 [96.0, 98.1]  ...  73.0 [71.6, 74.3]                     -       -
    /// gumbel         4           17.7      3.88        0.42              70  99.7 [99.1, 99.9]  ...  94.8 [94.1, 95.4]  +21.8 [+20.6, +23.1]   <1e-4
    /// ```
    pub fn table(&self) -> String {
        let header = self.header();
        let rows = self.rows();
        let widths: Vec<usize> = (0..header.len())
            .map(|j| {
                rows.iter()
                    .map(|r| r[j].len())
                    .chain([header[j].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (j, c) in cells.iter().enumerate() {
                if j == 0 {
                    s.push_str(&format!("{:<w$}", c, w = widths[0]));
                } else {
                    s.push_str(&format!("  {:>w$}", c, w = widths[j]));
                }
            }
            s.push('\n');
            s
        };
        let mut out = line(&header);
        for r in &rows {
            out.push_str(&line(r));
        }
        out
    }

    /// The table as markdown (for TensorBoard's text tab and notes).
    pub fn markdown(&self) -> String {
        let header = self.header();
        let h: Vec<&str> = header.iter().map(String::as_str).collect();
        markdown_table(&h, &self.rows())
    }

    /// CSV, one line per cell (a budget-free searcher once per level, its `budget` empty):
    /// `searcher,budget,difficulty,problems,solved,accuracy,evals_per_problem,seconds`, then
    /// `accuracy_lo95,accuracy_hi95` (Wilson), `evals` (in all), `ms_per_problem`,
    /// `decoder_tokens_per_problem,encoder_tokens_per_problem` (empty when not counted) and
    /// `budget_free`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "searcher,budget,difficulty,problems,solved,accuracy,evals_per_problem,seconds,\
             accuracy_lo95,accuracy_hi95,evals,ms_per_problem,decoder_tokens_per_problem,\
             encoder_tokens_per_problem,budget_free\n",
        );
        let per = |t: Option<u64>, n: usize| {
            t.map_or(String::new(), |t| {
                format!("{:.3}", t as f64 / n.max(1) as f64)
            })
        };
        for c in &self.cells {
            let (lo, hi) = c.interval();
            out.push_str(&format!(
                "{},{},{},{},{},{:.6},{:.3},{:.3},{:.6},{:.6},{},{:.4},{},{},{}\n",
                c.searcher,
                if c.budget_free {
                    String::new()
                } else {
                    c.budget.to_string()
                },
                c.difficulty,
                c.problems,
                c.solved,
                c.accuracy(),
                c.evals_per_problem(),
                c.seconds,
                lo,
                hi,
                c.evals,
                c.ms_per_problem(),
                per(c.decoder_tokens, c.problems),
                per(c.encoder_tokens, c.problems),
                c.budget_free
            ));
        }
        out
    }

    /// CSV of the paired comparisons, one line each: every arm against the reference per
    /// level and over all levels (`kind = reference`), and the arms of each compute level
    /// pairwise over all levels (`kind = matched`). `difficulty` is `all` for pooled rows;
    /// `diff` and its interval are in accuracy units (0.05 = 5 points).
    pub fn paired_csv(&self) -> String {
        let mut out = String::from(
            "kind,a,a_budget,b,b_budget,difficulty,problems,a_evals_per_problem,\
             b_evals_per_problem,a_accuracy,b_accuracy,diff,diff_lo95,diff_hi95,a_only,b_only,\
             mcnemar_p,significant\n",
        );
        let mut line = |kind: &str, p: &Paired| {
            let level = p.difficulty;
            let (Some(pa), Some(pb)) = (self.pooled(&p.a, level), self.pooled(&p.b, level)) else {
                return;
            };
            out.push_str(&format!(
                "{kind},{},{},{},{},{},{},{:.3},{:.3},{:.6},{:.6},{:.6},{:.6},{:.6},{},{},{:.6e},{}\n",
                p.a.searcher,
                p.a.budget.map_or(String::new(), |b| b.to_string()),
                p.b.searcher,
                p.b.budget.map_or(String::new(), |b| b.to_string()),
                level.map_or("all".to_string(), |d| d.to_string()),
                p.counts.n,
                pa.evals_per_problem(),
                pb.evals_per_problem(),
                pa.accuracy(),
                pb.accuracy(),
                p.diff,
                p.interval.0,
                p.interval.1,
                p.counts.a_only,
                p.counts.b_only,
                p.p,
                p.significant()
            ));
        };
        if let Some(r) = self.reference() {
            let levels = self.levels();
            for arm in self.arms().into_iter().filter(|a| *a != r) {
                for level in levels.iter().map(|&d| Some(d)).chain([None]) {
                    if let Some(p) = self.paired(&arm, &r, level) {
                        line("reference", &p);
                    }
                }
            }
        }
        for level in self.compute_levels() {
            for (i, (a, _, _)) in level.members.iter().enumerate() {
                for (b, _, _) in &level.members[i + 1..] {
                    if let Some(p) = self.paired(a, b, None) {
                        line("matched", &p);
                    }
                }
            }
        }
        out
    }

    /// CSV of per-problem correctness, one line per cell: `searcher,budget,difficulty,
    /// problems,correct` with `correct` a string of `0`/`1`, problem `j` at position `j`
    /// (the same problem in every cell of the level), for analyses of one's own.
    pub fn problems_csv(&self) -> String {
        let mut out = String::from("searcher,budget,difficulty,problems,correct\n");
        for c in &self.cells {
            let bits: String = c
                .correct
                .iter()
                .map(|&b| if b { '1' } else { '0' })
                .collect();
            out.push_str(&format!(
                "{},{},{},{},{}\n",
                c.searcher,
                if c.budget_free {
                    String::new()
                } else {
                    c.budget.to_string()
                },
                c.difficulty,
                c.problems,
                bits
            ));
        }
        out
    }

    /// Writes [`to_csv`](Self::to_csv) to `path`.
    pub fn write_csv(&self, path: &Path) -> Result<(), CompareError> {
        write_file(path, &self.to_csv())
    }

    /// Writes `compare.csv` ([`to_csv`](Self::to_csv)), `paired.csv`
    /// ([`paired_csv`](Self::paired_csv)) and `problems.csv`
    /// ([`problems_csv`](Self::problems_csv)) into `dir`; returns their paths.
    pub fn write_csvs(&self, dir: &Path) -> Result<Vec<PathBuf>, CompareError> {
        let files = [
            ("compare.csv", self.to_csv()),
            ("paired.csv", self.paired_csv()),
            ("problems.csv", self.problems_csv()),
        ];
        let mut paths = Vec::new();
        for (name, text) in files {
            let path = dir.join(name);
            write_file(&path, &text)?;
            paths.push(path);
        }
        Ok(paths)
    }

    /// Writes to TensorBoard, per searcher (a budget-free one at every budget, as a flat
    /// reference), with the nominal budget as the step: `search/accuracy/<searcher>/d<level>`
    /// and `.../mean`, `search/accuracy_lo95/...` and `search/accuracy_hi95/...`,
    /// `search/evals_per_problem/<searcher>`, `search/ms_per_problem/<searcher>` and
    /// `search/vs_<reference>/<searcher>` (paired difference, all levels); with the measured
    /// evaluator calls per problem (rounded) as the step, `search/accuracy_by_evals/<searcher>`;
    /// and the table and verdicts as text under `search/table` and `search/verdicts`.
    pub fn log(&self, logger: &mut Logger) -> Result<(), LogError> {
        let reference = self.reference();
        let budgets = self.budgets();
        for arm in self.arms() {
            let algo = arm.searcher.as_str();
            let steps: Vec<usize> = match arm.budget {
                Some(b) => vec![b],
                None => budgets.clone(),
            };
            let Some(all) = self.pooled(&arm, None) else {
                continue;
            };
            let vs = reference
                .as_ref()
                .filter(|r| **r != arm)
                .and_then(|r| self.paired(&arm, r, None));
            for &b in &steps {
                let step = b as u64;
                for d in self.levels() {
                    if let Some(c) = self.cell(&arm, d) {
                        let (lo, hi) = c.interval();
                        logger.scalar(
                            &format!("search/accuracy/{algo}/d{d}"),
                            c.accuracy(),
                            step,
                        )?;
                        logger.scalar(&format!("search/accuracy_lo95/{algo}/d{d}"), lo, step)?;
                        logger.scalar(&format!("search/accuracy_hi95/{algo}/d{d}"), hi, step)?;
                    }
                }
                let (lo, hi) = all.interval();
                logger.scalar(
                    &format!("search/accuracy/{algo}/mean"),
                    all.accuracy(),
                    step,
                )?;
                logger.scalar(&format!("search/accuracy_lo95/{algo}/mean"), lo, step)?;
                logger.scalar(&format!("search/accuracy_hi95/{algo}/mean"), hi, step)?;
                logger.scalar(
                    &format!("search/evals_per_problem/{algo}"),
                    all.evals_per_problem(),
                    step,
                )?;
                logger.scalar(
                    &format!("search/ms_per_problem/{algo}"),
                    all.ms_per_problem(),
                    step,
                )?;
                if let (Some(r), Some(p)) = (&reference, &vs) {
                    logger.scalar(&format!("search/vs_{}/{algo}", r.searcher), p.diff, step)?;
                }
            }
            logger.scalar(
                &format!("search/accuracy_by_evals/{algo}"),
                all.accuracy(),
                all.evals_per_problem().round() as u64,
            )?;
        }
        logger.text("search/table", &self.markdown(), 0)?;
        logger.text(
            "search/verdicts",
            &format!("```\n{}```\n", self.verdicts()),
            0,
        )?;
        logger.flush()
    }

    /// Draws accuracy (%) against measured evaluator calls per problem (log scale), one panel
    /// per level and one for all levels, into a PNG at `path`: each budgeted searcher a line
    /// with its own colour and marker through its arms, each point labelled with its nominal
    /// budget and carrying its 95% Wilson interval as a bar; each budget-free searcher (greedy)
    /// a dashed horizontal line at its accuracy over a shaded band of its interval, with a
    /// marker at its own compute. One legend for all panels, under them.
    pub fn plot(&self, path: &Path, title: &str) -> Result<(), CompareError> {
        use plotters::element::DashedPathElement;
        use plotters::prelude::*;
        let perr = |e: &dyn fmt::Display| CompareError::Plot {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let levels = self.levels();
        let algos = self.searchers();
        let arms = self.arms();
        let mut panels: Vec<(String, Option<Difficulty>)> = levels
            .iter()
            .map(|&d| (format!("difficulty {d}"), Some(d)))
            .collect();
        panels.push(("all difficulties".into(), None));
        let cols = panels.len().min(3);
        let rows = panels.len().div_ceil(cols);
        let legend_h = 64u32;
        let (w, h) = (460 * cols as u32, 380 * rows as u32 + 44 + legend_h);
        let root = BitMapBackend::new(path, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| perr(&e))?;
        let root = root
            .titled(title, ("sans-serif", 22))
            .map_err(|e| perr(&e))?;
        let (grid, legend) = root.split_vertically(root.dim_in_pixel().1 - legend_h);
        // Colour-blind-safe (Okabe-Ito), greedy first in dark grey.
        let palette = [
            RGBColor(0x33, 0x33, 0x33),
            RGBColor(0x00, 0x72, 0xb2),
            RGBColor(0xe6, 0x9f, 0x00),
            RGBColor(0x00, 0x9e, 0x73),
            RGBColor(0xd5, 0x5e, 0x00),
            RGBColor(0xcc, 0x79, 0xa7),
            RGBColor(0x56, 0xb4, 0xe9),
            RGBColor(0xf0, 0xe4, 0x42),
        ];
        let color_of = |algo: &str| {
            let i = algos.iter().position(|&a| a == algo).unwrap_or(0);
            palette[i % palette.len()]
        };
        let marker_of = |algo: &str| algos.iter().position(|&a| a == algo).unwrap_or(0) % 5;
        // One marker per searcher at `$at`, bound to `$e` for `$body`: circle, triangle,
        // square, diamond, cross (one type per shape, hence a macro and not a function).
        macro_rules! with_marker {
            ($at:expr, $kind:expr, $color:expr, |$e:ident| $body:expr) => {{
                let s = 5;
                let fill = $color.filled();
                match $kind {
                    0 => {
                        let $e = EmptyElement::at($at) + Circle::new((0, 0), s, fill);
                        $body
                    }
                    1 => {
                        let $e = EmptyElement::at($at) + TriangleMarker::new((0, 0), s + 1, fill);
                        $body
                    }
                    2 => {
                        let $e = EmptyElement::at($at)
                            + Rectangle::new([(-s + 1, -s + 1), (s - 1, s - 1)], fill);
                        $body
                    }
                    3 => {
                        let $e = EmptyElement::at($at)
                            + Polygon::new(vec![(0, -s - 1), (s, 0), (0, s + 1), (-s, 0)], fill);
                        $body
                    }
                    _ => {
                        let $e =
                            EmptyElement::at($at) + Cross::new((0, 0), s, $color.stroke_width(2));
                        $body
                    }
                }
            }};
        }
        let areas = grid.split_evenly((rows, cols));
        for (area, (name, level)) in areas.iter().zip(&panels) {
            // (arm, evals/problem, accuracy, lo, hi), accuracy in %.
            let pts: Vec<(&Arm, f64, f64, f64, f64)> = arms
                .iter()
                .filter_map(|a| {
                    let p = self.pooled(a, *level)?;
                    let (lo, hi) = p.interval();
                    Some((
                        a,
                        p.evals_per_problem().max(1e-3),
                        100.0 * p.accuracy(),
                        100.0 * lo,
                        100.0 * hi,
                    ))
                })
                .collect();
            if pts.is_empty() {
                continue;
            }
            let xs = pts.iter().map(|p| p.1.log2());
            let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(x), b.max(x))
            });
            let pad = ((x1 - x0) * 0.06).max(0.35);
            let (x0, x1) = (x0 - pad, x1 + pad);
            let y_lo = pts.iter().map(|p| p.3).fold(f64::INFINITY, f64::min);
            let y_hi = pts.iter().map(|p| p.4).fold(f64::NEG_INFINITY, f64::max);
            let margin = ((y_hi - y_lo) * 0.08).max(1.0);
            let (y0, y1) = ((y_lo - margin).max(0.0), (y_hi + margin).min(100.0));
            let mut chart = ChartBuilder::on(area)
                .caption(name, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(52)
                // x = log2(evaluator calls per problem), labelled with the calls.
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| perr(&e))?;
            chart
                .configure_mesh()
                .x_desc("evaluator calls per problem (measured, log scale)")
                .y_desc("accuracy (%)")
                .x_labels(((x1 - x0).round() as usize + 1).clamp(3, 10))
                .x_label_formatter(&|x| {
                    let v = 2f64.powf(*x);
                    if v >= 10.0 || (v - v.round()).abs() < 0.05 {
                        format!("{v:.0}")
                    } else {
                        format!("{v:.1}")
                    }
                })
                .y_label_formatter(&|y| format!("{y:.0}"))
                .light_line_style(WHITE.mix(0.0))
                .bold_line_style(BLACK.mix(0.08))
                .draw()
                .map_err(|e| perr(&e))?;
            for algo in &algos {
                let color = color_of(algo);
                let mine: Vec<_> = pts.iter().filter(|p| p.0.searcher == *algo).collect();
                if self.is_budget_free(algo) {
                    for p in &mine {
                        chart
                            .draw_series([Rectangle::new(
                                [(x0, p.3), (x1, p.4)],
                                color.mix(0.12).filled(),
                            )])
                            .map_err(|e| perr(&e))?;
                        chart
                            .draw_series(DashedLineSeries::new(
                                [(x0, p.2), (x1, p.2)],
                                8,
                                5,
                                color.stroke_width(2),
                            ))
                            .map_err(|e| perr(&e))?;
                    }
                } else {
                    chart
                        .draw_series(LineSeries::new(
                            mine.iter().map(|p| (p.1.log2(), p.2)),
                            color.stroke_width(2),
                        ))
                        .map_err(|e| perr(&e))?;
                    for p in &mine {
                        let x = p.1.log2();
                        let cap = 0.04 * (x1 - x0);
                        let st = color.stroke_width(1);
                        chart
                            .draw_series([
                                PathElement::new(vec![(x, p.3), (x, p.4)], st),
                                PathElement::new(vec![(x - cap, p.3), (x + cap, p.3)], st),
                                PathElement::new(vec![(x - cap, p.4), (x + cap, p.4)], st),
                            ])
                            .map_err(|e| perr(&e))?;
                    }
                }
                for p in &mine {
                    with_marker!((p.1.log2(), p.2), marker_of(algo), color, |m| chart
                        .draw_series([m])
                        .map_err(|e| perr(&e))?);
                }
                chart
                    .draw_series(mine.iter().filter_map(|p| {
                        let k = p.0.budget?;
                        Some(
                            EmptyElement::at((p.1.log2(), p.2))
                                + Text::new(
                                    format!("{k}"),
                                    (6, -16),
                                    ("sans-serif", 12).into_font().color(&color),
                                ),
                        )
                    }))
                    .map_err(|e| perr(&e))?;
            }
        }
        // One legend for every panel.
        let (lw, _) = legend.dim_in_pixel();
        let slot = ((lw as i32 - 40) / algos.len().max(1) as i32).min(180);
        for (i, algo) in algos.iter().enumerate() {
            let color = color_of(algo);
            let x = 20 + slot * i as i32;
            let y = 16;
            if self.is_budget_free(algo) {
                legend
                    .draw(&DashedPathElement::new(
                        [(x, y), (x + 30, y)],
                        6,
                        4,
                        color.stroke_width(2),
                    ))
                    .map_err(|e| perr(&e))?;
            } else {
                legend
                    .draw(&PathElement::new(
                        vec![(x, y), (x + 30, y)],
                        color.stroke_width(2),
                    ))
                    .map_err(|e| perr(&e))?;
            }
            with_marker!((x + 15, y), marker_of(algo), color, |m| legend
                .draw(&m)
                .map_err(|e| perr(&e))?);
            legend
                .draw(&Text::new(
                    algo.to_string(),
                    (x + 38, y - 8),
                    ("sans-serif", 16).into_font(),
                ))
                .map_err(|e| perr(&e))?;
        }
        let note = match self.reference() {
            Some(r) => format!(
                "numbers by the points: nominal budget k; bars and band: 95% Wilson intervals; \
                 dashed: {r} (budget-free) as a reference"
            ),
            None => "numbers by the points: nominal budget k; bars: 95% Wilson intervals".into(),
        };
        legend
            .draw(&Text::new(note, (20, 36), ("sans-serif", 14).into_font()))
            .map_err(|e| perr(&e))?;
        root.present().map_err(|e| perr(&e))?;
        Ok(())
    }
}

/// `cell` is one of `arm`'s (a budget-free searcher's cells belong to its one arm).
fn in_arm(cell: &CompareCell, arm: &Arm) -> bool {
    cell.searcher == arm.searcher && (cell.budget_free || Some(cell.budget) == arm.budget)
}

fn write_file(path: &Path, text: &str) -> Result<(), CompareError> {
    std::fs::write(path, text).map_err(|source| CompareError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::stats::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn wilson_matches_hand_computed_intervals() {
        // 8 of 10: p = 0.8, z^2 = 3.8415; centre (0.8 + 0.19207) / 1.38415 = 0.71681,
        // half-width 1.96 * sqrt(0.016 + 0.0096037) / 1.38415 = 0.22658.
        let (lo, hi) = wilson(8, 10, Z95);
        assert!(
            close(lo, 0.49016, 1e-4) && close(hi, 0.94333, 1e-4),
            "{lo} {hi}"
        );
        // 0 of 10: [0, z^2 / (n + z^2)] = [0, 3.8415 / 13.8415].
        let (lo, hi) = wilson(0, 10, Z95);
        assert!(lo == 0.0 && close(hi, 0.27753, 1e-4), "{lo} {hi}");
        // 10 of 10 mirrors it.
        let (lo, hi) = wilson(10, 10, Z95);
        assert!(close(lo, 1.0 - 0.27753, 1e-4) && hi == 1.0, "{lo} {hi}");
        // 500 of 1000: 0.5 -+ 1.96 * sqrt(0.25 / 1000 + 3.8415 / 4e6) / 1.0038415.
        let (lo, hi) = wilson(500, 1000, Z95);
        assert!(
            close(lo, 0.46907, 1e-4) && close(hi, 0.53093, 1e-4),
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 0, Z95), (0.0, 1.0));
    }

    #[test]
    fn mcnemar_matches_hand_computed_p_values() {
        // 20 vs 5 discordant: 2 * sum_{i<=5} C(25, i) / 2^25
        // = 2 * (1 + 25 + 300 + 2300 + 12650 + 53130) / 33554432 = 0.0040773.
        assert!(close(mcnemar_exact(20, 5), 0.004_077_3, 1e-7));
        assert!(close(mcnemar_exact(5, 20), 0.004_077_3, 1e-7));
        // 6 vs 0: 2 / 2^6.
        assert!(close(mcnemar_exact(6, 0), 0.031_25, 1e-12));
        // 5 vs 0: 2 / 32 = 0.0625, not significant although every discordant pair agrees.
        assert!(close(mcnemar_exact(0, 5), 0.0625, 1e-12));
        assert_eq!(mcnemar_exact(1, 1), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // Thousands of discordant pairs stay finite: 1100 vs 900 is z = 4.47, p ~ 8e-6.
        let p = mcnemar_exact(1100, 900);
        assert!(p > 5e-6 && p < 1.2e-5, "{p}");
    }

    #[test]
    fn pair_counts_count_discordant_problems() {
        let a = [true, true, false, false, true];
        let b = [true, false, true, false, false];
        let c = PairCounts::from_correct(&a, &b).unwrap();
        assert_eq!(
            c,
            PairCounts {
                n: 5,
                a_only: 2,
                b_only: 1
            }
        );
        assert!(close(c.diff(), 0.2, 1e-12));
        assert!(PairCounts::from_correct(&a, &b[..4]).is_none());
    }

    #[test]
    fn paired_bootstrap_matches_degenerate_cases_and_the_normal_approximation() {
        let one = |n, a, b| PairCounts {
            n,
            a_only: a,
            b_only: b,
        };
        // No discordant problem: the difference is exactly 0 in every resample.
        assert_eq!(
            paired_bootstrap(&[one(50, 0, 0)], 2000, 0.05, 1),
            (0.0, 0.0)
        );
        // a right and b wrong on every problem: exactly +1.
        assert_eq!(
            paired_bootstrap(&[one(30, 30, 0)], 2000, 0.05, 1),
            (1.0, 1.0)
        );
        // n = 100, 20 vs 5: d = 0.15, se = sqrt((0.25 - 0.0225) / 100) = 0.0477, so about
        // [0.0565, 0.2435]; the percentile bootstrap lands within a point of it.
        let (lo, hi) = paired_bootstrap(&[one(100, 20, 5)], 2000, 0.05, 7);
        assert!(
            close(lo, 0.0565, 0.012) && close(hi, 0.2435, 0.012),
            "{lo} {hi}"
        );
        // Same seed, same interval; two strata of 50 with the same rates, about the same.
        assert_eq!(
            paired_bootstrap(&[one(100, 20, 5)], 2000, 0.05, 7),
            (lo, hi)
        );
        let (slo, shi) = paired_bootstrap(&[one(50, 10, 3), one(50, 10, 2)], 2000, 0.05, 7);
        assert!(
            close(slo, 0.0565, 0.015) && close(shi, 0.2435, 0.015),
            "{slo} {shi}"
        );
        // One resample: both ends are that resample.
        let (a, b) = paired_bootstrap(&[one(10, 3, 1)], 1, 0.05, 3);
        assert_eq!(a, b);
    }
}
