//! Test-time search compared at equal budgets: accuracy per difficulty, per searcher, per
//! budget, over a trained policy ([`PolicyEvaluator`]), as a table, a CSV file, a PNG plot
//! of accuracy against budget and TensorBoard scalars.
//!
//! # Budget
//!
//! One budget `k` means about `k` times greedy decoding's work for every searcher:
//!
//! | searcher | what `k` is | evaluator calls per problem |
//! |---|---|---|
//! | `greedy` | (ignored) | `T` (the chain's length) |
//! | `vote` | chains sampled (temperature 1), majority vote over the answers | `1 + k (T - 1)` |
//! | `beam` | beam width, by log-probability | about `k T` |
//! | `mcts` | evaluator calls per step (one search per action, `k - 1` simulations) | `k T` |
//! | `gumbel` | the same, Gumbel MuZero with Sequential Halving | `k T` |
//!
//! At `k = 1` MCTS and Gumbel take the prior's best action, which is greedy decoding. The
//! CSV records the calls actually spent.
//!
//! # Honesty
//!
//! Searches never read the true answer: the evaluator is the policy (its
//! [`search::Evaluator::reward_use`] is `Ignore`, so no searcher reads env rewards), and the
//! only place the answer is consulted is the scoring of a finished episode
//! (`Info::solved`). Problem `j` of level `d` is the same for every searcher and budget
//! (drawn from `derive_seed(derive_seed(seed, d), j)`, as `factorexe eval` draws them), so
//! differences between cells are paired.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use envs::{derive_seed, Difficulty, Env, EnvError, EnvRng};
use rand::SeedableRng;
use search::{
    AfterAction, Beam, BeamConfig, BeamScore, Greedy, GumbelConfig, GumbelMuZero, Mcts, MctsConfig,
    MixValue, QTransform, Sample, SampleConfig, SampleSelect, SearchError, Searcher,
};

use crate::agent::AgentError;
use crate::logging::{markdown_table, LogError, Logger};
use crate::policy::CotPolicy;
use crate::search_eval::{PolicyEvaluator, ValueSource};

/// Salt of the searchers' random streams.
const SEARCH_SALT: u64 = 0x7365_6172_6368_0007;

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

/// A searcher of the comparison; see the module doc for what a budget means to each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SearchAlgo {
    /// Greedy decoding.
    Greedy,
    /// Sample `k` chains, majority vote over the answers (self-consistency).
    Vote,
    /// Beam search of width `k` by log-probability.
    Beam,
    /// MCTS (PUCT), `k` evaluator calls per step.
    Mcts,
    /// Gumbel MuZero, `k` evaluator calls per step.
    Gumbel,
}

impl SearchAlgo {
    /// Every searcher, in table order.
    pub const ALL: [SearchAlgo; 5] = [
        SearchAlgo::Greedy,
        SearchAlgo::Vote,
        SearchAlgo::Beam,
        SearchAlgo::Mcts,
        SearchAlgo::Gumbel,
    ];

    /// The name used on the command line, in tags and files.
    pub fn name(self) -> &'static str {
        match self {
            SearchAlgo::Greedy => "greedy",
            SearchAlgo::Vote => "vote",
            SearchAlgo::Beam => "beam",
            SearchAlgo::Mcts => "mcts",
            SearchAlgo::Gumbel => "gumbel",
        }
    }

    /// Plays one action per search (MCTS, Gumbel) rather than a whole chain.
    pub fn per_step(self) -> bool {
        matches!(self, SearchAlgo::Mcts | SearchAlgo::Gumbel)
    }
}

impl fmt::Display for SearchAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SearchAlgo {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SearchAlgo::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                format!("unknown searcher `{s}`: expected one of greedy, vote, beam, mcts, gumbel")
            })
    }
}

