//! `sweep report`: each run's axis values and final metrics in one CSV, a summary over seeds
//! (mean, standard deviation, bootstrap interval) as a CSV and a printed table, and plots.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::metrics::{natural_cmp, Metrics};
use crate::plot::{Compute, PlotSpec, Series};
use crate::spec::Spec;
use crate::state::{run_config_value, StateError, Status, SweepDir};
use crate::stats::{summarize, Summary};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The sweep directory could not be read, or a report file written.
    #[error(transparent)]
    State(#[from] StateError),
    /// A plot asks for something the sweep does not have.
    #[error("plot {0}")]
    Plot(String),
}

/// One run of the sweep as the report sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The point's name.
    pub point: String,
    /// (axis, value) pairs.
    pub labels: Vec<(String, String)>,
    /// Its status.
    pub status: Status,
    /// The model's parameter count (from the run's log).
    pub params: Option<u64>,
    /// `train.steps` and `train.batch_size` of its resolved config.
    pub steps: Option<u64>,
    /// Batch size.
    pub batch_size: Option<u64>,
    /// All its records.
    pub metrics: Metrics,
}

impl Row {
    fn label(&self, axis: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(a, _)| a == axis)
            .map(|(_, v)| v.as_str())
    }

    /// The x value of a plot for this run.
    fn x(&self, x: &str) -> Option<f64> {
        // An axis of that name comes first.
        if let Some(label) = self.label(x) {
            return label.parse().ok();
        }
        match x {
            "params" => self.params.map(|p| p as f64),
            "updates" => self.steps.map(|s| s as f64),
            "examples" => Some((self.steps? * self.batch_size?) as f64),
            _ => None,
        }
    }

    /// The y value of a plot for this run, read from `tag` (the plot's `y`, or one tag it
    /// matches).
    fn y(&self, p: &PlotSpec, tag: &str) -> Option<f64> {
        match p.threshold {
            None => self.metrics.last(tag),
            Some(t) => {
                let step = self.metrics.first_step_reaching(tag, t)? as f64;
                match p.compute {
                    Compute::Updates => Some(step),
                    Compute::Samples => Some(step * self.batch_size? as f64),
                }
            }
        }
    }
}

/// What a report found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The spec of the sweep.
    pub spec: Spec,
    /// One row per point, in the spec's order.
    pub rows: Vec<Row>,
    /// The metric tags collected, in natural order.
    pub tags: Vec<String>,
}

/// The default metrics collected: greedy accuracy per difficulty and its mean.
pub const DEFAULT_METRICS: &str = "eval/accuracy/greedy/*";

/// Reads every run of a sweep directory.
pub fn collect(dir: &SweepDir) -> Result<Report, ReportError> {
    let state = dir.load()?;
    let patterns = if state.spec.report.metrics.is_empty() {
        vec![DEFAULT_METRICS.to_string()]
    } else {
        state.spec.report.metrics.clone()
    };
    let mut rows = Vec::new();
    let mut tags: Vec<String> = Vec::new();
    for p in &state.points {
        let run = dir.run_dir(&p.point.name);
        let metrics = Metrics::read(&run.join("metrics.jsonl"));
        for pat in &patterns {
            for t in metrics.matching(pat) {
                if !tags.iter().any(|x| x == t) {
                    tags.push(t.to_string());
                }
            }
        }
        let int = |key: &str| {
            run_config_value(&run, key)
                .and_then(|v| v.as_integer())
                .and_then(|v| u64::try_from(v).ok())
        };
        rows.push(Row {
            point: p.point.name.clone(),
            labels: p.point.labels.clone(),
            status: dir.status(p),
            params: parameter_count(&dir.log_file(&p.point.name, "out")),
            steps: int("train.steps"),
            batch_size: int("train.batch_size"),
            metrics,
        });
    }
    tags.sort_by(|a, b| natural_cmp(a, b));
    Ok(Report {
        spec: state.spec,
        rows,
        tags,
    })
}

