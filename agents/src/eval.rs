//! Evaluation: accuracy per difficulty on fresh problems, greedy and sampled, with the
//! agreement of the agent's chains with the oracle's, chain lengths and entropies, and a
//! few rendered examples.
//!
//! Problem `j` of level `d` is drawn from `derive_seed(derive_seed(seed, d), j)`: the same
//! seed gives the same problems (greedy and sampled modes play the same ones), and the
//! Runner's evaluation seed is salted apart from its training streams, so evaluation
//! problems are fresh. Test-time acting never reads the answer: the oracle is consulted only
//! to score agreement after the episode.

use envs::{derive_seed, Difficulty, Env, EnvRng};
use rand::SeedableRng;

use crate::act::ActMode;
use crate::agent::Agent;
use crate::error::AgentError;
use crate::logging::{markdown_table, LogError, Logger};
use crate::rollout::{oracle_policy, Lockstep};

pub use crate::config::EvalConfig;

/// Results at one difficulty level in one acting mode.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelResult {
    /// The difficulty.
    pub difficulty: Difficulty,
    /// Greedy or sampled.
    pub mode: ActMode,
    /// Problems played.
    pub episodes: usize,
    /// Problems solved.
    pub solved: usize,
    /// Mean over problems of the fraction of the oracle's chain tokens the agent's chain
    /// reproduces at the same position (NaN when no problem has an oracle chain).
    pub chain_agreement: f64,
    /// Fraction of episodes whose whole action sequence equals the oracle's.
    pub oracle_match: f64,
    /// Mean chain length (tokens before the ANSWER marker; the episode length for envs
    /// without one).
    pub mean_chain_len: f64,
    /// Mean entropy (nats) of the policy over chain steps.
    pub chain_entropy: f64,
    /// Every episode's chain length, for a histogram.
    pub chain_lengths: Vec<f64>,
    /// Every chain step's entropy, for a histogram.
    pub token_entropies: Vec<f64>,
    /// Rendered examples: (input, chain, answer, target, verdict) for CoT envs, else the
    /// env's rendering in the first cell.
    pub examples: Vec<[String; 5]>,
}

impl LevelResult {
    /// Fraction solved.
    pub fn accuracy(&self) -> f64 {
        self.solved as f64 / self.episodes.max(1) as f64
    }
}

/// An evaluation over several levels and modes.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// One entry per (level, mode), levels ascending, greedy before sampled.
    pub results: Vec<LevelResult>,
    /// The seed the problems were drawn from.
    pub seed: u64,
}

impl EvalReport {
    /// The result at `difficulty` in `mode`.
    pub fn get(&self, difficulty: Difficulty, mode: ActMode) -> Option<&LevelResult> {
        self.results
            .iter()
            .find(|r| r.difficulty == difficulty && r.mode == mode)
    }

    /// Accuracy at `difficulty` in `mode`.
    pub fn accuracy(&self, difficulty: Difficulty, mode: ActMode) -> Option<f64> {
        self.get(difficulty, mode).map(LevelResult::accuracy)
    }

    /// Mean accuracy over the levels in `mode` (NaN when the mode was not evaluated).
    pub fn mean_accuracy(&self, mode: ActMode) -> f64 {
        let v: Vec<f64> = self
            .results
            .iter()
            .filter(|r| r.mode == mode)
            .map(LevelResult::accuracy)
            .collect();
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    }

    /// The levels evaluated, ascending.
    pub fn levels(&self) -> Vec<Difficulty> {
        let mut v: Vec<Difficulty> = self.results.iter().map(|r| r.difficulty).collect();
        v.dedup();
        v
    }

