//! `ExpertIteration`: the searcher is the expert, the network its apprentice (Anthony et al.
//! 2017; AlphaZero's training loop on the chain-of-thought MDP).
//!
//! Each update plays one episode per problem (`samples_per_problem` with different search
//! draws) where **every action is chosen by a search** (`searcher`: any registered searcher
//! that plays one action per search, [`crate::searchers`]; by default Gumbel MuZero, or
//! MCTS) from the current state, over the current network
//! ([`PolicyEvaluator`]). The search's improved policy at each state (Gumbel's
//! `softmax(logits + σ(completed Q))`, or MCTS's visit distribution) becomes the policy
//! target, and the episode's outcome the value target:
//!
//! ```text
//! loss = policy_weight * CE(π_search(s_t), π_θ(s_t)) + value_weight * (V_θ(s_t) - G_t)^2
//! ```
//!
//! averaged over the steps of the batch, with `G_t` the reward collected from step `t` to the
//! end (the outcome: 1 for a right answer). Options: `policy_target = "action"` trains toward
//! the search's chosen action instead (one-hot; with `gumbel_scale = 0` the search's best
//! action), which does not carry a noisy value head's errors into the targets; `value_target
//! = "greedy"` regresses the value on whether greedy decoding from the state answers right
//! (one rollout per state, each a reward query), the value a search needs to improve on
//! greedy decoding. Values are probabilities in `[0, 1]`, so by default (`bounded_values`)
//! the search normalizes Q by these bounds rather than min-max over siblings.
//!
//! # Rewards and the cost of a search
//!
//! The search uses the env as its simulator (it steps clones of the current state) but, by
//! default (`search_rewards = "ignore"`), never reads its rewards: every state, finished
//! chains included, is valued by the network ([`PolicyEvaluator`] with the value head). The
//! head is trained at every state of the played episodes and also at the state after the
//! last action (when the decoder has a position for it), so it learns to verify a finished
//! chain's answer; the search's improved policy at the answer step comes from that verifier.
//! The only rewards the learner reads are the played episodes', as for REINFORCE: the two
//! compare at equal env samples. Each update reports `train/reward_queries`.
//!
//! `search_rewards = "oracle"` values the terminal states the search reaches by the env's
//! reward, as AlphaZero's search scores finished games by the rules; each is then a reward
//! query (counted). On tasks whose answer is a single token the search can simply try every
//! answer, so the played episodes answer right without using the chain and the network
//! learns to skip it: a cautionary upper bound, not a method.
//!
//! A search guided by an untrained value head perturbs the policy it improves, so the first
//! `value_warmup_steps` updates play the network's own sampled actions and train the value
//! only. `init` starts from a trained run's parameters (e.g. a short `cot_supervised` run);
//! during the warm-up a frozen copy of that network anchors the policy (cross-entropy to its
//! policy, `anchor_weight`) while the whole decoder learns the value: the value regression
//! alone would pull the shared features away from the policy's and wreck it within tens of
//! updates. Without `init` (or with `anchor_weight = 0`) the warm-up trains the value head
//! alone. With `value_warmup_steps >= train.steps` the run only calibrates the value of the
//! init policy, which is what value-guided test-time search needs.
//!
//! # From random weights: the answer recipe
//!
//! From random weights and the 0/1 reward alone the search has nothing to improve on: the
//! value head must predict whether a random chain's answer is right, which is the task
//! itself, so its values are noise, and the Gumbel targets `softmax(logits + σ(q))` move the
//! policy's logits by that noise every update. The log-probabilities random-walk until one
//! token takes all the mass: within ~50 updates on Cycle L=10 the policy emits one token
//! everywhere, chain and answer alike (they share the output layer; at the chain cap the
//! answers' values even tie exactly, as the finished chain has no decoder position, so the
//! answer step only follows the chain). Which token depends on the seed; it is 0, never
//! right on Cycle, one seed in ten (hence 0% below the 10% chance), another one otherwise
//! (chance). REINFORCE from the 0/1 reward also stays at chance there. The recipe that
//! learns reads, per played episode, its correct answer as `reinforce`'s does
//! (`answer_supervision`, `reward = "answer_ce"`): `answer_supervision` replaces the
//! search's target at the answer steps by the correct answer given the searched chain, and
//! `value_target = "answer_prob"` regresses the value on the probability the network gives
//! that answer after the played chain, a dense value in place of the mostly-0 outcome.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use envs::{Difficulty, Env, EnvError, EnvRng, EnvSpec, Info, ObsMut, Step};
use ndarray::{s, Array2, Array3};
use rand::{Rng, SeedableRng};
use search::{OracleEvaluator, SearchOutput};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::init::InitFrom;
use super::rl::{answer_ce_returns, oracle_answers, with_correct_answers};
use crate::act::{ActMode, ActOutput, BatchObs};
use crate::agent::{
    Agent, AgentContext, AgentError, BuildAgent, Collector, Episodes, Experience, Metrics,
};
use crate::optim::{micro_batches, AdamW};
use crate::policy::{
    load_training_state, masked_log_softmax, step_kinds, training_state, CotPolicy, MODEL_PREFIX,
};
use crate::rollout::Lockstep;
use crate::search_eval::{PolicyEvaluator, ValueSource};
use crate::searchers::{Plays, SearchContext, SearchPurpose, SearchSpec, MAX_BUDGET};

