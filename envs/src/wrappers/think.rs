//! `Think<E>`: free-form "thought" tokens before each real action of any env.
//!
//! The agent may emit up to `K` thought tokens, each from a vocabulary of `V`, before every
//! real action of the wrapped env. Thoughts change nothing in the env; they are visible in
//! the observation and each costs `penalty`. Such latent "factor" tokens let an agent
//! compute before it commits to an action; as a wrapper, any env gets them.
//!
//! # Spec
//!
//! With inner spec `S`:
//! - **Actions**: `S.num_actions + V`. Ids `0..S.num_actions` are the inner env's actions
//!   (real actions); id `S.num_actions + t` is thought `t` ([`Think::thought_action`]).
//! - **Mask**: the inner mask on real actions; thoughts are legal while fewer than `K` have
//!   been emitted since the last real action (and the episode runs). So at most `K`
//!   thoughts, then a real action.
//! - **Observation**: the inner tokens, then a token field `"thoughts"` of `K` tokens holding
//!   the thoughts emitted since the last real action, in order, padded with `V`
//!   ([`Think::pad_token`]; field vocab `V + 1`). Features are the inner features.
//! - **Reward**: `-penalty` for a thought; the inner reward for a real action.
//! - **Limits**: `max_episode_steps = S.max_episode_steps · (K + 1)`; difficulty and
//!   termination are the inner env's. [`crate::Info::steps`] counts thoughts too.
//! - **Oracle**: the inner oracle's action, with no thoughts.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::env::{Difficulty, Env, EnvRng, Info, ObsMut, OracleChainFit, Step};
use crate::error::EnvError;
use crate::spec::{EnvSpec, TokenField};

/// Largest `K` and `V` accepted, to keep observations and action spaces allocatable.
pub const MAX_THOUGHTS: usize = 1 << 16;

/// How many thoughts, from which vocabulary, at what price.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThinkConfig {
    /// `K`: most thoughts before each real action, `0..=MAX_THOUGHTS` (0 = no thoughts).
    pub max_thoughts: usize,
    /// `V`: size of the thought vocabulary, `1..=MAX_THOUGHTS`.
    pub vocab: usize,
    /// Cost of one thought, finite and `>= 0`.
    pub penalty: f32,
}

impl Default for ThinkConfig {
    /// One free thought from a vocabulary of 16 (the original's BinPack factor agent used one
    /// factor token).
    fn default() -> Self {
        ThinkConfig {
            max_thoughts: 1,
            vocab: 16,
            penalty: 0.0,
        }
    }
}

impl ThinkConfig {
    /// Checks the ranges, naming the field at fault.
    pub fn validate(&self) -> Result<(), EnvError> {
        if self.max_thoughts > MAX_THOUGHTS {
            return Err(EnvError::invalid(
                "max_thoughts",
                self.max_thoughts,
                format!("0..={MAX_THOUGHTS}"),
            ));
        }
        if !(1..=MAX_THOUGHTS).contains(&self.vocab) {
            return Err(EnvError::invalid(
                "thought_vocab",
                self.vocab,
                format!("1..={MAX_THOUGHTS}"),
            ));
        }
        if !(self.penalty.is_finite() && self.penalty >= 0.0) {
            return Err(EnvError::invalid(
                "thought_penalty",
                self.penalty,
                "a finite number >= 0",
            ));
        }
        Ok(())
    }
}

/// Any env with up to `K` thought tokens before each real action; see the module docs.
#[derive(Debug, Clone)]
pub struct Think<E: Env> {
    inner: E,
    config: ThinkConfig,
    spec: Arc<EnvSpec>,
    inner_actions: usize,
    inner_tokens: usize,
    /// Thoughts since the last real action.
    thoughts: Vec<u32>,
    steps: usize,
    started: bool,
    /// Whether the last step was a thought, so `observe_update` can skip the inner env.
    last_was_thought: bool,
}

impl<E: Env> Think<E> {
    /// Wraps `inner`; `config` is checked here.
    pub fn new(inner: E, config: ThinkConfig) -> Result<Self, EnvError> {
        config.validate()?;
        let s = inner.spec();
        let (k, v) = (config.max_thoughts, config.vocab);
        let mut obs = s.obs.clone();
        obs.token_fields.push(TokenField {
            name: "thoughts".into(),
            offset: s.obs.tokens,
            len: k,
            vocab: v + 1,
        });
        obs.tokens += k;
        let (lo, hi) = s.reward_range;
        let reward_range = if k > 0 {
            (lo.min(-config.penalty), hi.max(-config.penalty))
        } else {
            (lo, hi)
        };
        let spec = EnvSpec {
            name: format!(
                "think(K={k}, V={v}, penalty={})[{}]",
                config.penalty, s.name
            ),
            obs,
            num_actions: s.num_actions + v,
            max_episode_steps: s.max_episode_steps.saturating_mul(k + 1),
            difficulty: s.difficulty,
            reward_range,
        };
        Ok(Think {
            inner_actions: s.num_actions,
            inner_tokens: s.obs.tokens,
            spec: Arc::new(spec),
            thoughts: Vec::with_capacity(k),
            inner,
            config,
            steps: 0,
            started: false,
            last_was_thought: false,
        })
    }

