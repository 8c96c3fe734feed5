//! `CotSupervised`: teacher forcing on the oracle chain (the original research code's COT
//! mode, in the MDP form of `docs/cot-mdp.md`).
//!
//! The oracle's actions are `chain ++ [ANSWER] ++ answer`. The decoder reads START and the
//! oracle actions and predicts each next one; the loss is
//!
//! ```text
//! loss = chain_weight * CE(chain steps) + answer_weight * CE(answer steps)
//! ```
//!
//! where the chain steps are the chain tokens and the ANSWER marker (the decision to stop),
//! the answer steps the tokens after the marker, and each CE is a mean over that kind of
//! step in the whole batch, computed under the env's action mask. The model therefore learns
//! the chain, when to stop, and the answer, and at test time writes its own chain.

use envs::EnvRng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::act::{ActMode, ActOutput, BatchObs};
use crate::agent::{
    collect_declared, Agent, AgentContext, AgentError, BuildAgent, Collector, Episodes, Experience,
    Metrics,
};
use crate::optim::AdamW;
use crate::parallel::DataParallel;
use crate::policy::{
    load_training_state, step_kinds, token_stats, training_state, weighted_sum, CotPolicy,
};

/// `[algo]` options of `cot_supervised`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CotSupervisedConfig {
    /// Weight of the chain cross-entropy (chain tokens and the ANSWER marker), `>= 0`.
    pub chain_weight: f64,
    /// Weight of the answer cross-entropy, `>= 0`.
    pub answer_weight: f64,
}

impl Default for CotSupervisedConfig {
    fn default() -> Self {
        CotSupervisedConfig {
            chain_weight: 1.0,
            answer_weight: 1.0,
        }
    }
}

impl CotSupervisedConfig {
    /// Checks the weights, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        for (k, v) in [
            ("chain_weight", self.chain_weight),
            ("answer_weight", self.answer_weight),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("algo.{k} = {v}: expected a finite number >= 0"));
            }
        }
        if self.chain_weight + self.answer_weight == 0.0 {
            return Err(
                "algo.chain_weight and algo.answer_weight are both 0: nothing to learn".into(),
            );
        }
        Ok(())
    }
}

/// Teacher forcing on the oracle chain; see the module doc.
#[derive(Debug)]
pub struct CotSupervised {
    policy: CotPolicy,
    opt: AdamW,
    cfg: CotSupervisedConfig,
    micro_batches: usize,
    parallel: DataParallel,
}

impl CotSupervised {
    /// An agent for the `CotEnv` described by `spec`, trained for `steps` updates with
    /// `micro_batches` gradient-accumulation parts; weights from `seed`.
    pub fn new(ctx: &AgentContext<'_>, cfg: &CotSupervisedConfig) -> Result<Self, AgentError> {
        let policy = ctx.cot_policy()?;
        let opt = ctx.optimizer(policy.var_store());
        Ok(CotSupervised {
            policy,
            opt,
            cfg: cfg.clone(),
            micro_batches: ctx.micro_batches.max(1),
            parallel: DataParallel::new(ctx.data_parallel),
        })
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &AdamW {
        &self.opt
    }
}

/// Accumulates the gradient of the loss over `episodes` (normalized by the counts of the
/// full batch, so micro-batches add up to it) and returns the metric sums.
fn accumulate(
    policy: &CotPolicy,
    cfg: &CotSupervisedConfig,
    ep: &Episodes,
    n_chain: f64,
    n_answer: f64,
) -> [f64; 6] {
    let forward = crate::profile::phase("forward");
    let b = policy.teacher_batch(ep);
    let model = policy.model();
    let enc = model.encode(&b.input, &b.difficulty, true);
    let heads = model.forward_chain(&enc, &b.prev, true);
    let dev = heads.logits.device();
    let chain = b.chain.to_device(dev);
    let answer = b.answer.to_device(dev);
    let s = token_stats(&heads.logits, &b.mask, &b.targets);
    let chain_ce = (&s.ce * &chain).sum(Kind::Float);
    let answer_ce = (&s.ce * &answer).sum(Kind::Float);
    let loss = &chain_ce * (cfg.chain_weight / n_chain.max(1.0))
        + &answer_ce * (cfg.answer_weight / n_answer.max(1.0));
    crate::profile::backward(&loss, forward.finish());
    [
        chain_ce.double_value(&[]),
        answer_ce.double_value(&[]),
        weighted_sum(&s.correct, &chain),
        weighted_sum(&s.correct, &answer),
        weighted_sum(&s.entropy, &chain),
        loss.double_value(&[]),
    ]
}

impl Agent for CotSupervised {
    type Batch = Episodes;

