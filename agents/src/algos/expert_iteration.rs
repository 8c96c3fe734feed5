//! `ExpertIteration`: the searcher is the expert, the network its apprentice (Anthony et al.
//! 2017; AlphaZero's training loop on the chain-of-thought MDP).
//!
//! Each update plays one episode per problem (`samples_per_problem` with different search
//! draws) where **every action is chosen by a search** ([`search::GumbelMuZero`] or
//! [`search::Mcts`]) from the current state, over the current network
//! ([`PolicyEvaluator`]). The search's improved policy at each state (Gumbel's
//! `softmax(logits + σ(completed Q))`, or MCTS's visit distribution) becomes the policy
//! target, and the episode's outcome the value target:
//!
//! ```text
//! loss = policy_weight * CE(π_search(s_t), π_θ(s_t)) + value_weight * (V_θ(s_t) - G_t)^2
//! ```
//!
//! averaged over the steps of the batch, with `G_t` the reward collected from step `t` to the
//! end (the outcome: 1 for a right answer). The only reward the learner reads is the played
//! episode's, as REINFORCE's does: the search itself values states with the network
//! (`search_rewards = "ignore"`, the default). `search_rewards = "oracle"` lets the search
//! read the env's rewards at the terminal states it reaches (training-time only, and then
//! every terminal state searched is a reward query; the comparison with REINFORCE counts only
//! the played episodes, so use it only as a labelled upper bound).
//!
//! A search guided by an untrained value head perturbs the policy it improves, so the first
//! `value_warmup_steps` updates play the network's own sampled actions and train the value
//! head alone. `init` starts from a trained run's parameters (e.g. a short `cot_supervised`
//! run); with `value_warmup_steps >= train.steps` the run only calibrates the value head of
//! that policy, which is what value-guided test-time search needs.

use std::path::Path;

use envs::{Env, EnvRng, EnvSpec};
use ndarray::{s, Array2, Array3};
use rand::{Rng, SeedableRng};
use search::{
    GumbelConfig, GumbelMuZero, Mcts, MctsConfig, OracleEvaluator, SearchError, SearchOutput,
    Searcher,
};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::{load_optim, masked_log_softmax, optim_tensors, CotPolicy};
use crate::agent::{
    ActMode, ActOutput, Agent, AgentError, BatchObs, Episodes, Experience, Metrics,
};
use crate::checkpoint;
use crate::model::{ModelConfig, ModelLayout};
use crate::optim::{micro_batches, AdamW, OptimConfig};
use crate::runner::Collector;
use crate::search_eval::{PolicyEvaluator, ValueSource};

/// The searcher that plays the episodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitSearcher {
    /// Gumbel MuZero: policy improvement guaranteed even with few simulations; the target is
    /// the completed-Q policy.
    #[default]
    Gumbel,
    /// AlphaZero MCTS (PUCT, root Dirichlet noise); the target is the visit distribution.
    Mcts,
}

/// Whether the training-time search may read env rewards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchRewards {
    /// Values come from the network only (the honest default).
    #[default]
    Ignore,
    /// Terminal states reached by the search are valued by the env's reward (upper bound).
    Oracle,
}

/// `[algo]` options of `expert_iteration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpertIterationConfig {
    /// The searcher choosing every action of the played episodes.
    pub searcher: ExitSearcher,
    /// Evaluator calls per search (one search per step), `>= 2` (1 would be the raw policy).
    pub budget: usize,
    /// Episodes played per problem (consecutive rows), `>= 1`.
    pub samples_per_problem: usize,
    /// Weight of the cross-entropy to the search policy, `>= 0`.
    pub policy_weight: f64,
    /// Weight of the value regression, `>= 0`.
    pub value_weight: f64,
    /// Updates at the start that play the network's sampled actions and train the value
    /// only (the search needs a value head that means something).
    pub value_warmup_steps: u64,
    /// Where the search takes values from.
    pub search_value: ValueSource,
    /// Whether the search may read env rewards (see the module doc).
    pub search_rewards: SearchRewards,
    /// Gumbel: root actions considered by Sequential Halving.
    pub max_considered: usize,
    /// Gumbel: scale of the root Gumbel noise (exploration), `>= 0`.
    pub gumbel_scale: f64,
    /// MCTS: weight of the root Dirichlet noise, in `[0, 1]`.
    pub dirichlet_fraction: f64,
    /// MCTS: the action is drawn from visits^(1/temperature); 0 takes the most visited.
    pub temperature: f64,
    /// A run directory or checkpoint file whose model parameters initialise the network
    /// before the first update (empty: the seed's random weights). Resuming or evaluating
    /// this run reads only its own checkpoints.
    pub init: String,
}