    /// A plain-text table, one row per level:
    ///
    /// ```text
    /// difficulty  problems   greedy  sampled  agreement  chain len
    ///          1      1000   100.0%    99.9%     100.0%       1.00
    /// ```
    ///
    /// `agreement` and `chain len` are the greedy chains'; a mode that was not evaluated
    /// shows `-`.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:>10}  {:>8}  {:>7}  {:>7}  {:>9}  {:>9}\n",
            "difficulty", "problems", "greedy", "sampled", "agreement", "chain len"
        );
        let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v));
        for d in self.levels() {
            let g = self.get(d, ActMode::Greedy);
            let s = self.get(d, ActMode::Sample);
            let n = g.or(s).map_or(0, |r| r.episodes);
            let agreement = g.map(|r| r.chain_agreement).filter(|x| x.is_finite());
            let len = g.map_or("-".to_string(), |r| format!("{:.2}", r.mean_chain_len));
            out.push_str(&format!(
                "{:>10}  {:>8}  {:>7}  {:>7}  {:>9}  {:>9}\n",
                d,
                n,
                pct(g.map(LevelResult::accuracy)),
                pct(s.map(LevelResult::accuracy)),
                pct(agreement),
                len
            ));
        }
        out
    }

    /// Writes the report to TensorBoard and `metrics.jsonl` at `step`:
    /// `eval/accuracy/<mode>/d<level>` and `.../mean`, `eval/chain_agreement/...`,
    /// `eval/oracle_match/...`, `charts/chain_length/...`, `charts/chain_entropy/...`,
    /// histograms `charts/chain_lengths/<mode>` and `charts/token_entropy/<mode>` over all
    /// levels, and a markdown table of examples per mode under `examples/<mode>`.
    pub fn log(&self, logger: &mut Logger, step: u64) -> Result<(), LogError> {
        for r in &self.results {
            let (m, d) = (r.mode.tag(), r.difficulty);
            logger.scalar(&format!("eval/accuracy/{m}/d{d}"), r.accuracy(), step)?;
            if r.chain_agreement.is_finite() {
                logger.scalar(
                    &format!("eval/chain_agreement/{m}/d{d}"),
                    r.chain_agreement,
                    step,
                )?;
            }
            logger.scalar(&format!("eval/oracle_match/{m}/d{d}"), r.oracle_match, step)?;
            logger.scalar(
                &format!("charts/chain_length/{m}/d{d}"),
                r.mean_chain_len,
                step,
            )?;
            logger.scalar(
                &format!("charts/chain_entropy/{m}/d{d}"),
                r.chain_entropy,
                step,
            )?;
        }
        for mode in [ActMode::Greedy, ActMode::Sample] {
            let rs: Vec<&LevelResult> = self.results.iter().filter(|r| r.mode == mode).collect();
            if rs.is_empty() {
                continue;
            }
            let m = mode.tag();
            logger.scalar(
                &format!("eval/accuracy/{m}/mean"),
                self.mean_accuracy(mode),
                step,
            )?;
            let lengths: Vec<f64> = rs
                .iter()
                .flat_map(|r| r.chain_lengths.iter().copied())
                .collect();
            logger.histogram(&format!("charts/chain_lengths/{m}"), &lengths, step)?;
            let ent: Vec<f64> = rs
                .iter()
                .flat_map(|r| r.token_entropies.iter().copied())
                .collect();
            logger.histogram(&format!("charts/token_entropy/{m}"), &ent, step)?;
            let rows: Vec<Vec<String>> = rs
                .iter()
                .flat_map(|r| {
                    r.examples.iter().map(move |e| {
                        let mut row = vec![r.difficulty.to_string()];
                        row.extend(e.iter().cloned());
                        row
                    })
                })
                .collect();
            if !rows.is_empty() {
                let table = markdown_table(
                    &["difficulty", "input", "chain", "answer", "target", "result"],
                    &rows,
                );
                logger.text(&format!("examples/{m}"), &table, step)?;
            }
        }
        Ok(())
    }
}

/// Where a CoT env's observation keeps its input, and its ANSWER action.
struct CotView {
    input: std::ops::Range<usize>,
    answer_action: usize,
}

fn cot_view<E: Env>(env: &E) -> Option<CotView> {
    let spec = env.spec();
    let input = spec.obs.token_field("input")?;
    spec.obs.token_field("emitted")?;
    Some(CotView {
        input: input.offset..input.offset + input.len,
        answer_action: spec.num_actions - 1,
    })
}

