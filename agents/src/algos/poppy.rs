//! `Poppy`: a population of `K` policies trained so that, together, they cover the problems
//! (Grinsztajn et al. 2023, "Winner takes it all").
//!
//! **Members.** The `K` members share the whole transformer (encoder, decoder, heads) and
//! differ by a learned **member embedding** (`poppy.members`, `[K, width]`) appended to the
//! encoder memory as one extra row that the decoder cross-attends to, like a prompt token.
//! This is the cheapest conditioning that lets members write different chains for the same
//! input while every member benefits from what the shared weights learn; `K` separate decoder
//! heads would multiply the decoder's parameters by `K` for no gain at this model size.
//!
//! **Training.** Each update draws `train.batch_size` problems and lets every member sample
//! one episode of each (row `g*K + k` is member `k` on problem `g`), so an update plays
//! `batch_size * K` episodes. With `R` the return (`reward`, below):
//!
//! - phase 1 (the first `phase1_steps` updates, optional): every member learns from its own
//!   sample with the leave-one-out group advantage `R_k - mean_{j != k} R_j` (a single policy
//!   with a group baseline, like POPPY's POMO pre-training), so all members learn the task;
//! - phase 2: only the best member of each problem gets gradient, with advantage
//!   `R_best - R_second` (0 when the best is tied), so a member is pushed only on problems
//!   where it beats the others: the population specializes.
//!
//! ```text
//! loss = -(1/G) sum_g A_g sum_{t in PG steps} log pi_{best(g)}(a_t)     (phase 2; phase 1:
//!                                                   every row, averaged over the N rows)
//!        - entropy_weight * mean_{trained PG steps} H
//!        + answer_supervision * mean_{answer steps of all N rows} CE(correct answer | chain)
//! ```
//!
//! The two options of the answer-supervision recipe have the names, defaults and meaning
//! of [`ReinforceConfig`](super::ReinforceConfig)'s (shared code in [`super::rl`]):
//!
//! - `reward = "answer"` (default): `R` is the env's reward (1 for a right answer);
//!   `reward = "answer_ce"`: `R` is minus the correct answer's cross-entropy given the
//!   sampled chain, computed with the member embedding of the row, so each member's return is
//!   what that member would assign the right answer after its own chain (a dense signal, and
//!   ties in phase 2 become rare).
//! - `answer_supervision = w > 0` (default 0): the answer tokens of EVERY row (all members,
//!   both phases) are trained by cross-entropy on the correct answer given the sampled
//!   chain, with weight `w`; policy gradient then goes to the chain steps (chain tokens and
//!   the ANSWER marker) only, and the winner-takes-all rule still picks whose chain gets it
//!   in phase 2. Without it the answer tokens are policy steps too.
//!
//! Both need the oracle's answers, which `collect` records
//! ([`on_policy_with_answers`]).
//!
//! **Evaluation.** [`Agent::act`] outside collection plays member `eval_member` (what the
//! Runner's periodic evaluation reports); [`population_eval`] plays every member on the same
//! problems and reports best-of-K accuracy, each member's accuracy, and how often each member
//! is the only one to solve a problem, per difficulty (specialization). Training logs the
//! wins of each member per difficulty (`train/poppy/wins/d<d>/m<k>`).

use envs::{derive_seed, Difficulty, Env, EnvRng};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tch::{nn::Init, Kind, Tensor};

use super::reinforce::by_difficulty;
use super::rl::{
    answer_ce_returns, answer_supervision_loss, best_in_groups, grid, group_parts,
    leave_one_out_baseline, mean_std, pg_pass, policy_gradient_steps, poppy_advantages,
    reinforce_loss, with_correct_answers, RewardKind, RlBatch,
};
use crate::act::{choose_actions, ActMode, ActOutput, BatchObs};
use crate::agent::{Agent, AgentContext, AgentError, BuildAgent, Collector, Experience, Metrics};
use crate::optim::AdamW;
use crate::policy::{load_training_state, step_kinds, training_state, CotPolicy, ExtraMemory};
use crate::rollout::Lockstep;

/// `[algo]` options of `poppy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoppyConfig {
    /// Population size `K`, `>= 2`.
    pub members: usize,
    /// Updates of phase 1 (every member trained with the group baseline) before the
    /// winner-takes-all phase; 0 = POPPY from the start.
    pub phase1_steps: u64,
    /// Weight of the entropy bonus, `>= 0`.
    pub entropy_weight: f64,
    /// The member [`Agent::act`] plays outside training (the Runner's evaluation), `< K`.
    pub eval_member: usize,
    /// The return: `answer` (env reward) or `answer_ce` (minus the answer's cross-entropy
    /// given the sampled chain, scored by the member that played it).
    pub reward: RewardKind,
    /// Weight of the answer cross-entropy given the sampled chain on every row (0 = pure
    /// RL), `>= 0`.
    pub answer_supervision: f64,
}

