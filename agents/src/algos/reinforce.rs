//! `Reinforce`: policy gradient over the token MDP from the final answer's reward alone
//! (the seed's central question: can the chains be discovered without supervised chains?).
//!
//! Each update samples `K = samples_per_problem` episodes of each of `train.batch_size`
//! problems (rows `g*K..(g+1)*K` share problem `g`). With `R_i` the episode's return and
//! `b_i` the configured baseline,
//!
//! ```text
//! loss = -(1/N) sum_i sum_t (R_i - b_{i,t}) log pi(a_{i,t} | prefix)      (policy steps)
//!        - entropy_weight * mean_{policy steps} H(pi(. | prefix))
//!        + value_weight * mean_{steps} (V(prefix_{i,t}) - R_i)^2            (value baseline)
//!        + answer_supervision * mean_{answer steps} CE(correct answer | sampled chain)
//! ```
//!
//! - Baselines (`baseline`): `none`; `batch_mean`; `group` (leave-one-out mean of the other
//!   `K - 1` samples of the same problem); `value` (the model's value head at each prefix,
//!   `b_{i,t} = V_t`, detached, trained by the MSE term); `ema` (moving average of past
//!   batches' mean return). All but `value` are constant over an episode's steps.
//! - Policy steps are every action the agent took (chain tokens, the ANSWER marker, the
//!   answer tokens), except that with `answer_supervision > 0` the answer tokens are
//!   trained by cross-entropy on the correct answer given the sampled chain (the original's
//!   "encoder on the sampled chain" term) and only the chain gets policy
//!   gradient.
//! - `reward = "answer_ce"` scores each episode with minus the correct answer's
//!   cross-entropy given its sampled chain (the original's dense signal, with the baseline of
//!   the same kind, so return and baseline are on one scale). With `answer_supervision > 0`
//!   the training pass already runs over the chains with the correct answers forced in, so
//!   the return is read off its log-probabilities (no second teacher-forced pass).
//! - The K samples of a problem share its encoding in the training pass
//!   ([`Encoded::shared_by`](crate::model::Encoded::shared_by)).
//!
//! The update is computed in parts that never split a problem's group; with
//! `grad_variance = true` there are at least two (on every `grad_variance_every`-th update),
//! and the spread of their gradients gives an estimate of the batch gradient's variance
//! (`train/grad_var`, see [`GradVariance`](super::rl::GradVariance)), the number that says how
//! much a baseline helps.

use std::borrow::Cow;

use envs::EnvRng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::init::InitFrom;
use super::rl::{
    answer_ce_returns, answer_log_likelihood, answer_supervision_loss, batch_mean_baseline,
    chain_lengths, ema_update, entropy_per_chain_position, grid, group_parts,
    leave_one_out_baseline, mean_std, pg_pass_shared, policy_gradient_steps, reinforce_loss,
    with_correct_answers, BaselineKind, GradVariance, PgPass, RewardKind, RlBatch,
};
use crate::act::{ActMode, ActOutput, BatchObs};
use crate::agent::{
    Agent, AgentContext, AgentError, BuildAgent, Collector, Episodes, Experience, Metrics,
};
use crate::optim::AdamW;
use crate::policy::{load_training_state, step_kinds, training_state, CotPolicy};
use crate::profile;