/// The parameter count `factorexe train` prints on its first line (`agent X (N parameters)`).
fn parameter_count(stdout_log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(stdout_log).ok()?;
    let end = text.find(" parameters)")?;
    let start = text[..end].rfind('(')? + 1;
    text[start..end].parse().ok()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn num(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{v}"))
}

/// A group of runs that differ only in the seed axis.
#[derive(Debug, Clone)]
pub struct Group {
    /// (axis, value) of the axes other than the seed axis.
    pub labels: Vec<(String, String)>,
    /// Indices into [`Report::rows`].
    pub rows: Vec<usize>,
}

impl Report {
    fn axis_names(&self) -> Vec<String> {
        self.spec.axes.iter().map(|a| a.name.clone()).collect()
    }

    /// One row per run: point, axis values, status, params, updates (`train.steps`), batch
    /// size, final metrics.
    pub fn runs_csv(&self) -> String {
        let mut out = String::new();
        let mut header = vec!["point".to_string()];
        header.extend(self.axis_names());
        header.extend(["status", "params", "updates", "batch_size"].map(String::from));
        header.extend(self.tags.iter().cloned());
        let _ = writeln!(
            out,
            "{}",
            header
                .iter()
                .map(|h| csv_field(h))
                .collect::<Vec<_>>()
                .join(",")
        );
        for r in &self.rows {
            let mut fields = vec![csv_field(&r.point)];
            fields.extend(r.labels.iter().map(|(_, v)| csv_field(v)));
            fields.push(r.status.name().into());
            fields.push(r.params.map_or(String::new(), |p| p.to_string()));
            fields.push(r.steps.map_or(String::new(), |p| p.to_string()));
            fields.push(r.batch_size.map_or(String::new(), |p| p.to_string()));
            fields.extend(self.tags.iter().map(|t| num(r.metrics.last(t))));
            let _ = writeln!(out, "{}", fields.join(","));
        }
        out
    }

    /// The runs grouped over the seed axis, in the spec's order.
    pub fn groups(&self) -> Vec<Group> {
        let seed = self.spec.seed_axis();
        let mut groups: Vec<Group> = Vec::new();
        for (i, r) in self.rows.iter().enumerate() {
            let labels: Vec<(String, String)> = r
                .labels
                .iter()
                .filter(|(a, _)| Some(a.as_str()) != seed)
                .cloned()
                .collect();
            match groups.iter_mut().find(|g| g.labels == labels) {
                Some(g) => g.rows.push(i),
                None => groups.push(Group {
                    labels,
                    rows: vec![i],
                }),
            }
        }
        groups
    }

    /// Summary of `tag` over a group's finished runs.
    pub fn summary(&self, g: &Group, tag: &str) -> Option<Summary> {
        let values: Vec<f64> = g
            .rows
            .iter()
            .filter(|&&i| self.rows[i].status == Status::Done)
            .filter_map(|&i| self.rows[i].metrics.last(tag))
            .collect();
        summarize(&values)
    }

    /// Long format: one line per group and metric with n, mean, std and the 95% bootstrap
    /// interval of the mean over the seeds (finished runs only).
    pub fn summary_csv(&self) -> String {
        let seed = self.spec.seed_axis();
        let axes: Vec<String> = self
            .axis_names()
            .into_iter()
            .filter(|a| Some(a.as_str()) != seed)
            .collect();
        let mut out = String::new();
        let mut header: Vec<String> = axes.iter().map(|a| csv_field(a)).collect();
        header.extend(["metric", "n", "mean", "std", "ci95_low", "ci95_high"].map(String::from));
        let _ = writeln!(out, "{}", header.join(","));
        for g in self.groups() {
            for t in &self.tags {
                let Some(s) = self.summary(&g, t) else {
                    continue;
                };
                let mut fields: Vec<String> = g.labels.iter().map(|(_, v)| csv_field(v)).collect();
                fields.push(csv_field(t));
                fields.extend([
                    s.n.to_string(),
                    s.mean.to_string(),
                    s.std.to_string(),
                    s.ci_low.to_string(),
                    s.ci_high.to_string(),
                ]);
                let _ = writeln!(out, "{}", fields.join(","));
            }
        }
        out
    }

    /// The summary as an aligned text table: the axes other than the seed, runs finished of
    /// the group, then `mean ± std` of each metric (tags shortened to their last part).
    pub fn table(&self) -> String {
        let seed = self.spec.seed_axis();
        let mut header: Vec<String> = self
            .axis_names()
            .into_iter()
            .filter(|a| Some(a.as_str()) != seed)
            .collect();
        header.push("done".into());
        header.extend(self.tags.iter().map(|t| short_tag(t, &self.tags)));
        let mut lines = vec![header];
        for g in self.groups() {
            let mut cells: Vec<String> = g.labels.iter().map(|(_, v)| v.clone()).collect();
            let done = g
                .rows
                .iter()
                .filter(|&&i| self.rows[i].status == Status::Done)
                .count();
            cells.push(format!("{done}/{}", g.rows.len()));
            for t in &self.tags {
                cells.push(match self.summary(&g, t) {
                    Some(s) if s.n > 1 => format!("{:.3} ± {:.3}", s.mean, s.std),
                    Some(s) => format!("{:.3}", s.mean),
                    None => "-".into(),
                });
            }
            lines.push(cells);
        }
        let cols = lines[0].len();
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                lines
                    .iter()
                    .map(|l| l.get(c).map_or(0, |s| s.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for l in &lines {
            let row: Vec<String> = l
                .iter()
                .zip(&widths)
                .map(|(s, &w)| format!("{s:>w$}"))
                .collect();
            let _ = writeln!(out, "{}", row.join("  ").trim_end());
        }
        out
    }

    /// Writes `runs.csv`, `summary.csv` and the plots (the spec's and `extra`) into
    /// `<sweep>/report/`; returns the files written and notes: a line per fitted power law
    /// and per plot skipped for want of data.
    pub fn write(
        &self,
        dir: &SweepDir,
        extra: &[PlotSpec],
    ) -> Result<(Vec<PathBuf>, Vec<String>), ReportError> {
        let out = dir.dir.join("report");
        std::fs::create_dir_all(&out).map_err(crate::state::io_err(&out))?;
        let mut files = Vec::new();
        for (name, text) in [
            ("runs.csv", self.runs_csv()),
            ("summary.csv", self.summary_csv()),
        ] {
            let path = out.join(name);
            std::fs::write(&path, text).map_err(crate::state::io_err(&path))?;
            files.push(path);
        }
        let mut fits = Vec::new();
        for p in self.spec.report.plot.iter().chain(extra) {
            p.check(&self.spec.axis_names())
                .map_err(ReportError::Plot)?;
            let path = out.join(p.file_name());
            let series = self.series(p);
            if series.iter().all(|s| s.points.is_empty()) {
                // Say so rather than fail the whole report (e.g. no run reached a threshold).
                let missing: usize = series.iter().map(|s| s.missing).sum();
                fits.push(format!(
                    "skipped {}: none of {missing} finished run(s) has a value{}",
                    path.display(),
                    p.threshold
                        .map_or(String::new(), |t| format!(" (none reached {} >= {t})", p.y))
                ));
                continue;
            }
            fits.extend(crate::plot::draw(&path, p, &series).map_err(ReportError::Plot)?);
            files.push(path);
        }
        Ok((files, fits))
    }

    /// The lines of a plot: per line value, the runs' (x, y) points.
    pub fn series(&self, p: &PlotSpec) -> Vec<Series> {
        let mut out: Vec<Series> = Vec::new();
        for r in &self.rows {
            if r.status != Status::Done
                || p.select
                    .iter()
                    .any(|(a, v)| r.label(a).is_some_and(|l| l != v))
            {
                continue;
            }
            let name = p
                .lines
                .as_ref()
                .and_then(|l| r.label(l))
                .map(|v| format!("{}={v}", p.lines.as_deref().unwrap_or_default()))
                .unwrap_or_default();
            let idx = match out.iter().position(|s| s.name == name) {
                Some(i) => i,
                None => {
                    out.push(Series {
                        name,
                        points: Vec::new(),
                        missing: 0,
                    });
                    out.len() - 1
                }
            };
            if p.x == "difficulty" {
                // One point per matching tag that ends in a number.
                for tag in r.metrics.matching(&p.y) {
                    let Some(level) = trailing_number(tag) else {
                        continue;
                    };
                    match r.y(p, tag) {
                        Some(y) => out[idx].points.push((level, y)),
                        None => out[idx].missing += 1,
                    }
                }
                continue;
            }
            match (r.x(&p.x), r.y(p, &p.y)) {
                (Some(x), Some(y)) => out[idx].points.push((x, y)),
                _ => out[idx].missing += 1,
            }
        }
        out
    }
}

/// The number a tag ends with (`eval/accuracy/greedy/d12` -> 12).
fn trailing_number(tag: &str) -> Option<f64> {
    let digits = tag.len() - tag.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    tag[tag.len() - digits..].parse().ok()
}

/// The shortest trailing part of `tag` that still tells it apart from the other tags.
fn short_tag(tag: &str, all: &[String]) -> String {
    let parts: Vec<&str> = tag.split('/').collect();
    for k in 1..=parts.len() {
        let suffix = parts[parts.len() - k..].join("/");
        let clash = all
            .iter()
            .filter(|t| t.as_str() != tag && (t.ends_with(&format!("/{suffix}")) || **t == suffix))
            .count();
        if clash == 0 {
            return suffix;
        }
    }
    tag.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_tags_stay_distinct() {
        let all: Vec<String> = [
            "eval/accuracy/greedy/d1",
            "eval/accuracy/sampled/d1",
            "train/loss",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(short_tag(&all[0], &all), "greedy/d1");
        assert_eq!(short_tag(&all[2], &all), "loss");
    }

    fn row(point: &str, algo: &str, records: &[(&str, &[(u64, f64)])]) -> Row {
        let mut metrics = Metrics::default();
        for (tag, points) in records {
            metrics.by_tag.insert(tag.to_string(), points.to_vec());
        }
        Row {
            point: point.into(),
            labels: vec![("algo".into(), algo.into())],
            status: Status::Done,
            params: Some(100),
            steps: Some(30),
            batch_size: Some(4),
            metrics,
        }
    }

    /// `x = "difficulty"`: one point per matching tag, at the tag's number; with a threshold,
    /// the compute until that difficulty first reaches it (a difficulty that never does is
    /// counted missing).
    #[test]
    fn compute_to_threshold_per_difficulty() {
        let spec = Spec::parse(
            "[base]\nconfig = \"b.toml\"\n[[axis]]\nkey = \"algo.name\"\nname = \"algo\"\n\
             values = [\"a\", \"b\"]\n",
            "s.toml",
            "s",
            Path::new("."),
        )
        .unwrap();
        let d1: &[(u64, f64)] = &[(10, 0.5), (20, 1.0)];
        let d2: &[(u64, f64)] = &[(10, 0.2), (20, 0.6), (30, 0.995)];
        let never: &[(u64, f64)] = &[(10, 0.1), (30, 0.2)];
        let report = Report {
            spec,
            rows: vec![
                row(
                    "algo=a",
                    "a",
                    &[
                        ("eval/accuracy/greedy/d1", d1),
                        ("eval/accuracy/greedy/d2", d2),
                        ("eval/accuracy/greedy/mean", d2),
                    ],
                ),
                row("algo=b", "b", &[("eval/accuracy/greedy/d1", never)]),
            ],
            tags: Vec::new(),
        };
        let plot: PlotSpec = toml::from_str(
            "x = \"difficulty\"\ny = \"eval/accuracy/greedy/d*\"\nthreshold = 0.99\n\
             compute = \"samples\"\nlines = \"algo\"\n",
        )
        .unwrap();
        plot.check(&["algo"]).unwrap();
        assert_eq!(
            plot.file_name(),
            "samples_to_eval_accuracy_greedy_d__0.99_vs_difficulty.png"
        );
        let series = report.series(&plot);
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].points, vec![(1.0, 80.0), (2.0, 120.0)]);
        assert_eq!(series[1].points, Vec::<(f64, f64)>::new());
        assert_eq!(series[1].missing, 1);
        // A y that is not a pattern cannot be split by difficulty.
        let single: PlotSpec =
            toml::from_str("x = \"difficulty\"\ny = \"eval/accuracy/greedy/mean\"\n").unwrap();
        assert!(single
            .check(&["algo"])
            .unwrap_err()
            .contains("ending in '*'"));
    }

    #[test]
    fn difficulties_from_tags() {
        assert_eq!(trailing_number("eval/accuracy/greedy/d12"), Some(12.0));
        assert_eq!(trailing_number("eval/accuracy/greedy/mean"), None);
    }

    #[test]
    fn parameter_count_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("out");
        std::fs::write(
            &f,
            "=== sweep: attempt 1 ===\nrun x | env cycle(L=5) | agent cot_supervised (3696 parameters) | device Cpu\n",
        )
        .unwrap();
        assert_eq!(parameter_count(&f), Some(3696));
    }
}
