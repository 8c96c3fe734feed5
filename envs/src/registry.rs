//! Named envs: build an env from a name and `key = value` parameters (the CLI's
//! `factorexe envs`, the `[env]` table of a training config).
//!
//! The registry is open: the built-in tasks register through [`register_task`] exactly as a
//! user's task does. A task implements [`NamedTask`] (its name, parameters and constructor);
//! `register_task::<MyTask>()` makes it buildable by name everywhere (configs, every CLI
//! command). An env that is not a token task registers an [`EnvEntry`] with [`register`].
//! A user's env travels as [`AnyEnv::Custom`]; the built-in ones have their own variants so
//! their steps dispatch statically.
//!
//! ```
//! use envs::registry::{self, EnvParams, ParamValue};
//! let env = registry::make("cycle", &EnvParams::new().with("length", ParamValue::Int(6)))?;
//! assert_eq!(envs::Env::spec(&env).num_actions, 7);
//! assert!(registry::names().contains(&"cvpr"));
//! # Ok::<(), envs::EnvError>(())
//! ```

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{LazyLock, RwLock};

use serde::{Deserialize, Serialize};

use crate::binpack::{BinPack, BinPackConfig, OnIllegal, RandomGenerator, RewardKind};
use crate::cot::{CotConfig, CotEnv, OnCap, RewardConfig};
use crate::env::{Difficulty, Env, EnvRng, Info, ObsMut, OracleChainFit, Step};
use crate::error::EnvError;
use crate::spec::{AnswerSpec, EnvSpec};
use crate::task::Task;
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

/// A token task the registry can build by name: its name, its parameters and a
/// constructor from them. [`CotEnv`] makes it an MDP; the entry also accepts the
/// [`COT_PARAMS`] and the [`THINK_PARAMS`].
pub trait NamedTask: Task + std::fmt::Debug + 'static {
    /// The name users type (`[env] name = "..."`, `factorexe envs show NAME`).
    const NAME: &'static str;
    /// One line about it, for `factorexe envs list`.
    const SUMMARY: &'static str;
    /// What the difficulty means ("hops", "digits").
    const DIFFICULTY: &'static str = "level";
    /// Its own parameters (their names are checked before [`from_params`](Self::from_params)).
    const PARAMS: &'static [ParamSpec] = &[];

    /// Builds the task from its parameters; bad values are errors naming the parameter.
    fn from_params(params: &EnvParams) -> Result<Self, EnvError>;

    /// The MDP as an [`AnyEnv`]. The default boxes it ([`AnyEnv::Custom`]), which is right for
    /// every task but the built-in ones, which have their own variants.
    fn into_any(env: CotEnv<Self>) -> AnyEnv {
        AnyEnv::custom(env)
    }
}

impl EnvEntry {
    /// The entry of a [`NamedTask`].
    pub fn task<T: NamedTask>() -> EnvEntry {
        EnvEntry {
            name: T::NAME,
            summary: T::SUMMARY,
            difficulty: T::DIFFICULTY,
            params: T::PARAMS,
            cot: true,
            build: build_task::<T>,
        }
    }
}

fn build_task<T: NamedTask>(params: &EnvParams) -> Result<AnyEnv, EnvError> {
    let task = T::from_params(params)?;
    Ok(T::into_any(CotEnv::with_config(task, cot_config(params)?)?))
}

impl NamedTask for Cycle {
    const NAME: &'static str = "cycle";
    const SUMMARY: &'static str =
        "follow pointers around a random single L-cycle; answer = node after hops+1 reads";
    const DIFFICULTY: &'static str = "hops";
    const PARAMS: &'static [ParamSpec] = &[LENGTH_PARAM];
    fn from_params(p: &EnvParams) -> Result<Self, EnvError> {
        Cycle::new(p.usize("length", 8)?)
    }
    fn into_any(env: CotEnv<Self>) -> AnyEnv {
        AnyEnv::Cycle(env)
    }
}

impl NamedTask for Cvpr {
    const NAME: &'static str = "cvpr";
    const SUMMARY: &'static str = "conditional pointer value retrieval (Abnar et al. 2023): an increasing pointer chain in random filler";
    const DIFFICULTY: &'static str = "hops";
    const PARAMS: &'static [ParamSpec] = &[LENGTH_PARAM];
    fn from_params(p: &EnvParams) -> Result<Self, EnvError> {
        Cvpr::new(p.usize("length", 8)?)
    }
    fn into_any(env: CotEnv<Self>) -> AnyEnv {
        AnyEnv::Cvpr(env)
    }
}

