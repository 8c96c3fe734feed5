//! Named envs: build an env from a name and `key = value` parameters (the CLI's
//! `factorexe envs`, the `[env]` table of a training config).
//!
//! Adding an env takes two small edits: a variant in the `any_env!` list at the bottom of
//! this file (the enum [`AnyEnv`] and its [`Env`] impl are generated from it) and an
//! [`EnvEntry`] in [`ENTRIES`] whose `build` function reads its parameters from [`EnvParams`].
//! Token tasks set `cot: true` to accept the [`COT_PARAMS`] too and build their config with
//! [`cot_config`].

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::binpack::{BinPack, BinPackConfig, OnIllegal, RandomGenerator, RewardKind};
use crate::cot::{CotConfig, CotEnv, OnCap, RewardConfig};
use crate::env::{Difficulty, Env, EnvRng, Info, ObsMut, Step};
use crate::error::EnvError;
use crate::spec::EnvSpec;
use crate::tasks::{Cvpr, Cycle, Multiplication};
use crate::wrappers::{Think, ThinkConfig};

/// One parameter value, as a TOML table or the command line gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A real number.
    Float(f64),
    /// Anything else (e.g. `on_cap = "truncate"`).
    Str(String),
}

impl ParamValue {
    /// Reads a command-line string: a bool, an integer, a real, else the text itself.
    pub fn parse(text: &str) -> Self {
        if let Ok(b) = text.parse::<bool>() {
            ParamValue::Bool(b)
        } else if let Ok(i) = text.parse::<i64>() {
            ParamValue::Int(i)
        } else if let Ok(x) = text.parse::<f64>() {
            ParamValue::Float(x)
        } else {
            ParamValue::Str(text.to_string())
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Str(s) => write!(f, "{s}"),
        }
    }
}

/// The parameters of a named env; names use `snake_case` (`max_chain_len`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EnvParams(pub BTreeMap<String, ParamValue>);

impl EnvParams {
    /// No parameters: every one takes its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` (builder style).
    pub fn with(mut self, name: &str, value: ParamValue) -> Self {
        self.0.insert(name.replace('-', "_"), value);
        self
    }

    /// Sets `name` from command-line text (dashes in the name become underscores).
    pub fn set_text(&mut self, name: &str, text: &str) {
        self.0
            .insert(name.replace('-', "_"), ParamValue::parse(text));
    }

    /// The raw value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.0.get(name)
    }

    /// `name` as a non-negative integer, or `default` when absent.
    pub fn usize(&self, name: &'static str, default: usize) -> Result<usize, EnvError> {
        match self.get(name) {
            None => Ok(default),
            Some(ParamValue::Int(i)) if *i >= 0 => Ok(*i as usize),
            Some(v) => Err(EnvError::invalid(name, v, "a non-negative integer")),
        }
    }

    /// `name` as an optional non-negative integer (`None` when absent).
    pub fn opt_usize(&self, name: &'static str) -> Result<Option<usize>, EnvError> {
        match self.get(name) {
            None => Ok(None),
            Some(_) => self.usize(name, 0).map(Some),
        }
    }

    /// `name` as a real number, or `default` when absent.
    pub fn f32(&self, name: &'static str, default: f32) -> Result<f32, EnvError> {
        match self.get(name) {
            None => Ok(default),
            Some(ParamValue::Int(i)) => Ok(*i as f32),
            Some(ParamValue::Float(x)) => Ok(*x as f32),
            Some(v) => Err(EnvError::invalid(name, v, "a number")),
        }
    }

    /// `name` as a bool, or `default` when absent.
    pub fn bool(&self, name: &'static str, default: bool) -> Result<bool, EnvError> {
        match self.get(name) {
            None => Ok(default),
            Some(ParamValue::Bool(b)) => Ok(*b),
            Some(v) => Err(EnvError::invalid(name, v, "true or false")),
        }
    }

    /// `name` as text, or `default` when absent.
    pub fn str(&self, name: &'static str, default: &str) -> Result<String, EnvError> {
        match self.get(name) {
            None => Ok(default.to_string()),
            Some(ParamValue::Str(s)) => Ok(s.clone()),
            Some(v) => Err(EnvError::invalid(name, v, "text")),
        }
    }
}