/// What to compare.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareConfig {
    /// The searchers.
    pub algos: Vec<SearchAlgo>,
    /// The budgets (`>= 1` each).
    pub budgets: Vec<usize>,
    /// The difficulty levels.
    pub levels: Vec<Difficulty>,
    /// Problems per level, `>= 1`.
    pub episodes: usize,
    /// Seed of the problems and of the searchers' randomness.
    pub seed: u64,
    /// Problems searched together (one evaluator batch), `>= 1`.
    pub batch_size: usize,
    /// Where the evaluator takes values from.
    pub value: ValueSource,
    /// Sampling temperature of `vote`, `> 0`.
    pub temperature: f32,
    /// Gumbel's considered root actions.
    pub max_considered: usize,
    /// Take values as probabilities in `[0, 1]` (both value sources are): MCTS normalizes Q
    /// by these bounds and Gumbel does not rescale. Off, Q is min-max normalized over each
    /// node's children (mctx's defaults), which turns the smallest value difference into a
    /// full-scale preference: with a noisy value head, deep searches then chase its noise.
    pub bounded_values: bool,
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            algos: SearchAlgo::ALL.to_vec(),
            budgets: vec![1, 2, 4, 8, 16, 32, 64],
            levels: vec![1, 2, 3],
            episodes: 200,
            seed: 0x5ea7_c400,
            batch_size: 256,
            value: ValueSource::Head,
            temperature: 1.0,
            max_considered: 16,
            bounded_values: true,
        }
    }
}

impl CompareConfig {
    /// Checks that there is something to compare and that the numbers are in range.
    pub fn validate(&self) -> Result<(), CompareError> {
        let bad = |m: String| Err(CompareError::Invalid(m));
        if self.algos.is_empty() {
            return bad("no searcher to compare (--algos)".into());
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
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad(format!("temperature {}: expected > 0", self.temperature));
        }
        if self.max_considered == 0 {
            return bad("max_considered must be >= 1".into());
        }
        Ok(())
    }
}

/// One (searcher, budget, level) result.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareCell {
    /// The searcher.
    pub algo: SearchAlgo,
    /// The budget.
    pub budget: usize,
    /// The difficulty level.
    pub difficulty: Difficulty,
    /// Problems played.
    pub problems: usize,
    /// Problems answered right.
    pub solved: usize,
    /// Evaluator calls spent in all.
    pub evals: u64,
    /// Wall time, seconds (shared by every budget for greedy, which runs once).
    pub seconds: f64,
}

impl CompareCell {
    /// Fraction solved.
    pub fn accuracy(&self) -> f64 {
        self.solved as f64 / self.problems.max(1) as f64
    }

    /// Evaluator calls per problem.
    pub fn evals_per_problem(&self) -> f64 {
        self.evals as f64 / self.problems.max(1) as f64
    }
}

/// The results of [`compare`]: one cell per searcher, budget and level (greedy, which has no
/// budget, is run once and reported at every budget).
#[derive(Debug, Clone, PartialEq)]
pub struct CompareReport {
    /// Cells in (searcher, budget, level) order.
    pub cells: Vec<CompareCell>,
    /// The value source the searches used.
    pub value: ValueSource,
    /// The seed of the problems.
    pub seed: u64,
}