/// Whether the training-time search may read env rewards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchRewards {
    /// Values come from the network only (the default): a finished chain is valued by the
    /// head at its own position, a learned verifier trained on the played outcomes.
    #[default]
    Ignore,
    /// Terminal states reached by the search are valued by the env's reward (each one a
    /// reward query). Beware: the search can then try every answer token, so its episodes
    /// answer right without a chain and the network learns to skip it.
    Oracle,
}

/// What the value head regresses on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueTarget {
    /// The played episode's reward from the state on (AlphaZero's `z`).
    #[default]
    Outcome,
    /// Whether greedy decoding from the state gets the answer right (one rollout per state,
    /// a reward query each): the value of the policy a search improves upon, so a one-step
    /// lookahead on it is a rollout policy improvement over greedy decoding.
    Greedy,
    /// The probability the network gives the correct answer after the played chain, at every
    /// state of the episode (`reinforce`'s `answer_ce` signal as a value): dense where the
    /// 0/1 outcome of an untrained policy is noise. Reads the correct answer of each played
    /// episode, as `reinforce`'s answer recipe does.
    AnswerProb,
}

/// What the policy head is trained toward at each searched state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyTarget {
    /// The search's improved policy (completed-Q policy or visit distribution).
    #[default]
    Search,
    /// One-hot on the action the search chose (with `gumbel_scale = 0`, its best action):
    /// robust to a noisy value head, whose errors the full improved policy carries.
    Action,
}

/// `[algo]` options of `expert_iteration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpertIterationConfig {
    /// The searcher choosing every action of the played episodes, with its settings (a
    /// registered searcher that plays one action per search; its settings default to their
    /// training values: exploration on). In TOML: `searcher = "mcts"` or `searcher = { name
    /// = "gumbel", max_considered = 8 }`.
    pub searcher: SearchSpec,
    /// Evaluator calls per search (one search per step), `>= 2` (1 would be the raw policy).
    pub budget: usize,
    /// Episodes played per problem (consecutive rows), `>= 1`.
    pub samples_per_problem: usize,
    /// Weight of the cross-entropy to the search policy, `>= 0`.
    pub policy_weight: f64,
    /// The policy target.
    pub policy_target: PolicyTarget,
    /// Weight of the value regression, `>= 0`.
    pub value_weight: f64,
    /// Updates at the start that play the network's sampled actions and train the value
    /// only (the search needs a value head that means something).
    pub value_warmup_steps: u64,
    /// Where the search takes values from.
    pub search_value: ValueSource,
    /// What the value head regresses on.
    pub value_target: ValueTarget,
    /// Whether the search may read env rewards (see the module doc).
    pub search_rewards: SearchRewards,
    /// Take values as probabilities in `[0, 1]`: MCTS normalizes Q by these bounds and
    /// Gumbel does not rescale them (off: mctx's min-max normalization over each node's
    /// children, which turns the smallest value difference of a young value head into a
    /// near one-hot target and collapses the policy).
    pub bounded_values: bool,
    /// During the value warm-up of a run with `init`: weight of the cross-entropy to the
    /// init network's policy, which holds the policy where `init` left it while the whole
    /// decoder learns the value, `>= 0`; 0 trains the value head alone (a linear probe).
    pub anchor_weight: f64,
    /// A run directory or checkpoint file whose model parameters initialise the network
    /// before the first update (empty: the seed's random weights). Resuming or evaluating
    /// this run reads only its own checkpoints.
    pub init: String,
    /// Weight of the cross-entropy of the correct answer given the searched chain, which
    /// replaces the search's target at the answer steps (0: the search's target there), as
    /// `reinforce`'s `answer_supervision`; averaged over the answer steps of the batch.
    pub answer_supervision: f64,
    /// Older spelling of gumbel's `max_considered`, from configs written before searchers
    /// took their own settings: read, folded into `searcher` when it is gumbel (ignored
    /// otherwise, as it was), never written. So are the three below.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_considered: Option<usize>,
    /// Older spelling of gumbel's `gumbel_scale` (see `max_considered`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gumbel_scale: Option<f64>,
    /// Older spelling of mcts's `dirichlet_fraction` (see `max_considered`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dirichlet_fraction: Option<f64>,
    /// Older spelling of mcts's `temperature` (see `max_considered`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
}

impl Default for ExpertIterationConfig {
    fn default() -> Self {
        ExpertIterationConfig {
            searcher: SearchSpec {
                name: "gumbel".into(),
                settings: toml::Table::new(),
            },
            budget: 16,
            samples_per_problem: 1,
            policy_weight: 1.0,
            policy_target: PolicyTarget::Search,
            value_weight: 1.0,
            value_warmup_steps: 0,
            search_value: ValueSource::Head,
            value_target: ValueTarget::Outcome,
            search_rewards: SearchRewards::Ignore,
            bounded_values: true,
            anchor_weight: 1.0,
            init: String::new(),
            answer_supervision: 0.0,
            max_considered: None,
            gumbel_scale: None,
            dirichlet_fraction: None,
            temperature: None,
        }
    }
}