impl Default for ExpertIterationConfig {
    fn default() -> Self {
        ExpertIterationConfig {
            searcher: ExitSearcher::Gumbel,
            budget: 16,
            samples_per_problem: 1,
            policy_weight: 1.0,
            value_weight: 1.0,
            value_warmup_steps: 0,
            search_value: ValueSource::Head,
            search_rewards: SearchRewards::Ignore,
            max_considered: 16,
            gumbel_scale: 1.0,
            dirichlet_fraction: 0.25,
            temperature: 1.0,
            init: String::new(),
        }
    }
}

impl ExpertIterationConfig {
    /// Checks ranges, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.budget < 2 {
            return Err(format!(
                "algo.budget = {}: expected an integer >= 2 (evaluator calls per search)",
                self.budget
            ));
        }
        if self.samples_per_problem == 0 {
            return Err("algo.samples_per_problem = 0: expected an integer >= 1".into());
        }
        for (k, v) in [
            ("policy_weight", self.policy_weight),
            ("value_weight", self.value_weight),
            ("gumbel_scale", self.gumbel_scale),
            ("temperature", self.temperature),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("algo.{k} = {v}: expected a finite number >= 0"));
            }
        }
        if self.policy_weight + self.value_weight == 0.0 {
            return Err(
                "algo.policy_weight and algo.value_weight are both 0: nothing to learn".into(),
            );
        }
        if !(0.0..=1.0).contains(&self.dirichlet_fraction) {
            return Err(format!(
                "algo.dirichlet_fraction = {}: expected a number in [0, 1]",
                self.dirichlet_fraction
            ));
        }
        if self.max_considered == 0 {
            return Err("algo.max_considered = 0: expected an integer >= 1".into());
        }
        Ok(())
    }

    fn searcher<'e, E: Env + 'e>(&self) -> Result<Box<dyn Searcher<E> + 'e>, SearchError> {
        Ok(match self.searcher {
            ExitSearcher::Gumbel => Box::new(GumbelMuZero::new(GumbelConfig {
                max_num_considered_actions: self.max_considered,
                gumbel_scale: self.gumbel_scale as f32,
                ..GumbelConfig::default()
            })?),
            ExitSearcher::Mcts => Box::new(Mcts::new(MctsConfig {
                dirichlet_fraction: self.dirichlet_fraction as f32,
                temperature: self.temperature as f32,
                ..MctsConfig::default()
            })?),
        })
    }
}

/// What the last collection did, reported by the next update.
#[derive(Debug, Clone, Copy, Default)]
struct CollectStats {
    searched: bool,
    /// Search calls (one per live row per step) and evaluator calls they spent.
    searches: usize,
    evals: usize,
}

/// Expert iteration; see the module doc.
#[derive(Debug)]
pub struct ExpertIteration {
    policy: CotPolicy,
    opt: AdamW,
    cfg: ExpertIterationConfig,
    micro_batches: usize,
    num_actions: usize,
    /// Improved-policy targets `(N, T, A)` of the episodes last collected.
    targets: Option<Array3<f32>>,
    stats: CollectStats,
    /// `algo.init` is still to be loaded (before the first update of a fresh run).
    init_pending: bool,
}

fn search_failed(e: SearchError) -> AgentError {
    AgentError::Incompatible(format!("search failed: {e}"))
}