    fn name(&self) -> &str {
        Self::NAME
    }

    fn experience(&self) -> Experience {
        Experience::Oracle
    }

    fn act(
        &mut self,
        obs: &BatchObs<'_>,
        mode: ActMode,
        rng: &mut EnvRng,
    ) -> Result<ActOutput, AgentError> {
        self.policy.act_masked(obs, obs.action_mask, mode, rng)
    }

    fn collect(&mut self, ctx: &mut Collector<'_>) -> Result<Episodes, AgentError> {
        collect_declared(self, ctx)
    }

    fn update(&mut self, batch: Episodes) -> Result<Metrics, AgentError> {
        let ep = &batch;
        self.policy.invalidate_cache();
        let (chain, answer) = step_kinds(ep, self.policy.answer_action() as i64);
        let n_chain: f64 = chain.iter().map(|&x| x as f64).sum();
        let n_answer: f64 = answer.iter().map(|&x| x as f64).sum();
        self.opt.zero_grad();
        let (n, cfg, micro) = (ep.len(), &self.cfg, self.micro_batches);
        let parts = self
            .parallel
            .run(&mut self.policy, n, micro, |policy, rows| {
                let part = (rows.len() < n).then(|| ep.rows(rows));
                Ok(accumulate(
                    policy,
                    cfg,
                    part.as_ref().unwrap_or(ep),
                    n_chain,
                    n_answer,
                ))
            })?;
        let mut sums = [0f64; 6];
        for part in &parts {
            for (acc, x) in sums.iter_mut().zip(part) {
                *acc += x;
            }
        }
        let stats = self.opt.step()?;
        let (nc, na) = (n_chain.max(1.0), n_answer.max(1.0));
        let mut m = Metrics::default();
        m.scalar("loss", sums[5]);
        m.scalar("chain_loss", sums[0] / nc);
        m.scalar("answer_loss", sums[1] / na);
        m.scalar("chain_token_accuracy", sums[2] / nc);
        m.scalar("answer_token_accuracy", sums[3] / na);
        m.scalar("chain_entropy", sums[4] / nc);
        m.scalar("grad_norm", stats.grad_norm);
        m.scalar("lr", stats.lr);
        Ok(m)
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

    fn policy_mut(&mut self) -> Option<&mut CotPolicy> {
        Some(&mut self.policy)
    }

    fn num_parameters(&self) -> usize {
        self.policy.model().num_parameters()
    }
}

impl BuildAgent for CotSupervised {
    const NAME: &'static str = "cot_supervised";
    const SUMMARY: &'static str = "teacher forcing on the oracle chain";
    type Settings = CotSupervisedConfig;

    fn validate(settings: &CotSupervisedConfig) -> Result<(), String> {
        settings.validate()
    }

