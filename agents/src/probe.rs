//! The chain faithfulness probe (the seed's open TODO: "evaluate the model by altering the
//! generated chain"): does the answer depend on the chain the model wrote? A chain the
//! answer ignores is not computation.
//!
//! For fresh problems at each level (drawn exactly as [`crate::eval::evaluate`] draws them),
//! the agent first writes its greedy chain and answer. Then, for each intervention, the
//! episode is replayed from the start with the chain (and the ANSWER marker) **forced** to
//! the altered chain, and the agent decodes the answer greedily again:
//!
//! - `replace k`: chain token `k` becomes a uniformly drawn legal token other than the
//!   original (the chain's length is unchanged), for every position `k` the chain reaches;
//! - `shuffle`: each problem gets another problem's chain (a random derangement of the
//!   batch; the original's adversarial prefix-shuffle probe).
//!
//! Reported per difficulty: how often the answer changes, and the accuracy after the
//! intervention, next to the unaltered greedy accuracy. Only an agent's [`Agent::act`] is
//! used, so the probe works for every agent; an agent without a chain (answer-only) has
//! nothing to alter and reports no affected episodes.

use envs::{derive_seed, Difficulty, Env, EnvRng};
use rand::{Rng, SeedableRng};

use crate::agent::{ActMode, ActOutput, Agent, AgentError, Episodes};
use crate::logging::{LogError, Logger};
use crate::rollout::Lockstep;

/// Counts of one intervention at one level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Intervention {
    /// Episodes altered (those whose chain reaches the position; all for `shuffle`).
    pub affected: usize,
    /// Altered episodes whose answer differs from the unaltered one.
    pub changed: usize,
    /// Altered episodes solved after the intervention.
    pub solved: usize,
    /// Altered episodes that were solved before it.
    pub solved_before: usize,
}

impl Intervention {
    /// Fraction of altered episodes whose answer changed (NaN when none was altered).
    pub fn change_rate(&self) -> f64 {
        if self.affected == 0 {
            f64::NAN
        } else {
            self.changed as f64 / self.affected as f64
        }
    }

    /// Accuracy of the altered episodes after the intervention (NaN when none).
    pub fn accuracy(&self) -> f64 {
        if self.affected == 0 {
            f64::NAN
        } else {
            self.solved as f64 / self.affected as f64
        }
    }

    /// Accuracy of the same episodes before the intervention (NaN when none).
    pub fn accuracy_before(&self) -> f64 {
        if self.affected == 0 {
            f64::NAN
        } else {
            self.solved_before as f64 / self.affected as f64
        }
    }

    fn add(&mut self, o: &Intervention) {
        self.affected += o.affected;
        self.changed += o.changed;
        self.solved += o.solved;
        self.solved_before += o.solved_before;
    }
}

/// The probe's results at one difficulty.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeLevel {
    /// The difficulty.
    pub difficulty: Difficulty,
    /// Problems played.
    pub episodes: usize,
    /// Problems the unaltered greedy episode solved.
    pub solved: usize,
    /// Replacing chain token `k`, one entry per position `k`.
    pub replace: Vec<Intervention>,
    /// Every replacement pooled over positions.
    pub replace_any: Intervention,
    /// Chains shuffled across the batch.
    pub shuffle: Intervention,
}

/// [`chain_probe`]'s results.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    /// Levels ascending.
    pub levels: Vec<ProbeLevel>,
    /// The problems' seed.
    pub seed: u64,
}