impl ExpertIterationConfig {
    /// Checks ranges, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=MAX_BUDGET).contains(&self.budget) {
            return Err(format!(
                "algo.budget = {}: expected an integer in 2..={MAX_BUDGET} (evaluator calls \
                 per search)",
                self.budget
            ));
        }
        if self.samples_per_problem == 0 {
            return Err("algo.samples_per_problem = 0: expected an integer >= 1".into());
        }
        for (k, v) in [
            ("policy_weight", self.policy_weight),
            ("value_weight", self.value_weight),
            ("anchor_weight", self.anchor_weight),
            ("answer_supervision", self.answer_supervision),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("algo.{k} = {v}: expected a finite number >= 0"));
            }
        }
        if self.policy_weight + self.value_weight + self.answer_supervision == 0.0 {
            return Err(
                "algo.policy_weight, algo.value_weight and algo.answer_supervision are all 0: \
             nothing to learn"
                    .into(),
            );
        }
        let entry = self
            .searcher
            .entry()
            .map_err(|e| format!("algo.searcher: {e}"))?;
        if entry.plays != Plays::EachAction {
            return Err(format!(
                "algo.searcher = {:?}: it plays whole chains; expert iteration needs a searcher \
                 that plays one action per search and returns an improved policy (mcts, gumbel)",
                self.searcher.name
            ));
        }
        let resolved = self
            .searcher
            .resolved(SearchPurpose::Train)
            .map_err(|e| format!("algo.searcher: {e}"))?;
        if resolved
            .carries_unspent()
            .map_err(|e| format!("algo.searcher: {e}"))?
        {
            // Its play loop gives every decision the same budget.
            return Err(format!(
                "algo.searcher = {resolved}: carry_unspent = true is not supported by expert \
                 iteration (every search gets algo.budget); set carry_unspent = false"
            ));
        }
        Ok(())
    }

    /// Whether the updates read the correct answers of the played episodes.
    fn needs_answers(&self) -> bool {
        self.answer_supervision > 0.0 || self.value_target == ValueTarget::AnswerProb
    }

    /// Folds the older top-level searcher keys into `searcher` and completes its settings
    /// with their training defaults.
    pub fn complete(&mut self) -> Result<(), String> {
        let mut settings = self.searcher.settings.clone();
        let folded: [(&str, &str, Option<toml::Value>); 4] = [
            (
                "gumbel",
                "max_considered",
                self.max_considered
                    .take()
                    .map(|v| toml::Value::Integer(v as i64)),
            ),
            (
                "gumbel",
                "gumbel_scale",
                self.gumbel_scale.take().map(toml::Value::Float),
            ),
            (
                "mcts",
                "dirichlet_fraction",
                self.dirichlet_fraction.take().map(toml::Value::Float),
            ),
            (
                "mcts",
                "temperature",
                self.temperature.take().map(toml::Value::Float),
            ),
        ];
        for (searcher, key, value) in folded {
            if let Some(v) = value {
                if self.searcher.name == searcher && !settings.contains_key(key) {
                    settings.insert(key.to_string(), v);
                }
            }
        }
        self.searcher = SearchSpec::resolve(&self.searcher.name, &settings, SearchPurpose::Train)
            .map_err(|e| format!("algo.searcher: {e}"))?;
        Ok(())
    }
}

/// What the last collection did, reported by the next update.
#[derive(Debug, Clone, Copy, Default)]
struct CollectStats {
    searched: bool,
    /// Search calls (one per live row per step) and evaluator calls they spent.
    searches: usize,
    evals: usize,
    /// Episodes the searches finished in the simulator (terminal states reached).
    searched_terminals: usize,
    /// Greedy rollouts played for the value targets.
    rollouts: usize,
}

/// An env that counts the episodes it (or any clone of it) finishes: the terminal states a
/// search reaches, which are reward queries when the search reads rewards.
#[derive(Debug, Clone)]
struct Tally<E> {
    inner: E,
    terminals: Arc<AtomicUsize>,
}

impl<E: Env> Env for Tally<E> {
    fn spec(&self) -> &EnvSpec {
        self.inner.spec()
    }
    fn reset(&mut self, rng: &mut EnvRng, difficulty: Difficulty) -> Result<(), EnvError> {
        self.inner.reset(rng, difficulty)
    }
    fn step(&mut self, action: usize) -> Result<Step, EnvError> {
        let step = self.inner.step(action)?;
        if step.terminated {
            self.terminals.fetch_add(1, Ordering::Relaxed);
        }
        Ok(step)
    }
    fn observe(&self, obs: ObsMut<'_>) {
        self.inner.observe(obs)
    }
    fn observe_update(&self, obs: ObsMut<'_>) {
        self.inner.observe_update(obs)
    }
    fn info(&self) -> Info {
        self.inner.info()
    }
    fn is_done(&self) -> bool {
        self.inner.is_done()
    }
    fn render(&self) -> String {
        self.inner.render()
    }
    fn oracle_action(&self) -> Option<usize> {
        self.inner.oracle_action()
    }
}

/// Expert iteration; see the module doc.
#[derive(Debug)]
pub struct ExpertIteration {
    policy: CotPolicy,
    opt: AdamW,
    cfg: ExpertIterationConfig,
    micro_batches: usize,
    num_actions: usize,
    /// `algo.init`, loaded before the first update of a fresh run.
    init: InitFrom,
    /// A frozen copy of the init network, the policy target of the value warm-up.
    anchor: Option<CotPolicy>,
}