impl ExpertIteration {
    /// An agent for the `CotEnv` described by `spec`, trained for `steps` updates with
    /// `micro_batches` gradient-accumulation parts; weights from `seed` (replaced by
    /// `cfg.init`'s before the first update).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        spec: &EnvSpec,
        model: &ModelConfig,
        cfg: &ExpertIterationConfig,
        optim: &OptimConfig,
        steps: u64,
        micro_batches: usize,
        seed: u64,
        device: Device,
    ) -> Result<Self, AgentError> {
        let layout =
            ModelLayout::from_spec(spec).map_err(|e| AgentError::Incompatible(e.to_string()))?;
        let policy = CotPolicy::new(spec, &layout, model, seed, device)?;
        let opt = AdamW::new(policy.var_store(), optim, steps);
        Ok(ExpertIteration {
            policy,
            opt,
            cfg: cfg.clone(),
            micro_batches: micro_batches.max(1),
            num_actions: spec.num_actions,
            targets: None,
            stats: CollectStats::default(),
            init_pending: !cfg.init.is_empty(),
        })
    }

    /// Loads `algo.init`'s parameters, once, before the first update of a fresh run. Done
    /// here rather than at construction so that evaluating or resuming the run never needs
    /// the init run to be there (its own checkpoints hold the weights).
    fn apply_init(&mut self) -> Result<(), AgentError> {
        if !std::mem::take(&mut self.init_pending) || self.opt.steps() > 0 {
            return Ok(());
        }
        let init = &self.cfg.init;
        let loaded = checkpoint::load(Path::new(init))
            .map_err(|e| AgentError::Incompatible(format!("algo.init = {init:?}: {e}")))?;
        self.policy.load_params(&loaded.tensors).map_err(|e| {
            AgentError::Incompatible(format!(
                "algo.init = {init:?}: the saved model does not fit [model]: {e}"
            ))
        })
    }

    /// The policy network.
    pub fn policy(&self) -> &CotPolicy {
        &self.policy
    }

    /// The configuration.
    pub fn config(&self) -> &ExpertIterationConfig {
        &self.cfg
    }

    /// True while the value head is warmed up (no search, no policy loss).
    fn warming_up(&self) -> bool {
        self.opt.steps() < self.cfg.value_warmup_steps
    }

    /// The targets of `ep`: the stored search policies when they belong to it, else one-hot
    /// on the actions taken (behaviour cloning of episodes collected elsewhere).
    fn targets_for(&mut self, ep: &Episodes) -> Array3<f32> {
        let (n, t, a) = (ep.len(), ep.max_len(), self.num_actions);
        if let Some(tg) = self.targets.take() {
            if tg.dim() == (n, t, a) {
                return tg;
            }
        }
        let mut tg = Array3::zeros((n, t, a));
        for i in 0..n {
            for k in 0..ep.lengths[i].min(t) {
                let act = ep.actions[[i, k]];
                if act >= 0 && (act as usize) < a {
                    tg[[i, k, act as usize]] = 1.0;
                }
            }
        }
        tg
    }

    /// Accumulates the gradient over `ep` (normalized by `steps`, the full batch's step
    /// count) and returns the sums of policy CE, squared value error, target entropy, value.
    fn accumulate(
        &self,
        ep: &Episodes,
        targets: &Array3<f32>,
        returns: &Array2<f32>,
        steps: f64,
        policy_weight: f64,
    ) -> [f64; 5] {
        let b = self.policy.teacher_batch(ep);
        let model = self.policy.model();
        let enc = model.encode(&b.input, &b.difficulty, true);
        let heads = model.forward_chain(&enc, &b.prev, true);
        let dev = heads.logits.device();
        let (n, t, a) = targets.dim();
        let (ni, ti) = (n as i64, t as i64);
        let valid = (&b.chain + &b.answer).to_device(dev);
        let tgt = Tensor::from_slice(targets.as_slice().expect("standard layout"))
            .view([ni, ti, a as i64])
            .to_device(dev);
        let ret = Tensor::from_slice(returns.as_slice().expect("standard layout"))
            .view([ni, ti])
            .to_device(dev);
        let logp = masked_log_softmax(&heads.logits, &b.mask);
        let ce = -(&tgt * &logp).sum_dim_intlist(-1, false, Kind::Float);
        let policy_ce = (&ce * &valid).sum(Kind::Float);
        let err = &heads.value - &ret;
        let value_se = (&err * &err * &valid).sum(Kind::Float);
        let loss = &policy_ce * (policy_weight / steps) + &value_se * (self.cfg.value_weight / steps);
        loss.backward();
        let (target_entropy, value_sum) = tch::no_grad(|| {
            let h = -(&tgt * tgt.clamp_min(1e-12).log()).sum_dim_intlist(-1, false, Kind::Float);
            (
                (h * &valid).sum(Kind::Float).double_value(&[]),
                (&heads.value * &valid).sum(Kind::Float).double_value(&[]),
            )
        });
        [
            policy_ce.double_value(&[]),
            value_se.double_value(&[]),
            target_entropy,
            value_sum,
            loss.double_value(&[]),
        ]
    }

    /// Plays the problems of `ctx` with a search choosing every action.
    fn collect_searched<E: Env>(
        &mut self,
        ctx: &mut Collector<'_, E>,
        k: usize,
        rng: &mut EnvRng,
    ) -> Result<Episodes, AgentError> {
        let na = self.num_actions;
        let mut searcher = self.cfg.searcher::<E>().map_err(search_failed)?;
        let mut evaluator = PolicyEvaluator::new(&self.policy, self.cfg.search_value)?;
        let oracle = self.cfg.search_rewards == SearchRewards::Oracle;
        let budget = self.cfg.budget;
        let mut per_step: Vec<Vec<f32>> = Vec::new();
        let mut stats = CollectStats {
            searched: true,
            ..CollectStats::default()
        };
        let mut roots: Vec<E> = Vec::new();
        let mut live: Vec<usize> = Vec::new();
        let ep = ctx.run_episodes(
            |obs: &BatchObs<'_>, envs: &[E]| {
                let n = envs.len();
                live.clear();
                live.extend((0..n).filter(|&i| obs.action_mask.row(i).iter().any(|&m| m)));
                roots.clear();
                roots.extend(live.iter().map(|&i| envs[i].clone()));
                let outs: Vec<SearchOutput> = if oracle {
                    let mut ev = OracleEvaluator::new(&mut evaluator);
                    searcher.search(&roots, &mut ev, budget, rng)
                } else {
                    searcher.search(&roots, &mut evaluator, budget, rng)
                }
                .map_err(search_failed)?;
                let mut target = vec![0f32; n * na];
                let mut actions = vec![0usize; n];
                for (&i, out) in live.iter().zip(&outs) {
                    actions[i] = out.actions[0];
                    target[i * na..(i + 1) * na].copy_from_slice(&out.policy);
                    stats.evals += out.evals;
                }
                stats.searches += live.len();
                per_step.push(target);
                Ok(ActOutput {
                    actions,
                    log_probs: vec![0.0; n],
                    entropies: vec![0.0; n],
                })
            },
            k,
        )?;
        let (n, t) = (ep.len(), ep.max_len());
        let mut targets = Array3::zeros((n, t, na));
        for (step, row) in per_step.iter().enumerate().take(t) {
            let view = ndarray::ArrayView2::from_shape((n, na), row)
                .map_err(|e| AgentError::Incompatible(e.to_string()))?;
            targets.slice_mut(s![.., step, ..]).assign(&view);
        }
        self.targets = Some(targets);
        self.stats = stats;
        Ok(ep)
    }
}