impl NamedTask for Multiplication {
    const NAME: &'static str = "multiplication";
    const SUMMARY: &'static str = "N x N (or N x multiplier_digits) multiplication, digits least significant first; chain = long-multiplication scratchpad with carries; difficulty = N";
    const DIFFICULTY: &'static str = "digits";
    const PARAMS: &'static [ParamSpec] = &[
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
    ];
    fn from_params(p: &EnvParams) -> Result<Self, EnvError> {
        let digits = param_u32(p, "max_digits", 8)?;
        match p.opt_usize("multiplier_digits")? {
            None => Multiplication::new(digits),
            Some(_) => Multiplication::with_multiplier_digits(
                digits,
                param_u32(p, "multiplier_digits", 1)?,
            ),
        }
    }
    fn into_any(env: CotEnv<Self>) -> AnyEnv {
        AnyEnv::Multiplication(env)
    }
}

/// The built-in envs, registered as a user's are, in listing order.
fn builtin() -> Vec<EnvEntry> {
    let mut entries = Vec::new();
    for e in [
        EnvEntry::task::<Cycle>(),
        EnvEntry::task::<Cvpr>(),
        EnvEntry::task::<Multiplication>(),
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
    ] {
        entries.push(e);
    }
    entries
}

static REGISTRY: LazyLock<RwLock<Vec<EnvEntry>>> = LazyLock::new(|| RwLock::new(builtin()));

fn read_registry() -> std::sync::RwLockReadGuard<'static, Vec<EnvEntry>> {
    // A panic while holding the lock cannot leave the list half-written (pushes are atomic
    // for readers), so a poisoned lock still holds a valid list.
    REGISTRY.read().unwrap_or_else(|e| e.into_inner())
}

/// Adds `entry` to the registry; a name already taken is an error.
pub fn register(entry: EnvEntry) -> Result<(), EnvError> {
    let mut list = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    if list.iter().any(|e| e.name == entry.name) {
        return Err(EnvError::invalid(
            "env",
            entry.name,
            "a name not registered yet",
        ));
    }
    list.push(entry);
    Ok(())
}

/// Registers the [`NamedTask`] `T`: `make(T::NAME, params)` then builds it.
pub fn register_task<T: NamedTask>() -> Result<(), EnvError> {
    register(EnvEntry::task::<T>())
}

/// Every registered env, in listing order (the built-in ones first).
pub fn entries() -> Vec<EnvEntry> {
    read_registry().clone()
}

/// The names of every registered env.
pub fn names() -> Vec<&'static str> {
    read_registry().iter().map(|e| e.name).collect()
}

/// The entry called `name`, or an error listing the names.
pub fn entry(name: &str) -> Result<EnvEntry, EnvError> {
    let list = read_registry();
    list.iter()
        .find(|e| e.name == name)
        .copied()
        .ok_or_else(|| {
            let names: Vec<_> = list.iter().map(|e| e.name).collect();
            EnvError::invalid("env", name, format!("one of: {}", names.join(", ")))
        })
}

/// Builds the env called `name` with `params`; unknown parameter names are errors listing
/// the accepted ones.
pub fn make(name: &str, params: &EnvParams) -> Result<AnyEnv, EnvError> {
    let e = entry(name)?;
    for key in params.0.keys() {
        if !e.all_params().any(|p| p.name == key) {
            let names: Vec<&str> = e.all_params().map(|p| p.name).collect();
            let hint = closest(key, &names)
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            return Err(EnvError::UnknownParameter {
                env: name.to_string(),
                name: key.clone(),
                hint,
                known: names.join(", "),
            });
        }
    }
    think_wrap((e.build)(params)?, params)
}

/// The name in `names` nearest to `typo` by edit distance, when it is at most a third of
/// the typo's length (at least 1) away: a misspelling, not a different word.
pub fn closest<'a>(typo: &str, names: &[&'a str]) -> Option<&'a str> {
    let distance = |a: &str, b: &str| {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, &cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    };
    let limit = (typo.chars().count() / 3).max(1);
    names
        .iter()
        .map(|&n| (distance(typo, n), n))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, n)| n)
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
            fn answer_spec(&self) -> Option<AnswerSpec> {
                match self { $(AnyEnv::$variant(e) => e.answer_spec(),)* }
            }
            fn oracle_chain_fit(&self) -> Option<OracleChainFit> {
                match self { $(AnyEnv::$variant(e) => e.oracle_chain_fit(),)* }
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
    /// A registered env of a user's (see [`NamedTask`]).
    Custom(CustomEnv),
}

