//! The Slurm backend: one `sbatch` job array per `sweep run`, one array task per point that
//! is not done. Each task runs `factorexe sweep task <sweep> --index <i>`, the same resumable
//! start as the local driver's (fresh, `--resume` from a checkpoint, or `--overwrite`).
//!
//! Before the time limit Slurm sends SIGTERM to the batch shell (`--signal=B:TERM@<s>`),
//! which passes it to the task and the task to its run: the run saves a checkpoint and exits
//! with status 130, and the script requeues its own array task, which then resumes. After
//! `scancel` the runs checkpoint too (the array task passes the signal on only when its run
//! did not receive it directly: a second one would end the run without saving), and nothing
//! is requeued.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::spec::Spec;
use crate::state::{io_err, Outcome, StateError, Status, SweepDir};

/// Why a Slurm submission or query failed.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// The sweep directory could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// A Slurm command could not be run or failed.
    #[error("{command}: {reason}")]
    Command {
        /// The command.
        command: String,
        /// Why.
        reason: String,
    },
}

/// Resources and limits of each array task; unset fields fall back to the spec's `[slurm]`.
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    /// The `factorexe` binary the tasks run (it must be reachable from the compute nodes).
    pub binary: PathBuf,
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` of each task.
    pub time: Option<String>,
    /// `--cpus-per-task` (default: the spec's `run.threads`).
    pub cpus_per_run: Option<u16>,
    /// `--gpus-per-task`.
    pub gpus_per_run: Option<u16>,
    /// Run the points whose last attempt failed again.
    pub retry_failed: bool,
    /// Seconds before the time limit at which the run is told to checkpoint.
    pub signal_lead_s: u32,
}

/// The points to submit: neither done, running nor (unless `retry_failed`) failed.
pub fn points_to_submit(dir: &SweepDir, retry_failed: bool) -> Result<Vec<usize>, StateError> {
    let state = dir.load()?;
    Ok(state
        .points
        .iter()
        .enumerate()
        .filter(|(_, p)| match dir.status(p) {
            Status::Pending => true,
            Status::Failed => retry_failed,
            Status::Done | Status::Running => false,
        })
        .map(|(i, _)| i)
        .collect())
}

/// The body of the job-array script, after its `#SBATCH` lines.
const TASK_SCRIPT: &str = r#"
export OMP_WAIT_POLICY=PASSIVE
{binary} sweep task {sweep} --index "$SLURM_ARRAY_TASK_ID" &
task=$!
# Slurm signals this shell before the time limit; the task passes it on to its run.
trap 'kill -TERM "$task" 2>/dev/null' TERM INT
wait "$task"; rc=$?
# `wait` returns early when a trapped signal arrives: wait for the task itself.
while kill -0 "$task" 2>/dev/null; do wait "$task"; rc=$?; done
# Checkpointed after a signal: queue this task again (it resumes), unless that signal came
# from scancel (the job is then no longer RUNNING but COMPLETING).
if [ "$rc" -eq 130 ] && scontrol show job "$SLURM_JOB_ID" -o | grep -q 'JobState=RUNNING'; then
    scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