/// A parameter a named env accepts, for listings and for rejecting misspelt names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    /// Its name, `snake_case`.
    pub name: &'static str,
    /// Its default, as text.
    pub default: &'static str,
    /// What it does and its allowed values.
    pub help: &'static str,
}

/// A named env: what it is, what it accepts and how to build it.
#[derive(Debug, Clone, Copy)]
pub struct EnvEntry {
    /// The name users type.
    pub name: &'static str,
    /// One line about it.
    pub summary: &'static str,
    /// What the difficulty means ("hops", "digits").
    pub difficulty: &'static str,
    /// Its own parameters.
    pub params: &'static [ParamSpec],
    /// A token task under [`CotEnv`]: it also accepts the [`COT_PARAMS`].
    pub cot: bool,
    /// Builds it; parameter names were already checked against `params`.
    pub build: fn(&EnvParams) -> Result<AnyEnv, EnvError>,
}

impl EnvEntry {
    /// Every parameter it accepts: its own, then the [`COT_PARAMS`] if it is a token task,
    /// then the [`THINK_PARAMS`].
    pub fn all_params(&self) -> impl Iterator<Item = &'static ParamSpec> {
        let cot: &'static [ParamSpec] = if self.cot { COT_PARAMS } else { &[] };
        self.params
            .iter()
            .chain(cot.iter())
            .chain(THINK_PARAMS.iter())
    }
}

/// The parameters of [`CotConfig`] that every token task accepts.
pub const COT_PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "max_chain_len",
        default: "the task's longest oracle chain",
        help: "chain-length cap, 0..=2^20",
    },
    ParamSpec {
        name: "fixed_chain_len",
        default: "false",
        help: "answer only at exactly the cap (the original's fixed-length chain)",
    },
    ParamSpec {
        name: "on_cap",
        default: "force_answer",
        help: "at the cap: force_answer (only ANSWER is legal) or truncate",
    },
    ParamSpec {
        name: "token_cost",
        default: "0",
        help: "reward cost per chain token, >= 0",
    },
    ParamSpec {
        name: "shaping",
        default: "0",
        help: "total dense reward for matching the oracle chain, >= 0",
    },
];

/// Reads the [`COT_PARAMS`] into a [`CotConfig`] (validated when the env is built).
pub fn cot_config(params: &EnvParams) -> Result<CotConfig, EnvError> {
    let on_cap = match params.str("on_cap", "force_answer")?.as_str() {
        "force_answer" => OnCap::ForceAnswer,
        "truncate" => OnCap::Truncate,
        other => {
            return Err(EnvError::invalid(
                "on_cap",
                other,
                "force_answer or truncate",
            ))
        }
    };
    Ok(CotConfig {
        max_chain_len: params.opt_usize("max_chain_len")?,
        fixed_chain_len: params.bool("fixed_chain_len", false)?,
        on_cap,
        reward: RewardConfig {
            token_cost: params.f32("token_cost", 0.0)?,
            shaping: params.f32("shaping", 0.0)?,
        },
    })
}

const LENGTH_PARAM: ParamSpec = ParamSpec {
    name: "length",
    default: "8",
    help: "number of input tokens L, 2..=2^20 (hops 1..=L-1)",
};