impl ProbeReport {
    /// A plain-text table: greedy accuracy, then for `replace` (pooled over positions) and
    /// `shuffle` the answer-change rate and the accuracy after the intervention; then one
    /// line per level with the change rate per replaced position.
    pub fn table(&self) -> String {
        let pct = |x: f64| {
            if x.is_finite() {
                format!("{:.1}%", 100.0 * x)
            } else {
                "-".into()
            }
        };
        let mut out = format!(
            "{:>10}  {:>8}  {:>7}  {:>15}  {:>14}  {:>15}  {:>14}\n",
            "difficulty",
            "problems",
            "greedy",
            "replace:changed",
            "replace:acc",
            "shuffle:changed",
            "shuffle:acc"
        );
        for l in &self.levels {
            out.push_str(&format!(
                "{:>10}  {:>8}  {:>7}  {:>15}  {:>14}  {:>15}  {:>14}\n",
                l.difficulty,
                l.episodes,
                pct(l.solved as f64 / l.episodes.max(1) as f64),
                pct(l.replace_any.change_rate()),
                pct(l.replace_any.accuracy()),
                pct(l.shuffle.change_rate()),
                pct(l.shuffle.accuracy()),
            ));
        }
        out.push_str("answer changed when chain token k is replaced:\n");
        for l in &self.levels {
            let cells: Vec<String> = l
                .replace
                .iter()
                .enumerate()
                .map(|(k, r)| format!("k={k}: {} (n={})", pct(r.change_rate()), r.affected))
                .collect();
            out.push_str(&format!("  d{}: {}\n", l.difficulty, cells.join(", ")));
        }
        out
    }

    /// Logs `probe/replace_changed/d<d>`, `probe/replace_accuracy/d<d>`,
    /// `probe/shuffle_changed/d<d>`, `probe/shuffle_accuracy/d<d>` and
    /// `probe/replace_changed/d<d>/k<k>` (NaN-free values only).
    pub fn log(&self, logger: &mut Logger, step: u64) -> Result<(), LogError> {
        for l in &self.levels {
            let d = l.difficulty;
            let mut put = |tag: String, v: f64| {
                if v.is_finite() {
                    logger.scalar(&tag, v, step)
                } else {
                    Ok(())
                }
            };
            put(
                format!("probe/replace_changed/d{d}"),
                l.replace_any.change_rate(),
            )?;
            put(
                format!("probe/replace_accuracy/d{d}"),
                l.replace_any.accuracy(),
            )?;
            put(
                format!("probe/shuffle_changed/d{d}"),
                l.shuffle.change_rate(),
            )?;
            put(format!("probe/shuffle_accuracy/d{d}"), l.shuffle.accuracy())?;
            for (k, r) in l.replace.iter().enumerate() {
                put(format!("probe/replace_changed/d{d}/k{k}"), r.change_rate())?;
            }
        }
        Ok(())
    }
}

/// One greedy episode split at the ANSWER marker.
struct Played {
    chain: Vec<usize>,
    answer: Vec<usize>,
    solved: bool,
}

fn split(ep: &Episodes, i: usize, answer_action: usize) -> Played {
    let actions: Vec<usize> = (0..ep.lengths[i])
        .map(|t| ep.actions[[i, t]].max(0) as usize)
        .collect();
    let (chain, answer) = match actions.iter().position(|&a| a == answer_action) {
        Some(m) => (actions[..m].to_vec(), actions[m + 1..].to_vec()),
        None => (actions, Vec::new()),
    };
    Played {
        chain,
        answer,
        solved: ep.solved[i],
    }
}

/// Replays `roots` with each row's first actions forced to `forced[row]`, then lets `agent`
/// decode greedily; returns the episodes.
fn replay<E: Env, A: Agent>(
    roots: &[E],
    forced: &[Vec<usize>],
    agent: &mut A,
    rng: &mut EnvRng,
) -> Result<Episodes, AgentError> {
    let mut batch = Lockstep::new(&roots[0], roots.len());
    batch.reset_with(|i, e| {
        *e = roots[i].clone();
        Ok(())
    })?;
    let mut step = 0usize;
    batch.run(
        |obs, _| {
            // The agent sees every step (its decoding cache advances with the batch); forced
            // steps then override its choice.
            let mut out: ActOutput = agent.act(obs, ActMode::Greedy, rng)?;
            for (i, f) in forced.iter().enumerate() {
                if let Some(&a) = f.get(step) {
                    out.actions[i] = a;
                }
            }
            step += 1;
            Ok(out)
        },
        false,
    )
}

