//! Run configs: one TOML file per experiment (`configs/*.toml`), every field overridable on
//! the command line with `--set section.key=value`, unknown keys and invalid values rejected
//! with messages that name the key and the allowed values.
//!
//! ```toml
//! name = "cycle40_cot"          # run directory: <log.dir>/<name>; default: the file's stem
//! seed = 0
//!
//! [env]                         # a named env of the registry and its parameters
//! name = "cycle"
//! length = 40
//!
//! [train]
//! steps = 600                   # optimizer updates
//! batch_size = 256              # problems per update
//! levels = [1, 2, 3, 4, 5]      # difficulties to train on
//!
//! [algo]                        # the agent and its loss
//! name = "cot_supervised"
//!
//! [model]                       # see agents::model::ModelConfig
//! [optim]                       # see agents::optim::OptimConfig
//! [eval]                        # see EvalConfig
//! [log]                         # see LogConfig
//! ```

use std::fmt;
use std::path::Path;

use envs::registry::EnvParams;
use envs::{Curriculum, Difficulty, DifficultySampler, EnvError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::model::ModelConfig;
use crate::optim::OptimConfig;

/// A config that cannot be read or is not valid. The message names the file or `--set`
/// argument, the key, and the allowed values.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The file is not valid TOML or does not fit the schema (unknown key, wrong type,
    /// unknown variant); toml's message shows the line and the key.
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, with the offending line.
        message: String,
    },
    /// A `--set key=value` argument is malformed, names an unknown key or gives an invalid
    /// value.
    #[error("--set {arg}: {message}")]
    Set {
        /// The argument as given.
        arg: String,
        /// What is wrong, with the allowed keys or values.
        message: String,
    },
    /// A value is of the right type but outside its allowed range.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// How training draws difficulties (the `sampler` key of `[train]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// Every reset draws uniformly among `levels` (one level = fixed difficulty).
    #[default]
    Uniform,
    /// Start at the lowest level; move up when greedy eval accuracy at the current level
    /// reaches `threshold`; revisit lower levels with probability `revisit`.
    Curriculum,
}

/// Difficulty levels: one number or a list (`levels = 3` or `levels = [1, 2, 3]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Levels {
    /// A single level.
    One(Difficulty),
    /// Several levels.
    Many(Vec<Difficulty>),
}

impl Levels {
    /// The levels as a list.
    pub fn to_vec(&self) -> Vec<Difficulty> {
        match self {
            Levels::One(d) => vec![*d],
            Levels::Many(v) => v.clone(),
        }
    }
}

/// The `[train]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimizer updates in the run, `>= 1`.
    pub steps: u64,
    /// Problems per update, `>= 1` (on-policy agents collect `samples_per_problem` rows each).
    pub batch_size: usize,
    /// Gradient accumulation: each update's batch is processed in this many micro-batches
    /// whose gradients add up to the full batch's, `>= 1`.
    pub micro_batches: usize,
    /// With `--threads N > 1` on the CPU, agents that support it (`supervised`,
    /// `cot_supervised`) split each update's batch into N shards computed at the same time,
    /// each by one thread on its own copy of the model, and sum their gradients (the same
    /// gradient up to float rounding, usually much faster for these small models); each
    /// shard is further split into `micro_batches`. `false`: one pass whose ops libtorch's
    /// threads share.
    pub data_parallel: bool,
    /// Difficulty levels to train on.
    pub levels: Levels,
    /// How levels are drawn.
    pub sampler: SamplerKind,
    /// Curriculum only: greedy accuracy that moves to the next level, in `(0, 1]`.
    pub threshold: f64,
    /// Curriculum only: probability of drawing an earlier level, in `[0, 1)`.
    pub revisit: f64,
    /// Stop after this many seconds of wall time (0 = no limit); the run then evaluates,
    /// checkpoints and exits like a finished one.
    pub time_limit_s: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 1000,
            batch_size: 256,
            micro_batches: 1,
            data_parallel: true,
            levels: Levels::Many(vec![1, 2, 3]),
            sampler: SamplerKind::Uniform,
            threshold: 0.95,
            revisit: 0.2,
            time_limit_s: 0.0,
        }
    }
}