impl Default for PoppyConfig {
    fn default() -> Self {
        PoppyConfig {
            members: 4,
            phase1_steps: 0,
            entropy_weight: 1e-3,
            eval_member: 0,
            reward: RewardKind::Answer,
            answer_supervision: 0.0,
        }
    }
}

impl PoppyConfig {
    /// Checks ranges, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.members < 2 {
            return Err(format!(
                "algo.members = {}: a population needs at least 2 members",
                self.members
            ));
        }
        if self.eval_member >= self.members {
            return Err(format!(
                "algo.eval_member = {}: expected a member index < algo.members ({})",
                self.eval_member, self.members
            ));
        }
        for (k, v) in [
            ("entropy_weight", self.entropy_weight),
            ("answer_supervision", self.answer_supervision),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("algo.{k} = {v}: expected a finite number >= 0"));
            }
        }
        Ok(())
    }

    fn needs_answers(&self) -> bool {
        self.reward == RewardKind::AnswerCe || self.answer_supervision > 0.0
    }
}

/// Which member plays each row in [`Agent::act`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberAssignment {
    /// Row `r` is member `r % K` (training collection, [`population_eval`]).
    ByRow,
    /// Every row is this member.
    Fixed(usize),
}

/// A POPPY population; see the module doc.
#[derive(Debug)]
pub struct Poppy {
    policy: CotPolicy,
    members: Tensor,
    opt: AdamW,
    cfg: PoppyConfig,
    micro_batches: usize,
    assignment: MemberAssignment,
}

impl Poppy {
    /// A population for the `CotEnv` described by `spec`; weights from `seed`.
    pub fn new(ctx: &AgentContext<'_>, cfg: &PoppyConfig) -> Result<Self, AgentError> {
        cfg.validate().map_err(AgentError::Config)?;
        let policy = ctx.cot_policy()?;
        let model = ctx.model;
        // The memory rows pass a LayerNorm before the cross-attention, so the scale of the
        // init only matters through the direction: unit-variance rows are distinct enough.
        let members = policy.var_store().root().sub("poppy").var(
            "members",
            &[cfg.members as i64, model.width() as i64],
            Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        );
        let opt = ctx.optimizer(policy.var_store());
        Ok(Poppy {
            policy,
            members,
            opt,
            cfg: cfg.clone(),
            micro_batches: ctx.micro_batches.max(1),
            assignment: MemberAssignment::Fixed(cfg.eval_member),
        })
    }

    /// The shared network.
    pub fn policy(&self) -> &CotPolicy {
        &self.policy
    }

    /// The config.
    pub fn config(&self) -> &PoppyConfig {
        &self.cfg
    }

    /// Population size `K`.
    pub fn num_members(&self) -> usize {
        self.cfg.members
    }

    /// Sets which member plays each row in [`Agent::act`].
    pub fn set_assignment(&mut self, a: MemberAssignment) {
        self.assignment = a;
        self.policy.invalidate_cache();
    }

    fn row_members(&self, b: usize) -> Vec<i64> {
        match self.assignment {
            MemberAssignment::ByRow => (0..b).map(|i| (i % self.cfg.members) as i64).collect(),
            MemberAssignment::Fixed(m) => vec![m.min(self.cfg.members - 1) as i64; b],
        }
    }

    /// The member rows `[B, 1, width]` of `members`.
    fn member_rows(&self, members: &[i64]) -> Tensor {
        member_rows(&self.members, members)
    }

    /// Next-action logits of each row for its member: the policy's, with the member's
    /// embedding appended to the problem's encoding.
    fn next_logits(&mut self, obs: &BatchObs<'_>) -> Tensor {
        let members = self.row_members(obs.batch_size());
        let table = &self.members;
        let rows = || tch::no_grad(|| member_rows(table, &members));
        self.policy.next_logits_with(
            obs,
            Some(ExtraMemory {
                key: &members,
                rows: &rows,
            }),
        )
    }
}

/// The rows `[B, 1, width]` of the member embedding `table` for `members`.
fn member_rows(table: &Tensor, members: &[i64]) -> Tensor {
    let idx = Tensor::from_slice(members).to_device(table.device());
    table.index_select(0, &idx).unsqueeze(1)
}

