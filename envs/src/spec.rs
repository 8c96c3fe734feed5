//! Static descriptions of an env: observation layout, action space, limits.

use serde::{Deserialize, Serialize};

/// A difficulty level: hops for Cycle and C-VPR, digits for multiplication. (Defined here, with
/// [`DifficultyRange`], so that this module and `error` need nothing from `env`.)
pub type Difficulty = u32;

/// A named run of integer tokens inside the observation's token buffer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenField {
    /// What the field holds, e.g. `"input"` or `"emitted"`.
    pub name: String,
    /// Index of its first token in the token buffer.
    pub offset: usize,
    /// Number of tokens.
    pub len: usize,
    /// Tokens are in `0..vocab`.
    pub vocab: usize,
}

/// A named run of real values inside the observation's feature buffer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureField {
    /// What the field holds, e.g. `"ems"`.
    pub name: String,
    /// Index of its first value in the feature buffer.
    pub offset: usize,
    /// Number of values.
    pub len: usize,
}

/// The layout of one observation: a token buffer and a feature buffer, each cut into fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ObsLayout {
    /// Total tokens per observation.
    pub tokens: usize,
    /// Total features per observation.
    pub features: usize,
    /// The token fields, in buffer order, covering `0..tokens`.
    pub token_fields: Vec<TokenField>,
    /// The feature fields, in buffer order, covering `0..features`.
    pub feature_fields: Vec<FeatureField>,
}

impl ObsLayout {
    /// The token field called `name`, if any.
    pub fn token_field(&self, name: &str) -> Option<&TokenField> {
        self.token_fields.iter().find(|f| f.name == name)
    }

    /// The feature field called `name`, if any.
    pub fn feature_field(&self, name: &str) -> Option<&FeatureField> {
        self.feature_fields.iter().find(|f| f.name == name)
    }
}

/// An inclusive range of difficulty levels an env accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DifficultyRange {
    /// Easiest level.
    pub min: Difficulty,
    /// Hardest level.
    pub max: Difficulty,
}

impl DifficultyRange {
    /// True when `d` is within the range.
    pub fn contains(&self, d: Difficulty) -> bool {
        (self.min..=self.max).contains(&d)
    }
}

/// Everything static about an env, as Gymnasium's spaces and Jumanji's specs describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvSpec {
    /// Short name with parameters, e.g. `"cycle(L=8)"`.
    pub name: String,
    /// Observation layout.
    pub obs: ObsLayout,
    /// Size of the discrete action space; the mask has this many entries.
    pub num_actions: usize,
    /// No episode is longer than this many steps.
    pub max_episode_steps: usize,
    /// Difficulty levels `reset` accepts.
    pub difficulty: DifficultyRange,
    /// Smallest and largest reward one step can give.
    pub reward_range: (f32, f32),
}

/// The answer of a token task: how many answer tokens follow the ANSWER marker and their
/// vocabulary. Agents that read the answer off a pooled encoder (answer-only supervision)
/// size their output head from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerSpec {
    /// Number of answer tokens.
    pub len: usize,
    /// Answer tokens are in `0..vocab`.
    pub vocab: usize,
}
