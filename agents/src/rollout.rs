//! Episodes played in **lock step**: every row of a batch starts an episode together and
//! plays until its own episode ends; finished rows wait (no autoreset), so a batch is
//! exactly "N problems, one episode each", which is what supervised and episodic RL updates
//! and per-difficulty evaluation want (and what lets a policy keep one KV cache for the
//! whole batch). Streaming collection with autoreset is [`envs::VecEnv`]'s job.
//!
//! - [`Lockstep`] plays a batch with any policy closure and records [`Episodes`];
//! - [`oracle_policy`] follows the env's oracle;
//! - [`Collector`] is what the Runner hands an agent for one update's experience.

use envs::{derive_seed, AnyEnv, Difficulty, DifficultySampler, Env, EnvError, EnvRng, ObsMut};
use ndarray::{s, Array2, Array3};
use rand::SeedableRng;

use crate::act::{ActMode, ActOutput, BatchObs};
use crate::error::AgentError;

/// A batch of complete episodes (the first episode of each row of a lock-step collection),
/// padded to the longest one, `T` steps. Arrays are indexed `[episode, step, ...]`; step `t`
/// of an episode is valid when `t < lengths[episode]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Episodes {
    /// Observation tokens before each step, `(N, T, obs.tokens)`.
    pub tokens: Array3<i64>,
    /// Observation features before each step, `(N, T, obs.features)`.
    pub features: Array3<f32>,
    /// Legal actions before each step, `(N, T, num_actions)`.
    pub action_mask: Array3<bool>,
    /// Actions taken, `(N, T)`; `-1` past the end of an episode.
    pub actions: Array2<i64>,
    /// Log-probability of each action under the policy that chose it (0 for the oracle).
    pub log_probs: Array2<f32>,
    /// Entropy of the policy that chose each action (0 for the oracle).
    pub entropies: Array2<f32>,
    /// Reward of each step, `(N, T)`; 0 past the end.
    pub rewards: Array2<f32>,
    /// Steps of each episode.
    pub lengths: Vec<usize>,
    /// Difficulty of each episode's problem.
    pub difficulty: Vec<Difficulty>,
    /// Whether each episode ended with a correct answer (`Info::solved`, false when unknown).
    pub solved: Vec<bool>,
    /// Whether each episode was truncated (rather than terminated).
    pub truncated: Vec<bool>,
    /// Consecutive rows that share a problem (1 for oracle episodes).
    pub samples_per_problem: usize,
}

impl Episodes {
    /// Number of episodes `N`.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    /// True when there is no episode.
    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// The padded length `T`.
    pub fn max_len(&self) -> usize {
        self.actions.ncols()
    }

    /// The undiscounted return of each episode.
    pub fn returns(&self) -> Vec<f32> {
        self.rewards.rows().into_iter().map(|r| r.sum()).collect()
    }

    /// Episodes `range` (a micro-batch), keeping the padded length.
    pub fn rows(&self, range: std::ops::Range<usize>) -> Episodes {
        let r = range.clone();
        Episodes {
            tokens: self.tokens.slice(s![r.clone(), .., ..]).to_owned(),
            features: self.features.slice(s![r.clone(), .., ..]).to_owned(),
            action_mask: self.action_mask.slice(s![r.clone(), .., ..]).to_owned(),
            actions: self.actions.slice(s![r.clone(), ..]).to_owned(),
            log_probs: self.log_probs.slice(s![r.clone(), ..]).to_owned(),
            entropies: self.entropies.slice(s![r.clone(), ..]).to_owned(),
            rewards: self.rewards.slice(s![r, ..]).to_owned(),
            lengths: self.lengths[range.clone()].to_vec(),
            difficulty: self.difficulty[range.clone()].to_vec(),
            solved: self.solved[range.clone()].to_vec(),
            truncated: self.truncated[range].to_vec(),
            samples_per_problem: self.samples_per_problem,
        }
    }
}

/// `B` envs stepped together, one episode each, with contiguous observation buffers.
#[derive(Debug, Clone)]
pub struct Lockstep<E: Env> {
    envs: Vec<E>,
    tokens: Array2<i64>,
    features: Array2<f32>,
    mask: Array2<bool>,
}