/// Plays `roots` (fresh problems, in place) to the end with `algo` at `budget`; returns the
/// evaluator calls spent. Each finished env's `info().solved` then says whether it was right.
fn play<E: Env>(
    algo: SearchAlgo,
    budget: usize,
    cfg: &CompareConfig,
    envs: &mut [E],
    evaluator: &mut PolicyEvaluator<'_>,
    rng: &mut EnvRng,
) -> Result<u64, CompareError> {
    let Some(first) = envs.first() else {
        return Ok(0);
    };
    let spec = first.spec();
    let max_steps = spec.max_episode_steps;
    let marker = spec.num_actions - 1;
    let mut evals = 0u64;
    if algo.per_step() {
        let mut searcher: Box<dyn Searcher<E> + '_> = match algo {
            SearchAlgo::Mcts => Box::new(Mcts::new(MctsConfig {
                qtransform: if cfg.bounded_values {
                    QTransform::MinMax { min: 0.0, max: 1.0 }
                } else {
                    QTransform::default()
                },
                ..MctsConfig::evaluation()
            })?),
            _ => Box::new(GumbelMuZero::new(GumbelConfig {
                max_num_considered_actions: cfg.max_considered,
                gumbel_scale: 0.0,
                qtransform: MixValue {
                    rescale_values: !cfg.bounded_values,
                    ..MixValue::default()
                },
                ..GumbelConfig::default()
            })?),
        };
        let mut live: Vec<usize> = Vec::with_capacity(envs.len());
        let mut roots: Vec<E> = Vec::with_capacity(envs.len());
        loop {
            live.clear();
            live.extend((0..envs.len()).filter(|&i| !envs[i].is_done()));
            if live.is_empty() {
                break;
            }
            roots.clear();
            roots.extend(live.iter().map(|&i| envs[i].clone()));
            let outs = searcher.search(&roots, evaluator, budget, rng)?;
            for (&i, out) in live.iter().zip(&outs) {
                evals += out.evals as u64;
                envs[i].step(out.actions[0])?;
            }
        }
        return Ok(evals);
    }
    let (mut searcher, search_budget): (Box<dyn Searcher<E> + '_>, usize) = match algo {
        SearchAlgo::Greedy => (Box::new(Greedy::new()), max_steps),
        SearchAlgo::Vote => (
            Box::new(
                Sample::new(SampleConfig {
                    num_samples: budget,
                    temperature: cfg.temperature,
                    select: SampleSelect::Vote,
                })?
                .with_answer(AfterAction(marker)),
            ),
            1 + budget * max_steps,
        ),
        _ => (
            Box::new(Beam::new(BeamConfig {
                width: budget,
                score: BeamScore::LogProb,
            })?),
            1 + budget * max_steps,
        ),
    };
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
/// calling `progress` after each cell.
pub fn compare<E: Env>(
    env: &E,
    policy: &CotPolicy,
    cfg: &CompareConfig,
    mut progress: impl FnMut(&CompareCell),
) -> Result<CompareReport, CompareError> {
    cfg.validate()?;
    let range = env.spec().difficulty;
    if let Some(bad) = cfg.levels.iter().find(|&&d| !range.contains(d)) {
        return Err(CompareError::Invalid(format!(
            "difficulty {bad} is outside the env's range {}..={}",
            range.min, range.max
        )));
    }
    let mut evaluator = PolicyEvaluator::new(policy, cfg.value)?;
    let mut cells = Vec::new();
    let mut problems: Vec<E> = Vec::with_capacity(cfg.episodes);
    for (ai, &algo) in cfg.algos.iter().enumerate() {
        let budgets: Vec<usize> = if algo == SearchAlgo::Greedy {
            vec![cfg.budgets[0]]
        } else {
            cfg.budgets.clone()
        };
        for &budget in &budgets {
            for &d in &cfg.levels {
                let level_seed = derive_seed(cfg.seed, d as usize);
                problems.clear();
                for j in 0..cfg.episodes {
                    let mut e = env.clone();
                    let mut rng = EnvRng::seed_from_u64(derive_seed(level_seed, j));
                    e.reset(&mut rng, d)?;
                    problems.push(e);
                }
                let start = Instant::now();
                let mut evals = 0u64;
                for (ci, chunk) in problems.chunks_mut(cfg.batch_size).enumerate() {
                    let s = derive_seed(
                        derive_seed(derive_seed(level_seed ^ SEARCH_SALT, ai), budget),
                        ci,
                    );
                    let mut rng = EnvRng::seed_from_u64(s);
                    evals += play(algo, budget, cfg, chunk, &mut evaluator, &mut rng)?;
                }
                let solved = problems
                    .iter()
                    .filter(|e| e.info().solved == Some(true))
                    .count();
                let cell = CompareCell {
                    algo,
                    budget,
                    difficulty: d,
                    problems: problems.len(),
                    solved,
                    evals,
                    seconds: start.elapsed().as_secs_f64(),
                };
                progress(&cell);
                cells.push(cell);
            }
        }
        if algo == SearchAlgo::Greedy {
            // Greedy has no budget: its one result stands at every budget.
            let once: Vec<CompareCell> = cells
                .iter()
                .filter(|c| c.algo == SearchAlgo::Greedy)
                .cloned()
                .collect();
            cells.retain(|c| c.algo != SearchAlgo::Greedy);
            for &b in &cfg.budgets {
                cells.extend(once.iter().map(|c| CompareCell {
                    budget: b,
                    ..c.clone()
                }));
            }
        }
    }
    cells.sort_by_key(|c| (c.algo, c.budget, c.difficulty));
    Ok(CompareReport {
        cells,
        value: cfg.value,
        seed: cfg.seed,
    })
}