impl Agent for Poppy {
    type Batch = RlBatch;

    fn name(&self) -> &str {
        Self::NAME
    }

    fn experience(&self) -> Experience {
        Experience::OnPolicy {
            samples_per_problem: self.cfg.members,
            mode: ActMode::Sample,
        }
    }

    fn act(
        &mut self,
        obs: &BatchObs<'_>,
        mode: ActMode,
        rng: &mut EnvRng,
    ) -> Result<ActOutput, AgentError> {
        let logits = self.next_logits(obs);
        choose_actions(&logits, obs.action_mask, mode, rng)
    }

    fn collect(&mut self, ctx: &mut Collector<'_>) -> Result<RlBatch, AgentError> {
        let previous = self.assignment;
        self.set_assignment(MemberAssignment::ByRow);
        let k = self.cfg.members;
        let answer_action = self.policy.answer_action();
        let with_answers = self.cfg.needs_answers();
        let batch = RlBatch::collect(ctx, self, k, answer_action, with_answers);
        self.set_assignment(previous);
        batch
    }

    fn update(&mut self, batch: RlBatch) -> Result<Metrics, AgentError> {
        let ep = &batch.episodes;
        self.policy.invalidate_cache();
        let (n, t) = (ep.len(), ep.max_len());
        let k = self.cfg.members;
        if n == 0 || ep.samples_per_problem != k || n % k != 0 {
            return Err(AgentError::Incompatible(format!(
                "POPPY needs {k} rows per problem (one per member); got {n} rows with {} per \
                 problem",
                ep.samples_per_problem
            )));
        }
        let groups = n / k;
        let phase1 = self.opt.steps() < self.cfg.phase1_steps;
        let answer_action = self.policy.answer_action() as i64;
        let member_of: Vec<i64> = (0..n).map(|i| (i % k) as i64).collect();
        let forced = if self.cfg.needs_answers() {
            Some(with_correct_answers(ep, batch.answers()?, answer_action))
        } else {
            None
        };
        let returns = match (&forced, self.cfg.reward) {
            (Some(f), RewardKind::AnswerCe) => {
                let _phase = crate::profile::phase("answer_ce");
                let rows = tch::no_grad(|| self.member_rows(&member_of));
                answer_ce_returns(&self.policy, f, Some(&rows), self.micro_batches)?
            }
            _ => ep.returns(),
        };
        let adv: Vec<f32> = if phase1 {
            let b = leave_one_out_baseline(&returns, k);
            returns.iter().zip(&b).map(|(r, b)| r - b).collect()
        } else {
            poppy_advantages(&returns, k)
        };
        let (chain, answer) = step_kinds(ep, answer_action);
        let supervise = self.cfg.answer_supervision > 0.0;
        // With answer supervision the answer tokens of every row (all members, both phases)
        // are trained by cross-entropy and only the chain gets policy gradient.
        let steps = policy_gradient_steps(&chain, &answer, supervise);
        let n_answer: f64 = answer.iter().map(|&x| f64::from(x)).sum::<f64>().max(1.0);
        let train_ep = match (&forced, supervise) {
            (Some(f), true) => f,
            _ => ep,
        };
        // The entropy bonus is averaged over the steps that get gradient.
        let trained: Vec<f32> = (0..n * t)
            .map(|c| {
                if phase1 || adv[c / t] != 0.0 {
                    steps[c]
                } else {
                    0.0
                }
            })
            .collect();
        let n_trained: f64 = trained.iter().map(|&x| f64::from(x)).sum::<f64>().max(1.0);
        // Phase 1 averages over every sample, phase 2 over problems (one trained row each).
        let norm = if phase1 { n as f64 } else { groups as f64 };
        self.opt.zero_grad();
        let mut sums = [0f64; 4]; // loss, pg, entropy, answer supervision
        for r in group_parts(n, k, self.micro_batches) {
            let part = if r.len() == n {
                std::borrow::Cow::Borrowed(train_ep)
            } else {
                std::borrow::Cow::Owned(train_ep.rows(r.clone()))
            };
            let forward = crate::profile::phase("forward");
            let b = self.policy.teacher_batch(&part);
            let rows = self.member_rows(&member_of[r.clone()]);
            let pass = pg_pass(&self.policy, &b, Some(&rows), true);
            let forward_flops = forward.finish();
            let dev = pass.logp.device();
            let m = r.len();
            let cells = r.start * t..r.end * t;
            let w: Vec<f32> = cells.clone().map(|c| adv[c / t] * steps[c]).collect();
            let w = grid(&w, m, t, dev);
            let pg = reinforce_loss(&pass.logp, &w, norm);
            let ent = (&pass.entropy * grid(&trained[cells.clone()], m, t, dev)).sum(Kind::Float)
                / n_trained;
            let mut loss = &pg - &ent * self.cfg.entropy_weight;
            let mut sup = 0.0;
            if supervise {
                let ce =
                    answer_supervision_loss(&pass.logp, &grid(&answer[cells], m, t, dev), n_answer);
                sup = ce.double_value(&[]);
                loss += ce * self.cfg.answer_supervision;
            }
            crate::profile::backward(&loss, forward_flops);
            for (acc, x) in sums.iter_mut().zip([
                loss.double_value(&[]),
                pg.double_value(&[]),
                ent.double_value(&[]),
                sup,
            ]) {
                *acc += x;
            }
        }
        let stats = self.opt.step()?;
        let mut out = Metrics::default();
        out.scalar("loss", sums[0]);
        out.scalar("pg_loss", sums[1]);
        out.scalar("entropy", sums[2]);
        if supervise {
            out.scalar("answer_supervision_loss", sums[3]);
        }
        out.scalar("poppy/phase", if phase1 { 1.0 } else { 2.0 });
        let (r_mean, r_std) = mean_std(&returns);
        out.scalar("reward_mean", r_mean);
        out.scalar("reward_std", r_std);
        let best: Vec<f32> = returns
            .chunks(k)
            .map(|g| g.iter().copied().fold(f32::NEG_INFINITY, f32::max))
            .collect();
        out.scalar("poppy/best_of_k_reward", mean_std(&best).0);
        // Sampled accuracy (whatever the return), for the member and best-of-K.
        let solved = ep.solved.iter().filter(|&&s| s).count();
        out.scalar("solved", solved as f64 / n as f64);
        let best_solved = ep.solved.chunks(k).filter(|g| g.iter().any(|&s| s)).count();
        out.scalar("poppy/best_of_k_solved", best_solved as f64 / groups as f64);
        let nonzero: Vec<f32> = adv.iter().copied().filter(|&a| a != 0.0).collect();
        out.scalar("advantage_std", mean_std(&adv).1);
        out.scalar(
            "poppy/trained_fraction",
            nonzero.len() as f64 / n.max(1) as f64,
        );
        // Wins: the strict best member of each problem, per difficulty.
        let winners = best_in_groups(&returns, k);
        let strict = poppy_advantages(&returns, k);
        let mut wins: Vec<(Difficulty, Vec<f64>, f64)> = Vec::new();
        for (g, &w) in winners.iter().enumerate() {
            let d = ep.difficulty[g * k];
            let idx = match wins.iter().position(|e| e.0 == d) {
                Some(i) => i,
                None => {
                    wins.push((d, vec![0.0; k], 0.0));
                    wins.len() - 1
                }
            };
            wins[idx].2 += 1.0;
            if strict[g * k + w] > 0.0 {
                wins[idx].1[w] += 1.0;
            }
        }
        wins.sort_by_key(|e| e.0);
        for (d, w, total) in wins {
            for (m, c) in w.iter().enumerate() {
                out.scalar(format!("poppy/wins/d{d}/m{m}"), c / total);
            }
        }
        for (m, r) in (0..k).map(|m| {
            let v: Vec<f32> = returns.iter().skip(m).step_by(k).copied().collect();
            (m, mean_std(&v).0)
        }) {
            out.scalar(format!("poppy/reward/m{m}"), r);
        }
        for (d, v) in by_difficulty(ep, &returns) {
            out.scalar(format!("reward/d{d}"), v);
        }
        out.scalar("grad_norm", stats.grad_norm);
        out.scalar("lr", stats.lr);
        Ok(out)
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        training_state(&self.policy, &self.opt)
    }

    fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<(), AgentError> {
        load_training_state(&mut self.policy, &mut self.opt, tensors)
    }

    fn policy(&self) -> Option<&CotPolicy> {
        Some(&self.policy)
    }

    fn extra_eval(
        &mut self,
        env: &envs::AnyEnv,
        levels: &[Difficulty],
        episodes: usize,
        batch_size: usize,
        seed: u64,
    ) -> Result<Option<String>, AgentError> {
        let rep = population_eval(env, self, levels, episodes, batch_size, seed)?;
        Ok(Some(format!(
            "population of {} (greedy, same problems): best-of-K and each member's accuracy\n{}",
            self.num_members(),
            rep.table()
        )))
    }

    fn policy_mut(&mut self) -> Option<&mut CotPolicy> {
        Some(&mut self.policy)
    }

    fn num_parameters(&self) -> usize {
        self.policy.model().num_parameters() + self.members.numel()
    }
}

/// A population's greedy results at one difficulty.
#[derive(Debug, Clone, PartialEq)]
pub struct PopulationLevel {
    /// The difficulty.
    pub difficulty: Difficulty,
    /// Problems played.
    pub episodes: usize,
    /// Problems at least one member solved.
    pub best_of_k: usize,
    /// Problems each member solved.
    pub member_solved: Vec<usize>,
    /// Problems only this member solved (the specialization signal).
    pub only_solver: Vec<usize>,
}