impl<E: Env> Lockstep<E> {
    /// `n` clones of `proto` (not reset yet).
    pub fn new(proto: &E, n: usize) -> Self {
        let spec = proto.spec();
        Lockstep {
            envs: vec![proto.clone(); n],
            tokens: Array2::zeros((n, spec.obs.tokens)),
            features: Array2::zeros((n, spec.obs.features)),
            mask: Array2::from_elem((n, spec.num_actions), false),
        }
    }

    /// Number of envs.
    pub fn len(&self) -> usize {
        self.envs.len()
    }

    /// True when there is no env.
    pub fn is_empty(&self) -> bool {
        self.envs.is_empty()
    }

    /// Grows or shrinks to `n` envs (clones of `proto`).
    pub fn resize(&mut self, proto: &E, n: usize) {
        if n != self.envs.len() {
            *self = Lockstep::new(proto, n);
        }
    }

    /// The envs, in row order.
    pub fn envs(&self) -> &[E] {
        &self.envs
    }

    /// Resets env `i` with `f(i, env)` for every row.
    pub fn reset_with<F>(&mut self, mut f: F) -> Result<(), EnvError>
    where
        F: FnMut(usize, &mut E) -> Result<(), EnvError>,
    {
        for (i, env) in self.envs.iter_mut().enumerate() {
            f(i, env).map_err(|e| EnvError::InBatch {
                index: i,
                source: Box::new(e),
            })?;
        }
        Ok(())
    }

    fn observe(&mut self, i: usize, update: bool) {
        let obs = ObsMut {
            tokens: self
                .tokens
                .row_mut(i)
                .into_slice()
                .expect("standard layout"),
            features: self
                .features
                .row_mut(i)
                .into_slice()
                .expect("standard layout"),
            action_mask: self.mask.row_mut(i).into_slice().expect("standard layout"),
        };
        if update {
            self.envs[i].observe_update(obs);
        } else {
            self.envs[i].observe(obs);
        }
    }

