//! Running a sweep's points as `factorexe train` processes on this machine, several at once.
//!
//! Each point is an ordinary run directory; a point is started afresh, resumed from its
//! newest checkpoint (`--resume`) or, when a run left files but no checkpoint, started over
//! (`--overwrite`). A stop request (the driver's SIGINT/SIGTERM) is forwarded once, as
//! SIGTERM, to every run, which then saves a checkpoint and exits with status 130; the
//! driver records those points as pending, so a second `sweep run` resumes them.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::spec::{toml_literal, Point, Spec};
use crate::state::{
    run_has_checkpoint, run_has_files, Outcome, PointState, StateError, Status, SweepDir,
    INTERRUPTED_STATUS,
};

/// Why a sweep could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The sweep directory could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The `factorexe` binary could not be started.
    #[error("cannot start {binary}: {reason}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// Another `sweep run` drives this sweep directory.
    #[error("{dir} is being run by another `sweep run` (it holds {dir}/.driver.lock); wait for it or stop it first")]
    Busy {
        /// The sweep directory.
        dir: PathBuf,
    },
    /// A point index past the end of the sweep.
    #[error("the sweep has {count} points: there is no point {index}")]
    NoPoint {
        /// The index asked for.
        index: usize,
        /// How many points there are.
        count: usize,
    },
    /// Some points' configs are invalid (checked before any run starts).
    #[error("{} point(s) have an invalid config; nothing was started:\n{}", .0.len(), .0.iter().map(|(p, e)| format!("  {p}: {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<(String, String)>),
}

/// How `sweep run` runs the points.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The `factorexe` binary to start for each point.
    pub binary: PathBuf,
    /// Runs at once (default: the core count divided by each run's threads).
    pub jobs: Option<usize>,
    /// Run the points whose last attempt failed again.
    pub retry_failed: bool,
    /// Show a progress bar (when stderr is a terminal).
    pub progress: bool,
    /// Only check the configs of the points to run, start nothing.
    pub check_only: bool,
}

/// What a `sweep run` left.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    /// Points finished (now or before).
    pub done: usize,
    /// Points whose last attempt failed, with their error.
    pub failed: Vec<(String, String)>,
    /// Points not finished: not started, or stopped by a signal.
    pub pending: usize,
    /// Points another process was running (their lock was held), left alone.
    pub busy: Vec<String>,
    /// Whether a stop request ended the sweep early.
    pub interrupted: bool,
}

/// The default number of runs at once: the cores divided by each run's threads, at least 1.
pub fn default_jobs(threads_per_run: u16) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / usize::from(threads_per_run.max(1))).max(1)
}

/// The `factorexe train` arguments that run `point` in `dir`: fresh, `--resume` or
/// `--overwrite` according to what its run directory holds.
pub fn train_args(spec: &Spec, dir: &SweepDir, point: &Point) -> Vec<String> {
    let run = dir.run_dir(&point.name);
    let mut args = vec!["train".to_string()];
    if run_has_checkpoint(&run) {
        // The run's own resolved config.toml is used: the base file may have changed since.
        args.push("--resume".into());
        args.push(run.display().to_string());
    } else {
        args.extend(config_args(spec, dir, point));
        if run_has_files(&run) {
            args.push("--overwrite".into());
        }
    }
    args.extend([
        "--no-progress".into(),
        "--device".into(),
        spec.run.device.clone(),
        "--threads".into(),
        spec.run.threads.to_string(),
    ]);
    args
}