/// Every named env, in listing order.
pub const ENTRIES: &[EnvEntry] = &[
    EnvEntry {
        name: "cycle",
        summary: "follow pointers around a random single L-cycle; answer = node after hops+1 reads",
        difficulty: "hops",
        params: &[LENGTH_PARAM],
        cot: true,
        build: |p| {
            let task = Cycle::new(p.usize("length", 8)?)?;
            Ok(AnyEnv::Cycle(CotEnv::with_config(task, cot_config(p)?)?))
        },
    },
    EnvEntry {
        name: "cvpr",
        summary: "conditional pointer value retrieval (Abnar et al. 2023): an increasing pointer chain in random filler",
        difficulty: "hops",
        params: &[LENGTH_PARAM],
        cot: true,
        build: |p| {
            let task = Cvpr::new(p.usize("length", 8)?)?;
            Ok(AnyEnv::Cvpr(CotEnv::with_config(task, cot_config(p)?)?))
        },
    },
    EnvEntry {
        name: "multiplication",
        summary: "N x N (or N x multiplier_digits) multiplication, digits least significant first; chain = long-multiplication scratchpad with carries; difficulty = N",
        difficulty: "digits",
        params: &[
            ParamSpec {
                name: "max_digits",
                default: "8",
                help: "largest N, 1..=20 (difficulties 1..=max_digits)",
            },
            ParamSpec {
                name: "multiplier_digits",
                default: "N (square problems)",
                help: "fixed number of digits M of the second operand, 1..=20",
            },
        ],
        cot: true,
        build: |p| {
            let digits = param_u32(p, "max_digits", 8)?;
            let task = match p.opt_usize("multiplier_digits")? {
                None => Multiplication::new(digits)?,
                Some(_) => Multiplication::with_multiplier_digits(
                    digits,
                    param_u32(p, "multiplier_digits", 1)?,
                )?,
            };
            Ok(AnyEnv::Multiplication(CotEnv::with_config(task, cot_config(p)?)?))
        },
    },
    EnvEntry {
        name: "binpack",
        summary: "3D bin packing (Jumanji BinPack-v2, EMS formulation): action = ems_slot * items + item; return = utilization; one level (1)",
        difficulty: "level",
        params: &[
            ParamSpec {
                name: "items",
                default: "20",
                help: "item slots (instances have items - split_num_same_items + 1 or more)",
            },
            ParamSpec {
                name: "ems",
                default: "40",
                help: "empty maximal spaces shown, the largest first",
            },
            ParamSpec {
                name: "container",
                default: "5870x2330x2200",
                help: "container LxWxH (integers; twenty-foot container in mm)",
            },
            ParamSpec {
                name: "split_num_same_items",
                default: "2",
                help: "generator: largest number of equal slices in one cut",
            },
            ParamSpec {
                name: "reward",
                default: "dense",
                help: "dense (utilization gained per step) or sparse (final utilization)",
            },
            ParamSpec {
                name: "on_illegal",
                default: "error",
                help: "error or terminate (Jumanji) on a masked-out action",
            },
        ],
        cot: false,
        build: |p| Ok(AnyEnv::BinPack(BinPack::new(binpack_config(p)?)?)),
    },
];

/// The entry called `name`, or an error listing the names.
pub fn entry(name: &str) -> Result<&'static EnvEntry, EnvError> {
    ENTRIES.iter().find(|e| e.name == name).ok_or_else(|| {
        let names: Vec<_> = ENTRIES.iter().map(|e| e.name).collect();
        EnvError::invalid("env", name, format!("one of: {}", names.join(", ")))
    })
}

/// Builds the env called `name` with `params`; unknown parameter names are errors listing
/// the accepted ones.
pub fn make(name: &str, params: &EnvParams) -> Result<AnyEnv, EnvError> {
    let e = entry(name)?;
    for key in params.0.keys() {
        if !e.all_params().any(|p| p.name == key) {
            let names: Vec<_> = e.all_params().map(|p| p.name).collect();
            return Err(EnvError::InvalidParameter {
                name: "param",
                value: key.clone(),
                allowed: format!("parameters of `{name}`: {}", names.join(", ")),
            });
        }
    }
    think_wrap((e.build)(params)?, params)
}

/// The parameters every env accepts: with `thoughts = K`, the env is wrapped in [`Think`].
pub const THINK_PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "thoughts",
        default: "none (no wrapper)",
        help: "wrap in Think: up to K thought tokens before each real action, 0..=65536",
    },
    ParamSpec {
        name: "thought_vocab",
        default: "16",
        help: "number of distinct thought tokens V (with `thoughts`)",
    },
    ParamSpec {
        name: "thought_penalty",
        default: "0",
        help: "reward cost of one thought, >= 0 (with `thoughts`)",
    },
];

/// Wraps `env` in [`Think`] when `params` set `thoughts`.
fn think_wrap(env: AnyEnv, params: &EnvParams) -> Result<AnyEnv, EnvError> {
    let Some(max_thoughts) = params.opt_usize("thoughts")? else {
        for name in ["thought_vocab", "thought_penalty"] {
            if params.get(name).is_some() {
                return Err(EnvError::invalid(
                    name,
                    "set",
                    "only together with `thoughts`",
                ));
            }
        }
        return Ok(env);
    };
    let config = ThinkConfig {
        max_thoughts,
        vocab: params.usize("thought_vocab", 16)?,
        penalty: params.f32("thought_penalty", 0.0)?,
    };
    Ok(AnyEnv::Think(Box::new(Think::new(env, config)?)))
}