fn join(tokens: &[usize], answer_action: usize) -> String {
    tokens
        .iter()
        .map(|&t| {
            if t == answer_action {
                "|".to_string()
            } else {
                t.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The actions of episode `i` of `ep`.
fn episode_actions(ep: &crate::agent::Episodes, i: usize) -> Vec<usize> {
    (0..ep.lengths[i])
        .map(|k| ep.actions[[i, k]] as usize)
        .collect()
}

/// Running sums of one (level, mode) cell of the report.
struct Tally {
    result: LevelResult,
    with_oracle_chain: usize,
    entropy_sum: f64,
}

impl Tally {
    fn new(difficulty: Difficulty, mode: ActMode) -> Self {
        Tally {
            result: LevelResult {
                difficulty,
                mode,
                episodes: 0,
                solved: 0,
                chain_agreement: 0.0,
                oracle_match: 0.0,
                mean_chain_len: 0.0,
                chain_entropy: 0.0,
                chain_lengths: Vec::new(),
                token_entropies: Vec::new(),
                examples: Vec::new(),
            },
            with_oracle_chain: 0,
            entropy_sum: 0.0,
        }
    }

    /// Scores one episode: its actions and per-step entropies, whether it was solved, and
    /// the oracle's actions when the env has an oracle.
    fn add(
        &mut self,
        cot: Option<&CotView>,
        actions: &[usize],
        entropies: &[f32],
        solved: bool,
        oracle: Option<&[usize]>,
    ) {
        let chain_len = |a: &[usize]| match cot {
            Some(c) => a
                .iter()
                .position(|&x| x == c.answer_action)
                .unwrap_or(a.len()),
            None => a.len(),
        };
        let r = &mut self.result;
        let len = chain_len(actions);
        r.episodes += 1;
        r.solved += usize::from(solved);
        r.chain_lengths.push(len as f64);
        r.mean_chain_len += len as f64;
        for &h in &entropies[..len] {
            r.token_entropies.push(f64::from(h));
            self.entropy_sum += f64::from(h);
        }
        if let Some(oracle) = oracle {
            let olen = chain_len(oracle);
            if olen > 0 {
                // Only the agent's own chain tokens count (not its answer tokens).
                let same = (0..olen.min(len))
                    .filter(|&k| actions[k] == oracle[k])
                    .count();
                r.chain_agreement += same as f64 / olen as f64;
                self.with_oracle_chain += 1;
            }
            r.oracle_match += f64::from(u8::from(actions == oracle));
        }
    }

    fn finish(mut self) -> LevelResult {
        let r = &mut self.result;
        let n = r.episodes.max(1) as f64;
        let steps: f64 = r.chain_lengths.iter().sum();
        r.chain_entropy = if steps > 0.0 {
            self.entropy_sum / steps
        } else {
            0.0
        };
        r.mean_chain_len /= n;
        r.oracle_match /= n;
        r.chain_agreement = if self.with_oracle_chain > 0 {
            r.chain_agreement / self.with_oracle_chain as f64
        } else {
            f64::NAN
        };
        self.result
    }
}

/// Plays `episodes` fresh problems at each of `levels` in each of `modes` with `agent` and
/// scores them; see the module doc for the seeding.
pub fn evaluate<E: Env, A: Agent>(
    env: &E,
    agent: &mut A,
    levels: &[Difficulty],
    cfg: &EvalConfig,
    seed: u64,
    modes: &[ActMode],
) -> Result<EvalReport, AgentError> {
    let cot = cot_view(env);
    let mut results = Vec::with_capacity(levels.len() * modes.len());
    let mut batch = Lockstep::new(env, 0);
    for &d in levels {
        let level_seed = derive_seed(seed, d as usize);
        let mut tallies: Vec<Tally> = modes.iter().map(|&m| Tally::new(d, m)).collect();
        let mut start = 0;
        while start < cfg.episodes {
            let n = (cfg.episodes - start).min(cfg.batch_size);
            batch.resize(env, n);
            batch.reset_with(|i, e| {
                let mut rng = EnvRng::seed_from_u64(derive_seed(level_seed, start + i));
                e.reset(&mut rng, d)
            })?;
            let roots: Vec<E> = batch.envs().to_vec();
            // Only for scoring, after the fact; envs without an oracle score accuracy only.
            let oracle = batch.run(oracle_policy::<E>, false).ok();
            for (tally, &mode) in tallies.iter_mut().zip(modes) {
                batch.reset_with(|i, e| {
                    *e = roots[i].clone();
                    Ok(())
                })?;
                let mode_seed = derive_seed(level_seed ^ SAMPLE_SALT, mode as usize);
                let mut rng = EnvRng::seed_from_u64(derive_seed(mode_seed, start));
                let ep = batch.run(|obs, _| agent.act(obs, mode, &mut rng), false)?;
                for (i, root) in roots.iter().enumerate() {
                    let actions = episode_actions(&ep, i);
                    let entropies: Vec<f32> =
                        (0..actions.len()).map(|k| ep.entropies[[i, k]]).collect();
                    let oracle_actions = oracle.as_ref().map(|o| episode_actions(o, i));
                    tally.add(
                        cot.as_ref(),
                        &actions,
                        &entropies,
                        ep.solved[i],
                        oracle_actions.as_deref(),
                    );
                    if tally.result.examples.len() < cfg.examples {
                        tally.result.examples.push(example(
                            root,
                            cot.as_ref(),
                            &actions,
                            oracle_actions.as_deref().unwrap_or(&[]),
                            ep.solved[i],
                            &batch.envs()[i],
                        ));
                    }
                }
            }
            start += n;
        }
        results.extend(tallies.into_iter().map(Tally::finish));
    }
    Ok(EvalReport { results, seed })
}

/// Salt of the action-sampling seeds of sampled evaluation.
const SAMPLE_SALT: u64 = 0x5a4d_504c_0000_0004;

/// One example row: input, chain, answer, target and verdict for a CoT env; for other envs
/// the final rendering in the first cell.
fn example<E: Env>(
    root: &E,
    cot: Option<&CotView>,
    actions: &[usize],
    oracle: &[usize],
    solved: bool,
    end: &E,
) -> [String; 5] {
    let verdict = if solved { "solved" } else { "wrong" }.to_string();
    match cot {
        Some(c) => {
            let obs = root.observation();
            let input = obs.tokens[c.input.clone()]
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(" ");
            let split = |a: &[usize]| match a.iter().position(|&x| x == c.answer_action) {
                Some(m) => (
                    join(&a[..m], c.answer_action),
                    join(&a[m + 1..], c.answer_action),
                ),
                None => (join(a, c.answer_action), String::new()),
            };
            let (chain, answer) = split(actions);
            let (ochain, oanswer) = split(oracle);
            let target = format!("{ochain} | {oanswer}");
            [input, chain, answer, target, verdict]
        }
        None => [
            end.render(),
            String::new(),
            String::new(),
            String::new(),
            verdict,
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(d: Difficulty, mode: ActMode, solved: usize, agreement: f64) -> LevelResult {
        LevelResult {
            difficulty: d,
            mode,
            episodes: 1000,
            solved,
            chain_agreement: agreement,
            oracle_match: 0.0,
            mean_chain_len: d as f64,
            chain_entropy: 0.0,
            chain_lengths: Vec::new(),
            token_entropies: Vec::new(),
            examples: Vec::new(),
        }
    }

    #[test]
    fn the_table_has_one_row_per_level_with_both_modes() {
        let report = EvalReport {
            results: vec![
                level(1, ActMode::Greedy, 1000, 1.0),
                level(1, ActMode::Sample, 999, 0.99),
                level(5, ActMode::Greedy, 905, 0.9),
                level(5, ActMode::Sample, 850, f64::NAN),
            ],
            seed: 3,
        };
        let expected = "\
difficulty  problems   greedy  sampled  agreement  chain len
         1      1000   100.0%    99.9%     100.0%       1.00
         5      1000    90.5%    85.0%      90.0%       5.00
";
        assert_eq!(report.table(), expected);
        assert_eq!(report.accuracy(5, ActMode::Sample), Some(0.85));
        assert!((report.mean_accuracy(ActMode::Greedy) - 0.9525).abs() < 1e-12);
    }

    #[test]
    fn a_mode_not_evaluated_shows_a_dash() {
        let report = EvalReport {
            results: vec![level(2, ActMode::Greedy, 500, f64::NAN)],
            seed: 0,
        };
        let row = report.table().lines().nth(1).unwrap().to_string();
        assert_eq!(
            row,
            "         2      1000    50.0%        -          -       2.00"
        );
        assert!(report.mean_accuracy(ActMode::Sample).is_nan());
    }
}