impl CompareReport {
    /// The searchers present, in table order.
    pub fn algos(&self) -> Vec<SearchAlgo> {
        let mut v: Vec<SearchAlgo> = self.cells.iter().map(|c| c.algo).collect();
        v.dedup();
        v
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

    /// The cell of `algo` at `budget` and level `d`.
    pub fn get(&self, algo: SearchAlgo, budget: usize, d: Difficulty) -> Option<&CompareCell> {
        self.cells
            .iter()
            .find(|c| c.algo == algo && c.budget == budget && c.difficulty == d)
    }

    /// Mean accuracy over the levels of `algo` at `budget`.
    pub fn mean_accuracy(&self, algo: SearchAlgo, budget: usize) -> Option<f64> {
        let v: Vec<f64> = self
            .cells
            .iter()
            .filter(|c| c.algo == algo && c.budget == budget)
            .map(CompareCell::accuracy)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// Rows of the table: searcher, budget (`-` for greedy), accuracy per level, mean,
    /// evaluator calls per problem (mean over levels). Greedy appears once.
    fn rows(&self) -> Vec<Vec<String>> {
        let levels = self.levels();
        let mut rows = Vec::new();
        for algo in self.algos() {
            let budgets = if algo == SearchAlgo::Greedy {
                self.budgets().into_iter().take(1).collect()
            } else {
                self.budgets()
            };
            for b in budgets {
                let mut row = vec![
                    algo.name().to_string(),
                    if algo == SearchAlgo::Greedy {
                        "-".to_string()
                    } else {
                        b.to_string()
                    },
                ];
                let mut evals = Vec::new();
                for &d in &levels {
                    match self.get(algo, b, d) {
                        Some(c) => {
                            row.push(format!("{:.1}", 100.0 * c.accuracy()));
                            evals.push(c.evals_per_problem());
                        }
                        None => row.push("-".into()),
                    }
                }
                row.push(
                    self.mean_accuracy(algo, b)
                        .map_or("-".into(), |m| format!("{:.1}", 100.0 * m)),
                );
                let e = evals.iter().sum::<f64>() / evals.len().max(1) as f64;
                row.push(format!("{e:.1}"));
                rows.push(row);
            }
        }
        rows
    }

    fn header(&self) -> Vec<String> {
        let mut h = vec!["searcher".to_string(), "budget".to_string()];
        h.extend(self.levels().iter().map(|d| format!("d{d}")));
        h.push("mean".into());
        h.push("evals/problem".into());
        h
    }

    /// A plain-text table of accuracy (%) per level, one row per searcher and budget:
    ///
    /// ```text
    /// searcher  budget    d1    d2  mean  evals/problem
    /// greedy         -  98.0  71.5  84.8            4.2
    /// vote           4  99.0  80.0  89.5           14.1
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

    /// CSV, one line per cell:
    /// `searcher,budget,difficulty,problems,solved,accuracy,evals_per_problem,seconds`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "searcher,budget,difficulty,problems,solved,accuracy,evals_per_problem,seconds\n",
        );
        for c in &self.cells {
            out.push_str(&format!(
                "{},{},{},{},{},{:.6},{:.3},{:.3}\n",
                c.algo,
                c.budget,
                c.difficulty,
                c.problems,
                c.solved,
                c.accuracy(),
                c.evals_per_problem(),
                c.seconds
            ));
        }
        out
    }