/// `[algo]` options of `reinforce`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReinforceConfig {
    /// Sampled episodes per problem `K`, `>= 1` (the group baseline needs `>= 2`).
    pub samples_per_problem: usize,
    /// The baseline: `none`, `batch_mean`, `group`, `value` or `ema`.
    pub baseline: BaselineKind,
    /// The return: `answer` (env reward) or `answer_ce` (minus the answer's cross-entropy
    /// given the sampled chain).
    pub reward: RewardKind,
    /// Weight of the entropy bonus, `>= 0`.
    pub entropy_weight: f64,
    /// Weight of the value head's MSE (only with `baseline = "value"`), `>= 0`.
    pub value_weight: f64,
    /// Decay of the `ema` baseline, in `[0, 1)`.
    pub ema_decay: f64,
    /// Weight of the answer cross-entropy given the sampled chain (0 = pure RL), `>= 0`.
    pub answer_supervision: f64,
    /// Estimate the gradient variance (computes the update in at least two parts).
    pub grad_variance: bool,
    /// With `grad_variance`, estimate it on every this-many-th update only, `>= 1`: the
    /// other updates run in one part, which is faster at small sizes (the logged value is
    /// the mean over a logging window, so an estimate every `log.every` updates suffices).
    pub grad_variance_every: u64,
    /// A run directory or checkpoint file whose model parameters initialise the policy
    /// before the first update (empty: the seed's random weights), as `expert_iteration`'s
    /// `init`; its `[model]` must match. Resuming or evaluating this run reads only its own
    /// checkpoints.
    pub init: String,
}

impl Default for ReinforceConfig {
    fn default() -> Self {
        ReinforceConfig {
            samples_per_problem: 8,
            baseline: BaselineKind::Group,
            reward: RewardKind::Answer,
            entropy_weight: 1e-3,
            value_weight: 0.5,
            ema_decay: 0.9,
            answer_supervision: 0.0,
            grad_variance: true,
            grad_variance_every: 1,
            init: String::new(),
        }
    }
}

impl ReinforceConfig {
    /// Checks ranges and combinations, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.samples_per_problem == 0 {
            return Err("algo.samples_per_problem = 0: expected an integer >= 1".into());
        }
        if self.baseline == BaselineKind::Group && self.samples_per_problem < 2 {
            return Err(format!(
                "algo.baseline = \"group\" needs algo.samples_per_problem >= 2 (got {})",
                self.samples_per_problem
            ));
        }
        for (k, v) in [
            ("entropy_weight", self.entropy_weight),
            ("value_weight", self.value_weight),
            ("answer_supervision", self.answer_supervision),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("algo.{k} = {v}: expected a finite number >= 0"));
            }
        }
        if self.grad_variance_every == 0 {
            return Err("algo.grad_variance_every = 0: expected an integer >= 1".into());
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return Err(format!(
                "algo.ema_decay = {}: expected a number in [0, 1)",
                self.ema_decay
            ));
        }
        Ok(())
    }

    fn needs_answers(&self) -> bool {
        self.reward == RewardKind::AnswerCe || self.answer_supervision > 0.0
    }
}

/// REINFORCE with a configurable baseline; see the module doc.
#[derive(Debug)]
pub struct Reinforce {
    policy: CotPolicy,
    opt: AdamW,
    cfg: ReinforceConfig,
    micro_batches: usize,
    ema: Option<f64>,
    /// `algo.init`, loaded before the first update of a fresh run.
    init: InitFrom,
}

/// Name of the EMA baseline's state in checkpoints.
const EMA_TENSOR: &str = "algo/ema_baseline";

impl Reinforce {
    /// An agent for the `CotEnv` described by `spec`, trained for `steps` updates with at
    /// least `micro_batches` parts per update; weights from `seed`.
    pub fn new(ctx: &AgentContext<'_>, cfg: &ReinforceConfig) -> Result<Self, AgentError> {
        cfg.validate().map_err(AgentError::Config)?;
        let policy = ctx.cot_policy()?;
        let opt = ctx.optimizer(policy.var_store());
        Ok(Reinforce {
            policy,
            opt,
            cfg: cfg.clone(),
            micro_batches: ctx.micro_batches.max(1),
            ema: None,
            init: InitFrom::new(&cfg.init),
        })
    }

    /// The config.
    pub fn config(&self) -> &ReinforceConfig {
        &self.cfg
    }
}

/// Per-difficulty mean of `values`.
pub(crate) fn by_difficulty(ep: &Episodes, values: &[f32]) -> Vec<(u32, f64)> {
    let mut acc: Vec<(u32, f64, f64)> = Vec::new();
    for (i, &v) in values.iter().enumerate() {
        let d = ep.difficulty[i];
        match acc.iter_mut().find(|(x, _, _)| *x == d) {
            Some(e) => {
                e.1 += f64::from(v);
                e.2 += 1.0;
            }
            None => acc.push((d, f64::from(v), 1.0)),
        }
    }
    acc.sort_by_key(|e| e.0);
    acc.into_iter().map(|(d, s, c)| (d, s / c)).collect()
}