/// Reward-to-go `(N, T)`: the rewards from each step to the end of its episode.
fn returns_to_go(ep: &Episodes) -> Array2<f32> {
    let (n, t) = (ep.len(), ep.max_len());
    let mut g = Array2::zeros((n, t));
    for i in 0..n {
        let mut acc = 0f32;
        for k in (0..ep.lengths[i].min(t)).rev() {
            acc += ep.rewards[[i, k]];
            g[[i, k]] = acc;
        }
    }
    g
}

impl Agent for ExpertIteration {
    fn name(&self) -> &str {
        "expert_iteration"
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

    fn collect<E: Env>(&mut self, ctx: &mut Collector<'_, E>) -> Result<Episodes, AgentError> {
        self.apply_init()?;
        let k = self.cfg.samples_per_problem.max(1);
        let mut rng = EnvRng::seed_from_u64(ctx.rng().random());
        ctx.reset_problems(k)?;
        self.policy.invalidate_cache();
        if self.warming_up() {
            self.targets = None;
            self.stats = CollectStats::default();
            let policy = &mut self.policy;
            return ctx.run_episodes(
                |obs, _| policy.act_masked(obs, obs.action_mask, ActMode::Sample, &mut rng),
                k,
            );
        }
        self.collect_searched(ctx, k, &mut rng)
    }

    fn update(&mut self, ep: &Episodes) -> Result<Metrics, AgentError> {
        self.policy.invalidate_cache();
        let policy_weight = if self.warming_up() {
            0.0
        } else {
            self.cfg.policy_weight
        };
        let targets = self.targets_for(ep);
        let returns = returns_to_go(ep);
        let steps: f64 = ep.lengths.iter().map(|&l| l.min(ep.max_len()) as f64).sum();
        let steps = steps.max(1.0);
        self.opt.zero_grad();
        let mut sums = [0f64; 5];
        for r in micro_batches(ep.len(), self.micro_batches) {
            let s = if r.len() == ep.len() {
                self.accumulate(ep, &targets, &returns, steps, policy_weight)
            } else {
                let tg = targets.slice(s![r.clone(), .., ..]).to_owned();
                let rt = returns.slice(s![r.clone(), ..]).to_owned();
                self.accumulate(&ep.rows(r), &tg, &rt, steps, policy_weight)
            };
            for (acc, x) in sums.iter_mut().zip(s) {
                *acc += x;
            }
        }
        let stats = self.opt.step()?;
        let solved = ep.solved.iter().filter(|&&s| s).count() as f64 / ep.len().max(1) as f64;
        let mut m = Metrics::default();
        m.scalar("loss", sums[4]);
        m.scalar("policy_loss", sums[0] / steps);
        m.scalar("value_loss", sums[1] / steps);
        m.scalar("target_entropy", sums[2] / steps);
        m.scalar("value_mean", sums[3] / steps);
        m.scalar("played_solved", solved);
        m.scalar("searched", f64::from(u8::from(self.stats.searched)));
        if self.stats.searches > 0 {
            m.scalar(
                "evals_per_search",
                self.stats.evals as f64 / self.stats.searches as f64,
            );
        }
        m.scalar("grad_norm", stats.grad_norm);
        m.scalar("lr", stats.lr);
        Ok(m)
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut v = self.policy.param_tensors();
        v.extend(optim_tensors(&self.opt));
        v
    }

    fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<(), AgentError> {
        self.init_pending = false;
        self.policy.load_params(tensors)?;
        load_optim(&mut self.opt, tensors)
    }

    fn num_parameters(&self) -> usize {
        self.policy.model().num_parameters()
    }
}