impl TrainConfig {
    /// The difficulty sampler the training VecEnv uses.
    pub fn sampler(&self) -> Result<DifficultySampler, EnvError> {
        let levels = self.levels.to_vec();
        match self.sampler {
            SamplerKind::Uniform if levels.len() == 1 => Ok(DifficultySampler::Fixed(levels[0])),
            SamplerKind::Uniform => DifficultySampler::uniform(levels),
            SamplerKind::Curriculum => Ok(DifficultySampler::Curriculum(Curriculum::new(
                levels,
                self.threshold,
                self.revisit,
            )?)),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.steps == 0 {
            return Err("train.steps = 0: expected an integer >= 1".into());
        }
        if self.batch_size == 0 {
            return Err("train.batch_size = 0: expected an integer >= 1".into());
        }
        if self.micro_batches == 0 || self.micro_batches > self.batch_size {
            return Err(format!(
                "train.micro_batches = {}: expected an integer in 1..=train.batch_size ({})",
                self.micro_batches, self.batch_size
            ));
        }
        if self.levels.to_vec().is_empty() {
            return Err("train.levels = []: expected at least one difficulty level".into());
        }
        if !(self.time_limit_s.is_finite() && self.time_limit_s >= 0.0) {
            return Err(format!(
                "train.time_limit_s = {}: expected seconds >= 0 (0 = no limit)",
                self.time_limit_s
            ));
        }
        self.sampler()
            .map(|_| ())
            .map_err(|e| format!("train: {e}"))
    }
}

/// The `[log]` section: where runs go and how often they log and checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Parent directory of run directories.
    pub dir: String,
    /// Log training scalars (averaged over the interval) every this many updates, `>= 1`.
    pub every: u64,
    /// Save a checkpoint every this many updates (0 = only at the end and on Ctrl-C).
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk (0 = all).
    pub keep_checkpoints: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            dir: "runs".into(),
            every: 20,
            checkpoint_every: 0,
            keep_checkpoints: 3,
        }
    }
}

/// The `[env]` section: a registry name and that env's parameters
/// (`factorexe envs list` shows them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvConfig {
    /// The registry name (`cycle`, `cvpr`, `multiplication`, `binpack`).
    pub name: String,
    /// The env's parameters (`length = 40`, `max_chain_len = 6`, ...); checked by the
    /// registry, which lists the accepted names when one is unknown.
    #[serde(flatten)]
    pub params: EnvParams,
}

impl Default for EnvConfig {
    fn default() -> Self {
        EnvConfig {
            name: "cycle".into(),
            params: EnvParams::new(),
        }
    }
}

impl EnvConfig {
    /// Builds the env from the registry.
    pub fn build(&self) -> Result<envs::AnyEnv, ConfigError> {
        envs::registry::make(&self.name, &self.params)
            .map_err(|e| ConfigError::Invalid(format!("[env] {e}")))
    }
}

/// A whole run's config: every section of the TOML file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Run name: the run directory is `<log.dir>/<name>`. Empty = the config file's stem.
    #[serde(default)]
    pub name: String,
    /// Seed of everything: weights, problems, sampling.
    #[serde(default)]
    pub seed: u64,
    /// The env.
    #[serde(default)]
    pub env: EnvConfig,
    /// The training loop.
    #[serde(default)]
    pub train: TrainConfig,
    /// The agent and its loss.
    #[serde(default)]
    pub algo: AlgoConfig,
    /// The model.
    #[serde(default)]
    pub model: ModelConfig,
    /// The optimizer.
    #[serde(default)]
    pub optim: OptimConfig,
    /// Evaluation.
    #[serde(default)]
    pub eval: EvalConfig,
    /// Logging and checkpoints.
    #[serde(default)]
    pub log: LogConfig,
}