impl Agent for Reinforce {
    type Batch = RlBatch;

    fn name(&self) -> &str {
        Self::NAME
    }

    fn experience(&self) -> Experience {
        Experience::OnPolicy {
            samples_per_problem: self.cfg.samples_per_problem,
            mode: ActMode::Sample,
        }
    }

    fn act(
        &mut self,
        obs: &BatchObs<'_>,
        mode: ActMode,
        rng: &mut EnvRng,
    ) -> Result<ActOutput, AgentError> {
        self.policy.act_masked(obs, obs.action_mask, mode, rng)
    }

    fn collect(&mut self, ctx: &mut Collector<'_>) -> Result<RlBatch, AgentError> {
        self.init.apply(self.opt.steps(), &mut [&mut self.policy])?;
        let k = self.cfg.samples_per_problem;
        let answer_action = self.policy.answer_action();
        let with_answers = self.cfg.needs_answers();
        RlBatch::collect(ctx, self, k, answer_action, with_answers)
    }

    fn update(&mut self, batch: RlBatch) -> Result<Metrics, AgentError> {
        let ep = &batch.episodes;
        self.policy.invalidate_cache();
        let (n, t) = (ep.len(), ep.max_len());
        if n == 0 {
            return Err(AgentError::Incompatible(
                "an empty batch of episodes".into(),
            ));
        }
        let k = ep.samples_per_problem.max(1);
        let answer_action = self.policy.answer_action() as i64;
        let answers = if self.cfg.needs_answers() {
            Some(batch.answers()?)
        } else {
            None
        };
        let forced = answers
            .as_ref()
            .map(|a| with_correct_answers(ep, a, answer_action));
        let supervise = self.cfg.answer_supervision > 0.0;
        let train_ep: Cow<'_, Episodes> = match (&forced, supervise) {
            (Some(f), true) => Cow::Borrowed(f),
            _ => Cow::Borrowed(ep),
        };
        // The optimizer's step count is checkpointed, so a resumed run estimates on the same
        // updates (and sums its gradients in the same parts) as an uninterrupted one.
        let estimate = self.cfg.grad_variance
            && self
                .opt
                .steps()
                .is_multiple_of(self.cfg.grad_variance_every);
        let min_parts = if estimate { 2 } else { 1 };
        let parts = group_parts(n, k, self.micro_batches.max(min_parts));
        let (chain, answer) = step_kinds(ep, answer_action);
        // Every part's forward pass first (their graphs kept until each part's backward):
        // with answer supervision the pass runs over the episodes with the correct answers
        // forced in, so it already holds the log-probabilities the answer-CE return sums.
        let passes: Vec<PgPass> = {
            let forward = profile::phase("forward");
            let mut passes = Vec::with_capacity(parts.len());
            for r in &parts {
                let part = if r.len() == n {
                    Cow::Borrowed(train_ep.as_ref())
                } else {
                    Cow::Owned(train_ep.rows(r.clone()))
                };
                let b = self.policy.teacher_batch(&part);
                passes.push(pg_pass_shared(&self.policy, &b, k, true));
            }
            // Every part's graph is backpropagated below; a matmul's backward pass costs two
            // forward ones.
            let forward_flops = forward.finish();
            profile::add_flops("backward", || 2.0 * forward_flops);
            passes
        };
        let returns = match self.cfg.reward {
            RewardKind::Answer => ep.returns(),
            RewardKind::AnswerCe if supervise => {
                let _phase = profile::phase("answer_ce");
                let mut out = Vec::with_capacity(n);
                for (r, pass) in parts.iter().zip(&passes) {
                    let mask = grid(
                        &answer[r.start * t..r.end * t],
                        r.len(),
                        t,
                        pass.logp.device(),
                    );
                    out.extend(answer_log_likelihood(&pass.logp, &mask)?);
                }
                out
            }
            RewardKind::AnswerCe => {
                let _phase = profile::phase("answer_ce");
                let forced = forced.as_ref().expect("answers were recorded");
                answer_ce_returns(&self.policy, forced, None, self.micro_batches)?
            }
        };
        let (r_mean, r_std) = mean_std(&returns);
        let baseline = match self.cfg.baseline {
            BaselineKind::None | BaselineKind::Value => vec![0f32; n],
            BaselineKind::BatchMean => batch_mean_baseline(&returns),
            BaselineKind::Group => leave_one_out_baseline(&returns, k),
            BaselineKind::Ema => vec![self.ema.unwrap_or(0.0) as f32; n],
        };
        if self.cfg.baseline == BaselineKind::Ema {
            self.ema = Some(ema_update(self.ema, r_mean, self.cfg.ema_decay));
        }
        // Policy-gradient steps: the chain and marker, plus the answer unless supervised.
        let pg_steps = policy_gradient_steps(&chain, &answer, supervise);
        let valid: Vec<f32> = chain.iter().zip(&answer).map(|(c, a)| c + a).collect();
        let n_pg: f64 = pg_steps.iter().map(|&x| f64::from(x)).sum::<f64>().max(1.0);
        let n_valid: f64 = valid.iter().map(|&x| f64::from(x)).sum::<f64>().max(1.0);
        let n_answer: f64 = answer.iter().map(|&x| f64::from(x)).sum::<f64>().max(1.0);
        let mut gv = GradVariance::default();
        self.opt.zero_grad();
        // Per part: loss, pg, entropy, value mse, sup ce, sum adv^2, sum adv; kept on the
        // device and read in one transfer after the last part.
        let mut part_sums: Vec<Tensor> = Vec::with_capacity(parts.len());
        for (r, pass) in parts.iter().zip(passes) {
            let forward = profile::phase("loss");
            let dev = pass.logp.device();
            let (m, cells) = (r.len(), r.start * t..r.end * t);
            let pg_mask = grid(&pg_steps[cells.clone()], m, t, dev);
            let valid_mask = grid(&valid[cells.clone()], m, t, dev);
            let ret = Tensor::from_slice(&returns[r.clone()])
                .to_device(dev)
                .view([m as i64, 1]);
            let adv = if self.cfg.baseline == BaselineKind::Value {
                (&ret - pass.value.detach()) * &pg_mask
            } else {
                let a: Vec<f32> = r.clone().map(|i| returns[i] - baseline[i]).collect();
                Tensor::from_slice(&a).to_device(dev).view([m as i64, 1]) * &pg_mask
            };
            let pg = reinforce_loss(&pass.logp, &adv, n as f64);
            let ent = (&pass.entropy * &pg_mask).sum(Kind::Float) / n_pg;
            let mut loss = &pg - &ent * self.cfg.entropy_weight;
            let zero = || Tensor::zeros([], (Kind::Float, dev));
            let mut vloss = zero();
            if self.cfg.baseline == BaselineKind::Value {
                let mse = ((&pass.value - &ret).square() * &valid_mask).sum(Kind::Float) / n_valid;
                vloss = mse.detach();
                loss += mse * self.cfg.value_weight;
            }
            let mut sup = zero();
            if supervise {
                let amask = grid(&answer[cells], m, t, dev);
                let ce = answer_supervision_loss(&pass.logp, &amask, n_answer);
                sup = ce.detach();
                loss += ce * self.cfg.answer_supervision;
            }
            drop(forward);
            {
                let _phase = profile::phase("backward");
                loss.backward();
            }
            if estimate {
                let _phase = profile::phase("grad_variance");
                gv.record(self.policy.var_store(), m);
            }
            part_sums.push(tch::no_grad(|| {
                Tensor::stack(
                    &[
                        loss.detach(),
                        pg.detach(),
                        ent.detach(),
                        vloss,
                        sup,
                        adv.square().sum(Kind::Float),
                        adv.sum(Kind::Float),
                    ],
                    0,
                )
            }));
        }
        let sums: Vec<f64> = tch::no_grad(|| {
            Vec::<f64>::try_from(
                Tensor::stack(&part_sums, 0)
                    .sum_dim_intlist(0, false, Kind::Double)
                    .to_device(tch::Device::Cpu),
            )
        })?;
        let adv_sum = sums[6];
        let stats = self.opt.step()?;
        let mut out = Metrics::default();
        out.scalar("loss", sums[0]);
        out.scalar("pg_loss", sums[1]);
        out.scalar("entropy", sums[2]);
        if self.cfg.baseline == BaselineKind::Value {
            out.scalar("value_loss", sums[3]);
        }
        if supervise {
            out.scalar("answer_supervision_loss", sums[4]);
        }
        out.scalar("reward_mean", r_mean);
        out.scalar("reward_std", r_std);
        let (b_mean, _) = mean_std(&baseline);
        if self.cfg.baseline != BaselineKind::Value {
            out.scalar("baseline", b_mean);
        }
        let adv_mean = adv_sum / n_pg;
        out.scalar(
            "advantage_std",
            (sums[5] / n_pg - adv_mean * adv_mean).max(0.0).sqrt(),
        );
        if let Some((var, norm2)) = gv.estimate() {
            out.scalar("grad_var", var);
            out.scalar("grad_var_rel", var / norm2.max(1e-30));
        }
        out.scalar(
            "solved",
            ep.solved.iter().filter(|&&s| s).count() as f64 / n as f64,
        );
        out.scalar("chain_len", mean_std(&chain_lengths(ep, answer_action)).0);
        for (d, v) in by_difficulty(ep, &returns) {
            out.scalar(format!("reward/d{d}"), v);
        }
        for (pos, h) in entropy_per_chain_position(ep, answer_action)
            .into_iter()
            .enumerate()
        {
            out.scalar(format!("entropy/pos{pos}"), h);
        }
        out.scalar("grad_norm", stats.grad_norm);
        out.scalar("lr", stats.lr);
        Ok(out)
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut v = training_state(&self.policy, &self.opt);
        // NaN encodes "no average yet".
        v.push((
            EMA_TENSOR.to_string(),
            Tensor::from_slice(&[self.ema.unwrap_or(f64::NAN)]),
        ));
        v
    }

    fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<(), AgentError> {
        self.init.cancel();
        load_training_state(&mut self.policy, &mut self.opt, tensors)?;
        self.ema = tensors
            .iter()
            .find(|(n, _)| n == EMA_TENSOR)
            .map(|(_, t)| t.double_value(&[0]))
            .filter(|x| x.is_finite());
        Ok(())
    }

    fn policy(&self) -> Option<&CotPolicy> {
        Some(&self.policy)
    }

    fn value_head_trained(&self) -> bool {
        self.cfg.baseline == BaselineKind::Value
    }

    fn policy_mut(&mut self) -> Option<&mut CotPolicy> {
        Some(&mut self.policy)
    }

    fn num_parameters(&self) -> usize {
        self.policy.model().num_parameters()
    }
}