/// `--config CONFIG --set ...` for a point (its own config or the base), naming its run
/// `<sweep>/runs/<point>`.
pub fn config_args(spec: &Spec, dir: &SweepDir, point: &Point) -> Vec<String> {
    let runs = absolute(&dir.dir.join("runs"));
    let mut args = vec![
        "--config".to_string(),
        absolute(spec.config_of(point)).display().to_string(),
    ];
    for s in &point.set {
        args.push("--set".into());
        args.push(s.clone());
    }
    for s in [
        format!(
            "name={}",
            toml_literal(&toml::Value::String(point.name.clone()))
        ),
        format!(
            "log.dir={}",
            toml_literal(&toml::Value::String(runs.display().to_string()))
        ),
    ] {
        args.push("--set".into());
        args.push(s);
    }
    args
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Checks every point's config with `factorexe train ... --dry-run` (`jobs` at a time);
/// returns the points that failed, with the error the binary printed.
pub fn validate(
    spec: &Spec,
    dir: &SweepDir,
    points: &[&Point],
    binary: &Path,
    jobs: usize,
) -> Result<Vec<(String, String)>, RunError> {
    let mut bad = Vec::new();
    for chunk in points.chunks(jobs.max(1)) {
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|p| {
                    s.spawn(move || {
                        let mut args = vec!["train".to_string()];
                        args.extend(config_args(spec, dir, p));
                        args.extend(["--dry-run".into(), "--threads".into(), "1".into()]);
                        Command::new(binary)
                            .args(&args)
                            .env("RUST_LIB_BACKTRACE", "0")
                            .env("RUST_BACKTRACE", "0")
                            .stdin(Stdio::null())
                            .output()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a dry-run thread does not panic"))
                .collect()
        });
        for (p, r) in chunk.iter().zip(results) {
            let out = r.map_err(|e| RunError::Spawn {
                binary: binary.to_path_buf(),
                reason: e.to_string(),
            })?;
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                let err = err
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .collect::<Vec<_>>()
                    .join(" | ");
                bad.push((p.name.clone(), err));
            }
        }
    }
    Ok(bad)
}

struct Running {
    index: usize,
    child: Child,
    started: Instant,
    signalled: bool,
}

/// Runs the points of `spec` in `dir` that are not done (nor failed, unless
/// `opts.retry_failed`), `jobs` at a time, until all ended or `stop` is set.
pub fn run(
    spec: &Spec,
    dir: &SweepDir,
    opts: &RunOptions,
    stop: &AtomicBool,
) -> Result<RunSummary, RunError> {
    // One driver per sweep: two would start the same pending point twice.
    std::fs::create_dir_all(&dir.dir).map_err(crate::state::io_err(&dir.dir))?;
    let _driver = DriverLock::acquire(&dir.dir)?;
    let mut state = dir.open(spec)?;
    let jobs = opts.jobs.unwrap_or_else(|| default_jobs(spec.run.threads));
    let mut summary = RunSummary::default();
    let mut queue = Vec::new();
    for (i, p) in state.points.iter_mut().enumerate() {
        match dir.status(p) {
            Status::Done => {
                if p.outcome != Outcome::Done {
                    p.outcome = Outcome::Done;
                    dir.save_outcome(p)?;
                }
                summary.done += 1;
            }
            Status::Running => summary.busy.push(p.point.name.clone()),
            Status::Failed if !opts.retry_failed => {
                if let Outcome::Failed { error, .. } = &p.outcome {
                    summary.failed.push((p.point.name.clone(), error.clone()));
                }
            }
            Status::Failed | Status::Pending => queue.push(i),
        }
    }
    let to_check: Vec<&Point> = queue.iter().map(|&i| &state.points[i].point).collect();
    let bad = validate(spec, dir, &to_check, &opts.binary, jobs)?;
    if !bad.is_empty() {
        return Err(RunError::Invalid(bad));
    }
    if opts.check_only {
        summary.pending = queue.len();
        return Ok(summary);
    }

    let bar = if opts.progress {
        ProgressBar::with_draw_target(
            Some(state.points.len() as u64),
            ProgressDrawTarget::stderr(),
        )
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} runs done (eta {eta}) {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_position(summary.done as u64);
    let say = |line: String| {
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
    };
    // No more runs at once than there are runs to start.
    let jobs = jobs.min(queue.len()).max(1);
    say(format!(
        "sweep {} | {} point{}: {} done, {} to run, {} failed (kept), {} running elsewhere | {} at once",
        dir.dir.display(),
        state.points.len(),
        if state.points.len() == 1 { "" } else { "s" },
        summary.done,
        queue.len(),
        summary.failed.len(),
        summary.busy.len(),
        jobs
    ));
    queue.reverse(); // popped from the back: the spec's order
    let mut running: Vec<Running> = Vec::new();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        if stopping {
            summary.interrupted = true;
            for r in running.iter_mut().filter(|r| !r.signalled) {
                terminate(&r.child);
                r.signalled = true;
            }
        }
        while !stopping && running.len() < jobs {
            let Some(i) = queue.pop() else { break };
            let p = &mut state.points[i];
            p.attempts += 1;
            p.outcome = Outcome::Pending;
            dir.save_outcome(p)?;
            let child = start(spec, dir, p, &opts.binary)?;
            running.push(Running {
                index: i,
                child,
                started: Instant::now(),
                signalled: false,
            });
        }
        if running.is_empty() {
            break;
        }
        let mut k = 0;
        while k < running.len() {
            let exit = running[k].child.try_wait().map_err(|e| RunError::Spawn {
                binary: opts.binary.clone(),
                reason: e.to_string(),
            })?;
            let Some(status) = exit else {
                k += 1;
                continue;
            };
            let r = running.swap_remove(k);
            let p = &mut state.points[r.index];
            p.outcome = outcome_of(status, r.signalled, &dir.log_file(&p.point.name, "err"));
            dir.save_outcome(p)?;
            let secs = r.started.elapsed().as_secs_f64();
            match &p.outcome {
                Outcome::Done => {
                    summary.done += 1;
                    bar.inc(1);
                    say(format!("done    {} ({secs:.1} s)", p.point.name));
                }
                Outcome::Pending => say(format!(
                    "stopped {} ({secs:.1} s; checkpointed, resumed by the next sweep run)",
                    p.point.name
                )),
                Outcome::Failed { error, .. } => {
                    say(format!("failed  {} ({secs:.1} s): {error}", p.point.name));
                    summary.failed.push((p.point.name.clone(), error.clone()));
                }
            }
        }
        bar.set_message(format!(
            "{} running, {} failed",
            running.len(),
            summary.failed.len()
        ));
        std::thread::sleep(Duration::from_millis(50));
    }
    bar.finish_and_clear();
    summary.pending = state
        .points
        .iter()
        .filter(|p| p.outcome == Outcome::Pending && !summary.busy.contains(&p.point.name))
        .count();
    Ok(summary)
}

/// What a run's exit means: 0 done; 130, death by the SIGTERM the driver sent, or death by a
/// signal that stops a process from outside (SIGKILL, SIGTERM, SIGINT, SIGHUP: `kill -9`, the
/// OOM killer, a closed terminal) stopped and resumable from its last checkpoint; anything
/// else (an error status, a crash by SIGSEGV or SIGABRT) failed, with the last lines of its
/// stderr.
pub(crate) fn outcome_of(status: ExitStatus, signalled: bool, stderr: &Path) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    let stopped_from_outside = status
        .signal()
        .is_some_and(|s| [libc::SIGKILL, libc::SIGTERM, libc::SIGINT, libc::SIGHUP].contains(&s));
    match status.code() {
        Some(0) => Outcome::Done,
        Some(INTERRUPTED_STATUS) => Outcome::Pending,
        None if signalled || stopped_from_outside => Outcome::Pending,
        code => Outcome::Failed {
            status: code,
            error: last_attempt_error(stderr),
        },
    }
}