/// What [`ExpertIteration`]'s `collect` hands its `update`: the played episodes and what the
/// search and the value targets made of them.
#[derive(Debug)]
pub struct ExitBatch {
    /// The played episodes.
    pub episodes: Episodes,
    /// The search's improved-policy targets `(N, T, A)`; `None`: one-hot on the actions
    /// taken (the value warm-up, or episodes collected elsewhere).
    targets: Option<Array3<f32>>,
    /// Value targets `(N, T + 1)` when not the episodes' outcomes.
    value_targets: Option<Array2<f32>>,
    /// The correct answer of each row, when the config reads them.
    answers: Option<Vec<Vec<i64>>>,
    stats: CollectStats,
}

impl ExitBatch {
    /// Episodes collected elsewhere (an oracle, another agent), learned from as behaviour
    /// cloning of their actions with their outcomes as value targets.
    pub fn from_episodes(episodes: Episodes) -> Self {
        ExitBatch {
            episodes,
            targets: None,
            value_targets: None,
            answers: None,
            stats: CollectStats::default(),
        }
    }
}

/// Checkpoint prefix of the anchor network's parameters.
const ANCHOR_PREFIX: &str = "anchor/";

impl ExpertIteration {
    /// An agent for the `CotEnv` described by `spec`, trained for `steps` updates with
    /// `micro_batches` gradient-accumulation parts; weights from `seed` (replaced by
    /// `cfg.init`'s before the first update).
    pub fn new(ctx: &AgentContext<'_>, cfg: &ExpertIterationConfig) -> Result<Self, AgentError> {
        let policy = ctx.cot_policy()?;
        let anchor = if !cfg.init.is_empty() && cfg.anchor_weight > 0.0 {
            Some(ctx.cot_policy()?)
        } else {
            None
        };
        let opt = ctx.optimizer(policy.var_store());
        Ok(ExpertIteration {
            policy,
            opt,
            cfg: cfg.clone(),
            micro_batches: ctx.micro_batches.max(1),
            num_actions: ctx.spec.num_actions,
            init: InitFrom::new(&cfg.init),
            anchor,
        })
    }