/// `name` as a `u32` in `1..=u32::MAX`, or `default` when absent.
fn param_u32(params: &EnvParams, name: &'static str, default: u32) -> Result<u32, EnvError> {
    let v = params.usize(name, default as usize)?;
    u32::try_from(v).map_err(|_| EnvError::invalid(name, v, "at most 2^32 - 1"))
}

/// Reads the `binpack` entry's parameters.
fn binpack_config(p: &EnvParams) -> Result<BinPackConfig, EnvError> {
    let d = BinPackConfig::default();
    let container_text = p.str("container", "5870x2330x2200")?;
    let dims: Vec<i32> = container_text
        .split('x')
        .map(|t| t.trim().parse::<i32>())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            EnvError::invalid("container", &container_text, "LxWxH, e.g. 5870x2330x2200")
        })?;
    let container: [i32; 3] = dims.try_into().map_err(|_| {
        EnvError::invalid("container", &container_text, "LxWxH, e.g. 5870x2330x2200")
    })?;
    let reward = match p.str("reward", "dense")?.as_str() {
        "dense" => RewardKind::Dense,
        "sparse" => RewardKind::Sparse,
        other => return Err(EnvError::invalid("reward", other, "dense or sparse")),
    };
    let on_illegal = match p.str("on_illegal", "error")?.as_str() {
        "error" => OnIllegal::Error,
        "terminate" => OnIllegal::Terminate,
        other => return Err(EnvError::invalid("on_illegal", other, "error or terminate")),
    };
    Ok(BinPackConfig {
        generator: RandomGenerator {
            container,
            max_num_items: p.usize("items", d.generator.max_num_items)?,
            split_num_same_items: p
                .usize("split_num_same_items", d.generator.split_num_same_items)?,
            ..d.generator
        },
        obs_num_ems: p.usize("ems", d.obs_num_ems)?,
        reward,
        on_illegal,
    })
}

/// Declares [`AnyEnv`] and delegates every [`Env`] method to the variant's env.
macro_rules! any_env {
    ($($(#[$doc:meta])* $variant:ident($ty:ty),)*) => {
        /// Any env of the registry, so one binary can pick an env by name and still use the
        /// generic `VecEnv<E>`, runners and searchers (one `match` per call).
        #[derive(Debug, Clone)]
        pub enum AnyEnv {
            $($(#[$doc])* $variant($ty),)*
        }

        impl Env for AnyEnv {
            fn spec(&self) -> &EnvSpec {
                match self { $(AnyEnv::$variant(e) => e.spec(),)* }
            }
            fn reset(&mut self, rng: &mut EnvRng, difficulty: Difficulty) -> Result<(), EnvError> {
                match self { $(AnyEnv::$variant(e) => e.reset(rng, difficulty),)* }
            }
            fn step(&mut self, action: usize) -> Result<Step, EnvError> {
                match self { $(AnyEnv::$variant(e) => e.step(action),)* }
            }
            fn observe(&self, obs: ObsMut<'_>) {
                match self { $(AnyEnv::$variant(e) => e.observe(obs),)* }
            }
            fn observe_update(&self, obs: ObsMut<'_>) {
                match self { $(AnyEnv::$variant(e) => e.observe_update(obs),)* }
            }
            fn info(&self) -> Info {
                match self { $(AnyEnv::$variant(e) => e.info(),)* }
            }
            fn is_done(&self) -> bool {
                match self { $(AnyEnv::$variant(e) => e.is_done(),)* }
            }
            fn render(&self) -> String {
                match self { $(AnyEnv::$variant(e) => e.render(),)* }
            }
            fn oracle_action(&self) -> Option<usize> {
                match self { $(AnyEnv::$variant(e) => e.oracle_action(),)* }
            }
        }
    };
}

any_env! {
    /// Cycle(L) as a token MDP.
    Cycle(CotEnv<Cycle>),
    /// C-VPR(L) as a token MDP.
    Cvpr(CotEnv<Cvpr>),
    /// N-digit multiplication as a token MDP.
    Multiplication(CotEnv<Multiplication>),
    /// 3D bin packing (Jumanji's BinPack, EMS formulation).
    BinPack(BinPack),
    /// Any of these with thought tokens.
    Think(Box<Think<AnyEnv>>),
}