const ATTEMPT_MARK: &str = "=== sweep: attempt ";

/// The last lines of a run's stderr log since its last attempt began.
pub fn last_attempt_error(stderr: &Path) -> String {
    let text = std::fs::read_to_string(stderr).unwrap_or_default();
    let since = text.rfind(ATTEMPT_MARK).map_or(&text[..], |i| &text[i..]);
    let lines: Vec<&str> = since
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    if tail.is_empty() {
        "no error message (see the run's log)".into()
    } else {
        tail
    }
}

/// Starts one point's run, its output appended to `logs/<point>.{out,err}`, in its own
/// process group so that a Ctrl-C at the terminal reaches only the driver (which forwards
/// it once: a second signal would end the run without its checkpoint).
pub fn start(
    spec: &Spec,
    dir: &SweepDir,
    p: &PointState,
    binary: &Path,
) -> Result<Child, RunError> {
    let args = train_args(spec, dir, &p.point);
    let open = |stream: &str| -> Result<File, RunError> {
        let path = dir.log_file(&p.point.name, stream);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(crate::state::io_err(&path))?;
        writeln!(
            f,
            "{ATTEMPT_MARK}{}: {} {} ===",
            p.attempts,
            binary.display(),
            args.join(" ")
        )
        .map_err(crate::state::io_err(&path))?;
        Ok(f)
    };
    let mut cmd = Command::new(binary);
    // Errors end a run's log without a backtrace, so its last lines say what went wrong.
    cmd.args(&args)
        .env("RUST_LIB_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(open("out")?)
        .stderr(open("err")?);
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.spawn().map_err(|e| RunError::Spawn {
        binary: binary.to_path_buf(),
        reason: e.to_string(),
    })
}

/// An exclusive `flock` on `<sweep>/.driver.lock`, held while a driver runs the sweep (the
/// OS releases it however the driver ends).
struct DriverLock {
    _file: File,
}

impl DriverLock {
    fn acquire(dir: &Path) -> Result<DriverLock, RunError> {
        let path = dir.join(".driver.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(crate::state::io_err(&path))?;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd as _;
            // SAFETY: flock on a descriptor we own; released when `file` closes.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r != 0 {
                return Err(RunError::Busy {
                    dir: dir.to_path_buf(),
                });
            }
        }
        Ok(DriverLock { _file: file })
    }
}

/// Sends SIGTERM to a run (it finishes its update, checkpoints and exits with 130).
pub fn terminate(child: &Child) {
    #[cfg(unix)]
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    #[cfg(not(unix))]
    let _ = child;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    /// A run stopped from outside resumes on the next `sweep run`; a crash or an error is
    /// kept as failed until `--retry-failed`.
    #[test]
    fn a_run_killed_from_outside_is_resumable_and_a_crash_is_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let err = dir.path().join("err.log");
        std::fs::write(&err, "error: boom\n").unwrap();
        let of = |raw: i32| outcome_of(ExitStatus::from_raw(raw), false, &err);
        assert_eq!(of(0), Outcome::Done);
        assert_eq!(of(INTERRUPTED_STATUS << 8), Outcome::Pending);
        for sig in [libc::SIGKILL, libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            assert_eq!(of(sig), Outcome::Pending, "signal {sig}");
        }
        for sig in [libc::SIGSEGV, libc::SIGABRT] {
            assert!(matches!(of(sig), Outcome::Failed { .. }), "signal {sig}");
        }
        assert!(matches!(
            of(1 << 8),
            Outcome::Failed {
                status: Some(1),
                ..
            }
        ));
    }
}