    /// Plays one episode in every row (all must have been reset): at each step `policy`
    /// sees the batch (finished rows have an all-false mask) and the envs, and returns one
    /// action per row. Records observations before each step when `record_obs` (what
    /// learners need; evaluation skips it).
    pub fn run<P>(&mut self, mut policy: P, record_obs: bool) -> Result<Episodes, AgentError>
    where
        P: FnMut(&BatchObs<'_>, &[E]) -> Result<ActOutput, AgentError>,
    {
        let n = self.envs.len();
        let spec = self.envs.first().map(|e| e.spec().clone());
        let (obs_t, obs_f, num_a) = spec
            .as_ref()
            .map_or((0, 0, 0), |s| (s.obs.tokens, s.obs.features, s.num_actions));
        let mut done = vec![false; n];
        for (i, d) in done.iter_mut().enumerate() {
            self.observe(i, false);
            *d = self.envs[i].is_done();
            if *d {
                self.mask.row_mut(i).fill(false);
            }
        }
        // Per-step records, row-major [step][row]; packed into Episodes at the end.
        let mut steps_tokens: Vec<Array2<i64>> = Vec::new();
        let mut steps_features: Vec<Array2<f32>> = Vec::new();
        let mut steps_mask: Vec<Array2<bool>> = Vec::new();
        let mut actions: Vec<Vec<i64>> = Vec::new();
        let mut log_probs: Vec<Vec<f32>> = Vec::new();
        let mut entropies: Vec<Vec<f32>> = Vec::new();
        let mut rewards: Vec<Vec<f32>> = Vec::new();
        let mut lengths = vec![0usize; n];
        let mut truncated = vec![false; n];
        while done.iter().any(|d| !d) {
            let out = {
                let obs = BatchObs {
                    tokens: self.tokens.view(),
                    features: self.features.view(),
                    action_mask: self.mask.view(),
                };
                policy(&obs, &self.envs)?
            };
            if out.actions.len() != n {
                return Err(AgentError::Incompatible(format!(
                    "the policy returned {} actions for {n} rows",
                    out.actions.len()
                )));
            }
            if record_obs {
                steps_tokens.push(self.tokens.clone());
                steps_features.push(self.features.clone());
                steps_mask.push(self.mask.clone());
            }
            let mut acts = vec![-1i64; n];
            let mut lps = vec![0f32; n];
            let mut ents = vec![0f32; n];
            let mut rews = vec![0f32; n];
            for i in 0..n {
                if done[i] {
                    continue;
                }
                let a = out.actions[i];
                let step = self.envs[i].step(a).map_err(|e| EnvError::InBatch {
                    index: i,
                    source: Box::new(e),
                })?;
                acts[i] = a as i64;
                lps[i] = out.log_probs.get(i).copied().unwrap_or(0.0);
                ents[i] = out.entropies.get(i).copied().unwrap_or(0.0);
                rews[i] = step.reward;
                lengths[i] += 1;
                if step.done() {
                    done[i] = true;
                    truncated[i] = step.truncated && !step.terminated;
                    self.mask.row_mut(i).fill(false);
                } else {
                    self.observe(i, true);
                }
            }
            actions.push(acts);
            log_probs.push(lps);
            entropies.push(ents);
            rewards.push(rews);
        }
        let t = actions.len();
        let by_row = |v: &[Vec<f32>]| Array2::from_shape_fn((n, t), |(i, k)| v[k][i]);
        let mut tokens = Array3::zeros((n, if record_obs { t } else { 0 }, obs_t));
        let mut features = Array3::zeros((n, if record_obs { t } else { 0 }, obs_f));
        let mut action_mask = Array3::from_elem((n, if record_obs { t } else { 0 }, num_a), false);
        if record_obs {
            for k in 0..t {
                tokens
                    .index_axis_mut(ndarray::Axis(1), k)
                    .assign(&steps_tokens[k]);
                features
                    .index_axis_mut(ndarray::Axis(1), k)
                    .assign(&steps_features[k]);
                action_mask
                    .index_axis_mut(ndarray::Axis(1), k)
                    .assign(&steps_mask[k]);
            }
        }
        Ok(Episodes {
            tokens,
            features,
            action_mask,
            actions: Array2::from_shape_fn((n, t), |(i, k)| actions[k][i]),
            log_probs: by_row(&log_probs),
            entropies: by_row(&entropies),
            rewards: by_row(&rewards),
            lengths,
            difficulty: self.envs.iter().map(|e| e.info().difficulty).collect(),
            solved: self
                .envs
                .iter()
                .map(|e| e.info().solved.unwrap_or(false))
                .collect(),
            truncated,
            samples_per_problem: 1,
        })
    }
}

/// The oracle as a policy: each unfinished row takes `env.oracle_action()`.
pub fn oracle_policy<E: Env>(obs: &BatchObs<'_>, envs: &[E]) -> Result<ActOutput, AgentError> {
    let n = obs.batch_size();
    let mut actions = vec![0usize; n];
    for (i, env) in envs.iter().enumerate() {
        if obs.action_mask.row(i).iter().any(|&m| m) {
            actions[i] = env.oracle_action().ok_or_else(|| {
                AgentError::Incompatible(format!(
                    "env `{}` has no oracle action in this state; oracle (supervised) \
                     experience needs an env with a known solution",
                    env.spec().name
                ))
            })?;
        }
    }
    Ok(ActOutput {
        actions,
        log_probs: vec![0.0; n],
        entropies: vec![0.0; n],
    })
}

/// Salt of the seeds of refill rounds ([`Collector::reset_problems_round`]).
const REFILL_SALT: u64 = 0x5EED_0F2E_F111;

/// What the Runner hands an agent to produce one update's experience
/// (`Agent::collect`): the problems to draw (from the training sampler, the curriculum
/// included), the lock-step batch to play them in, and the step's RNGs.
pub struct Collector<'a> {
    proto: &'a AnyEnv,
    batch: &'a mut Lockstep<AnyEnv>,
    sampler: &'a DifficultySampler,
    problems: usize,
    seed: u64,
    rng: EnvRng,
    played: Played,
}

/// Episodes and env steps a [`Collector`] played, for throughput figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Played {
    /// Episodes played to their end (or cap).
    pub episodes: u64,
    /// Env steps (tokens emitted) over those episodes.
    pub steps: u64,
}

