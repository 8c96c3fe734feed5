//! Studies: sweeps of `factorexe train` runs over config axes, run on this machine or as a
//! Slurm job array, and aggregated into tables and plots.
//!
//! The crate does not link libtorch: it starts the `factorexe` binary for each point and reads
//! the run directories it writes (`config.toml`, `metrics.jsonl`, `checkpoints/`, `.lock`).
//!
//! - [`spec`]: the sweep spec (`configs/sweeps/<name>.toml`) and its points;
//! - [`state`]: the sweep directory, each point's outcome and status;
//! - [`local`]: running points as local processes, several at once, resumably;
//! - [`slurm`]: the same as one `sbatch` job array;
//! - [`report`], [`plot`], [`stats`], [`metrics`]: CSVs, tables and plots of the results.

pub mod local;
pub mod metrics;
pub mod plot;
pub mod report;
pub mod slurm;
pub mod spec;
pub mod state;
pub mod stats;

use std::fmt::Write as _;

pub use spec::{Point, Spec, SpecError};
pub use state::{Status, SweepDir};

/// `sweep status`: one line per point (status, name, its Slurm queue state from `queue` by
/// point index, and the error of a failed one), then the counts.
pub fn status_text(
    dir: &SweepDir,
    queue: &std::collections::BTreeMap<usize, String>,
) -> Result<String, state::StateError> {
    let state = dir.load()?;
    let mut out = String::new();
    let mut counts = [0usize; 4];
    let width = state
        .points
        .iter()
        .map(|p| p.point.name.len())
        .max()
        .unwrap_or(0);
    for (i, p) in state.points.iter().enumerate() {
        let s = dir.status(p);
        counts[s as usize] += 1;
        let _ = write!(out, "{:<8} {:<width$}", s.name(), p.point.name);
        if let Some(q) = queue.get(&i) {
            let _ = write!(out, "  [slurm {q}]");
        }
        if s == Status::Failed {
            if let state::Outcome::Failed { status, error } = &p.outcome {
                let code = status.map_or("killed".into(), |c| format!("exit {c}"));
                let _ = write!(out, "  ({code}) {error}");
            }
        }
        let _ = writeln!(out);
    }
    let out_lines = out
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = out_lines;
    out.push('\n');
    let _ = writeln!(
        out,
        "{} point{}: {} done, {} running, {} failed, {} pending",
        state.points.len(),
        if state.points.len() == 1 { "" } else { "s" },
        counts[Status::Done as usize],
        counts[Status::Running as usize],
        counts[Status::Failed as usize],
        counts[Status::Pending as usize]
    );
    Ok(out)
}
