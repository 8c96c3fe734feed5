//! A new agent in one file, trained by the unchanged Runner (collection, evaluation per
//! difficulty, logging, checkpoints all come for free): an MLP over one-hot observation
//! tokens that clones the oracle's actions.
//!
//! ```text
//! cargo run --release -p factorexe-agents --example custom_agent
//! ```
//!
//! An agent says what experience it wants ([`Experience::Oracle`] here; an RL agent would
//! return `Experience::OnPolicy { samples_per_problem, mode }`), chooses actions from
//! observations, learns from a batch of [`Episodes`], and exposes its tensors for checkpoints.

use agents::agent::{choose_actions, ActMode, ActOutput, Agent, AgentError, BatchObs, Episodes};
use agents::agent::{Experience, Metrics};
use agents::config::RunConfig;
use agents::eval::EvalReport;
use agents::optim::{AdamW, OptimConfig};
use agents::runner::Runner;
use envs::{EnvRng, EnvSpec};
use ndarray::ArrayView2;
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
        let inputs = spec.obs.tokens as i64 * vocab;
        let vs = nn::VarStore::new(Device::Cpu);
        let p = vs.root();
        let net = nn::seq()
            .add(nn::linear(&p / "l1", inputs, hidden, Default::default()))
            .add_fn(|x| x.relu())
            .add(nn::linear(
                &p / "l2",
                hidden,
                spec.num_actions as i64,
                Default::default(),
            ));
        let opt = AdamW::new(&vs, optim, steps);
        MlpCloner {
            vs,
            net,
            opt,
            vocab,
        }
    }

    /// `[B, tokens * vocab]` one-hot features of observation rows.
    fn features(&self, tokens: ArrayView2<'_, i64>) -> Tensor {
        let flat: Vec<i64> = tokens.iter().copied().collect();
        let t = Tensor::from_slice(&flat).view([tokens.nrows() as i64, -1]);
        t.one_hot(self.vocab).to_kind(Kind::Float).flatten(1, -1)
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
        obs: &BatchObs<'_>,
        mode: ActMode,
        rng: &mut EnvRng,
    ) -> Result<ActOutput, AgentError> {
        let logits = tch::no_grad(|| self.net.forward(&self.features(obs.tokens)));
        choose_actions(&logits, obs.action_mask, mode, rng)
    }

    fn update(&mut self, ep: &Episodes) -> Result<Metrics, AgentError> {
        // Every valid step of every episode is one training example.
        let (n, obs_len, a) = (ep.len(), ep.tokens.dim().2, ep.action_mask.dim().2);
        let (mut tokens, mut masks, mut targets) =
            (Vec::<i64>::new(), Vec::<bool>::new(), Vec::new());
        for i in 0..n {
            for t in 0..ep.lengths[i] {
                tokens.extend(ep.tokens.slice(ndarray::s![i, t, ..]).iter());
                masks.extend(ep.action_mask.slice(ndarray::s![i, t, ..]).iter());
                targets.push(ep.actions[[i, t]]);
            }
        }
        let m = targets.len();
        let tokens =
            ndarray::Array2::from_shape_vec((m, obs_len), tokens).expect("rows of obs_len");
        let mask = Tensor::from_slice(&masks).view([m as i64, a as i64]);
        let logits = self.net.forward(&self.features(tokens.view()));
        let logp = logits
            .masked_fill(&mask.logical_not(), -1e9)
            .log_softmax(-1, Kind::Float);
        let target = Tensor::from_slice(&targets);
        let loss = -logp
            .gather(1, &target.unsqueeze(1), false)
            .mean(Kind::Float);
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
        let mut v = agents::checkpoint::var_store_tensors(&self.vs, "model/");
        v.extend(
            self.opt
                .state_tensors()
                .into_iter()
                .map(|(k, t)| (format!("optim/{k}"), t)),
        );
        v
    }

    fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<(), AgentError> {
        agents::checkpoint::copy_into(&mut self.vs, tensors, "model/")
            .map_err(|e| AgentError::StateMismatch(e.to_string()))?;
        let optim: Vec<(String, Tensor)> = tensors
            .iter()
            .filter_map(|(k, t)| {
                k.strip_prefix("optim/")
                    .map(|k| (k.to_string(), t.shallow_clone()))
            })
            .collect();
        Ok(self.opt.load_state(&optim)?)
    }

    fn num_parameters(&self) -> usize {
        self.vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel())
            .sum()
    }
}

/// Trains the cloner on Cycle(L=5) at 1 and 2 hops for `steps` updates and returns the final
/// evaluation (greedy and sampled, per difficulty).
pub fn run(steps: u64) -> Result<EvalReport, Box<dyn std::error::Error>> {
    let config = format!(
        r#"
        name = "custom_agent"
        [env]
        name = "cycle"
        length = 5
        [train]
        steps = {steps}
        batch_size = 64
        levels = [1, 2]
        [optim]
        lr = 3e-3
        warmup_steps = 10
        [eval]
        every = 0
        episodes = 300
        "#
    );
    let cfg = RunConfig::from_toml_str(&config, "custom_agent", "custom_agent", &[])?;
    let env = cfg.env.build()?;
    let agent = MlpCloner::new(envs::Env::spec(&env), 256, &cfg.optim, cfg.train.steps);
    let mut runner = Runner::new(cfg, env, agent)?;
    let summary = runner.train()?;
    Ok(summary.eval.expect("training ends with an evaluation"))
}

#[allow(dead_code)] // The test that runs this example includes the file and calls `run`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let report = run(300)?;
    print!("{}", report.table());
    Ok(())
}
