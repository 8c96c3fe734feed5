//! The model's hyperparameters (`[model]` in a run's TOML) and the shapes it reads from an
//! env's spec.

use envs::spec::EnvSpec;
use serde::{Deserialize, Deserializer, Serialize};

/// Errors building a model: a config value out of range or a spec that is not a `CotEnv`'s.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// A config value that cannot build a model.
    #[error("invalid [model] config: {0}")]
    InvalidConfig(String),
    /// The env spec lacks a token field the model reads.
    #[error(
        "env `{env}` has no token field `{field}`: the CoT transformer needs the CotEnv fields \
         \"input\", \"difficulty\" and \"emitted\""
    )]
    MissingField {
        /// The env's name.
        env: String,
        /// The field that is not there.
        field: &'static str,
    },
    /// The layout is inconsistent (e.g. the emitted field's vocab does not fit the actions).
    #[error("invalid model layout: {0}")]
    InvalidLayout(String),
}

/// How the answer-only head reads the encoder output (the `Supervised` baseline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// A learned CLS token prepended to the input; its final state is read (the original's
    /// `classification_mode="cls_token"`).
    #[default]
    Cls,
    /// The mean of all encoder states (the original's `mean_embedding`).
    Mean,
}

/// Hyperparameters of [`super::CotTransformer`], the `[model]` section of a config.
///
/// Width is `heads * head_dim`; the MLP hidden size is `floor(mlp_factor * width)`.
/// `repeat` applies each stack (encoder and decoder) `repeat` times with the same weights, as
/// Universal Transformers and the original's `num_repeat_model` do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Attention heads.
    pub heads: usize,
    /// Features per head.
    pub head_dim: usize,
    /// MLP hidden size as a multiple of the width.
    #[serde(deserialize_with = "number_as_f64")]
    pub mlp_factor: f64,
    /// Self-attention layers over the input (0: the encoder memory is the embeddings).
    pub encoder_layers: usize,
    /// Causal decoder layers (self-attention, cross-attention to the input, MLP).
    pub decoder_layers: usize,
    /// How many times each stack is applied, sharing weights (>= 1).
    pub repeat: usize,
    /// Append a learned difficulty token (the original's num_hops token) to the input.
    pub difficulty_token: bool,
    /// Readout of the answer-only head.
    pub pooling: Pooling,
    /// Biases in linear layers and LayerNorms (the original never uses them).
    pub bias: bool,
    /// Dropout on embeddings and residual branches during training.
    #[serde(deserialize_with = "number_as_f64")]
    pub dropout: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            heads: 4,
            head_dim: 32,
            mlp_factor: 4.0,
            encoder_layers: 0,
            decoder_layers: 2,
            repeat: 1,
            difficulty_token: true,
            pooling: Pooling::Cls,
            bias: false,
            dropout: 0.0,
        }
    }
}

/// TOML writes `mlp_factor = 4`; accept integers as well as floats.
fn number_as_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(i64),
        Float(f64),
    }
    Ok(match Number::deserialize(d)? {
        Number::Int(i) => i as f64,
        Number::Float(f) => f,
    })
}

impl ModelConfig {
    /// Model width `heads * head_dim`.
    pub fn width(&self) -> usize {
        self.heads * self.head_dim
    }

    /// MLP hidden size `floor(mlp_factor * width)`.
    pub fn mlp_dim(&self) -> usize {
        (self.mlp_factor * self.width() as f64) as usize
    }

    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |msg: String| Err(ModelError::InvalidConfig(msg));
        if self.heads == 0 || self.head_dim == 0 {
            return bad(format!(
                "heads ({}) and head_dim ({}) must be >= 1",
                self.heads, self.head_dim
            ));
        }
        if self.repeat == 0 {
            return bad("repeat must be >= 1 (use 0 layers to skip a stack)".into());
        }
        if !(self.mlp_factor.is_finite() && self.mlp_factor > 0.0) || self.mlp_dim() == 0 {
            return bad(format!(
                "mlp_factor ({}) must give an MLP of at least 1 unit",
                self.mlp_factor
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout ({}) must be in [0, 1)", self.dropout));
        }
        Ok(())
    }
}

/// The answer-only head's output: `len` tokens in `0..vocab`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerShape {
    /// Answer tokens per problem (`TaskSpec::answer_len`).
    pub len: usize,
    /// Answer tokens are in `0..vocab` (`TaskSpec::answer_vocab`).
    pub vocab: usize,
}

