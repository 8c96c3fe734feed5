//! The sweep spec (`configs/sweeps/<name>.toml`) and its expansion into points.
//!
//! ```toml
//! name = "cycle_width"                  # optional; the file's stem by default
//! seeds = [0, 1, 2]                     # shorthand for an axis over `seed`
//!
//! [base]
//! config = "../cycle10_cot_short.toml"  # relative to this file
//! set = { "train.steps" = 50 }          # overrides applied to every point
//!
//! [run]
//! threads = 1                           # --threads of each run
//!
//! [[axis]]                              # a grid axis: one key, a list of values
//! key = "model.decoder_layers"
//! values = [1, 2]
//!
//! [[axis]]                              # a zipped axis: several keys varying together
//! name = "width"
//! keys = ["model.heads", "model.head_dim"]
//! values = [[2, 8], [4, 16]]
//! ```
//!
//! The points are the cartesian product of the axes, in order (the last axis varies
//! fastest). Each point is named from its axis values (`decoder_layers=1,width=2-8,seed=0`).
//!
//! An axis over the key `config` varies the config file itself, to compare setups that differ
//! in many keys at once (agents, say). Its values are config files relative to the spec, named
//! in points by their file stem (`agent=cycle10_rl,seed=0`); such a spec has no `[base]
//! config`, and `[base] set` applies on top of each file:
//!
//! ```toml
//! [[axis]]
//! name = "agent"
//! key = "config"
//! values = ["../cycle10_rl.toml", "../cycle10_grpo.toml"]
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plot::PlotSpec;

/// What is wrong with a sweep spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read the sweep spec {path}: {reason}")]
    Read {
        /// The spec file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The TOML does not parse or has unknown keys.
    #[error("{path}: {message}")]
    Parse {
        /// The spec file.
        path: String,
        /// What the parser said (it names the key and line).
        message: String,
    },
    /// A value the types accept but the sweep cannot use.
    #[error("{path}: {message}")]
    Invalid {
        /// The spec file.
        path: String,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// The spec file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    name: Option<String>,
    base: BaseFile,
    #[serde(default)]
    seeds: Vec<toml::Value>,
    #[serde(default, rename = "axis")]
    axes: Vec<AxisFile>,
    #[serde(default)]
    run: RunSettings,
    #[serde(default)]
    report: ReportSettings,
    #[serde(default)]
    slurm: SlurmSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BaseFile {
    config: Option<PathBuf>,
    #[serde(default)]
    set: toml::Table,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AxisFile {
    name: Option<String>,
    key: Option<String>,
    keys: Option<Vec<String>>,
    values: Vec<toml::Value>,
}

/// How each run is started (`[run]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// `--threads` of each run; the default number of parallel runs is the core count
    /// divided by this.
    #[serde(default = "one")]
    pub threads: u16,
    /// `--device` of each run.
    #[serde(default = "cpu")]
    pub device: String,
}

fn one() -> u16 {
    1
}

fn cpu() -> String {
    "cpu".into()
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            threads: 1,
            device: cpu(),
        }
    }
}

/// What `sweep report` collects and draws (`[report]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {
    /// Metric tags collected (final value of each); a trailing `*` matches a prefix. Default:
    /// `eval/accuracy/greedy/*` (per difficulty and the mean).
    #[serde(default)]
    pub metrics: Vec<String>,
    /// The axis whose values are replicates (averaged over in the summary); default `seed`.
    pub seed_axis: Option<String>,
    /// Plots drawn by `sweep report`.
    #[serde(default)]
    pub plot: Vec<PlotSpec>,
}

/// Slurm defaults (`[slurm]`), overridden by the command-line flags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSettings {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` of each array task (`HH:MM:SS`, or minutes).
    pub time: Option<String>,
    /// `--cpus-per-task` (default: `run.threads`).
    pub cpus_per_run: Option<u16>,
    /// `--gpus-per-task`.
    pub gpus_per_run: Option<u16>,
    /// At most this many array tasks at once (`--array=0-N%max`).
    pub max_parallel: Option<u32>,
}

