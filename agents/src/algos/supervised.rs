//! `Supervised`: answer-only training, no chain (the original research code's SUPERVISED
//! mode): the baseline that shows what chains buy.
//!
//! The agent answers at once: its first action is the ANSWER marker, then it emits the
//! answer tokens. Two readouts:
//!
//! - `decoder` (default): the same [`crate::model::CotTransformer`] as `CotSupervised`,
//!   reading START, ANSWER, then the answer so far. Same network and parameters as the chain
//!   agent; the only difference is that it has no chain to think in.
//! - `answer_head`: the model's answer-only head (CLS token or mean pooling over the
//!   encoder), the original's plain classifier; give it `encoder_layers > 0`.
//!
//! Loss: the mean answer cross-entropy over the batch (the marker is forced, not learned).
//! Needs an env where ANSWER is legal at chain length 0 (not `fixed_chain_len`).

use envs::EnvRng;
use ndarray::{Array2, Array3, Axis};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::act::{choose_actions, ActMode, ActOutput, BatchObs};
use crate::agent::{
    collect_declared, Agent, AgentContext, AgentError, BuildAgent, Collector, Episodes, Experience,
    Metrics,
};
use crate::model::ModelLayout;
use crate::optim::AdamW;
use crate::parallel::DataParallel;
use crate::policy::{load_training_state, token_stats, training_state, weighted_sum, CotPolicy};

/// Which part of the model produces the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readout {
    /// The chain decoder, fed START and ANSWER (same network as `cot_supervised`).
    #[default]
    Decoder,
    /// The answer-only head over the encoder (CLS or mean pooling).
    AnswerHead,
}

/// `[algo]` options of `supervised`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisedConfig {
    /// Which part of the model answers.
    pub readout: Readout,
}

/// Answer-only training; see the module doc.
#[derive(Debug)]
pub struct Supervised {
    policy: CotPolicy,
    opt: AdamW,
    readout: Readout,
    micro_batches: usize,
    parallel: DataParallel,
}

impl Supervised {
    /// An agent for the `CotEnv` described by `spec`; `answer` (the task's answer length and
    /// vocabulary) is required by the `answer_head` readout.
    pub fn new(ctx: &AgentContext<'_>, cfg: &SupervisedConfig) -> Result<Self, AgentError> {
        let AgentContext {
            spec,
            answer,
            model,
            optim,
            steps,
            micro_batches,
            data_parallel,
            seed,
            device,
            ..
        } = *ctx;
        let layout = ModelLayout::from_spec(spec)?;
        let layout = match cfg.readout {
            Readout::Decoder => layout,
            Readout::AnswerHead => {
                let a = answer.ok_or_else(|| {
                    AgentError::Incompatible(format!(
                        "algo.readout = \"answer_head\" needs a token task with a known answer \
                         shape; env `{}` has none (use readout = \"decoder\")",
                        spec.name
                    ))
                })?;
                layout.with_answer_head(a.len, a.vocab).without_chain()
            }
        };
        let policy = CotPolicy::new(spec, &layout, model, seed, device)?;
        let opt = AdamW::new(policy.var_store(), optim, steps);
        Ok(Supervised {
            policy,
            opt,
            readout: cfg.readout,
            micro_batches: micro_batches.max(1),
            parallel: DataParallel::new(data_parallel),
        })
    }

    /// The episodes cut to `[ANSWER] ++ answer`: what the agent itself plays.
    fn answer_only_episodes(&self, ep: &Episodes) -> Result<Episodes, AgentError> {
        let answer = self.policy.answer_action() as i64;
        let mut marks = Vec::with_capacity(ep.len());
        for i in 0..ep.len() {
            let m = (0..ep.lengths[i])
                .find(|&k| ep.actions[[i, k]] == answer)
                .ok_or_else(|| {
                    AgentError::Incompatible(
                        "an oracle episode has no ANSWER marker (truncated at the cap?): \
                         raise env.max_chain_len"
                            .into(),
                    )
                })?;
            marks.push(m);
        }
        let t = (0..ep.len())
            .map(|i| ep.lengths[i] - marks[i])
            .max()
            .unwrap_or(0);
        let n = ep.len();
        let (obs, a) = (ep.tokens.dim().2, ep.action_mask.dim().2);
        let mut out = Episodes {
            tokens: Array3::zeros((n, t, obs)),
            features: Array3::zeros((n, t, ep.features.dim().2)),
            action_mask: Array3::from_elem((n, t, a), false),
            actions: Array2::from_elem((n, t), -1),
            log_probs: Array2::zeros((n, t)),
            entropies: Array2::zeros((n, t)),
            rewards: Array2::zeros((n, t)),
            lengths: Vec::with_capacity(n),
            difficulty: ep.difficulty.clone(),
            solved: ep.solved.clone(),
            truncated: ep.truncated.clone(),
            samples_per_problem: ep.samples_per_problem,
        };
        for (i, &m) in marks.iter().enumerate() {
            let len = ep.lengths[i] - m;
            out.lengths.push(len);
            // Step 0 keeps the problem (input, difficulty); later observations are unused.
            out.tokens
                .index_axis_mut(Axis(0), i)
                .row_mut(0)
                .assign(&ep.tokens.index_axis(Axis(0), i).row(0));
            for k in 0..len {
                out.actions[[i, k]] = ep.actions[[i, m + k]];
                out.action_mask
                    .index_axis_mut(Axis(0), i)
                    .row_mut(k)
                    .assign(&ep.action_mask.index_axis(Axis(0), i).row(m + k));
            }
        }
        Ok(out)
    }
}