/// The shapes a model reads from an env: token counts and vocabularies.
///
/// The decoder's input vocabulary is `emitted_vocab = num_actions + 1`: the actions plus one
/// extra id, `num_actions`, which is the env's PAD in the `"emitted"` field and the model's
/// START token (a START never follows a real action, so one id serves both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelLayout {
    /// Input tokens per problem.
    pub input_len: usize,
    /// Input tokens are in `0..input_vocab`.
    pub input_vocab: usize,
    /// Difficulty tokens are in `0..difficulty_vocab` (used when `difficulty_token` is on).
    pub difficulty_vocab: usize,
    /// Longest episode: the decoder has this many positions.
    pub max_steps: usize,
    /// Decoder input vocabulary, `num_actions + 1`.
    pub emitted_vocab: usize,
    /// Size of the action space: the chain head has this many logits.
    pub num_actions: usize,
    /// Build the chain decoder (chain logits and value head).
    pub chain: bool,
    /// Build the answer-only head with this output shape.
    pub answer: Option<AnswerShape>,
}

impl ModelLayout {
    /// Reads a `CotEnv` spec: the `"input"`, `"difficulty"` and `"emitted"` token fields and
    /// `num_actions`. The layout has the chain decoder and no answer-only head; add one with
    /// [`ModelLayout::with_answer_head`].
    pub fn from_spec(spec: &EnvSpec) -> Result<ModelLayout, ModelError> {
        let field = |name: &'static str| {
            spec.obs
                .token_field(name)
                .ok_or_else(|| ModelError::MissingField {
                    env: spec.name.clone(),
                    field: name,
                })
        };
        let input = field("input")?;
        let difficulty = field("difficulty")?;
        let emitted = field("emitted")?;
        let layout = ModelLayout {
            input_len: input.len,
            input_vocab: input.vocab,
            difficulty_vocab: difficulty.vocab,
            max_steps: emitted.len,
            emitted_vocab: spec.num_actions + 1,
            num_actions: spec.num_actions,
            chain: true,
            answer: None,
        };
        if emitted.vocab != layout.emitted_vocab {
            return Err(ModelError::InvalidLayout(format!(
                "env `{}`: the emitted field's vocab is {} but num_actions + 1 = {}",
                spec.name, emitted.vocab, layout.emitted_vocab
            )));
        }
        layout.validate()?;
        Ok(layout)
    }

    /// Adds the answer-only head (`answer_len` tokens in `0..answer_vocab`).
    pub fn with_answer_head(mut self, answer_len: usize, answer_vocab: usize) -> ModelLayout {
        self.answer = Some(AnswerShape {
            len: answer_len,
            vocab: answer_vocab,
        });
        self
    }

    /// Drops the chain decoder (for a model trained on answers only).
    pub fn without_chain(mut self) -> ModelLayout {
        self.chain = false;
        self
    }

    /// The decoder's START token id, `num_actions` (the env's PAD id).
    pub fn start_token(&self) -> i64 {
        self.num_actions as i64
    }

    /// Checks sizes are non-zero and that the model has at least one head.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |msg: String| Err(ModelError::InvalidLayout(msg));
        if self.input_len == 0 || self.input_vocab == 0 {
            return bad(format!(
                "input_len ({}) and input_vocab ({}) must be >= 1",
                self.input_len, self.input_vocab
            ));
        }
        if self.chain {
            if self.max_steps == 0 || self.num_actions == 0 {
                return bad(format!(
                    "max_steps ({}) and num_actions ({}) must be >= 1",
                    self.max_steps, self.num_actions
                ));
            }
            if self.emitted_vocab <= self.num_actions {
                return bad(format!(
                    "emitted_vocab ({}) must exceed num_actions ({}) to hold START",
                    self.emitted_vocab, self.num_actions
                ));
            }
        }
        match self.answer {
            Some(a) if a.len == 0 || a.vocab == 0 => bad(format!(
                "answer head needs len ({}) and vocab ({}) >= 1",
                a.len, a.vocab
            )),
            None if !self.chain => {
                bad("the layout has neither a chain decoder nor an answer head".into())
            }
            _ => Ok(()),
        }
    }
}