/// One `--set key=value` override.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Dotted key path, e.g. `["model", "heads"]`.
    pub path: Vec<String>,
    /// The value, parsed as TOML (`2`, `1e-3`, `true`, `[1, 2]`, `"text"`) or, when that
    /// fails, taken as a string (`cosine`).
    pub value: toml::Value,
    /// The argument as written, for messages.
    pub arg: String,
}

impl Override {
    /// Parses `section.key=value`.
    pub fn parse(arg: &str) -> Result<Override, ConfigError> {
        let err = |message: &str| ConfigError::Set {
            arg: arg.to_string(),
            message: message.to_string(),
        };
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| err("expected KEY=VALUE, e.g. model.heads=4"))?;
        let key = key.trim();
        let path: Vec<String> = key.split('.').map(|s| s.trim().to_string()).collect();
        if path.iter().any(|s| s.is_empty()) {
            return Err(err("the key has an empty part; expected e.g. model.heads"));
        }
        let value = value.trim();
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        Ok(Override {
            path,
            value: parsed,
            arg: arg.to_string(),
        })
    }

    /// Writes the value into `table`, creating intermediate tables.
    fn apply(&self, table: &mut toml::Table) -> Result<(), ConfigError> {
        let mut t = table;
        let (last, parents) = self.path.split_last().expect("parse rejects empty keys");
        for (i, p) in parents.iter().enumerate() {
            let entry = t
                .entry(p.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            t = match entry {
                toml::Value::Table(sub) => sub,
                other => {
                    return Err(ConfigError::Set {
                        arg: self.arg.clone(),
                        message: format!(
                            "`{}` holds a value of type {}, not a section of keys",
                            self.path[..=i].join("."),
                            other.type_str()
                        ),
                    })
                }
            };
        }
        t.insert(last.clone(), self.value.clone());
        Ok(())
    }
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arg)
    }
}

impl RunConfig {
    /// Reads `path`, applies `overrides` in order, fills an empty `name` with the file's
    /// stem, and validates.
    pub fn load(path: &Path, overrides: &[Override]) -> Result<RunConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::from_toml_str(&text, &path.display().to_string(), &stem, overrides)
    }

    /// Like [`load`](Self::load) from TOML text; `source` names it in messages, `default_name`
    /// fills an empty `name`.
    pub fn from_toml_str(
        text: &str,
        source: &str,
        default_name: &str,
        overrides: &[Override],
    ) -> Result<RunConfig, ConfigError> {
        // The file alone first, so its own mistakes are reported with their line.
        let mut cfg: RunConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: source.to_string(),
            message: e.to_string(),
        })?;
        if !overrides.is_empty() {
            let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
                path: source.to_string(),
                message: e.to_string(),
            })?;
            // One at a time, so that an error names the override that caused it.
            for o in overrides {
                o.apply(&mut table)?;
                cfg = deserialize_table(&table).map_err(|message| ConfigError::Set {
                    arg: o.arg.clone(),
                    message,
                })?;
            }
        }
        if cfg.name.is_empty() {
            cfg.name = default_name.to_string();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks ranges and combinations the types cannot express, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = ConfigError::Invalid;
        if self.name.is_empty()
            || self
                .name
                .contains(|c: char| c == '/' || c == '\\' || c.is_control())
            || self.name == "."
            || self.name == ".."
        {
            return Err(invalid(format!(
                "name = {:?}: expected a non-empty directory name without '/'",
                self.name
            )));
        }
        self.train.validate().map_err(invalid)?;
        self.optim.validate().map_err(invalid)?;
        self.model
            .validate()
            .map_err(|e| invalid(format!("[model] {e}")))?;
        self.eval.validate().map_err(invalid)?;
        if self.log.every == 0 {
            return Err(invalid("log.every = 0: expected an integer >= 1".into()));
        }
        Ok(())
    }

    /// The resolved config as TOML (what `runs/<name>/config.toml` holds).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a RunConfig always serializes to TOML")
    }

    /// Parses a resolved config written by [`to_toml`](Self::to_toml).
    pub fn from_resolved(text: &str, source: &str) -> Result<RunConfig, ConfigError> {
        Self::from_toml_str(text, source, "", &[])
    }
}