/// Accumulates the answer loss of `ep` (answer-only episodes), normalized by `n_answer`
/// answer tokens in the full batch; returns (CE sum, correct sum).
fn accumulate(policy: &CotPolicy, readout: Readout, ep: &Episodes, n_answer: f64) -> (f64, f64) {
    let model = policy.model();
    let forward = crate::profile::phase("forward");
    let (loss, ce, correct) = match readout {
        Readout::Decoder => {
            let b = policy.teacher_batch(ep);
            let enc = model.encode(&b.input, &b.difficulty, true);
            let heads = model.forward_chain(&enc, &b.prev, true);
            let answer = b.answer.to_device(heads.logits.device());
            let s = token_stats(&heads.logits, &b.mask, &b.targets);
            let ce = (&s.ce * &answer).sum(Kind::Float);
            let correct = weighted_sum(&s.correct, &answer);
            (&ce / n_answer.max(1.0), ce, correct)
        }
        Readout::AnswerHead => {
            let first = ep.tokens.index_axis(Axis(1), 0);
            let (input, difficulty) = policy.problem_tensors(first);
            let enc = model.encode(&input, &difficulty, true);
            let logits = model.answer_only(&enc);
            let len = logits.size()[1] as usize;
            let targets: Vec<i64> = (0..ep.len())
                .flat_map(|i| (0..len).map(move |k| (i, k)))
                .map(|(i, k)| ep.actions[[i, k + 1]].max(0))
                .collect();
            let targets = Tensor::from_slice(&targets)
                .view([ep.len() as i64, len as i64])
                .to_device(logits.device());
            let logp = logits.log_softmax(-1, Kind::Float);
            let ce = -logp
                .gather(-1, &targets.unsqueeze(-1), false)
                .sum(Kind::Float);
            let correct = tch::no_grad(|| {
                logp.argmax(-1, false)
                    .eq_tensor(&targets)
                    .to_kind(Kind::Float)
                    .sum(Kind::Float)
                    .double_value(&[])
            });
            (&ce / n_answer.max(1.0), ce, correct)
        }
    };
    crate::profile::backward(&loss, forward.finish());
    (ce.double_value(&[]), correct)
}