fi
exit "$rc"
"#;

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The job-array script for the points `indices` (array task id = point index).
pub fn script(spec: &Spec, dir: &SweepDir, opts: &SlurmOptions, indices: &[usize]) -> String {
    let sweep = std::path::absolute(&dir.dir).unwrap_or_else(|_| dir.dir.clone());
    let logs = sweep.join("logs");
    let array = indices
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let array = match spec.slurm.max_parallel {
        Some(m) => format!("{array}%{m}"),
        None => array,
    };
    let mut s = String::new();
    let _ = writeln!(s, "#!/bin/bash");
    let _ = writeln!(
        s,
        "# Written by `factorexe sweep run --backend slurm`: one array task per point."
    );
    let _ = writeln!(s, "#SBATCH --job-name=sweep-{}", spec.name);
    let _ = writeln!(s, "#SBATCH --array={array}");
    let _ = writeln!(s, "#SBATCH --output={}/slurm-%A_%a.out", logs.display());
    let _ = writeln!(s, "#SBATCH --open-mode=append");
    let _ = writeln!(s, "#SBATCH --ntasks=1");
    let cpus = opts
        .cpus_per_run
        .or(spec.slurm.cpus_per_run)
        .unwrap_or(spec.run.threads);
    let _ = writeln!(s, "#SBATCH --cpus-per-task={cpus}");
    if let Some(g) = opts.gpus_per_run.or(spec.slurm.gpus_per_run) {
        let _ = writeln!(s, "#SBATCH --gpus-per-task={g}");
    }
    if let Some(p) = opts.partition.as_ref().or(spec.slurm.partition.as_ref()) {
        let _ = writeln!(s, "#SBATCH --partition={p}");
    }
    if let Some(t) = opts.time.as_ref().or(spec.slurm.time.as_ref()) {
        let _ = writeln!(s, "#SBATCH --time={t}");
    }
    let _ = writeln!(s, "#SBATCH --signal=B:TERM@{}", opts.signal_lead_s);
    let _ = writeln!(s, "#SBATCH --requeue");
    s.push_str(
        &TASK_SCRIPT
            .replace("{binary}", &quote(&opts.binary.display().to_string()))
            .replace("{sweep}", &quote(&sweep.display().to_string())),
    );
    s
}

/// Writes the script of the points still to run into `<sweep>/slurm/` and submits it with
/// `sbatch`; records the job id in the sweep's state. Returns the job id and how many
/// points it runs (`None`, 0 when nothing is left to run).
pub fn submit(
    spec: &Spec,
    dir: &SweepDir,
    opts: &SlurmOptions,
) -> Result<(Option<String>, usize), SlurmError> {
    dir.open(spec)?;
    let indices = points_to_submit(dir, opts.retry_failed)?;
    if indices.is_empty() {
        return Ok((None, 0));
    }
    let slurm = dir.dir.join("slurm");
    std::fs::create_dir_all(&slurm).map_err(io_err(&slurm))?;
    let path = slurm.join("array.sbatch");
    std::fs::write(&path, script(spec, dir, opts, &indices)).map_err(io_err(&path))?;
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(&path)
        .output()
        .map_err(|e| SlurmError::Command {
            command: "sbatch".into(),
            reason: format!("{e} (is Slurm installed? scripts/slurm-local starts a local one)"),
        })?;
    if !out.status.success() {
        return Err(SlurmError::Command {
            command: format!("sbatch {}", path.display()),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(SlurmError::Command {
            command: "sbatch --parsable".into(),
            reason: format!("unexpected output {text:?}"),
        });
    }
    let mut state = dir.load()?;
    state.slurm_jobs.push(id.clone());
    dir.save(&state)?;
    Ok((Some(id), indices.len()))
}

/// The queue state (`PENDING`, `RUNNING`, ...) of each array task still known to Slurm, by
/// point index, from `squeue` over the sweep's recorded jobs (later jobs win).
pub fn queue_states(job_ids: &[String]) -> Result<BTreeMap<usize, String>, SlurmError> {
    if job_ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let out = Command::new("squeue")
        .args(["-h", "-r", "-o", "%i %T", "-j", &job_ids.join(",")])
        .output()
        .map_err(|e| SlurmError::Command {
            command: "squeue".into(),
            reason: e.to_string(),
        })?;
    // squeue fails on job ids it no longer knows; they have all ended then.
    Ok(parse_queue(&String::from_utf8_lossy(&out.stdout)))
}

/// Parses `squeue -h -r -o "%i %T"` lines (`12_3 RUNNING`) into states by array index.
fn parse_queue(text: &str) -> BTreeMap<usize, String> {
    let mut states = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(id), Some(state)) = (parts.next(), parts.next()) else {
            continue;
        };
        if let Some(index) = id.split_once('_').and_then(|(_, i)| i.parse().ok()) {
            states.insert(index, state.to_string());
        }
    }
    states
}

/// Whether any of the sweep's array tasks is still queued or running.
pub fn any_queued(dir: &SweepDir) -> Result<bool, SlurmError> {
    let state = dir.load()?;
    Ok(!queue_states(&state.slurm_jobs)?.is_empty())
}