impl AnyEnv {
    /// `env` as an [`AnyEnv::Custom`].
    pub fn custom<E: Env + fmt::Debug + 'static>(env: E) -> AnyEnv {
        AnyEnv::Custom(CustomEnv(Box::new(env)))
    }
}

pub use custom::CustomEnv;

/// User envs behind a trait object; the blanket [`custom::DynEnv`] impl stays in this module
/// so its methods never shadow [`Env`]'s elsewhere.
mod custom {
    use super::*;

    /// The object-safe face of an [`Env`], so a user's env can live in [`AnyEnv`].
    pub(super) trait DynEnv: Send + fmt::Debug {
        fn spec(&self) -> &EnvSpec;
        fn reset(&mut self, rng: &mut EnvRng, difficulty: Difficulty) -> Result<(), EnvError>;
        fn step(&mut self, action: usize) -> Result<Step, EnvError>;
        fn observe(&self, obs: ObsMut<'_>);
        fn observe_update(&self, obs: ObsMut<'_>);
        fn info(&self) -> Info;
        fn is_done(&self) -> bool;
        fn render(&self) -> String;
        fn oracle_action(&self) -> Option<usize>;
        fn answer_spec(&self) -> Option<AnswerSpec>;
        fn oracle_chain_fit(&self) -> Option<OracleChainFit>;
        fn clone_box(&self) -> Box<dyn DynEnv>;
        fn as_any(&self) -> &dyn Any;
    }

    impl<E: Env + fmt::Debug + 'static> DynEnv for E {
        fn spec(&self) -> &EnvSpec {
            Env::spec(self)
        }
        fn reset(&mut self, rng: &mut EnvRng, difficulty: Difficulty) -> Result<(), EnvError> {
            Env::reset(self, rng, difficulty)
        }
        fn step(&mut self, action: usize) -> Result<Step, EnvError> {
            Env::step(self, action)
        }
        fn observe(&self, obs: ObsMut<'_>) {
            Env::observe(self, obs)
        }
        fn observe_update(&self, obs: ObsMut<'_>) {
            Env::observe_update(self, obs)
        }
        fn info(&self) -> Info {
            Env::info(self)
        }
        fn is_done(&self) -> bool {
            Env::is_done(self)
        }
        fn render(&self) -> String {
            Env::render(self)
        }
        fn oracle_action(&self) -> Option<usize> {
            Env::oracle_action(self)
        }
        fn answer_spec(&self) -> Option<AnswerSpec> {
            Env::answer_spec(self)
        }
        fn oracle_chain_fit(&self) -> Option<OracleChainFit> {
            Env::oracle_chain_fit(self)
        }
        fn clone_box(&self) -> Box<dyn DynEnv> {
            Box::new(self.clone())
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    /// A user's env inside [`AnyEnv`] (boxed; cloning clones the env).
    #[derive(Debug)]
    pub struct CustomEnv(pub(super) Box<dyn DynEnv>);

    impl CustomEnv {
        /// The env, if it is an `E`.
        pub fn downcast_ref<E: Env + 'static>(&self) -> Option<&E> {
            self.0.as_any().downcast_ref()
        }
    }

    impl Clone for CustomEnv {
        fn clone(&self) -> Self {
            CustomEnv(self.0.clone_box())
        }
    }

    impl Env for CustomEnv {
        fn spec(&self) -> &EnvSpec {
            self.0.spec()
        }
        fn reset(&mut self, rng: &mut EnvRng, difficulty: Difficulty) -> Result<(), EnvError> {
            self.0.reset(rng, difficulty)
        }
        fn step(&mut self, action: usize) -> Result<Step, EnvError> {
            self.0.step(action)
        }
        fn observe(&self, obs: ObsMut<'_>) {
            self.0.observe(obs)
        }
        fn observe_update(&self, obs: ObsMut<'_>) {
            self.0.observe_update(obs)
        }
        fn info(&self) -> Info {
            self.0.info()
        }
        fn is_done(&self) -> bool {
            self.0.is_done()
        }
        fn render(&self) -> String {
            self.0.render()
        }
        fn oracle_action(&self) -> Option<usize> {
            self.0.oracle_action()
        }
        fn answer_spec(&self) -> Option<AnswerSpec> {
            self.0.answer_spec()
        }
        fn oracle_chain_fit(&self) -> Option<OracleChainFit> {
            self.0.oracle_chain_fit()
        }
    }
}