impl Agent for Supervised {
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
        let answer = self.policy.answer_action();
        let counts = self.policy.emitted_counts(obs.tokens);
        let mut mask = obs.action_mask.to_owned();
        for (i, &c) in counts.iter().enumerate() {
            if c == 0 && mask.row(i).iter().any(|&m| m) {
                if !mask[[i, answer]] {
                    return Err(AgentError::Incompatible(
                        "the supervised agent answers at once, but ANSWER is not legal at \
                         chain length 0 (env fixed_chain_len = true?)"
                            .into(),
                    ));
                }
                mask.row_mut(i).fill(false);
                mask[[i, answer]] = true;
            }
        }
        match self.readout {
            Readout::Decoder => self.policy.act_masked(obs, mask.view(), mode, rng),
            Readout::AnswerHead => {
                let (input, difficulty) = self.policy.problem_tensors(obs.tokens);
                let model = self.policy.model();
                let logits = tch::no_grad(|| {
                    let enc = model.encode(&input, &difficulty, false);
                    model.answer_only(&enc)
                });
                let (b, len, vocab) = {
                    let s = logits.size();
                    (s[0], s[1], s[2])
                };
                // Answer step k of row i is at emitted position k + 1 (after the marker).
                let k: Vec<i64> = counts
                    .iter()
                    .map(|&c| (c as i64 - 1).clamp(0, len - 1))
                    .collect();
                let index = Tensor::from_slice(&k)
                    .to_device(logits.device())
                    .view([b, 1, 1])
                    .expand([b, 1, vocab], false);
                let step = logits.gather(1, &index, false).squeeze_dim(1);
                let a = obs.action_mask.ncols() as i64;
                let full = if a > vocab {
                    Tensor::cat(
                        &[
                            step,
                            Tensor::full([b, a - vocab], -1e9, (Kind::Float, logits.device())),
                        ],
                        1,
                    )
                } else {
                    step
                };
                choose_actions(&full, mask.view(), mode, rng)
            }
        }
    }

    fn collect(&mut self, ctx: &mut Collector<'_>) -> Result<Episodes, AgentError> {
        collect_declared(self, ctx)
    }

    fn update(&mut self, batch: Episodes) -> Result<Metrics, AgentError> {
        let ep = &batch;
        self.policy.invalidate_cache();
        let ep = self.answer_only_episodes(ep)?;
        let n_answer: f64 = ep.lengths.iter().map(|&l| l.saturating_sub(1) as f64).sum();
        self.opt.zero_grad();
        let (n, readout, micro) = (ep.len(), self.readout, self.micro_batches);
        let parts = self
            .parallel
            .run(&mut self.policy, n, micro, |policy, rows| {
                let part = (rows.len() < n).then(|| ep.rows(rows));
                Ok(accumulate(
                    policy,
                    readout,
                    part.as_ref().unwrap_or(&ep),
                    n_answer,
                ))
            })?;
        let (ce, correct) = parts
            .iter()
            .fold((0.0, 0.0), |(a, b), (c, k)| (a + c, b + k));
        let stats = self.opt.step()?;
        let na = n_answer.max(1.0);
        let mut m = Metrics::default();
        m.scalar("loss", ce / na);
        m.scalar("answer_loss", ce / na);
        m.scalar("answer_token_accuracy", correct / na);
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

impl BuildAgent for Supervised {
    const NAME: &'static str = "supervised";
    const SUMMARY: &'static str = "answer-only training, no chain";
    type Settings = SupervisedConfig;

    fn build(ctx: &AgentContext<'_>, settings: SupervisedConfig) -> Result<Self, AgentError> {
        Self::new(ctx, &settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunConfig;
    use crate::rollout::{Collector, Lockstep};
    use crate::runner::Runner;

    fn config(sets: &[&str]) -> RunConfig {
        let text = r#"
[env]
name = "cycle"
length = 6
[train]
steps = 40
batch_size = 32
levels = [1, 2]
[algo]
name = "supervised"
[model]
heads = 2
head_dim = 8
mlp_factor = 2
encoder_layers = 1
decoder_layers = 1
[optim]
lr = 3e-3
warmup_steps = 5
[eval]
every = 0
episodes = 50
"#;
        crate::testing::config(text, sets)
    }

    /// Both readouts fit a fixed batch (the loss falls) and answer at once in evaluation.
    #[test]
    fn answers_without_a_chain_and_the_loss_falls() {
        for readout in ["decoder", "answer_head"] {
            let cfg = config(&[&format!("algo.readout={readout}")]);
            let env = cfg.env.build().unwrap();
            let sampler = cfg.train.sampler().unwrap();
            let mut batch = Lockstep::new(&env, 0);
            let ep = Collector::new(&env, &mut batch, &sampler, 64, 9, 9)
                .oracle()
                .unwrap();
            let mut agent = crate::registry::build(&cfg, &env, tch::Device::Cpu).unwrap();
            let first = agent
                .update(crate::agent::AnyBatch::new(ep.clone()))
                .unwrap()
                .get("loss")
                .unwrap();
            let mut last = first;
            for _ in 0..30 {
                last = agent
                    .update(crate::agent::AnyBatch::new(ep.clone()))
                    .unwrap()
                    .get("loss")
                    .unwrap();
            }
            assert!(last < 0.7 * first, "{readout}: loss {first} -> {last}");

            let mut runner = Runner::new(cfg, env, agent).unwrap();
            let report = runner.evaluate().unwrap();
            for d in [1, 2] {
                let r = report.get(d, ActMode::Greedy).unwrap();
                assert_eq!(r.mean_chain_len, 0.0, "{readout}: no chain tokens");
                assert_eq!(r.episodes, 50);
            }
        }
    }

    #[test]
    fn a_fixed_length_chain_env_is_refused_with_a_reason() {
        let cfg = config(&["env.fixed_chain_len=true"]);
        let env = cfg.env.build().unwrap();
        let agent = crate::registry::build(&cfg, &env, tch::Device::Cpu).unwrap();
        let mut runner = Runner::new(cfg, env, agent).unwrap();
        let err = runner.evaluate().unwrap_err().to_string();
        assert!(err.contains("fixed_chain_len"), "{err}");
    }
}