    /// Loads `algo.init`'s parameters into the network (and the anchor), once, before the
    /// first update of a fresh run.
    fn apply_init(&mut self) -> Result<(), AgentError> {
        let steps = self.opt.steps();
        match self.anchor.as_mut() {
            Some(a) => self.init.apply(steps, &mut [&mut self.policy, a]),
            None => self.init.apply(steps, &mut [&mut self.policy]),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ExpertIterationConfig {
        &self.cfg
    }

    /// True while the value head is warmed up (no search, no policy loss).
    fn warming_up(&self) -> bool {
        self.opt.steps() < self.cfg.value_warmup_steps
    }

    /// The targets of `ep`: the search's policies when collected with it, else one-hot on
    /// the actions taken.
    fn targets_for(&self, ep: &Episodes, searched: Option<Array3<f32>>) -> Array3<f32> {
        let (n, t, a) = (ep.len(), ep.max_len(), self.num_actions);
        if let Some(tg) = searched {
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

    /// Accumulates the gradient over `ep`: the policy cross-entropy weighted per step by
    /// `weights` `(N, T)` (normalization included), the value error normalized by `steps`,
    /// the full batch's step count. Returns the sums of policy CE, squared value error,
    /// target entropy, value, the loss and the CE at the answer steps.
    fn accumulate(
        &self,
        ep: &Episodes,
        targets: &Array3<f32>,
        returns: &Array2<f32>,
        weights: &Array2<f32>,
        steps: f64,
        anchor: Option<&CotPolicy>,
    ) -> [f64; 6] {
        let b = self.policy.teacher_batch(ep);
        let model = self.policy.model();
        let (n, t, a) = targets.dim();
        let (ni, ti) = (n as i64, t as i64);
        // One position more than the actions when the decoder has it: the state after the
        // last action, where the value head learns the finished chain's outcome (the
        // terminal value the search reads, see `search_eval`).
        let te = (t + 1).min(model.layout().max_steps);
        let pad = self.policy.pad();
        let mut prev = Vec::with_capacity(n * te);
        let mut vmask = vec![0f32; n * te];
        for i in 0..n {
            prev.push(pad);
            for k in 0..te - 1 {
                let act = ep.actions[[i, k]];
                prev.push(if act >= 0 { act } else { pad });
            }
            for k in 0..=ep.lengths[i].min(te - 1) {
                vmask[i * te + k] = 1.0;
            }
        }
        let prev = Tensor::from_slice(&prev).view([ni, te as i64]);
        let forward = crate::profile::phase("forward");
        let enc = model.encode(&b.input, &b.difficulty, true);
        let heads = model.forward_chain(&enc, &prev, true);
        let forward_flops = forward.finish();
        let logits = heads.logits.narrow(1, 0, ti);
        let dev = logits.device();
        let valid = (&b.chain + &b.answer).to_device(dev);
        let vmask = Tensor::from_slice(&vmask)
            .view([ni, te as i64])
            .to_device(dev);
        let tgt = match anchor {
            Some(anchor) => tch::no_grad(|| {
                let _phase = crate::profile::phase("score");
                let m = anchor.model();
                let enc = m.encode(&b.input, &b.difficulty, false);
                let logits = m.forward_chain(&enc, &b.prev, false).logits;
                masked_log_softmax(&logits, &b.mask).exp().to_device(dev)
            }),
            None => Tensor::from_slice(targets.as_slice().expect("standard layout"))
                .view([ni, ti, a as i64])
                .to_device(dev),
        };
        let ret = Tensor::from_slice(returns.as_slice().expect("standard layout"))
            .view([ni, ti + 1])
            .narrow(1, 0, te as i64)
            .to_device(dev);
        let w = Tensor::from_slice(weights.as_slice().expect("standard layout"))
            .view([ni, ti])
            .to_device(dev);
        let logp = masked_log_softmax(&logits, &b.mask);
        let ce = -(&tgt * &logp).sum_dim_intlist(-1, false, Kind::Float);
        let policy_ce = (&ce * &valid).sum(Kind::Float);
        let err = &heads.value - &ret;
        let value_se = (&err * &err * &vmask).sum(Kind::Float);
        let loss = (&ce * &w).sum(Kind::Float) + &value_se * (self.cfg.value_weight / steps);
        crate::profile::backward(&loss, forward_flops);
        let (target_entropy, value_sum) = tch::no_grad(|| {
            let h = -(&tgt * tgt.clamp_min(1e-12).log()).sum_dim_intlist(-1, false, Kind::Float);
            (
                (h * &valid).sum(Kind::Float).double_value(&[]),
                (&heads.value.narrow(1, 0, ti) * &valid)
                    .sum(Kind::Float)
                    .double_value(&[]),
            )
        });
        let answer_ce = tch::no_grad(|| {
            (&ce * b.answer.to_device(dev))
                .sum(Kind::Float)
                .double_value(&[])
        });
        [
            policy_ce.double_value(&[]),
            value_se.double_value(&[]),
            target_entropy,
            value_sum,
            loss.double_value(&[]),
            answer_ce,
        ]
    }

    /// Plays the problems of `ctx` with a search choosing every action; returns the
    /// episodes, the search's policy targets `(N, T, A)` and what the searches spent.
    fn collect_searched(
        &mut self,
        ctx: &mut Collector<'_>,
        k: usize,
        rng: &mut EnvRng,
    ) -> Result<(Episodes, Array3<f32>, CollectStats), AgentError> {
        let na = self.num_actions;
        let spec = self.cfg.searcher.clone();
        let bounded_values = self.cfg.bounded_values;
        let mut searcher: Option<Box<dyn search::Searcher<envs::AnyEnv>>> = None;
        let mut evaluator = PolicyEvaluator::new(&self.policy, self.cfg.search_value)?;
        let oracle = self.cfg.search_rewards == SearchRewards::Oracle;
        let budget = self.cfg.budget;
        let policy_target = self.cfg.policy_target;
        let mut per_step: Vec<Vec<f32>> = Vec::new();
        let mut stats = CollectStats {
            searched: true,
            ..CollectStats::default()
        };
        let terminals = Arc::new(AtomicUsize::new(0));
        // The roots are wrapped to count the episodes the search finishes; as `AnyEnv`s they
        // go to any registered searcher.
        let mut roots: Vec<envs::AnyEnv> = Vec::new();
        let mut live: Vec<usize> = Vec::new();
        let ep = ctx.run_episodes(
            |obs: &BatchObs<'_>, envs: &[envs::AnyEnv]| {
                let n = envs.len();
                live.clear();
                live.extend((0..n).filter(|&i| obs.action_mask.row(i).iter().any(|&m| m)));
                roots.clear();
                roots.extend(live.iter().map(|&i| {
                    envs::AnyEnv::custom(Tally {
                        inner: envs[i].clone(),
                        terminals: Arc::clone(&terminals),
                    })
                }));
                let Some(first) = envs.first() else {
                    return Err(AgentError::Incompatible("no episode to play".into()));
                };
                let searcher = match &mut searcher {
                    Some(s) => s,
                    None => searcher.insert(spec.build(&SearchContext {
                        spec: first.spec(),
                        budget,
                        bounded_values,
                    })?),
                };
                let outs: Vec<SearchOutput> = if oracle {
                    let mut ev = OracleEvaluator::new(&mut evaluator);
                    searcher.search(&roots, &mut ev, budget, rng)
                } else {
                    searcher.search(&roots, &mut evaluator, budget, rng)
                }?;
                let mut target = vec![0f32; n * na];
                let mut actions = vec![0usize; n];
                for (&i, out) in live.iter().zip(&outs) {
                    let (Some(&a), true) = (out.actions.first(), out.policy.len() == na) else {
                        return Err(AgentError::Incompatible(format!(
                            "searcher `{}` returned {} actions and a policy over {} actions; \
                             expert iteration needs an action and a policy over all {na}",
                            spec.name,
                            out.actions.len(),
                            out.policy.len()
                        )));
                    };
                    actions[i] = a;
                    match policy_target {
                        PolicyTarget::Search => {
                            target[i * na..(i + 1) * na].copy_from_slice(&out.policy)
                        }
                        PolicyTarget::Action => target[i * na + a] = 1.0,
                    }
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
        // Each step's row holds `n * na` targets, row-major, as written above.
        for (step, row) in per_step.iter().enumerate().take(t) {
            for (i, chunk) in row.chunks_exact(na).enumerate().take(n) {
                for (a, &p) in chunk.iter().enumerate() {
                    targets[[i, step, a]] = p;
                }
            }
        }
        stats.searched_terminals = terminals.load(Ordering::Relaxed);
        Ok((ep, targets, stats))
    }
}

impl ExpertIteration {
    /// `(N, T + 1)`: whether greedy decoding by the current network from each state of `ep`
    /// (replayed from `roots`) ends with a right answer, the finished chain's own outcome in
    /// the column after its last step. One rollout per state, played in one lock-step
    /// batch; each is a reward query. Also returns the number of rollouts.
    fn greedy_outcomes<E: Env>(
        &mut self,
        roots: &[E],
        ep: &Episodes,
        rng: &mut EnvRng,
    ) -> Result<(Array2<f32>, usize), AgentError> {
        let (n, t) = (ep.len(), ep.max_len());
        let mut starts: Vec<E> = Vec::new();
        let mut at: Vec<(usize, usize)> = Vec::new();
        for (i, root) in roots.iter().enumerate().take(n) {
            let mut e = root.clone();
            for k in 0..ep.lengths[i].min(t) {
                starts.push(e.clone());
                at.push((i, k));
                e.step(ep.actions[[i, k]] as usize)?;
            }
        }
        let mut out = Array2::zeros((n, t + 1));
        for i in 0..n {
            // A finished chain's greedy continuation is itself.
            out[[i, ep.lengths[i].min(t)]] = f32::from(u8::from(ep.solved[i]));
        }
        let Some(first) = starts.first() else {
            return Ok((out, 0));
        };
        let mut batch = Lockstep::new(first, starts.len());
        batch.reset_with(|j, env| {
            *env = starts[j].clone();
            Ok(())
        })?;
        self.policy.invalidate_cache();
        let policy = &mut self.policy;
        let played = batch.run(
            |obs, _| policy.act_masked(obs, obs.action_mask, ActMode::Greedy, rng),
            false,
        )?;
        self.policy.invalidate_cache();
        for (j, &(i, k)) in at.iter().enumerate() {
            out[[i, k]] = f32::from(u8::from(played.solved[j]));
        }
        Ok((out, starts.len()))
    }
}

/// Reward-to-go `(N, T + 1)`: the rewards from each step to the end of its episode, and in
/// the column after its last step the reward of that step (the finished chain's value).
fn returns_to_go(ep: &Episodes) -> Array2<f32> {
    let (n, t) = (ep.len(), ep.max_len());
    let mut g = Array2::zeros((n, t + 1));
    for i in 0..n {
        let len = ep.lengths[i].min(t);
        if len > 0 {
            // The finished chain's own value: the reward its last step was paid.
            g[[i, len]] = ep.rewards[[i, len - 1]];
        }
        let mut acc = 0f32;
        for k in (0..len).rev() {
            acc += ep.rewards[[i, k]];
            g[[i, k]] = acc;
        }
    }
    g
}

impl Agent for ExpertIteration {
    type Batch = ExitBatch;

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

    fn collect(&mut self, ctx: &mut Collector<'_>) -> Result<ExitBatch, AgentError> {
        self.apply_init()?;
        let k = self.cfg.samples_per_problem.max(1);
        let mut rng = EnvRng::seed_from_u64(ctx.rng().random());
        let roots: Vec<envs::AnyEnv> = ctx.reset_problems(k)?.to_vec();
        let answers = if self.cfg.needs_answers() {
            let answers = oracle_answers(&roots, self.policy.answer_action()).ok_or_else(|| {
                AgentError::Incompatible(super::rl::no_oracle_answer(
                    "algo.answer_supervision and algo.value_target = \"answer_prob\" read the \
                     oracle's answer",
                    &roots,
                ))
            })?;
            Some(answers)
        } else {
            None
        };
        self.policy.invalidate_cache();
        let (episodes, targets, mut stats) = if self.warming_up() {
            let policy = &mut self.policy;
            let ep = ctx.run_episodes(
                |obs, _| policy.act_masked(obs, obs.action_mask, ActMode::Sample, &mut rng),
                k,
            )?;
            (ep, None, CollectStats::default())
        } else {
            let (ep, targets, stats) = self.collect_searched(ctx, k, &mut rng)?;
            (ep, Some(targets), stats)
        };
        let value_targets = if self.cfg.value_target == ValueTarget::Greedy {
            let (v, rollouts) = self.greedy_outcomes(&roots, &episodes, &mut rng)?;
            stats.rollouts = rollouts;
            Some(v)
        } else {
            None
        };
        Ok(ExitBatch {
            episodes,
            targets,
            value_targets,
            answers,
            stats,
        })
    }

    fn update(&mut self, batch: ExitBatch) -> Result<Metrics, AgentError> {
        let ExitBatch {
            episodes,
            targets,
            value_targets,
            answers,
            stats: collected,
        } = batch;
        let ep = &episodes;
        self.policy.invalidate_cache();
        let mut targets = self.targets_for(ep, targets);
        let warm = self.warming_up();
        let anchor = if warm { self.anchor.as_ref() } else { None };
        let policy_weight = match (warm, anchor) {
            (false, _) => self.cfg.policy_weight,
            (true, Some(_)) => self.cfg.anchor_weight,
            (true, None) => 0.0,
        };
        let (n, t) = (ep.len(), ep.max_len());
        let answer_action = self.policy.answer_action() as i64;
        let forced = if self.cfg.needs_answers() {
            let answers = match answers {
                Some(a) if a.len() == n => a,
                _ => {
                    return Err(AgentError::Incompatible(
                        "this config needs the correct answers, which `collect` records: \
                         update a batch that this agent collected"
                            .into(),
                    ))
                }
            };
            Some(with_correct_answers(ep, &answers, answer_action))
        } else {
            None
        };
        let mut returns = match value_targets {
            Some(v) if v.dim() == (n, t + 1) => v,
            _ => returns_to_go(ep),
        };
        let (chain, answer) = step_kinds(ep, answer_action);
        if let (ValueTarget::AnswerProb, Some(f)) = (self.cfg.value_target, forced.as_ref()) {
            let lp = {
                let _phase = crate::profile::phase("answer_ce");
                answer_ce_returns(&self.policy, f, None, self.micro_batches)?
            };
            for i in 0..n {
                let len = ep.lengths[i].min(t);
                let answered = (0..len).any(|k| answer[i * t + k] > 0.0);
                let p = if answered { lp[i].exp() } else { 0.0 };
                returns.slice_mut(s![i, ..=len]).fill(p);
            }
        }
        let steps: f64 = ep.lengths.iter().map(|&l| l.min(t) as f64).sum();
        let steps = steps.max(1.0);
        let supervise = !warm && self.cfg.answer_supervision > 0.0;
        let answer_steps: f64 = answer.iter().map(|&a| f64::from(a)).sum();
        let chain_w = (policy_weight / steps) as f32;
        let answer_w = if supervise {
            (self.cfg.answer_supervision / answer_steps.max(1.0)) as f32
        } else {
            chain_w
        };
        if let (true, Some(f)) = (supervise, forced.as_ref()) {
            // The correct answer given the searched chain replaces the search's target.
            for i in 0..n {
                for k in 0..ep.lengths[i].min(t) {
                    if answer[i * t + k] > 0.0 {
                        let mut row = targets.slice_mut(s![i, k, ..]);
                        row.fill(0.0);
                        row[f.actions[[i, k]] as usize] = 1.0;
                    }
                }
            }
        }
        let weights = Array2::from_shape_fn((n, t), |(i, k)| {
            chain[i * t + k] * chain_w + answer[i * t + k] * answer_w
        });
        self.opt.zero_grad();
        let mut sums = [0f64; 6];
        for r in micro_batches(n, self.micro_batches) {
            let s = if r.len() == n {
                self.accumulate(ep, &targets, &returns, &weights, steps, anchor)
            } else {
                let tg = targets.slice(s![r.clone(), .., ..]).to_owned();
                let rt = returns.slice(s![r.clone(), ..]).to_owned();
                let w = weights.slice(s![r.clone(), ..]).to_owned();
                self.accumulate(&ep.rows(r), &tg, &rt, &w, steps, anchor)
            };
            for (acc, x) in sums.iter_mut().zip(s) {
                *acc += x;
            }
        }
        if warm && anchor.is_none() {
            // Warm-up trains the value head alone: the value regression's gradient through
            // the shared decoder would otherwise pull the policy's features toward value
            // features (it destroys a trained policy within tens of updates).
            tch::no_grad(|| {
                for (name, var) in self.policy.var_store().variables() {
                    let mut g = var.grad();
                    if g.defined() && !name.contains("value_head") {
                        let _ = g.zero_();
                    }
                }
            });
        }
        let stats = self.opt.step()?;
        let solved = ep.solved.iter().filter(|&&s| s).count() as f64 / ep.len().max(1) as f64;
        let mut m = Metrics::default();
        m.scalar("loss", sums[4]);
        m.scalar("policy_loss", sums[0] / steps);
        m.scalar("value_loss", sums[1] / steps);
        m.scalar("target_entropy", sums[2] / steps);
        m.scalar("value_mean", sums[3] / steps);
        if answer_steps > 0.0 {
            m.scalar("answer_ce", sums[5] / answer_steps);
        }
        m.scalar("played_solved", solved);
        m.scalar("searched", f64::from(u8::from(collected.searched)));
        // Reward queries: the played episodes, plus the searched ones when the search reads
        // rewards. The fair x-axis against REINFORCE, whose queries are its episodes.
        let oracle = collected.searched && self.cfg.search_rewards == SearchRewards::Oracle;
        let queries = ep.len()
            + collected.rollouts
            + if oracle {
                collected.searched_terminals
            } else {
                0
            };
        m.scalar("reward_queries", queries as f64);
        m.scalar("searched_terminals", collected.searched_terminals as f64);
        if collected.searches > 0 {
            m.scalar(
                "evals_per_search",
                collected.evals as f64 / collected.searches as f64,
            );
        }
        m.scalar("grad_norm", stats.grad_norm);
        m.scalar("lr", stats.lr);
        Ok(m)
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut v = training_state(&self.policy, &self.opt);
        if let Some(a) = &self.anchor {
            v.extend(a.param_tensors().into_iter().map(|(n, t)| {
                let name = n.strip_prefix(MODEL_PREFIX).unwrap_or(&n);
                (format!("{ANCHOR_PREFIX}{name}"), t)
            }));
        }
        v
    }

    fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<(), AgentError> {
        self.init.cancel();
        load_training_state(&mut self.policy, &mut self.opt, tensors)?;
        if let Some(a) = self.anchor.as_mut() {
            let own: Vec<(String, Tensor)> = tensors
                .iter()
                .filter_map(|(n, t)| {
                    n.strip_prefix(ANCHOR_PREFIX)
                        .map(|s| (format!("{MODEL_PREFIX}{s}"), t.shallow_clone()))
                })
                .collect();
            a.load_params(&own)?;
        }
        Ok(())
    }

    fn policy(&self) -> Option<&CotPolicy> {
        Some(&self.policy)
    }

    fn value_head_trained(&self) -> bool {
        true
    }

    fn policy_mut(&mut self) -> Option<&mut CotPolicy> {
        Some(&mut self.policy)
    }

    fn num_parameters(&self) -> usize {
        self.policy.model().num_parameters()
    }
}

impl BuildAgent for ExpertIteration {
    const NAME: &'static str = "expert_iteration";
    const SUMMARY: &'static str =
        "a searcher plays; its improved policy and the outcome are the targets";
    type Settings = ExpertIterationConfig;

    fn complete(settings: &mut ExpertIterationConfig) -> Result<(), String> {
        settings.complete()
    }

    fn validate(settings: &ExpertIterationConfig) -> Result<(), String> {
        settings.validate()
    }

    fn build(ctx: &AgentContext<'_>, settings: ExpertIterationConfig) -> Result<Self, AgentError> {
        Self::new(ctx, &settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentEntry;

    fn resolve(text: &str) -> Result<toml::Table, String> {
        let t: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        (AgentEntry::of::<ExpertIteration>().resolve)(&t)
    }

    fn searcher(t: &toml::Table) -> &toml::Table {
        t["searcher"]
            .as_table()
            .expect("searcher is written as a table")
    }

    #[test]
    fn the_searcher_is_a_spec_with_training_defaults() {
        let t = resolve("").unwrap();
        let s = searcher(&t);
        assert_eq!(s["name"].as_str(), Some("gumbel"));
        assert_eq!(s["gumbel_scale"].as_float(), Some(1.0));
        assert_eq!(s["max_considered"].as_integer(), Some(16));
        // Resolving the written table again changes nothing.
        assert_eq!(resolve(&toml::to_string(&t).unwrap()).unwrap(), t);

        let t = resolve("searcher = { name = \"mcts\", temperature = 0.5 }").unwrap();
        let s = searcher(&t);
        assert_eq!(s["temperature"].as_float(), Some(0.5));
        assert_eq!(s["dirichlet_fraction"].as_float(), Some(0.25));
    }

    #[test]
    fn older_top_level_keys_fold_into_the_searcher_in_use() {
        // As a run directory saved before searchers had their own settings holds them.
        let old = "searcher = \"gumbel\"\nmax_considered = 4\ngumbel_scale = 0.0\n\
                   dirichlet_fraction = 0.5\ntemperature = 1.0\n";
        let t = resolve(old).unwrap();
        let s = searcher(&t);
        assert_eq!(s["max_considered"].as_integer(), Some(4));
        assert_eq!(s["gumbel_scale"].as_float(), Some(0.0));
        assert!(!s.contains_key("dirichlet_fraction"));
        for k in [
            "max_considered",
            "gumbel_scale",
            "dirichlet_fraction",
            "temperature",
        ] {
            assert!(!t.contains_key(k), "{k} written at the top level");
        }
        // A setting in the searcher's own table wins over the older key.
        let t = resolve("searcher = { name = \"mcts\", temperature = 0.5 }\ntemperature = 2.0\n")
            .unwrap();
        assert_eq!(searcher(&t)["temperature"].as_float(), Some(0.5));
    }

    #[test]
    fn a_bad_searcher_is_refused_by_name() {
        let err = resolve("searcher = \"beam\"").unwrap_err();
        assert!(err.contains("plays whole chains"), "{err}");
        let err = resolve("searcher = \"alphazero\"").unwrap_err();
        assert!(
            err.contains("alphazero") && err.contains("registered searchers"),
            "{err}"
        );
        let err = resolve("searcher = { name = \"gumbel\", max_considred = 3 }").unwrap_err();
        assert!(
            err.contains("max_considred") && err.contains("max_considered"),
            "{err}"
        );
        let err = resolve("searcher = { name = \"gumbel\", gumbel_scale = -1.0 }").unwrap_err();
        assert!(err.contains("gumbel_scale = -1"), "{err}");
        // Stopping early works in its play loop, a per-episode pool does not.
        resolve("searcher = { name = \"gumbel\", stop_when_confident = 0.8 }").unwrap();
        let err =
            resolve("searcher = { name = \"mcts_anytime\", carry_unspent = true }").unwrap_err();
        assert!(err.contains("carry_unspent = true"), "{err}");
    }
}
