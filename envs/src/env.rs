//! The `Env` trait: a Gymnasium-style MDP with the action mask in the observation.

use crate::error::EnvError;
pub use crate::spec::Difficulty;
use crate::spec::EnvSpec;

/// The random number generator every env and sampler uses. Seeded with
/// [`rand::SeedableRng::seed_from_u64`], it gives the same stream on the same machine and build.
pub type EnvRng = rand::rngs::SmallRng;

/// What one `step` returns besides the new observation (read it with [`Env::observe`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Reward for the transition just taken; always finite.
    pub reward: f32,
    /// The episode reached a terminal state of the MDP (an answer was given, nothing fits...).
    pub terminated: bool,
    /// The episode was cut by a limit outside the MDP (chain-length cap, step limit).
    pub truncated: bool,
}

impl Step {
    /// True when the episode is over, by termination or truncation.
    pub fn done(&self) -> bool {
        self.terminated || self.truncated
    }
}

/// Facts about the current episode that are not part of the observation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Info {
    /// Difficulty of the current problem.
    pub difficulty: Difficulty,
    /// Steps taken in this episode so far.
    pub steps: usize,
    /// Whether the episode ended with a correct answer (`None` while running, or for envs
    /// without a notion of correctness).
    pub solved: Option<bool>,
}

/// How the chain cap of a chain-writing env compares with the oracle's chain for the current
/// problem; see [`Env::oracle_chain_fit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OracleChainFit {
    /// The cap on the chain length in force (a [`crate::CotConfig`]'s `max_chain_len`, or the
    /// task's when the config leaves it unset).
    pub max_chain_len: usize,
    /// The number of chain tokens the oracle writes for the current problem, before padding.
    pub oracle_chain_len: usize,
    /// Whether the oracle's whole action sequence can be played under the cap: false when the
    /// cap is shorter than the oracle's chain, or when the chain reaches the cap and the env
    /// truncates there.
    pub fits: bool,
}

/// Mutable views of one observation's buffers, laid out as [`EnvSpec::obs`] describes.
///
/// Envs write into caller-owned memory so a [`crate::VecEnv`] fills one contiguous batch with
/// no allocation per step.
#[derive(Debug)]
pub struct ObsMut<'a> {
    /// Integer tokens, `spec.obs.tokens` of them (padding included).
    pub tokens: &'a mut [i64],
    /// Real-valued features, `spec.obs.features` of them (empty for pure token tasks).
    pub features: &'a mut [f32],
    /// Legal actions, `spec.num_actions` of them: `true` = legal (Jumanji's convention).
    pub action_mask: &'a mut [bool],
}

/// An owned observation, for users and tests; hot paths use [`ObsMut`] buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Integer tokens, see [`crate::ObsLayout`].
    pub tokens: Vec<i64>,
    /// Real-valued features.
    pub features: Vec<f32>,
    /// `true` = legal action.
    pub action_mask: Vec<bool>,
}

impl Observation {
    /// A zeroed observation with the sizes `spec` gives.
    pub fn zeros(spec: &EnvSpec) -> Self {
        Observation {
            tokens: vec![0; spec.obs.tokens],
            features: vec![0.0; spec.obs.features],
            action_mask: vec![false; spec.num_actions],
        }
    }

    /// Mutable views of the buffers, for [`Env::observe`].
    pub fn as_mut(&mut self) -> ObsMut<'_> {
        ObsMut {
            tokens: &mut self.tokens,
            features: &mut self.features,
            action_mask: &mut self.action_mask,
        }
    }

    /// Indices of the legal actions.
    pub fn legal_actions(&self) -> Vec<usize> {
        (0..self.action_mask.len())
            .filter(|&a| self.action_mask[a])
            .collect()
    }
}

/// A Markov decision process with discrete actions, Gymnasium's semantics and Jumanji's masks.
///
/// - [`reset`](Env::reset) starts an episode at a given difficulty, drawing the problem from
///   the caller's RNG: the same RNG state and difficulty give the same episode.
/// - [`step`](Env::step) applies an action. Stepping an episode that is over, or taking an
///   action the mask forbids, is an [`EnvError`], never a panic.
/// - [`observe`](Env::observe) writes the observation into caller buffers; [`Env::observation`]
///   is the allocating convenience.
/// - `Clone` must be cheap enough to snapshot a state per search node: searchers clone an env
///   and step the clone.
pub trait Env: Clone + Send {
    /// The static description of this env: observation layout, action count, limits.
    fn spec(&self) -> &EnvSpec;

    /// Starts a new episode at `difficulty`, sampling the problem with `rng`.
    fn reset(&mut self, rng: &mut EnvRng, difficulty: Difficulty) -> Result<(), EnvError>;

    /// Applies `action` and returns its reward and end flags.
    fn step(&mut self, action: usize) -> Result<Step, EnvError>;

    /// Writes the current observation into `obs`, whose slices have the spec's sizes.
    fn observe(&self, obs: ObsMut<'_>);

    /// Facts about the current episode.
    fn info(&self) -> Info;

    /// True once the current episode has terminated or been truncated.
    fn is_done(&self) -> bool;

    /// A readable picture of the current state.
    fn render(&self) -> String;

    /// Writes the current observation into buffers that hold this episode's observation from
    /// just before the last [`step`](Env::step). Envs whose observation changes in a few places
    /// per step (a token MDP appends one token) override it to write only those places;
    /// [`crate::VecEnv`] calls it after every step that did not end in a reset. The default
    /// rewrites everything, like [`observe`](Env::observe).
    fn observe_update(&self, obs: ObsMut<'_>) {
        self.observe(obs)
    }

    /// The action an oracle (the task's known solution, an expert policy) takes in the current
    /// state, if the env knows one and the episode is still on the oracle's path; `None`
    /// otherwise. Supervised agents and checks read it; test-time search must not.
    fn oracle_action(&self) -> Option<usize> {
        None
    }

    /// For an env whose oracle writes a chain of tokens under a length cap (a
    /// [`crate::CotEnv`], and wrappers of one): the cap, the current problem's oracle chain
    /// length, and whether the oracle can be followed to the end under that cap. `None` for
    /// other envs and before the first reset. [`crate::check_env`] reads it to report a cap
    /// that cuts the oracle's chain, where oracle (supervised) experience cannot be made.
    fn oracle_chain_fit(&self) -> Option<OracleChainFit> {
        None
    }

    /// The shape of the answer, for token tasks whose episode ends with an answer after an
    /// ANSWER marker; `None` for other envs.
    fn answer_spec(&self) -> Option<crate::spec::AnswerSpec> {
        None
    }

    /// The current observation, allocated.
    fn observation(&self) -> Observation {
        let mut obs = Observation::zeros(self.spec());
        self.observe(obs.as_mut());
        obs
    }
}