/// [`population_eval`]'s results, one entry per level.
#[derive(Debug, Clone, PartialEq)]
pub struct PopulationReport {
    /// Levels ascending.
    pub levels: Vec<PopulationLevel>,
}

impl PopulationReport {
    /// A plain-text table: best-of-K and each member's accuracy, then the share of problems
    /// each member alone solved.
    pub fn table(&self) -> String {
        let k = self.levels.first().map_or(0, |l| l.member_solved.len());
        let mut out = format!(
            "{:>10}  {:>8}  {:>9}",
            "difficulty", "problems", "best-of-K"
        );
        for m in 0..k {
            out.push_str(&format!("  {:>7}", format!("m{m}")));
        }
        for m in 0..k {
            out.push_str(&format!("  {:>7}", format!("only m{m}")));
        }
        out.push('\n');
        for l in &self.levels {
            let pct = |x: usize| format!("{:.1}%", 100.0 * x as f64 / l.episodes.max(1) as f64);
            out.push_str(&format!(
                "{:>10}  {:>8}  {:>9}",
                l.difficulty,
                l.episodes,
                pct(l.best_of_k)
            ));
            for &s in &l.member_solved {
                out.push_str(&format!("  {:>7}", pct(s)));
            }
            for &s in &l.only_solver {
                out.push_str(&format!("  {:>7}", pct(s)));
            }
            out.push('\n');
        }
        out
    }
}

/// Plays every member greedily on `episodes` fresh problems per level (problem `j` of
/// level `d` seeded by `derive_seed(derive_seed(seed, d), j)`, as
/// [`crate::eval::evaluate`] draws them, so the numbers line up with its report).
pub fn population_eval<E: Env>(
    env: &E,
    agent: &mut Poppy,
    levels: &[Difficulty],
    episodes: usize,
    batch_size: usize,
    seed: u64,
) -> Result<PopulationReport, AgentError> {
    let k = agent.num_members();
    let previous = agent.assignment;
    agent.set_assignment(MemberAssignment::ByRow);
    let mut batch = Lockstep::new(env, 0);
    let mut out = Vec::with_capacity(levels.len());
    let mut rng = EnvRng::seed_from_u64(seed);
    let per_batch = (batch_size / k).max(1);
    let result = (|| {
        for &d in levels {
            let level_seed = derive_seed(seed, d as usize);
            let mut lv = PopulationLevel {
                difficulty: d,
                episodes: 0,
                best_of_k: 0,
                member_solved: vec![0; k],
                only_solver: vec![0; k],
            };
            let mut start = 0;
            while start < episodes {
                let n = (episodes - start).min(per_batch);
                batch.resize(env, n * k);
                batch.reset_with(|i, e| {
                    let mut r = EnvRng::seed_from_u64(derive_seed(level_seed, start + i / k));
                    e.reset(&mut r, d)
                })?;
                let ep = batch.run(|obs, _| agent.act(obs, ActMode::Greedy, &mut rng), false)?;
                for g in 0..n {
                    let solved = &ep.solved[g * k..(g + 1) * k];
                    let count = solved.iter().filter(|&&s| s).count();
                    lv.episodes += 1;
                    lv.best_of_k += usize::from(count > 0);
                    for (m, &s) in solved.iter().enumerate() {
                        lv.member_solved[m] += usize::from(s);
                        lv.only_solver[m] += usize::from(s && count == 1);
                    }
                }
                start += n;
            }
            out.push(lv);
        }
        Ok(PopulationReport { levels: out })
    })();
    agent.set_assignment(previous);
    result
}

impl BuildAgent for Poppy {
    const NAME: &'static str = "poppy";
    const SUMMARY: &'static str = "a population of policies trained winner-takes-all";
    type Settings = PoppyConfig;