    fn build(ctx: &AgentContext<'_>, settings: CotSupervisedConfig) -> Result<Self, AgentError> {
        Self::new(ctx, &settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunConfig;
    use crate::rollout::{Collector, Lockstep};
    use crate::runner::Runner;
    use crate::ActMode;

    fn config(sets: &[&str]) -> RunConfig {
        let text = r#"
seed = 0
[env]
name = "cycle"
length = 8
[train]
steps = 150
batch_size = 64
levels = [1, 2, 3]
[algo]
name = "cot_supervised"
[model]
heads = 2
head_dim = 16
mlp_factor = 2
decoder_layers = 1
[optim]
lr = 1e-2
warmup_steps = 10
schedule = "cosine"
min_lr_ratio = 0.1
[eval]
every = 0
episodes = 200
sampled = false
"#;
        crate::testing::config(text, sets)
    }

    /// The CI learning test: chain supervision solves Cycle(L=8) at 1..3 hops.
    #[test]
    fn learns_cycle8_hops_1_to_3() {
        let start = std::time::Instant::now();
        let cfg = config(&[]);
        let env = cfg.env.build().unwrap();
        let agent = crate::registry::build(&cfg, &env, tch::Device::Cpu).unwrap();
        let mut runner = Runner::new(cfg, env, agent).unwrap();
        let summary = runner.train().unwrap();
        let report = summary.eval.unwrap();
        eprintln!(
            "{}in {:.1} s",
            report.table(),
            start.elapsed().as_secs_f64()
        );
        for d in 1..=3 {
            let acc = report.accuracy(d, ActMode::Greedy).unwrap();
            assert!(
                acc >= 0.95,
                "hops {d}: greedy accuracy {acc}\n{}",
                report.table()
            );
            let agreement = report.get(d, ActMode::Greedy).unwrap().chain_agreement;
            assert!(agreement >= 0.95, "hops {d}: chain agreement {agreement}");
        }
    }

    /// Three micro-batches give the same update as one batch.
    #[test]
    fn accumulation_equals_one_big_batch() {
        let cfg = config(&[]);
        let env = cfg.env.build().unwrap();
        let sampler = cfg.train.sampler().unwrap();
        let mut batch = Lockstep::new(&env, 0);
        let episodes = Collector::new(&env, &mut batch, &sampler, 30, 5, 6)
            .oracle()
            .unwrap();
        let run = |parts: usize| {
            let cfg = config(&[&format!("train.micro_batches={parts}")]);
            let mut agent = crate::registry::build(&cfg, &env, tch::Device::Cpu).unwrap();
            let m1 = agent
                .update(crate::agent::AnyBatch::new(episodes.clone()))
                .unwrap();
            let m2 = agent
                .update(crate::agent::AnyBatch::new(episodes.clone()))
                .unwrap();
            (agent.state(), m1, m2)
        };
        let (one, m1, _) = run(1);
        let (three, m3, m3b) = run(3);
        // Equal up to f32 rounding: summing three parts reorders the reductions, and
        // libtorch's threaded reductions are not ordered either (seen 1 run in 4 at 1e-5).
        let same = |a: f64, b: f64| (a - b).abs() <= 1e-4 * a.abs().max(1.0);
        assert!(same(m1.get("loss").unwrap(), m3.get("loss").unwrap()));
        assert!(same(
            m1.get("grad_norm").unwrap(),
            m3.get("grad_norm").unwrap()
        ));
        assert!(m3b.get("loss").unwrap() < m3.get("loss").unwrap());
        for ((n, a), (_, b)) in one.iter().zip(three.iter()) {
            if n.starts_with("optim/step") {
                continue;
            }
            assert!(
                a.to_kind(Kind::Float)
                    .allclose(&b.to_kind(Kind::Float), 1e-5, 1e-6, false),
                "{n}"
            );
        }
    }

    #[test]
    fn the_loss_weights_select_the_terms() {
        let cfg = config(&[]);
        let env = cfg.env.build().unwrap();
        let sampler = cfg.train.sampler().unwrap();
        let mut batch = Lockstep::new(&env, 0);
        let episodes = Collector::new(&env, &mut batch, &sampler, 16, 1, 2)
            .oracle()
            .unwrap();
        let loss = |sets: &[&str]| {
            let cfg = config(sets);
            let mut agent = crate::registry::build(&cfg, &env, tch::Device::Cpu).unwrap();
            agent
                .update(crate::agent::AnyBatch::new(episodes.clone()))
                .unwrap()
        };
        let both = loss(&[]);
        let chain = loss(&["algo.answer_weight=0"]);
        let answer = loss(&["algo.chain_weight=0"]);
        let (c, a) = (
            both.get("chain_loss").unwrap(),
            both.get("answer_loss").unwrap(),
        );
        assert!((both.get("loss").unwrap() - (c + a)).abs() < 1e-4);
        assert!((chain.get("loss").unwrap() - c).abs() < 1e-4);
        assert!((answer.get("loss").unwrap() - a).abs() < 1e-4);
    }
}
