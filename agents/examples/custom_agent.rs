//! A new agent in one file, trained by the unchanged Runner (collection, evaluation per
//! difficulty, logging, checkpoints come for free): an MLP over one-hot observation tokens
//! that clones the oracle's actions.
//!
//! ```text
//! cargo run --release -p factorexe-agents --example custom_agent
//! ```
//!
//! An agent says what experience it wants ([`Experience::Oracle`] here; an RL agent returns
//! `Experience::OnPolicy { samples_per_problem, mode }`), chooses actions from observations,
//! learns from a batch of [`Episodes`], and names its tensors for checkpoints.

use agents::agent::{choose_actions, ActMode, ActOutput, Agent, AgentError, BatchObs, Episodes};
use agents::agent::{Experience, Metrics};
use agents::algos::{load_optim, masked_log_softmax, optim_tensors, MODEL_PREFIX};
use agents::checkpoint::{copy_into, var_store_tensors};
use agents::config::RunConfig;
use agents::eval::EvalReport;
use agents::optim::{AdamW, OptimConfig};
use agents::runner::Runner;
use envs::{EnvRng, EnvSpec};
use tch::{nn, nn::Module, Device, Kind, Tensor};

/// Behaviour cloning with a two-layer MLP over the one-hot encoded observation tokens.
pub struct MlpCloner {
    vs: nn::VarStore,
    net: nn::Sequential,
    opt: AdamW,
    vocab: i64,
}

impl MlpCloner {
    /// A policy for `spec` with `hidden` units, optimized for `steps` updates.
    pub fn new(spec: &EnvSpec, hidden: i64, optim: &OptimConfig, steps: u64) -> Self {
        let vocab = spec
            .obs
            .token_fields
            .iter()
            .map(|f| f.vocab)
            .max()
            .unwrap_or(1) as i64;
        let (inputs, actions) = (spec.obs.tokens as i64 * vocab, spec.num_actions as i64);
        let vs = nn::VarStore::new(Device::Cpu);
        let linear = |name, i, o| nn::linear(vs.root() / name, i, o, Default::default());
        let net = nn::seq()
            .add(linear("l1", inputs, hidden))
            .add_fn(|x| x.relu())
            .add(linear("l2", hidden, actions));
        let opt = AdamW::new(&vs, optim, steps);
        Self {
            net,
            opt,
            vs,
            vocab,
        }
    }

    /// Logits `[B, A]` of observation rows `tokens` (`B * obs.tokens` of them, row-major).
    fn logits(&self, tokens: &[i64], rows: usize) -> Tensor {
        let one_hot = Tensor::from_slice(tokens)
            .view([rows as i64, -1])
            .one_hot(self.vocab);
        self.net
            .forward(&one_hot.to_kind(Kind::Float).flatten(1, -1))
    }
}

impl Agent for MlpCloner {
    fn name(&self) -> &str {
        "mlp_cloner"
    }

    fn experience(&self) -> Experience {
        Experience::Oracle
    }

    fn act(
        &mut self,
        obs: &BatchObs,
        mode: ActMode,
        rng: &mut EnvRng,
    ) -> Result<ActOutput, AgentError> {
        let tokens: Vec<i64> = obs.tokens.iter().copied().collect();
        let logits = tch::no_grad(|| self.logits(&tokens, obs.batch_size()));
        choose_actions(&logits, obs.action_mask, mode, rng)
    }

    fn update(&mut self, ep: &Episodes) -> Result<Metrics, AgentError> {
        // Every step of every episode is one example: (observation, legal actions, action).
        let (mut tokens, mut masks, mut targets) = (vec![], vec![], vec![]);
        for i in 0..ep.len() {
            for t in 0..ep.lengths[i] {
                tokens.extend(ep.tokens.slice(ndarray::s![i, t, ..]).iter().copied());
                masks.extend(ep.action_mask.slice(ndarray::s![i, t, ..]).iter().copied());
                targets.push(ep.actions[[i, t]]);
            }
        }
        let mask = Tensor::from_slice(&masks).view([targets.len() as i64, -1]);
        let logp = masked_log_softmax(&self.logits(&tokens, targets.len()), &mask);
        let target = Tensor::from_slice(&targets).unsqueeze(1);
        let loss = -logp.gather(1, &target, false).mean(Kind::Float);
        self.opt.zero_grad();
        loss.backward();
        let stats = self.opt.step()?;
        let mut metrics = Metrics::default();
        metrics.scalar("loss", loss.double_value(&[]));
        metrics.scalar("grad_norm", stats.grad_norm);
        metrics.scalar("lr", stats.lr);
        Ok(metrics)
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut v = var_store_tensors(&self.vs, MODEL_PREFIX);
        v.extend(optim_tensors(&self.opt));
        v
    }

    fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<(), AgentError> {
        copy_into(&mut self.vs, tensors, MODEL_PREFIX)
            .map_err(|e| AgentError::StateMismatch(e.to_string()))?;
        load_optim(&mut self.opt, tensors)
    }
}

/// Trains the cloner on Cycle(L=5) at 1 and 2 hops for `steps` updates and returns the final
/// evaluation (greedy and sampled, per difficulty).
pub fn run(steps: u64) -> Result<EvalReport, Box<dyn std::error::Error>> {
    let config = format!(
        "[env]\nname = \"cycle\"\nlength = 5\n\
         [train]\nsteps = {steps}\nbatch_size = 64\nlevels = [1, 2]\n\
         [optim]\nlr = 3e-3\nwarmup_steps = 10\n\
         [eval]\nevery = 0\nepisodes = 300\n"
    );
    let cfg = RunConfig::from_toml_str(&config, "inline", "custom_agent", &[])?;
    let env = cfg.env.build()?;
    let agent = MlpCloner::new(envs::Env::spec(&env), 256, &cfg.optim, cfg.train.steps);
    let mut runner = Runner::new(cfg, env, agent)?;
    let summary = runner.train()?;
    Ok(summary.eval.expect("training ends with an evaluation"))
}

#[allow(dead_code)] // The test that runs this example includes the file and calls `run`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    print!("{}", run(300)?.table());
    Ok(())
}