    fn validate(settings: &PoppyConfig) -> Result<(), String> {
        settings.validate()
    }

    fn build(ctx: &AgentContext<'_>, settings: PoppyConfig) -> Result<Self, AgentError> {
        Self::new(ctx, &settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{AgentContext, BuildAgent};
    use crate::algos::rl::oracle_answers;
    use ndarray::Array2;

    /// Parses and resolves a config (the agent's settings are checked by the registry).
    fn resolved(text: &str) -> Result<RunConfig, String> {
        let mut cfg = RunConfig::from_toml_str(text, "x", "x", &[]).map_err(|e| e.to_string())?;
        crate::registry::resolve(&mut cfg).map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    fn poppy_of(cfg: &RunConfig, env: &envs::AnyEnv) -> Poppy {
        let mut cfg = cfg.clone();
        crate::registry::resolve(&mut cfg).unwrap();
        let settings: PoppyConfig = toml::Value::Table(cfg.algo.settings.clone())
            .try_into()
            .unwrap();
        Poppy::build(&AgentContext::new(&cfg, env, tch::Device::Cpu), settings).unwrap()
    }
    use crate::config::RunConfig;
    use crate::runner::Runner;

    fn config(sets: &[&str]) -> RunConfig {
        let text = r#"
seed = 0
[env]
name = "cycle"
length = 5
max_chain_len = 2
[train]
steps = 3
batch_size = 8
levels = [1, 2]
[algo]
name = "poppy"
members = 3
phase1_steps = 1
[model]
heads = 2
head_dim = 8
mlp_factor = 2
decoder_layers = 1
[optim]
lr = 3e-3
warmup_steps = 1
[eval]
every = 0
episodes = 10
sampled = false
"#;
        crate::testing::config(text, sets)
    }

    /// The KV-cached decoding of each member equals a full recomputation, members differ,
    /// and both phases train with their metrics.
    #[test]
    fn members_decode_consistently_and_both_phases_train() {
        let cfg = config(&[]);
        let env = cfg.env.build().unwrap();
        let agent = crate::registry::build(&cfg, &env, tch::Device::Cpu).unwrap();
        let mut runner = Runner::new(cfg.clone(), env.clone(), agent).unwrap();
        let s = runner.train().unwrap();
        assert_eq!(s.steps, 3);
        let p = crate::agent::downcast_mut::<Poppy>(runner.agent_mut()).expect("a poppy agent");
        let rep = population_eval(&env, p, &[1, 2], 10, 7, 3).unwrap();
        for l in &rep.levels {
            assert_eq!(l.episodes, 10);
            let best = *l.member_solved.iter().max().unwrap();
            assert!(l.best_of_k >= best && l.best_of_k <= l.member_solved.iter().sum());
        }
        assert!(rep.table().contains("best-of-K"));
        // Replaying the recorded observations without the cache gives the same logits.
        let mut batch = Lockstep::new(&env, 6);
        batch
            .reset_with(|i, e| e.reset(&mut EnvRng::seed_from_u64(i as u64 / 3), 2))
            .unwrap();
        p.set_assignment(MemberAssignment::ByRow);
        let mut rng = EnvRng::seed_from_u64(0);
        let ep = batch
            .run(|obs, _| p.act(obs, ActMode::Sample, &mut rng), true)
            .unwrap();
        for step in 1..ep.max_len() {
            let tokens = ep.tokens.index_axis(ndarray::Axis(1), step).to_owned();
            let mask = ep.action_mask.index_axis(ndarray::Axis(1), step).to_owned();
            let features = Array2::<f32>::zeros((6, 0));
            let obs = BatchObs {
                tokens: tokens.view(),
                features: features.view(),
                action_mask: mask.view(),
            };
            p.policy.invalidate_cache();
            let fresh = p.next_logits(&obs);
            // Recorded log-probs came from the cached path.
            let out = choose_actions(&fresh, mask.view(), ActMode::Greedy, &mut rng).unwrap();
            for i in 0..6 {
                if mask.row(i).iter().any(|&m| m) && ep.lengths[i] > step {
                    let a = ep.actions[[i, step]] as usize;
                    let lp = fresh
                        .get(i as i64)
                        .log_softmax(-1, Kind::Float)
                        .double_value(&[a as i64]);
                    let _ = &out;
                    let masked_norm: f64 = (0..mask.ncols())
                        .filter(|&j| mask[[i, j]])
                        .map(|j| {
                            fresh
                                .get(i as i64)
                                .log_softmax(-1, Kind::Float)
                                .double_value(&[j as i64])
                                .exp()
                        })
                        .sum();
                    let expected = lp - masked_norm.ln();
                    assert!(
                        (expected - f64::from(ep.log_probs[[i, step]])).abs() < 1e-4,
                        "row {i} step {step}"
                    );
                }
            }
        }
        // Two members see different memories, so their logits differ.
        let tokens = ep.tokens.index_axis(ndarray::Axis(1), 0).to_owned();
        let mask = ep.action_mask.index_axis(ndarray::Axis(1), 0).to_owned();
        let features = Array2::<f32>::zeros((6, 0));
        let obs = BatchObs {
            tokens: tokens.view(),
            features: features.view(),
            action_mask: mask.view(),
        };
        p.set_assignment(MemberAssignment::Fixed(0));
        let l0 = p.next_logits(&obs);
        p.set_assignment(MemberAssignment::Fixed(1));
        let l1 = p.next_logits(&obs);
        assert!(!l0.allclose(&l1, 1e-6, 1e-6, false));
    }

    /// `-log pi_member(correct answer | sampled chain)` of each row of `ep` (one answer token
    /// per row), from a fresh forward pass of each row's observation at its answer step with
    /// the row's member (row `i` is member `i % K`).
    fn direct_answer_ce(p: &mut Poppy, ep: &crate::Episodes, answers: &[Vec<i64>]) -> Vec<f64> {
        let n = ep.len();
        let answer_action = p.policy.answer_action() as i64;
        let answer_step: Vec<usize> = (0..n)
            .map(|i| {
                let m = (0..ep.lengths[i])
                    .position(|s| ep.actions[[i, s]] == answer_action)
                    .expect("every episode answers");
                assert_eq!(ep.lengths[i], m + 2, "one answer token");
                assert_eq!(answers[i].len(), 1);
                m + 1
            })
            .collect();
        p.set_assignment(MemberAssignment::ByRow);
        let mut ce = vec![f64::NAN; n];
        for step in 0..ep.max_len() {
            let tokens = ep.tokens.index_axis(ndarray::Axis(1), step).to_owned();
            let mask = ep.action_mask.index_axis(ndarray::Axis(1), step).to_owned();
            let features = Array2::<f32>::zeros((n, 0));
            let obs = BatchObs {
                tokens: tokens.view(),
                features: features.view(),
                action_mask: mask.view(),
            };
            p.policy.invalidate_cache();
            let logits = p.next_logits(&obs);
            for i in (0..n).filter(|&i| answer_step[i] == step) {
                let legal: Vec<bool> = mask.row(i).to_vec();
                let logp = crate::policy::masked_log_softmax(
                    &logits.get(i as i64),
                    &Tensor::from_slice(&legal),
                );
                ce[i] = -logp.double_value(&[answers[i][0]]);
            }
        }
        p.policy.invalidate_cache();
        ce
    }

    /// With answer supervision the update's answer loss is the mean cross-entropy of the
    /// correct answer given each sampled chain (every member, both phases), and the
    /// `answer_ce` returns are minus that cross-entropy under the row's own member.
    #[test]
    fn answer_supervision_and_answer_ce_score_the_correct_answer_per_member() {
        let k = 3;
        let cfg = config(&[
            "algo.reward=\"answer_ce\"",
            "algo.answer_supervision=1.0",
            "algo.entropy_weight=0.0",
        ]);
        let env = cfg.env.build().unwrap();
        let mut p = poppy_of(&cfg, &env);
        assert_eq!(p.config().phase1_steps, 1);
        let n = 4 * k;
        let mut batch = Lockstep::new(&env, n);
        batch
            .reset_with(|i, e| e.reset(&mut EnvRng::seed_from_u64((i / k) as u64), 2))
            .unwrap();
        let answer_action = p.policy.answer_action();
        let answers = oracle_answers(batch.envs(), answer_action).unwrap();
        p.set_assignment(MemberAssignment::ByRow);
        let mut rng = EnvRng::seed_from_u64(7);
        let mut ep = batch
            .run(|obs, _| p.act(obs, ActMode::Sample, &mut rng), true)
            .unwrap();
        ep.samples_per_problem = k;
        let wrong = (0..n)
            .filter(|&i| ep.actions[[i, ep.lengths[i] - 1]] != answers[i][0])
            .count();
        assert!(
            wrong > 0,
            "some sampled answers are wrong, so forcing matters"
        );
        let forced = with_correct_answers(&ep, &answers, answer_action as i64);
        let member_of: Vec<i64> = (0..n).map(|i| (i % k) as i64).collect();
        for phase in [1.0, 2.0] {
            let direct = direct_answer_ce(&mut p, &ep, &answers);
            let rows = tch::no_grad(|| p.member_rows(&member_of));
            let returns = answer_ce_returns(&p.policy, &forced, Some(&rows), 2).unwrap();
            for (r, c) in returns.iter().zip(&direct) {
                assert!((f64::from(*r) + c).abs() < 1e-4, "return {r} vs CE {c}");
            }
            let batch = RlBatch {
                episodes: ep.clone(),
                answers: Some(answers.clone()),
            };
            let m = p.update(batch).unwrap();
            assert_eq!(m.get("poppy/phase"), Some(phase));
            let mean = direct.iter().sum::<f64>() / n as f64;
            let sup = m.get("answer_supervision_loss").unwrap();
            assert!((sup - mean).abs() < 1e-4, "phase {phase}: {sup} vs {mean}");
            assert!((m.get("reward_mean").unwrap() + mean).abs() < 1e-4);
        }
        // The update needs the answers its own collection recorded.
        let unrecorded = RlBatch {
            episodes: ep.clone(),
            answers: None,
        };
        assert!(p.update(unrecorded).is_err());
    }

    /// On the same problem and the same (oracle) chain, the `answer_ce` returns differ
    /// between members, and only through the member embedding.
    #[test]
    fn answer_ce_returns_are_each_members_own() {
        let k = 3;
        let cfg = config(&["algo.reward=\"answer_ce\""]);
        let env = cfg.env.build().unwrap();
        let p = poppy_of(&cfg, &env);
        let n = 3 * k;
        let mut batch = Lockstep::new(&env, n);
        batch
            .reset_with(|i, e| e.reset(&mut EnvRng::seed_from_u64((i / k) as u64), 2))
            .unwrap();
        let answers = oracle_answers(batch.envs(), p.policy.answer_action()).unwrap();
        let ep = batch.run(crate::rollout::oracle_policy, true).unwrap();
        let forced = with_correct_answers(&ep, &answers, p.policy.answer_action() as i64);
        let own: Vec<i64> = (0..n).map(|i| (i % k) as i64).collect();
        let rows = tch::no_grad(|| p.member_rows(&own));
        let by_member = answer_ce_returns(&p.policy, &forced, Some(&rows), 1).unwrap();
        let rows0 = tch::no_grad(|| p.member_rows(&vec![0; n]));
        let member0 = answer_ce_returns(&p.policy, &forced, Some(&rows0), 3).unwrap();
        for g in 0..n / k {
            let grp = &by_member[g * k..(g + 1) * k];
            assert!(grp.iter().all(|&r| r < 0.0));
            for a in 0..k {
                for b in a + 1..k {
                    assert!((grp[a] - grp[b]).abs() > 1e-6, "members {a}, {b}: {grp:?}");
                }
            }
            // Member 0 everywhere: equal within the group, and row 0 agrees.
            let same = &member0[g * k..(g + 1) * k];
            assert!(same.iter().all(|&r| (r - same[0]).abs() < 1e-5), "{same:?}");
            assert!((same[0] - grp[0]).abs() < 1e-5);
        }
    }

    #[test]
    fn the_recipe_options_are_validated_by_name() {
        let d = PoppyConfig::default();
        let r = crate::algos::ReinforceConfig::default();
        assert_eq!(
            (d.reward, d.answer_supervision),
            (r.reward, r.answer_supervision)
        );
        let ok = "[algo]\nname = \"poppy\"\nreward = \"answer_ce\"\nanswer_supervision = 0.5\n";
        RunConfig::from_toml_str(ok, "x", "x", &[]).unwrap();
        for (bad, key) in [
            ("answer_supervision = -1.0", "answer_supervision"),
            ("answer_supervision = nan", "answer_supervision"),
            // serde names the accepted spellings rather than the key.
            ("reward = \"chain\"", "answer_ce"),
        ] {
            let text = format!("[algo]\nname = \"poppy\"\n{bad}\n");
            let e = resolved(&text).unwrap_err();
            assert!(e.contains(key), "{bad}: {e}");
        }
        let mut c = PoppyConfig {
            answer_supervision: f64::INFINITY,
            ..PoppyConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .contains("algo.answer_supervision"));
        c.answer_supervision = 0.0;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn a_population_of_one_is_rejected() {
        let text = "[algo]\nname = \"poppy\"\nmembers = 1\n";
        let e = resolved(text).unwrap_err();
        assert!(e.contains("members"), "{e}");
    }
}