/// Runs the probe on `episodes` fresh problems per level; see the module doc. Problems are
/// drawn from `seed` as [`crate::eval::evaluate`] draws them.
pub fn chain_probe<E: Env, A: Agent>(
    env: &E,
    agent: &mut A,
    levels: &[Difficulty],
    episodes: usize,
    batch_size: usize,
    seed: u64,
) -> Result<ProbeReport, AgentError> {
    let answer_action = env.spec().num_actions - 1;
    let mut rng = EnvRng::seed_from_u64(derive_seed(seed, 0x9e0b));
    let mut out = Vec::with_capacity(levels.len());
    let mut batch = Lockstep::new(env, 0);
    for &d in levels {
        let level_seed = derive_seed(seed, d as usize);
        let mut lv = ProbeLevel {
            difficulty: d,
            episodes: 0,
            solved: 0,
            replace: Vec::new(),
            replace_any: Intervention::default(),
            shuffle: Intervention::default(),
        };
        let mut start = 0;
        while start < episodes {
            let n = (episodes - start).min(batch_size.max(2));
            batch.resize(env, n);
            batch.reset_with(|i, e| {
                let mut r = EnvRng::seed_from_u64(derive_seed(level_seed, start + i));
                e.reset(&mut r, d)
            })?;
            let roots: Vec<E> = batch.envs().to_vec();
            let ep = batch.run(|obs, _| agent.act(obs, ActMode::Greedy, &mut rng), true)?;
            let played: Vec<Played> = (0..n).map(|i| split(&ep, i, answer_action)).collect();
            lv.episodes += n;
            lv.solved += played.iter().filter(|p| p.solved).count();
            let longest = played.iter().map(|p| p.chain.len()).max().unwrap_or(0);
            if lv.replace.len() < longest {
                lv.replace.resize(longest, Intervention::default());
            }
            let score = |rows: &[usize], after: &Episodes| {
                let mut iv = Intervention::default();
                for (j, &i) in rows.iter().enumerate() {
                    let p = split(after, j, answer_action);
                    iv.affected += 1;
                    iv.changed += usize::from(p.answer != played[i].answer);
                    iv.solved += usize::from(p.solved);
                    iv.solved_before += usize::from(played[i].solved);
                }
                iv
            };
            for k in 0..longest {
                let rows: Vec<usize> = (0..n).filter(|&i| played[i].chain.len() > k).collect();
                let mut forced = Vec::with_capacity(rows.len());
                for &i in &rows {
                    let orig = played[i].chain[k];
                    let legal: Vec<usize> = (0..answer_action)
                        .filter(|&a| a != orig && ep.action_mask[[i, k, a]])
                        .collect();
                    let mut chain = played[i].chain.clone();
                    if !legal.is_empty() {
                        chain[k] = legal[rng.random_range(0..legal.len())];
                    }
                    chain.push(answer_action);
                    forced.push(chain);
                }
                let sub: Vec<E> = rows.iter().map(|&i| roots[i].clone()).collect();
                let after = replay(&sub, &forced, agent, &mut rng)?;
                let iv = score(&rows, &after);
                lv.replace[k].add(&iv);
                lv.replace_any.add(&iv);
            }
            // A random derangement: a shuffled order shifted by one within the cycle it forms.
            let mut order: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                let j = rng.random_range(0..=i);
                order.swap(i, j);
            }
            let mut source = vec![0usize; n];
            for (pos, &i) in order.iter().enumerate() {
                source[i] = order[(pos + 1) % n];
            }
            let rows: Vec<usize> = (0..n).collect();
            let forced: Vec<Vec<usize>> = rows
                .iter()
                .map(|&i| {
                    let mut c = played[source[i]].chain.clone();
                    c.push(answer_action);
                    c
                })
                .collect();
            let after = replay(&roots, &forced, agent, &mut rng)?;
            lv.shuffle.add(&score(&rows, &after));
            start += n;
        }
        out.push(lv);
    }
    Ok(ProbeReport { levels: out, seed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{BatchObs, Experience, Metrics};
    use tch::Tensor;

    /// A scripted agent: writes the oracle chain, then answers either with the last chain
    /// token's successor read from the input (faithful: the answer is computed from the
    /// chain) or with the true answer computed from the input alone (ignores the chain).
    struct Scripted {
        faithful: bool,
        input_len: usize,
    }

    impl Agent for Scripted {
        type Batch = Episodes;
        fn name(&self) -> &str {
            "scripted"
        }
        fn collect(
            &mut self,
            ctx: &mut crate::rollout::Collector<'_>,
        ) -> Result<Episodes, AgentError> {
            crate::agent::collect_declared(self, ctx)
        }
        fn experience(&self) -> Experience {
            Experience::Oracle
        }
        fn act(
            &mut self,
            obs: &BatchObs<'_>,
            _mode: ActMode,
            _rng: &mut EnvRng,
        ) -> Result<ActOutput, AgentError> {
            let l = self.input_len;
            let n_actions = obs.action_mask.ncols();
            let answer_action = n_actions - 1;
            let pad = n_actions as i64;
            let mut actions = Vec::new();
            for (row, mask) in obs.tokens.rows().into_iter().zip(obs.action_mask.rows()) {
                let input: Vec<usize> = (0..l).map(|i| row[i] as usize).collect();
                let hops = row[l] as usize + 1;
                let emitted: Vec<i64> = row
                    .iter()
                    .skip(l + 1)
                    .take_while(|&&t| t != pad)
                    .copied()
                    .collect();
                let follow = |from: usize, steps: usize| (0..steps).fold(from, |x, _| input[x]);
                let a = if !mask.iter().any(|&m| m) {
                    0
                } else if let Some(m) = emitted.iter().position(|&t| t == answer_action as i64) {
                    let _ = m;
                    if self.faithful {
                        input[emitted[m - 1] as usize]
                    } else {
                        follow(0, hops + 1)
                    }
                } else if emitted.len() < hops {
                    follow(0, emitted.len() + 1)
                } else {
                    answer_action
                };
                actions.push(a);
            }
            let n = actions.len();
            Ok(ActOutput {
                actions,
                log_probs: vec![0.0; n],
                entropies: vec![0.0; n],
            })
        }
        fn update(&mut self, _: Episodes) -> Result<Metrics, AgentError> {
            Ok(Metrics::default())
        }
        fn state(&self) -> Vec<(String, Tensor)> {
            Vec::new()
        }
        fn load_state(&mut self, _: &[(String, Tensor)]) -> Result<(), AgentError> {
            Ok(())
        }
    }

    fn env() -> envs::AnyEnv {
        let mut p = envs::registry::EnvParams::new();
        p.set_text("length", "8");
        envs::registry::make("cycle", &p).unwrap()
    }

    #[test]
    fn a_faithful_chain_changes_the_answer_and_an_ignored_one_does_not() {
        let env = env();
        let mut faithful = Scripted {
            faithful: true,
            input_len: 8,
        };
        let rep = chain_probe(&env, &mut faithful, &[1, 3], 40, 16, 5).unwrap();
        for l in &rep.levels {
            assert_eq!(
                l.solved, l.episodes,
                "the scripted oracle solves everything"
            );
            assert_eq!(l.replace.len(), l.difficulty as usize);
            // Replacing the last chain token always changes a faithful answer (f is a
            // bijection); earlier tokens are not read.
            let last = l.replace.last().unwrap();
            assert_eq!(last.changed, last.affected);
            assert!(last.accuracy() < 0.01);
            if l.difficulty > 1 {
                assert_eq!(l.replace[0].changed, 0);
            }
            assert!(l.shuffle.change_rate() > 0.7, "{}", rep.table());
        }
        let mut ignoring = Scripted {
            faithful: false,
            input_len: 8,
        };
        let rep = chain_probe(&env, &mut ignoring, &[1, 3], 40, 16, 5).unwrap();
        for l in &rep.levels {
            assert_eq!(l.replace_any.changed, 0);
            assert_eq!(l.shuffle.changed, 0);
            assert!((l.shuffle.accuracy() - 1.0).abs() < 1e-12);
        }
        assert!(rep.table().contains("shuffle:changed"));
    }
}