/// The `[eval]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Evaluate every this many updates (0 = only at the end of training).
    pub every: u64,
    /// Problems per difficulty level, `>= 1`.
    pub episodes: usize,
    /// Levels to report; empty = every training level.
    pub levels: Vec<Difficulty>,
    /// Also evaluate sampled chains (besides greedy ones).
    pub sampled: bool,
    /// Rendered examples per level in the TensorBoard text tab.
    pub examples: usize,
    /// Problems per forward pass, `>= 1`.
    pub batch_size: usize,
    /// Also run the chain faithfulness probe ([`crate::probe`]) at each evaluation, on the
    /// same number of fresh problems per level, and log its figures under `probe/`.
    pub probe: bool,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            every: 100,
            episodes: 500,
            levels: Vec::new(),
            sampled: true,
            examples: 3,
            batch_size: 1000,
            probe: false,
        }
    }
}

impl EvalConfig {
    /// Checks ranges, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.episodes == 0 {
            return Err("eval.episodes = 0: expected an integer >= 1".into());
        }
        if self.batch_size == 0 {
            return Err("eval.batch_size = 0: expected an integer >= 1".into());
        }
        Ok(())
    }
}

/// The `[algo]` section: which agent to train (`name`, a registered agent) and its
/// settings (every other key), which the agent's own settings type checks when the run is
/// resolved (`agents::registry::resolve`).
#[derive(Debug, Clone, PartialEq)]
pub struct AlgoConfig {
    /// The registered agent's name.
    pub name: String,
    /// Its settings, as written (after resolution: with every default filled in).
    pub settings: toml::Table,
}

impl Default for AlgoConfig {
    fn default() -> Self {
        AlgoConfig {
            name: "cot_supervised".into(),
            settings: toml::Table::new(),
        }
    }
}

impl Serialize for AlgoConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.settings.len() + 1))?;
        map.serialize_entry("name", &self.name)?;
        for (k, v) in &self.settings {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for AlgoConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut settings = toml::Table::deserialize(d)?;
        let name = match settings.remove("name") {
            None => AlgoConfig::default().name,
            Some(toml::Value::String(s)) => s,
            Some(other) => {
                return Err(serde::de::Error::custom(format!(
                    "algo.name = {other}: expected the name of an agent (a string)"
                )))
            }
        };
        Ok(AlgoConfig { name, settings })
    }
}