/// One axis: one key (a grid axis) or several keys varying together (a zipped axis).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    /// The label used in point names and report columns.
    pub name: String,
    /// The config keys it sets.
    pub keys: Vec<String>,
    /// For each value of the axis, one value per key.
    pub values: Vec<Vec<toml::Value>>,
}

/// A parsed and checked sweep spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// The sweep's name (default directory `sweeps/<name>`).
    pub name: String,
    /// The config file every point starts from, resolved against the spec's directory; `None`
    /// when an axis over [`CONFIG_KEY`] gives each point its own.
    pub base_config: Option<PathBuf>,
    /// `KEY=VALUE` overrides applied to every point, before the axes.
    pub base_set: Vec<String>,
    /// The axes, in order.
    pub axes: Vec<Axis>,
    /// How runs are started.
    pub run: RunSettings,
    /// What the report collects.
    pub report: ReportSettings,
    /// Slurm defaults.
    pub slurm: SlurmSettings,
}

/// One run of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Its directory name under `runs/`, from its axis values.
    pub name: String,
    /// (axis name, value as text) for each axis.
    pub labels: Vec<(String, String)>,
    /// Its own config file, from an axis over [`CONFIG_KEY`] (resolved against the spec's
    /// directory); `None`: the spec's base config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
    /// `KEY=VALUE` overrides: the base's, then the axes'.
    pub set: Vec<String>,
}

/// The axis key that varies the config file itself instead of one key in it.
pub const CONFIG_KEY: &str = "config";