impl Played {
    fn add(&mut self, ep: &Episodes) {
        self.episodes += ep.len() as u64;
        self.steps += ep.lengths.iter().map(|&l| l as u64).sum::<u64>();
    }
}

impl<'a> Collector<'a> {
    /// A collector drawing `problems` problems seeded by `seed` (see the module doc), with
    /// `act_seed` for action sampling.
    pub fn new(
        proto: &'a AnyEnv,
        batch: &'a mut Lockstep<AnyEnv>,
        sampler: &'a DifficultySampler,
        problems: usize,
        seed: u64,
        act_seed: u64,
    ) -> Self {
        Collector {
            proto,
            batch,
            sampler,
            problems,
            seed,
            rng: EnvRng::seed_from_u64(act_seed),
            played: Played::default(),
        }
    }

    /// The episodes and env steps played so far through this collector.
    pub fn played(&self) -> Played {
        self.played
    }

    /// Problems per update.
    pub fn problems(&self) -> usize {
        self.problems
    }

    /// The RNG for sampling actions in this update.
    pub fn rng(&mut self) -> &mut EnvRng {
        &mut self.rng
    }

    /// The difficulty sampler (read-only; the Runner feeds it).
    pub fn sampler(&self) -> &DifficultySampler {
        self.sampler
    }

    /// Resets `problems * k` envs so that rows `g*k..(g+1)*k` hold fresh problem `g`, and
    /// returns them (clone them to search from their roots).
    pub fn reset_problems(&mut self, k: usize) -> Result<&[AnyEnv], EnvError> {
        self.reset_problems_round(k, 0)
    }

    /// Like [`reset_problems`](Self::reset_problems) (round 0), with the problems of refill
    /// round `round`: an agent that discards some problems (dynamic sampling) draws fresh
    /// replacements that a run with the same seed draws again.
    pub fn reset_problems_round(&mut self, k: usize, round: u64) -> Result<&[AnyEnv], EnvError> {
        let k = k.max(1);
        self.batch.resize(self.proto, self.problems * k);
        let seed = match round {
            0 => self.seed,
            r => derive_seed(self.seed ^ REFILL_SALT, r as usize),
        };
        let sampler = self.sampler;
        self.batch.reset_with(|i, env| {
            let mut rng = EnvRng::seed_from_u64(derive_seed(seed, i / k));
            let d = sampler.sample(&mut rng);
            env.reset(&mut rng, d)
        })?;
        Ok(self.batch.envs())
    }

    /// Plays the current problems (after [`reset_problems`](Self::reset_problems)) with
    /// `policy`, recording observations.
    pub fn run_episodes<P>(
        &mut self,
        policy: P,
        samples_per_problem: usize,
    ) -> Result<Episodes, AgentError>
    where
        P: FnMut(&BatchObs<'_>, &[AnyEnv]) -> Result<ActOutput, AgentError>,
    {
        let mut ep = self.batch.run(policy, true)?;
        ep.samples_per_problem = samples_per_problem.max(1);
        self.played.add(&ep);
        Ok(ep)
    }

    /// Oracle episodes of fresh problems .
    pub fn oracle(&mut self) -> Result<Episodes, AgentError> {
        self.reset_problems(1)?;
        self.run_episodes(oracle_policy::<AnyEnv>, 1)
    }

    /// Episodes of a policy's own actions, `k` per fresh problem (rows `g*k..(g+1)*k` share
    /// problem `g`): `act(obs, mode, rng)` is typically an agent's `act`.
    pub fn on_policy<F>(
        &mut self,
        k: usize,
        mode: ActMode,
        mut act: F,
    ) -> Result<Episodes, AgentError>
    where
        F: FnMut(&BatchObs<'_>, ActMode, &mut EnvRng) -> Result<ActOutput, AgentError>,
    {
        self.reset_problems(k)?;
        let rng = &mut self.rng;
        let mut ep = self.batch.run(|obs, _| act(obs, mode, rng), true)?;
        ep.samples_per_problem = k.max(1);
        self.played.add(&ep);
        Ok(ep)
    }
}