    /// Writes [`to_csv`](Self::to_csv) to `path`.
    pub fn write_csv(&self, path: &Path) -> Result<(), CompareError> {
        std::fs::write(path, self.to_csv()).map_err(|source| CompareError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes scalars `search/accuracy/<searcher>/d<level>` and `.../mean` and
    /// `search/evals_per_problem/<searcher>` with the budget as the step, and the table as
    /// text under `search/table`.
    pub fn log(&self, logger: &mut Logger) -> Result<(), LogError> {
        for algo in self.algos() {
            for b in self.budgets() {
                let step = b as u64;
                let mut evals = Vec::new();
                for d in self.levels() {
                    if let Some(c) = self.get(algo, b, d) {
                        logger.scalar(
                            &format!("search/accuracy/{algo}/d{d}"),
                            c.accuracy(),
                            step,
                        )?;
                        evals.push(c.evals_per_problem());
                    }
                }
                if let Some(m) = self.mean_accuracy(algo, b) {
                    logger.scalar(&format!("search/accuracy/{algo}/mean"), m, step)?;
                }
                if !evals.is_empty() {
                    let e = evals.iter().sum::<f64>() / evals.len() as f64;
                    logger.scalar(&format!("search/evals_per_problem/{algo}"), e, step)?;
                }
            }
        }
        logger.text("search/table", &self.markdown(), 0)?;
        logger.flush()
    }

    /// Draws accuracy (%) against budget (log scale), one panel per level and one for the
    /// mean, one line per searcher, into a PNG at `path`.
    pub fn plot(&self, path: &Path, title: &str) -> Result<(), CompareError> {
        use plotters::prelude::*;
        let perr = |e: &dyn fmt::Display| CompareError::Plot {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let levels = self.levels();
        let budgets = self.budgets();
        let algos = self.algos();
        // Panels: each level, then the mean.
        let mut panels: Vec<(String, Option<Difficulty>)> = levels
            .iter()
            .map(|&d| (format!("difficulty {d}"), Some(d)))
            .collect();
        panels.push(("mean over difficulties".into(), None));
        let cols = panels.len().min(3);
        let rows = panels.len().div_ceil(cols);
        let (w, h) = (420 * cols as u32, 340 * rows as u32 + 40);
        let root = BitMapBackend::new(path, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| perr(&e))?;
        let root = root
            .titled(title, ("sans-serif", 22))
            .map_err(|e| perr(&e))?;
        let lo = *budgets.first().unwrap_or(&1) as f64;
        let hi = *budgets.last().unwrap_or(&1) as f64;
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else {
            (lo / 2.0, hi * 2.0)
        };
        let palette = [
            RGBColor(0x44, 0x44, 0x44),
            RGBColor(0x1f, 0x77, 0xb4),
            RGBColor(0x2c, 0xa0, 0x2c),
            RGBColor(0xd6, 0x27, 0x28),
            RGBColor(0x94, 0x67, 0xbd),
        ];
        let areas = root.split_evenly((rows, cols));
        for (area, (name, level)) in areas.iter().zip(&panels) {
            let mut chart = ChartBuilder::on(area)
                .caption(name, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(38)
                .y_label_area_size(48)
                // x = log2(budget), labelled with the budget.
                .build_cartesian_2d(lo.log2() - 0.25..hi.log2() + 0.25, 0f64..100f64)
                .map_err(|e| perr(&e))?;
            chart
                .configure_mesh()
                .x_desc("budget (x greedy's evaluator calls)")
                .y_desc("accuracy (%)")
                .x_labels(((hi.log2() - lo.log2()).round() as usize + 1).max(2))
                .x_label_formatter(&|x| format!("{}", 2f64.powf(*x).round()))
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(|e| perr(&e))?;
            for (k, &algo) in algos.iter().enumerate() {
                let color = palette
                    [SearchAlgo::ALL.iter().position(|&a| a == algo).unwrap_or(k) % palette.len()];
                let points: Vec<(f64, f64)> = budgets
                    .iter()
                    .filter_map(|&b| {
                        let acc = match level {
                            Some(d) => self.get(algo, b, *d).map(CompareCell::accuracy),
                            None => self.mean_accuracy(algo, b),
                        };
                        acc.map(|a| ((b as f64).log2(), 100.0 * a))
                    })
                    .collect();
                let style = if algo == SearchAlgo::Greedy {
                    ShapeStyle::from(&color).stroke_width(1)
                } else {
                    ShapeStyle::from(&color).stroke_width(2)
                };
                chart
                    .draw_series(LineSeries::new(points.clone(), style))
                    .map_err(|e| perr(&e))?
                    .label(algo.name())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| perr(&e))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| perr(&e))?;
        }
        root.present().map_err(|e| perr(&e))?;
        Ok(())
    }
}