impl BuildAgent for Reinforce {
    const NAME: &'static str = "reinforce";
    const SUMMARY: &'static str = "policy gradient from the answer, with a choice of baselines";
    type Settings = ReinforceConfig;

    fn validate(settings: &ReinforceConfig) -> Result<(), String> {
        settings.validate()
    }

    fn build(ctx: &AgentContext<'_>, settings: ReinforceConfig) -> Result<Self, AgentError> {
        Self::new(ctx, &settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunConfig;
    use crate::runner::Runner;

    /// Parses and resolves a config (the agent's settings are checked by the registry).
    fn resolved(text: &str) -> Result<RunConfig, String> {
        let mut cfg = RunConfig::from_toml_str(text, "x", "x", &[]).map_err(|e| e.to_string())?;
        crate::registry::resolve(&mut cfg).map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    fn config(sets: &[&str]) -> RunConfig {
        let text = r#"
seed = 0
[env]
name = "cycle"
length = 5
max_chain_len = 1
[train]
steps = 100
batch_size = 32
levels = [1]
[algo]
name = "reinforce"
samples_per_problem = 8
baseline = "group"
entropy_weight = 1e-3
[model]
heads = 2
head_dim = 16
mlp_factor = 2
decoder_layers = 1
difficulty_token = true
[optim]
lr = 3e-3
warmup_steps = 10
schedule = "constant"
clip_grad_norm = 1.0
[eval]
every = 0
episodes = 200
sampled = false
"#;
        crate::testing::config(text, sets)
    }

    /// The CI learning test: REINFORCE with the group baseline, from the answer's reward
    /// alone, learns Cycle(L=5) at one hop: chance is 20%, this config reaches 59% greedy
    /// after 100 updates of 32 problems x 8 samples (~60 s in a debug build on a loaded
    /// 2-core machine). Hops 1..2 need more updates than a CI test affords.
    #[test]
    fn group_baseline_learns_cycle5_hop_1() {
        let start = std::time::Instant::now();
        let cfg = config(&[]);
        let env = cfg.env.build().unwrap();
        let agent = crate::registry::build(&cfg, &env, tch::Device::Cpu).unwrap();
        let mut runner = Runner::new(cfg, env, agent).unwrap();
        let report = runner.train().unwrap().eval.unwrap();
        eprintln!(
            "{}in {:.1} s",
            report.table(),
            start.elapsed().as_secs_f64()
        );
        let acc = report.accuracy(1, ActMode::Greedy).unwrap();
        assert!(acc >= 0.45, "greedy accuracy {acc}\n{}", report.table());
    }

    /// Every baseline and option runs, reports its metrics, and the EMA state survives a
    /// save and load.
    #[test]
    fn every_baseline_updates_and_reports() {
        for sets in [
            vec!["algo.baseline=none"],
            vec!["algo.baseline=batch_mean"],
            vec!["algo.baseline=value"],
            vec!["algo.baseline=ema"],
            vec!["algo.reward=answer_ce", "algo.answer_supervision=0.5"],
        ] {
            let mut all = vec![
                "train.steps=2",
                "eval.episodes=4",
                "train.levels=[1, 2]",
                "env.max_chain_len=2",
            ];
            all.extend(sets.iter().copied());
            let cfg = config(&all);
            let env = cfg.env.build().unwrap();
            let agent = crate::registry::build(&cfg, &env, tch::Device::Cpu).unwrap();
            let mut runner = Runner::new(cfg, env, agent).unwrap();
            runner.train().unwrap();
            let state = runner.agent().state();
            let ema = state.iter().find(|(n, _)| n == EMA_TENSOR).unwrap();
            let is_ema = sets == ["algo.baseline=ema"];
            assert_eq!(ema.1.double_value(&[0]).is_finite(), is_ema, "{sets:?}");
            let env2 = runner.config().env.build().unwrap();
            let mut again =
                crate::registry::build(runner.config(), &env2, tch::Device::Cpu).unwrap();
            again.load_state(&state).unwrap();
            let back = again.state();
            let e2 = back.iter().find(|(n, _)| n == EMA_TENSOR).unwrap();
            assert!(
                ema.1.double_value(&[0]) == e2.1.double_value(&[0]) || !is_ema,
                "{sets:?}"
            );
        }
    }

    /// The answer-CE return read off the training pass (each problem encoded once for its
    /// K samples, the update in two parts) equals the separate teacher-forced pass's.
    #[test]
    fn the_training_pass_gives_the_answer_ce_return() {
        let cfg = config(&["train.levels=[1, 2]", "env.max_chain_len=2"]);
        let env = cfg.env.build().unwrap();
        let settings = ReinforceConfig {
            reward: RewardKind::AnswerCe,
            answer_supervision: 1.0,
            ..ReinforceConfig::default()
        };
        let ctx = AgentContext::new(&cfg, &env, tch::Device::Cpu);
        let mut agent = Reinforce::new(&ctx, &settings).unwrap();
        let sampler = cfg.train.sampler().unwrap();
        let mut rows = crate::rollout::Lockstep::new(&env, 0);
        let mut collector = Collector::new(&env, &mut rows, &sampler, 6, 1, 2);
        let batch = agent.collect(&mut collector).unwrap();
        let ep = &batch.episodes;
        let answer_action = agent.policy.answer_action() as i64;
        let forced = with_correct_answers(ep, batch.answers().unwrap(), answer_action);
        let separate = answer_ce_returns(&agent.policy, &forced, None, 1).unwrap();
        let (n, t, k) = (ep.len(), ep.max_len(), ep.samples_per_problem);
        assert_eq!((n, k), (48, 8));
        let (_, answer) = step_kinds(ep, answer_action);
        let mut shared = Vec::new();
        for r in group_parts(n, k, 2) {
            let b = agent.policy.teacher_batch(&forced.rows(r.clone()));
            let pass = pg_pass_shared(&agent.policy, &b, k, true);
            let mask = grid(
                &answer[r.start * t..r.end * t],
                r.len(),
                t,
                pass.logp.device(),
            );
            shared.extend(answer_log_likelihood(&pass.logp, &mask).unwrap());
        }
        assert_eq!(shared.len(), n);
        assert!(separate.iter().any(|&r| r < -0.1), "{separate:?}");
        for (a, b) in shared.iter().zip(&separate) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    /// With `grad_variance_every = 3` the estimate is made on updates 0 and 3 of five, and
    /// the one-part updates in between move the weights as the two-part ones do (the same
    /// gradient summed in another order).
    #[test]
    fn the_gradient_variance_is_estimated_on_every_nth_update() {
        let run = |sets: &[&str]| {
            let cfg = config(sets);
            let env = cfg.env.build().unwrap();
            let mut agent = crate::registry::build(&cfg, &env, tch::Device::Cpu).unwrap();
            let sampler = cfg.train.sampler().unwrap();
            let mut rows = crate::rollout::Lockstep::new(&env, 0);
            let model = |agent: &crate::agent::AnyAgent| -> Vec<Tensor> {
                agent
                    .state()
                    .into_iter()
                    .filter(|(n, _)| n.starts_with("model/"))
                    .map(|(_, t)| t.copy())
                    .collect()
            };
            let initial = model(&agent);
            let mut estimated = Vec::new();
            for _ in 0..5 {
                let mut collector = Collector::new(&env, &mut rows, &sampler, 8, 1, 2);
                let batch = agent.collect(&mut collector).unwrap();
                estimated.push(agent.update(batch).unwrap().get("grad_var").is_some());
            }
            let weights = model(&agent);
            let moved = initial
                .iter()
                .zip(&weights)
                .map(|(a, b)| (a - b).abs().max().double_value(&[]))
                .fold(0.0, f64::max);
            assert!(
                moved > 1e-3,
                "the updates did not move the weights ({moved})"
            );
            (estimated, weights)
        };
        let (every3, w3) = run(&["algo.grad_variance_every=3"]);
        assert_eq!(every3, [true, false, false, true, false]);
        let (every1, w1) = run(&[]);
        assert_eq!(every1, [true; 5]);
        let (never, _) = run(&["algo.grad_variance=false"]);
        assert_eq!(never, [false; 5]);
        assert!(!w1.is_empty());
        for (a, b) in w1.iter().zip(&w3) {
            let diff = (a - b).abs().max().double_value(&[]);
            assert!(diff < 1e-4, "weights differ by {diff}");
        }
        let e = resolved("[algo]\nname = \"reinforce\"\ngrad_variance_every = 0\n").unwrap_err();
        assert!(e.contains("grad_variance_every"), "{e}");
    }

    #[test]
    fn a_group_baseline_without_groups_is_rejected() {
        let text = "[algo]\nname = \"reinforce\"\nsamples_per_problem = 1\n";
        let e = resolved(text).unwrap_err();
        assert!(e.contains("samples_per_problem"), "{e}");
    }
}