    /// The wrapped env.
    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// The wrapped env, consuming the wrapper.
    pub fn into_inner(self) -> E {
        self.inner
    }

    /// The config.
    pub fn config(&self) -> &ThinkConfig {
        &self.config
    }

    /// The action id of thought `t` (`t < V`): `inner num_actions + t`.
    pub fn thought_action(&self, t: usize) -> usize {
        self.inner_actions + t
    }

    /// The padding token of the `"thoughts"` field, `V`.
    pub fn pad_token(&self) -> i64 {
        self.config.vocab as i64
    }

    /// The thoughts emitted since the last real action.
    pub fn thoughts(&self) -> &[u32] {
        &self.thoughts
    }

    fn can_think(&self) -> bool {
        self.started && !self.inner.is_done() && self.thoughts.len() < self.config.max_thoughts
    }

    /// Writes the `"thoughts"` field and the thought part of the mask.
    fn observe_thoughts(&self, tokens: &mut [i64], mask: &mut [bool]) {
        let field = &mut tokens[self.inner_tokens..];
        for (slot, out) in field.iter_mut().enumerate() {
            *out = self
                .thoughts
                .get(slot)
                .map_or(self.pad_token(), |&t| i64::from(t));
        }
        mask[self.inner_actions..].fill(self.can_think());
    }
}

impl<E: Env> Env for Think<E> {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, rng: &mut EnvRng, difficulty: Difficulty) -> Result<(), EnvError> {
        self.inner.reset(rng, difficulty)?;
        self.thoughts.clear();
        self.steps = 0;
        self.started = true;
        self.last_was_thought = false;
        Ok(())
    }

    fn step(&mut self, action: usize) -> Result<Step, EnvError> {
        if action < self.inner_actions {
            let step = self.inner.step(action)?;
            self.thoughts.clear();
            self.steps += 1;
            self.last_was_thought = false;
            return Ok(step);
        }
        if action >= self.spec.num_actions {
            return Err(EnvError::IllegalAction {
                action,
                reason: format!("out of range 0..{}", self.spec.num_actions),
            });
        }
        if !self.started {
            return Err(EnvError::NotReset);
        }
        if self.inner.is_done() {
            return Err(EnvError::EpisodeOver);
        }
        if self.thoughts.len() >= self.config.max_thoughts {
            return Err(EnvError::IllegalAction {
                action,
                reason: format!(
                    "already {} thoughts (the most allowed) since the last real action",
                    self.config.max_thoughts
                ),
            });
        }
        self.thoughts.push((action - self.inner_actions) as u32);
        self.steps += 1;
        self.last_was_thought = true;
        Ok(Step {
            reward: -self.config.penalty,
            terminated: false,
            truncated: false,
        })
    }

    fn observe(&self, obs: ObsMut<'_>) {
        self.inner.observe(ObsMut {
            tokens: &mut obs.tokens[..self.inner_tokens],
            features: obs.features,
            action_mask: &mut obs.action_mask[..self.inner_actions],
        });
        self.observe_thoughts(obs.tokens, obs.action_mask);
    }

    fn observe_update(&self, obs: ObsMut<'_>) {
        // After a thought the inner observation is the one already in the buffers.
        if !self.last_was_thought {
            self.inner.observe_update(ObsMut {
                tokens: &mut obs.tokens[..self.inner_tokens],
                features: obs.features,
                action_mask: &mut obs.action_mask[..self.inner_actions],
            });
        }
        self.observe_thoughts(obs.tokens, obs.action_mask);
    }

    fn info(&self) -> Info {
        Info {
            steps: self.steps,
            ..self.inner.info()
        }
    }

    fn is_done(&self) -> bool {
        self.inner.is_done()
    }

    fn render(&self) -> String {
        let mut out = self.inner.render();
        if !out.ends_with('\n') {
            out.push('\n');
        }
        let _ = write!(
            out,
            "thoughts {:?} ({}/{} before the next action)",
            self.thoughts,
            self.thoughts.len(),
            self.config.max_thoughts
        );
        out
    }

    fn oracle_action(&self) -> Option<usize> {
        self.inner.oracle_action()
    }

    fn oracle_chain_fit(&self) -> Option<OracleChainFit> {
        self.inner.oracle_chain_fit()
    }
}
