//! An agent: a chain-of-thought transformer that imitates the oracle's chains (teacher
//! forcing), with one setting of its own, the weight of the answer tokens in the loss. It
//! is built on the public policy API (`CotPolicy`, `teacher_batch`, `token_stats`), so
//! `eval` and `search compare` can use its network like a built-in agent's.

use factorexe::agents::agent::{collect_declared, AgentContext, BuildAgent, Collector};
use factorexe::agents::optim::AdamW;
use factorexe::agents::policy::{load_training_state, step_kinds, token_stats, training_state};
use factorexe::agents::{
    ActMode, ActOutput, Agent, AgentError, BatchObs, CotPolicy, Episodes, Experience, Metrics,
};
use factorexe::envs::EnvRng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Teacher forcing on the oracle chain, answer tokens weighted by `answer_weight`.
pub struct ChainCloner {
    policy: CotPolicy,
    opt: AdamW,
    answer_weight: f64,
}

/// The `[algo]` settings of `chain_cloner`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChainClonerSettings {
    /// Weight of an answer token's cross-entropy relative to a chain token's, `>= 0`.
    pub answer_weight: f64,
}

impl Default for ChainClonerSettings {
    fn default() -> Self {
        ChainClonerSettings { answer_weight: 2.0 }
    }
}

impl BuildAgent for ChainCloner {
    const NAME: &'static str = "chain_cloner";
    const SUMMARY: &'static str = "teacher forcing on the oracle chain, answer tokens weighted";
    type Settings = ChainClonerSettings;

    fn validate(s: &ChainClonerSettings) -> Result<(), String> {
        if !(s.answer_weight.is_finite() && s.answer_weight >= 0.0) {
            return Err(format!(
                "algo.answer_weight = {}: expected a finite number >= 0",
                s.answer_weight
            ));
        }
        Ok(())
    }

    fn build(ctx: &AgentContext<'_>, s: ChainClonerSettings) -> Result<Self, AgentError> {
        let policy = ctx.cot_policy()?;
        let opt = ctx.optimizer(policy.var_store());
        Ok(ChainCloner {
            policy,
            opt,
            answer_weight: s.answer_weight,
        })
    }
}

impl Agent for ChainCloner {
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

    fn update(&mut self, ep: Episodes) -> Result<Metrics, AgentError> {
        self.policy.invalidate_cache();
        let (chain, answer) = step_kinds(&ep, self.policy.answer_action() as i64);
        let b = self.policy.teacher_batch(&ep);
        let model = self.policy.model();
        let enc = model.encode(&b.input, &b.difficulty, true);
        let heads = model.forward_chain(&enc, &b.prev, true);
        let stats = token_stats(&heads.logits, &b.mask, &b.targets);
        let weight = b.chain.to_device(stats.ce.device())
            + b.answer.to_device(stats.ce.device()) * self.answer_weight;
        let steps = (chain.iter().sum::<f32>() + answer.iter().sum::<f32>()).max(1.0);
        let loss = (&stats.ce * &weight).sum(Kind::Float) / f64::from(steps);
        self.opt.zero_grad();
        loss.backward();
        let step = self.opt.step()?;
        let mut m = Metrics::default();
        m.scalar("loss", loss.double_value(&[]));
        m.scalar("grad_norm", step.grad_norm);
        m.scalar("lr", step.lr);
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