/// How long an array task waits, after a stop request, for its run to announce that it
/// received the signal itself before passing it on.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs point `index` in the foreground (an array task): the same start as the local driver
/// (fresh, `--resume` or `--overwrite`), its output appended to the point's logs, a stop
/// request passed on to the run unless the run got it too. Returns the exit status for the task: 0 done, 130 stopped with a
/// checkpoint (the script requeues it), 1 failed.
pub fn run_task(
    dir: &SweepDir,
    index: usize,
    binary: &Path,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<i32, crate::local::RunError> {
    use std::sync::atomic::Ordering;
    let state = dir.load()?;
    let Some(mut p) = state.points.get(index).cloned() else {
        return Err(crate::local::RunError::NoPoint {
            index,
            count: state.points.len(),
        });
    };
    if dir.status(&p) == Status::Done {
        return Ok(0);
    }
    p.attempts += 1;
    p.outcome = Outcome::Pending;
    dir.save_outcome(&p)?;
    let mut child = crate::local::start(&state.spec, dir, &p, binary)?;
    let err_log = dir.log_file(&p.point.name, "err");
    let mut stop_seen: Option<std::time::Instant> = None;
    let mut forwarded = false;
    let status = loop {
        if let Some(s) = child
            .try_wait()
            .map_err(|e| crate::local::RunError::Spawn {
                binary: binary.to_path_buf(),
                reason: e.to_string(),
            })?
        {
            break s;
        }
        if stop.load(Ordering::SeqCst) {
            let seen = *stop_seen.get_or_insert_with(std::time::Instant::now);
            // `scancel` signals every process of the job, the run included, and a second
            // signal would end the run without its checkpoint; so the stop is passed on only
            // when the run has not announced one of its own after a grace period (Slurm's
            // warning before the time limit reaches the batch shell alone).
            if !forwarded && seen.elapsed() >= STOP_GRACE {
                if !crate::local::last_attempt_error(&err_log).contains("interrupted") {
                    crate::local::terminate(&child);
                }
                forwarded = true;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    p.outcome = crate::local::outcome_of(status, stop_seen.is_some(), &err_log);
    dir.save_outcome(&p)?;
    Ok(match p.outcome {
        Outcome::Done => 0,
        Outcome::Pending => crate::state::INTERRUPTED_STATUS,
        Outcome::Failed { .. } => 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_runs_one_task_per_point_and_requeues_after_a_checkpoint() {
        let text = "name = \"s\"\nseeds = [0, 1, 2]\n[base]\nconfig = \"a.toml\"\n\
                    [run]\nthreads = 2\n[slurm]\npartition = \"cpu\"\nmax_parallel = 2\n";
        let spec = Spec::parse(text, "s.toml", "s", Path::new(".")).unwrap();
        let dir = SweepDir::new("/data/sweeps/s");
        let opts = SlurmOptions {
            binary: "/opt/fx's/factorexe".into(),
            time: Some("01:00:00".into()),
            gpus_per_run: Some(1),
            signal_lead_s: 300,
            ..SlurmOptions::default()
        };
        let s = script(&spec, &dir, &opts, &[0, 2]);
        for line in [
            "#SBATCH --job-name=sweep-s",
            "#SBATCH --array=0,2%2",
            "#SBATCH --output=/data/sweeps/s/logs/slurm-%A_%a.out",
            "#SBATCH --cpus-per-task=2",
            "#SBATCH --gpus-per-task=1",
            "#SBATCH --partition=cpu",
            "#SBATCH --time=01:00:00",
            "#SBATCH --signal=B:TERM@300",
            "#SBATCH --requeue",
            "'/opt/fx'\\''s/factorexe' sweep task '/data/sweeps/s' --index \"$SLURM_ARRAY_TASK_ID\" &",
            "    scontrol requeue \"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"",
        ] {
            assert!(s.lines().any(|l| l == line), "{line:?} missing:\n{s}");
        }
    }

    #[test]
    fn queue_lines_parse() {
        let q = parse_queue("12_3 RUNNING\n12_[4-5] PENDING\n13_0 PENDING\ngarbage\n");
        assert_eq!(q.len(), 2);
        assert_eq!(q[&3], "RUNNING");
        assert_eq!(q[&0], "PENDING");
    }
}
