//! A new agent in one file, trained by the unchanged Runner through `agents::train`
//! (collection, evaluation per difficulty, TensorBoard logging, checkpoints, Ctrl-C come
//! for free): an MLP over one-hot observation tokens that clones the oracle's actions.
//! `BuildAgent` gives it a name and settings, so `[algo] name = "mlp_cloner"` trains it and
//! the run's `config.toml` records it; `factorexe::Cli::default().agent::<MlpCloner>()`
//! puts it on every CLI command.
//!
//! ```text
//! cargo run --release -p factorexe-agents --example custom_agent
//! ```
//!
//! An agent says what experience it wants ([`Experience::Oracle`] here; an RL agent returns
//! `Experience::OnPolicy { samples_per_problem, mode }`), chooses actions from observations,
//! learns from a batch of [`Episodes`], and names its tensors for checkpoints.

use agents::act::choose_actions;
use agents::agent::{collect_declared, AgentContext, BuildAgent, Collector};
use agents::checkpoint::{copy_into, var_store_tensors};
use agents::config::RunConfig;
use agents::optim::{AdamW, OptimConfig};
use agents::policy::{load_optim, masked_log_softmax, optim_tensors, MODEL_PREFIX};
use agents::runner::TrainSummary;
use agents::train::{train, TrainOptions};
use agents::{ActMode, ActOutput, Agent, AgentError, BatchObs, Episodes, Experience, Metrics};
use envs::{EnvRng, EnvSpec};
use serde::{Deserialize, Serialize};
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

/// The agent's `[algo]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlpClonerSettings {
    /// Hidden units.
    pub hidden: i64,
}

impl Default for MlpClonerSettings {
    fn default() -> Self {
        MlpClonerSettings { hidden: 256 }
    }
}

impl BuildAgent for MlpCloner {
    const NAME: &'static str = "mlp_cloner";
    const SUMMARY: &'static str = "behaviour cloning with an MLP over one-hot tokens";
    type Settings = MlpClonerSettings;

    fn validate(s: &MlpClonerSettings) -> Result<(), String> {
        if s.hidden < 1 {
            return Err(format!("algo.hidden = {}: expected >= 1", s.hidden));
        }
        Ok(())
    }

    fn build(ctx: &AgentContext<'_>, s: MlpClonerSettings) -> Result<Self, AgentError> {
        Ok(MlpCloner::new(ctx.spec, s.hidden, ctx.optim, ctx.steps))
    }
}

impl Agent for MlpCloner {
    type Batch = Episodes;

    fn name(&self) -> &str {
        Self::NAME
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

    fn collect(&mut self, ctx: &mut Collector<'_>) -> Result<Episodes, AgentError> {
        collect_declared(self, ctx)
    }

    fn update(&mut self, ep: Episodes) -> Result<Metrics, AgentError> {
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

/// Trains the cloner on Cycle(L=5) at 1 and 2 hops for `steps` updates into `run_dir`.
pub fn run(
    steps: u64,
    run_dir: &std::path::Path,
) -> Result<TrainSummary, Box<dyn std::error::Error>> {
    // Registering twice (a second call in one process) is refused; the first one holds.
    let _ = agents::registry::register_agent::<MlpCloner>();
    let config = format!(
        "[env]\nname = \"cycle\"\nlength = 5\n\
         [train]\nsteps = {steps}\nbatch_size = 64\nlevels = [1, 2]\n\
         [algo]\nname = \"mlp_cloner\"\nhidden = 256\n\
         [optim]\nlr = 3e-3\nwarmup_steps = 10\n\
         [eval]\nevery = 0\nepisodes = 300\n"
    );
    let cfg = RunConfig::from_toml_str(&config, "inline", "custom_agent", &[])?;
    let mut opts = TrainOptions::new(cfg);
    opts.run_dir = Some(run_dir.to_path_buf());
    opts.overwrite = true;
    opts.progress = false;
    Ok(train(opts)?)
}

#[allow(dead_code)] // The test that runs this example includes the file and calls `run`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let summary = run(300, std::path::Path::new("runs/custom_agent"))?;
    if let Some(report) = summary.eval {
        print!("{}", report.table());
    }
    Ok(())
}