impl Spec {
    /// Reads and checks a spec file.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = path.parent().unwrap_or(Path::new("."));
        Spec::parse(&text, &path.display().to_string(), &stem, dir)
    }

    /// Parses spec text; `source` names it in messages, `default_name` is used when it has no
    /// `name`, and the base config is resolved against `dir`.
    pub fn parse(
        text: &str,
        source: &str,
        default_name: &str,
        dir: &Path,
    ) -> Result<Spec, SpecError> {
        let file: SpecFile = toml::from_str(text).map_err(|e| SpecError::Parse {
            path: source.into(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| SpecError::Invalid {
            path: source.into(),
            message,
        };
        let name = file.name.unwrap_or_else(|| default_name.to_string());
        if !is_safe_name(&name) {
            return Err(invalid(format!(
                "name = {name:?}: expected letters, digits, '.', '_', '-', '=', ','"
            )));
        }
        let mut base_set = Vec::new();
        flatten_set(&file.base.set, "", &mut base_set);
        let mut axes = Vec::new();
        for (i, a) in file.axes.iter().enumerate() {
            let mut axis = check_axis(a, i).map_err(invalid)?;
            resolve_config_values(&mut axis, dir)
                .map_err(|m| invalid(format!("axis[{i}]: {m}")))?;
            axes.push(axis);
        }
        let config_axis = axes.iter().any(|a| a.keys.iter().any(|k| k == CONFIG_KEY));
        match (&file.base.config, config_axis) {
            (Some(_), true) => {
                return Err(invalid(
                    "[base] config and an axis over `config` both name the config file: drop \
                     [base] config (the axis gives each point its own)"
                        .into(),
                ))
            }
            (None, false) => {
                return Err(invalid(
                    "[base] config is missing: name the config file every point starts from \
                     (or vary it with an axis over key = \"config\")"
                        .into(),
                ))
            }
            _ => {}
        }
        if !file.seeds.is_empty() {
            let seeds = AxisFile {
                name: Some("seed".into()),
                key: Some("seed".into()),
                keys: None,
                values: file.seeds.clone(),
            };
            axes.push(check_axis(&seeds, axes.len()).map_err(|m| invalid(format!("seeds: {m}")))?);
        }
        let mut keys = BTreeSet::new();
        let mut names = BTreeSet::new();
        for a in &axes {
            if !names.insert(a.name.clone()) {
                return Err(invalid(format!(
                    "two axes are named {:?}: give one a different `name`",
                    a.name
                )));
            }
            for k in &a.keys {
                if !keys.insert(k.clone()) {
                    return Err(invalid(format!(
                        "key {k:?} is set by two axes (points would repeat or contradict)"
                    )));
                }
                if k == "name" || k == "log.dir" {
                    return Err(invalid(format!(
                        "key {k:?} cannot be an axis: the sweep names and places each run"
                    )));
                }
            }
        }
        if let Some(s) = &file.report.seed_axis {
            if !axes.iter().any(|a| &a.name == s) {
                return Err(invalid(format!(
                    "report.seed_axis = {s:?}: no axis has that name (axes: {})",
                    axes.iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        for (i, p) in file.report.plot.iter().enumerate() {
            let names: Vec<&str> = axes.iter().map(|a| a.name.as_str()).collect();
            p.check(&names)
                .map_err(|m| invalid(format!("report.plot[{i}]: {m}")))?;
        }
        if file.run.threads == 0 {
            return Err(invalid("run.threads = 0: expected at least 1".into()));
        }
        let spec = Spec {
            name,
            base_config: file.base.config.as_ref().map(|c| dir.join(c)),
            base_set,
            axes,
            run: file.run,
            report: file.report,
            slurm: file.slurm,
        };
        // Names must be distinct after sanitising.
        let points = spec.points();
        let mut seen = BTreeSet::new();
        for p in &points {
            if !seen.insert(p.name.clone()) {
                return Err(invalid(format!(
                    "two points share the directory name {:?}: values differ only in \
                     characters a file name cannot hold; rename the values or the axes",
                    p.name
                )));
            }
        }
        Ok(spec)
    }

    /// The config file `point` starts from: its own (an axis over [`CONFIG_KEY`]) or the base.
    pub fn config_of<'a>(&'a self, point: &'a Point) -> &'a Path {
        match (&point.config, &self.base_config) {
            (Some(c), _) | (None, Some(c)) => c,
            // `parse` rejects a spec with neither.
            (None, None) => Path::new(""),
        }
    }

    /// The axes' names, in order.
    pub fn axis_names(&self) -> Vec<&str> {
        self.axes.iter().map(|a| a.name.as_str()).collect()
    }

    /// The axis whose values are replicates.
    pub fn seed_axis(&self) -> Option<&str> {
        match &self.report.seed_axis {
            Some(s) => Some(s.as_str()),
            None => self
                .axes
                .iter()
                .find(|a| a.name == "seed")
                .map(|a| a.name.as_str()),
        }
    }

    /// Every point, the last axis varying fastest. A spec without axes has one point.
    pub fn points(&self) -> Vec<Point> {
        let mut points = vec![Point {
            name: String::new(),
            labels: Vec::new(),
            config: None,
            set: self.base_set.clone(),
        }];
        for axis in &self.axes {
            let mut next = Vec::with_capacity(points.len() * axis.values.len());
            for p in &points {
                for vals in &axis.values {
                    let mut q = p.clone();
                    let mut label = Vec::with_capacity(vals.len());
                    for (k, v) in axis.keys.iter().zip(vals) {
                        if k == CONFIG_KEY {
                            let path = PathBuf::from(value_text(v));
                            label.push(
                                path.file_stem()
                                    .map(|s| s.to_string_lossy().into_owned())
                                    .unwrap_or_default(),
                            );
                            q.config = Some(path);
                        } else {
                            label.push(value_text(v));
                            q.set.push(format!("{k}={}", toml_literal(v)));
                        }
                    }
                    let label = label.join("-");
                    q.labels.push((axis.name.clone(), label));
                    next.push(q);
                }
            }
            points = next;
        }
        for p in &mut points {
            p.name = if p.labels.is_empty() {
                "base".into()
            } else {
                p.labels
                    .iter()
                    .map(|(a, v)| format!("{}={}", sanitize(a), sanitize(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            };
        }
        points
    }
}

fn check_axis(a: &AxisFile, index: usize) -> Result<Axis, String> {
    let at = format!("axis[{index}]");
    let keys = match (&a.key, &a.keys) {
        (Some(k), None) => vec![k.clone()],
        (None, Some(ks)) => ks.clone(),
        _ => return Err(format!("{at}: give either `key` or `keys`")),
    };
    if keys.is_empty() || keys.iter().any(|k| k.split('.').any(str::is_empty)) {
        return Err(format!(
            "{at}: keys must be dotted config keys like model.heads"
        ));
    }
    let name = a.name.clone().unwrap_or_else(|| {
        if keys.len() == 1 {
            keys[0].rsplit('.').next().unwrap_or(&keys[0]).to_string()
        } else {
            keys.iter()
                .map(|k| k.rsplit('.').next().unwrap_or(k))
                .collect::<Vec<_>>()
                .join("+")
        }
    });
    if a.values.is_empty() {
        return Err(format!("{at} ({name}): `values` is empty"));
    }
    let mut values = Vec::new();
    for v in &a.values {
        let vals = if keys.len() == 1 {
            vec![v.clone()]
        } else {
            match v {
                toml::Value::Array(xs) if xs.len() == keys.len() => xs.clone(),
                _ => {
                    return Err(format!(
                        "{at} ({name}): each value must be a list of {} values, one per key \
                         of {:?}; got {v}",
                        keys.len(),
                        keys
                    ))
                }
            }
        };
        if values.contains(&vals) {
            return Err(format!(
                "{at} ({name}): value {v} appears twice (duplicate points)"
            ));
        }
        values.push(vals);
    }
    Ok(Axis { name, keys, values })
}

/// Resolves the values of a [`CONFIG_KEY`] key against the spec's directory; they must be
/// file names (strings).
fn resolve_config_values(axis: &mut Axis, dir: &Path) -> Result<(), String> {
    let Some(i) = axis.keys.iter().position(|k| k == CONFIG_KEY) else {
        return Ok(());
    };
    for vals in &mut axis.values {
        match &vals[i] {
            toml::Value::String(s) if !s.is_empty() => {
                vals[i] = toml::Value::String(dir.join(s).display().to_string());
            }
            other => {
                return Err(format!(
                    "({}): the values of `config` are config files, e.g. \"../cycle10_rl.toml\"; \
                     got {other}",
                    axis.name
                ))
            }
        }
    }
    Ok(())
}

/// `{ "train.steps" = 5, model = { heads = 2 } }` as `["train.steps=5", "model.heads=2"]`.
fn flatten_set(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten_set(t, &key, out),
            v => out.push(format!("{key}={}", toml_literal(v))),
        }
    }
}

/// A value as a TOML literal, as `--set` parses it (strings quoted).
pub fn toml_literal(v: &toml::Value) -> String {
    v.to_string()
}

/// A value as plain text (strings unquoted), for names and report columns.
pub fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(xs) => xs.iter().map(value_text).collect::<Vec<_>>().join("-"),
        other => other.to_string(),
    }
}

/// Keeps letters, digits and `. _ - +`; anything else becomes `_`.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '=' | ','))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Spec, SpecError> {
        Spec::parse(text, "test.toml", "test", Path::new("/sweeps"))
    }

    #[test]
    fn grid_zip_and_seeds_expand_in_order() {
        let spec = parse(
            r#"
            seeds = [0, 1]
            [base]
            config = "../base.toml"
            set = { "train.steps" = 20, optim = { schedule = "cosine" } }
            [[axis]]
            key = "model.decoder_layers"
            values = [1, 2]
            [[axis]]
            name = "width"
            keys = ["model.heads", "model.head_dim"]
            values = [[2, 8], [4, 16], [8, 4]]
            "#,
        )
        .unwrap();
        assert_eq!(spec.name, "test");
        assert_eq!(
            spec.base_config.as_deref(),
            Some(Path::new("/sweeps/../base.toml"))
        );
        assert_eq!(spec.seed_axis(), Some("seed"));
        let points = spec.points();
        assert_eq!(points.len(), 2 * 3 * 2);
        assert_eq!(points[0].name, "decoder_layers=1,width=2-8,seed=0");
        assert_eq!(points[1].name, "decoder_layers=1,width=2-8,seed=1");
        assert_eq!(points[11].name, "decoder_layers=2,width=8-4,seed=1");
        assert_eq!(
            points[3].set,
            [
                "optim.schedule=\"cosine\"",
                "train.steps=20",
                "model.decoder_layers=1",
                "model.heads=4",
                "model.head_dim=16",
                "seed=1"
            ]
        );
        assert_eq!(points[3].labels[1], ("width".into(), "4-16".into()));
        let names: BTreeSet<_> = points.iter().map(|p| p.name.clone()).collect();
        assert_eq!(names.len(), points.len());
    }

    #[test]
    fn no_axes_is_one_point() {
        let spec = parse("[base]\nconfig = \"a.toml\"\n").unwrap();
        let points = spec.points();
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].name, "base");
    }

    #[test]
    fn string_values_are_quoted_for_set_and_sanitized_in_names() {
        let spec = parse(
            r#"
            [base]
            config = "a.toml"
            [[axis]]
            key = "algo.name"
            values = ["cot_supervised", "a/b"]
            "#,
        )
        .unwrap();
        let points = spec.points();
        assert_eq!(points[0].set, ["algo.name=\"cot_supervised\""]);
        assert_eq!(points[1].name, "name=a_b");
    }

    #[test]
    fn a_config_axis_gives_each_point_its_own_file() {
        let spec = parse(
            r#"
            [base]
            set = { "train.steps" = 20 }
            [[axis]]
            key = "seed"
            values = [0, 1]
            [[axis]]
            name = "agent"
            keys = ["config", "train.batch_size"]
            values = [["../rl.toml", 32], ["exit.toml", 256]]
            "#,
        )
        .unwrap();
        assert_eq!(spec.base_config, None);
        let points = spec.points();
        let names: Vec<_> = points.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "seed=0,agent=rl-32",
                "seed=0,agent=exit-256",
                "seed=1,agent=rl-32",
                "seed=1,agent=exit-256"
            ]
        );
        assert_eq!(spec.config_of(&points[2]), Path::new("/sweeps/../rl.toml"));
        assert_eq!(spec.config_of(&points[3]), Path::new("/sweeps/exit.toml"));
        // The file is the point's config, not an override.
        assert_eq!(
            points[3].set,
            ["train.steps=20", "seed=1", "train.batch_size=256"]
        );
        assert_eq!(points[1].labels[1], ("agent".into(), "exit-256".into()));
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn mistakes_are_named() {
        let base = "[base]\nconfig = \"a.toml\"\n";
        let axis = |rest: &str| format!("{base}[[axis]]\n{rest}");
        let cases = [
            (axis("key = \"seed\"\nvalues = []\n"), "`values` is empty"),
            (axis("key = \"seed\"\nvalues = [1, 1]\n"), "appears twice"),
            (
                format!("seeds = [1]\n{}", axis("key = \"seed\"\nvalues = [1, 2]\n")),
                "two axes are named \"seed\"",
            ),
            (
                axis("key = \"seed\"\nvalues = [1]\n[[axis]]\nname = \"s\"\nkey = \"seed\"\nvalues = [2]\n"),
                "set by two axes",
            ),
            (
                axis("keys = [\"a.b\", \"c.d\"]\nvalues = [[1, 2], [3]]\n"),
                "list of 2 values",
            ),
            (
                axis("key = \"a\"\nkeys = [\"b\"]\nvalues = [1]\n"),
                "either `key` or `keys`",
            ),
            (axis("key = \"a\"\nvalue = [1]\n"), "value"),
            (format!("{base}sed = [1]\n"), "unknown field `sed`"),
            (axis("key = \"name\"\nvalues = [\"x\"]\n"), "cannot be an axis"),
            (
                axis("key = \"env.name\"\nvalues = [\"a/b\", \"a_b\"]\n"),
                "share the directory name",
            ),
            (format!("{base}[report]\nseed_axis = \"rep\"\n"), "no axis has that name"),
            ("[[axis]]\nkey = \"seed\"\nvalues = [1]\n".into(), "missing field `base`"),
            (
                "[base]\n[[axis]]\nkey = \"seed\"\nvalues = [1]\n".into(),
                "[base] config is missing",
            ),
            (
                axis("key = \"config\"\nvalues = [\"b.toml\"]\n"),
                "both name the config file",
            ),
            (
                "[base]\n[[axis]]\nkey = \"config\"\nvalues = [3]\n".into(),
                "the values of `config` are config files",
            ),
            (
                "[base]\n[[axis]]\nkey = \"config\"\nvalues = [\"a/x.toml\", \"b/x.toml\"]\n"
                    .into(),
                "share the directory name",
            ),
        ];
        for (text, want) in cases {
            let e = error(&text);
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