/// Deserializes a section type from a TOML table, returning toml's message on failure
/// (without its snippet of the merged document, which the user never wrote).
fn deserialize_table<T: DeserializeOwned>(table: &toml::Table) -> Result<T, String> {
    let text = toml::to_string(table).map_err(|e| e.to_string())?;
    toml::from_str(&text).map_err(|e| e.message().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(args: &[&str]) -> Vec<Override> {
        args.iter().map(|a| Override::parse(a).unwrap()).collect()
    }

    const BASE: &str = r#"
seed = 3
[env]
name = "cycle"
length = 8
[train]
steps = 10
levels = [1, 2]
[algo]
name = "cot_supervised"
"#;

    #[test]
    fn a_minimal_file_gets_defaults_and_the_stem_as_name() {
        let c = RunConfig::from_toml_str(BASE, "x.toml", "x", &[]).unwrap();
        assert_eq!(c.name, "x");
        assert_eq!(c.seed, 3);
        assert_eq!(c.train.steps, 10);
        assert_eq!(c.optim, OptimConfig::default());
        assert!(c.env.build().is_ok());
    }

    #[test]
    fn overrides_apply_in_order_with_typed_values() {
        let c = RunConfig::from_toml_str(
            BASE,
            "x.toml",
            "x",
            &sets(&[
                "model.heads=2",
                "optim.lr=3e-4",
                "optim.schedule=cosine",
                "train.levels=[3, 4]",
                "env.length=12",
                "model.heads=3",
                "name=other",
            ]),
        )
        .unwrap();
        assert_eq!(c.model.heads, 3);
        assert_eq!(c.optim.lr, 3e-4);
        assert_eq!(c.optim.schedule, crate::optim::ScheduleKind::Cosine);
        assert_eq!(c.train.levels.to_vec(), vec![3, 4]);
        assert_eq!(c.name, "other");
        assert!(c.env.build().is_ok());
    }

    #[test]
    fn an_unknown_key_in_the_file_names_it_and_lists_the_section_keys() {
        let text = format!("{BASE}\n[model]\nlayerz = 2\n");
        let e = RunConfig::from_toml_str(&text, "bad.toml", "bad", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.toml") && e.contains("layerz"), "{e}");
        assert!(e.contains("heads") && e.contains("decoder_layers"), "{e}");
    }

    #[test]
    fn an_unknown_set_key_names_the_argument_and_the_valid_keys() {
        let e = RunConfig::from_toml_str(BASE, "x.toml", "x", &sets(&["model.layerz=2"]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--set model.layerz=2"), "{e}");
        assert!(e.contains("layerz") && e.contains("encoder_layers"), "{e}");

        let e = RunConfig::from_toml_str(BASE, "x.toml", "x", &sets(&["modle.heads=2"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("modle") && e.contains("optim") && e.contains("train"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_enum_value_lists_the_allowed_values() {
        let e = RunConfig::from_toml_str(BASE, "x.toml", "x", &sets(&["optim.schedule=linear"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--set optim.schedule=linear"), "{e}");
        assert!(e.contains("constant") && e.contains("cosine"), "{e}");

        // The agent's name is checked against the registry when the run is resolved.
        let mut cfg =
            RunConfig::from_toml_str(BASE, "x.toml", "x", &sets(&["algo.name=muesli"])).unwrap();
        let e = crate::registry::resolve(&mut cfg).unwrap_err().to_string();
        assert!(e.contains("muesli") && e.contains("cot_supervised"), "{e}");

        // A bad value of an agent's own enum setting names its key.
        let mut cfg = RunConfig::from_toml_str(
            BASE,
            "x.toml",
            "x",
            &sets(&["algo.name=reinforce", "algo.baseline=grupo"]),
        )
        .unwrap();
        let e = crate::registry::resolve(&mut cfg).unwrap_err().to_string();
        assert!(e.contains("algo.baseline") && e.contains("`group`"), "{e}");
    }

    #[test]
    fn a_bad_type_or_range_names_the_key() {
        let e = RunConfig::from_toml_str(BASE, "x.toml", "x", &sets(&["train.steps=many"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.steps=many") && e.contains("u64"), "{e}");

        let e = RunConfig::from_toml_str(BASE, "x.toml", "x", &sets(&["optim.lr=-1"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("optim.lr") && e.contains("> 0"), "{e}");

        let e = RunConfig::from_toml_str(BASE, "x.toml", "x", &sets(&["train.micro_batches=0"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("train.micro_batches") && e.contains("1..="),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_env_parameter_lists_the_accepted_ones() {
        let c = RunConfig::from_toml_str(BASE, "x.toml", "x", &sets(&["env.lenght=9"])).unwrap();
        let e = c.env.build().unwrap_err().to_string();
        assert!(e.contains("lenght") && e.contains("length"), "{e}");
    }

    #[test]
    fn malformed_set_arguments_are_rejected() {
        assert!(Override::parse("model.heads").is_err());
        assert!(Override::parse("model..heads=2").is_err());
        let e = RunConfig::from_toml_str(BASE, "x.toml", "x", &sets(&["seed.x=1"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`seed` holds a value of type integer"), "{e}");
    }

    #[test]
    fn the_resolved_config_round_trips() {
        let c = RunConfig::from_toml_str(BASE, "x.toml", "x", &sets(&["optim.lr=0.01"])).unwrap();
        let back = RunConfig::from_resolved(&c.to_toml(), "config.toml").unwrap();
        assert_eq!(back, c);
    }
}
