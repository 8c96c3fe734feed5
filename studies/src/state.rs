//! A sweep directory and what it records about each point.
//!
//! ```text
//! <sweep>/sweep.json         the spec and its points (and Slurm job ids)
//! <sweep>/outcomes/<point>.json  each point's last outcome, written by whoever ran it
//! <sweep>/runs/<point>/      ordinary run directories (`factorexe train` writes them)
//! <sweep>/logs/<point>.out   each run's stdout and stderr, appended attempt after attempt
//! <sweep>/logs/<point>.err
//! <sweep>/slurm/             the job-array script and job ids (Slurm backend)
//! <sweep>/report/            what `sweep report` writes
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::{Point, Spec};

/// The file holding a sweep's spec and per-point outcomes.
pub const STATE_FILE: &str = "sweep.json";
/// Exit status of `factorexe train` after a signal, once its checkpoint is saved.
pub const INTERRUPTED_STATUS: i32 = 130;

/// A sweep directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// An I/O error on a file of the sweep.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The state file does not parse.
    #[error("{path}: not a sweep state file ({reason})")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The directory holds another sweep.
    #[error(
        "{dir} holds a sweep whose point {point} has other overrides ({old}) than this spec \
         gives it ({new}); use another --out"
    )]
    Mismatch {
        /// The sweep directory.
        dir: PathBuf,
        /// The point's name.
        point: String,
        /// Its recorded overrides.
        old: String,
        /// The spec's.
        new: String,
    },
}

/// Whether a recorded point and the spec's point configure the same run.
fn same_run(recorded: &Point, now: &Point) -> bool {
    recorded.config == now.config && recorded.set == now.set
}

/// A point's config file (when it has its own) and overrides, for messages.
fn describe(p: &Point) -> String {
    let set = p.set.join(" ");
    match &p.config {
        Some(c) if set.is_empty() => format!("config {}", c.display()),
        Some(c) => format!("config {} {set}", c.display()),
        None => set,
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |e| StateError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The last outcome the driver saw for a point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Not started, or stopped before it finished (a signal): run or resume it.
    #[default]
    Pending,
    /// Finished (exit status 0).
    Done,
    /// Ended with an error; retried only with `--retry-failed`.
    Failed {
        /// Its exit status (`None` when a signal the driver did not send ended it).
        status: Option<i32>,
        /// The last lines of its stderr.
        error: String,
    },
}

/// A point as the sweep directory records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointState {
    /// The point.
    #[serde(flatten)]
    pub point: Point,
    /// Its last outcome (kept in `outcomes/<point>.json`).
    #[serde(skip)]
    pub outcome: Outcome,
    /// How many times it was started (kept with the outcome).
    #[serde(skip)]
    pub attempts: u32,
}

/// What `outcomes/<point>.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct OutcomeFile {
    outcome: Outcome,
    attempts: u32,
}

/// What `sweep.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepState {
    /// The spec the sweep was last run with.
    pub spec: Spec,
    /// Every point, in the spec's order.
    pub points: Vec<PointState>,
    /// Slurm job ids submitted for this sweep, oldest first.
    #[serde(default)]
    pub slurm_jobs: Vec<String>,
}

/// The status `sweep status` shows for a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Finished.
    Done,
    /// A process holds its run directory's lock.
    Running,
    /// Its last attempt failed.
    Failed,
    /// Not started or not finished.
    Pending,
}

impl Status {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Status::Done => "done",
            Status::Running => "running",
            Status::Failed => "failed",
            Status::Pending => "pending",
        }
    }
}

/// A sweep directory.
#[derive(Debug, Clone)]
pub struct SweepDir {
    /// Its path.
    pub dir: PathBuf,
}

impl SweepDir {
    /// The sweep directory at `dir` (nothing is read or created).
    pub fn new(dir: impl Into<PathBuf>) -> SweepDir {
        SweepDir { dir: dir.into() }
    }

    /// The run directory of a point.
    pub fn run_dir(&self, point: &str) -> PathBuf {
        self.dir.join("runs").join(point)
    }

    /// The file a point's run writes its stdout (`out`) or stderr (`err`) to.
    pub fn log_file(&self, point: &str, stream: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{point}.{stream}"))
    }

    /// The state file.
    pub fn state_file(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Reads the state file and each point's outcome.
    pub fn load(&self) -> Result<SweepState, StateError> {
        let path = self.state_file();
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let mut state: SweepState =
            serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        for p in &mut state.points {
            let f = self.outcome_file(&p.point.name);
            if let Ok(text) = std::fs::read_to_string(&f) {
                let o: OutcomeFile =
                    serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
                        path: f.clone(),
                        reason: e.to_string(),
                    })?;
                p.outcome = o.outcome;
                p.attempts = o.attempts;
            }
        }
        Ok(state)
    }

    fn outcome_file(&self, point: &str) -> PathBuf {
        self.dir.join("outcomes").join(format!("{point}.json"))
    }

    /// Records a point's outcome and attempt count (atomically).
    pub fn save_outcome(&self, p: &PointState) -> Result<(), StateError> {
        let o = OutcomeFile {
            outcome: p.outcome.clone(),
            attempts: p.attempts,
        };
        write_json(&self.outcome_file(&p.point.name), &o)
    }

    /// Reads the state file when there is one, and merges `spec` into it: points already
    /// recorded keep their outcomes (their overrides must not have changed), new points are
    /// added as pending. Creates the directory and writes the result.
    pub fn open(&self, spec: &Spec) -> Result<SweepState, StateError> {
        for sub in ["runs", "logs", "outcomes"] {
            let d = self.dir.join(sub);
            std::fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        let old = if self.state_file().exists() {
            Some(self.load()?)
        } else {
            None
        };
        let recorded: BTreeMap<String, PointState> = old
            .as_ref()
            .map(|s| {
                s.points
                    .iter()
                    .map(|p| (p.point.name.clone(), p.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut points = Vec::new();
        for p in spec.points() {
            match recorded.get(&p.name) {
                // A point never started (its config was refused, say) takes the spec's
                // overrides as they are now.
                Some(r)
                    if !same_run(&r.point, &p)
                        && r.attempts == 0
                        && !run_has_files(&self.run_dir(&p.name)) =>
                {
                    points.push(PointState {
                        point: p,
                        outcome: Outcome::Pending,
                        attempts: 0,
                    })
                }
                Some(r) if !same_run(&r.point, &p) => {
                    return Err(StateError::Mismatch {
                        dir: self.dir.clone(),
                        point: p.name.clone(),
                        old: describe(&r.point),
                        new: describe(&p),
                    })
                }
                Some(r) => points.push(r.clone()),
                None => points.push(PointState {
                    point: p,
                    outcome: Outcome::Pending,
                    attempts: 0,
                }),
            }
        }
        let state = SweepState {
            spec: spec.clone(),
            points,
            slurm_jobs: old.map(|s| s.slurm_jobs).unwrap_or_default(),
        };
        self.save(&state)?;
        Ok(state)
    }

    /// Writes the state file (not the outcomes) atomically.
    pub fn save(&self, state: &SweepState) -> Result<(), StateError> {
        write_json(&self.state_file(), state)
    }

    /// A point's status: running when a process holds its run directory's lock (or the lock
    /// of the sibling a fresh run is built in), done when its outcome or its final checkpoint
    /// says so, then its recorded outcome.
    pub fn status(&self, p: &PointState) -> Status {
        let run = self.run_dir(&p.point.name);
        if run_is_locked(&run) {
            return Status::Running;
        }
        if p.outcome == Outcome::Done || run_is_complete(&run) {
            return Status::Done;
        }
        match p.outcome {
            Outcome::Failed { .. } => Status::Failed,
            _ => Status::Pending,
        }
    }
}

/// Writes `value` as JSON to `path` through a temporary sibling and a rename, so a reader
/// never sees half a file.
fn write_json(path: &Path, value: &impl Serialize) -> Result<(), StateError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let text = serde_json::to_string_pretty(value).map_err(|e| StateError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Whether a process holds the lock of run directory `dir`, or of a fresh run being built
/// beside it (`.<name>.new-<pid>`, swapped in after its first update).
pub fn run_is_locked(dir: &Path) -> bool {
    if lock_is_held(&dir.join(".lock")) {
        return true;
    }
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return false;
    };
    let prefix = format!(".{}.new-", name.to_string_lossy());
    std::fs::read_dir(parent).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with(&prefix)
                && lock_is_held(&e.path().join(".lock"))
        })
    })
}

/// Whether another process holds an exclusive `flock` on `file`. The holder deletes the file
/// before it unlocks, so a missing file is a free lock; a present one is probed with a
/// non-blocking shared lock, released at once.
#[cfg(unix)]
fn lock_is_held(file: &Path) -> bool {
    use std::os::fd::AsRawFd as _;
    let Ok(f) = File::open(file) else {
        return false;
    };
    // SAFETY: flock on a descriptor we own; the lock is released when `f` closes.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    r != 0
}

#[cfg(not(unix))]
fn lock_is_held(file: &Path) -> bool {
    file.exists()
}

/// The value of a dotted key in a run's resolved `config.toml`.
pub fn run_config_value(run: &Path, key: &str) -> Option<toml::Value> {
    let text = std::fs::read_to_string(run.join("config.toml")).ok()?;
    let mut v = toml::Value::Table(toml::from_str(&text).ok()?);
    for part in key.split('.') {
        v = v.as_table()?.get(part)?.clone();
    }
    Some(v)
}

/// Whether a run saved the checkpoint of its last step (`train.steps` of its config).
pub fn run_is_complete(run: &Path) -> bool {
    let Some(steps) = run_config_value(run, "train.steps").and_then(|v| v.as_integer()) else {
        return false;
    };
    run.join("checkpoints")
        .join(format!("step-{steps:010}.json"))
        .is_file()
}

/// Whether a run has any checkpoint to resume from.
pub fn run_has_checkpoint(run: &Path) -> bool {
    std::fs::read_dir(run.join("checkpoints")).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("step-") && n.ends_with(".json")
        })
    })
}

/// Whether a directory holds a run's files (without a checkpoint it must be overwritten).
pub fn run_has_files(run: &Path) -> bool {
    std::fs::read_dir(run).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n == "checkpoints"
                || n == "metrics.jsonl"
                || n == "config.toml"
                || n.starts_with("events.out.tfevents.")
        })
    })
}

/// The last non-empty lines (at most `n`) of a text file, for error summaries.
pub fn tail_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(base_set: &str, seeds: &str) -> Spec {
        let text = format!("seeds = {seeds}\n[base]\nconfig = \"a.toml\"\nset = {base_set}\n");
        Spec::parse(&text, "t.toml", "t", Path::new(".")).unwrap()
    }

    #[test]
    fn open_keeps_outcomes_adds_points_and_refuses_changed_overrides() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SweepDir::new(tmp.path().join("s"));
        let mut state = dir.open(&spec("{}", "[0, 1]")).unwrap();
        assert_eq!(state.points.len(), 2);
        state.points[0].outcome = Outcome::Failed {
            status: Some(1),
            error: "boom".into(),
        };
        state.points[0].attempts = 1;
        dir.save_outcome(&state.points[0]).unwrap();

        // A seed more: the old points keep their outcome, the new one is pending.
        let state = dir.open(&spec("{}", "[0, 1, 2]")).unwrap();
        assert_eq!(state.points.len(), 3);
        assert_eq!(dir.status(&state.points[0]), Status::Failed);
        assert_eq!(state.points[0].attempts, 1);
        assert_eq!(dir.status(&state.points[2]), Status::Pending);
        assert_eq!(
            dir.load().unwrap().points[0].outcome,
            state.points[0].outcome
        );

        let e = dir
            .open(&spec("{ \"train.steps\" = 5 }", "[0]"))
            .unwrap_err();
        assert!(e.to_string().contains("seed=0 has other overrides"), "{e}");
    }

    /// A point of a config axis whose file moved is another run: refused once it has run.
    #[test]
    fn a_point_whose_config_file_changed_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SweepDir::new(tmp.path().join("s"));
        let spec = |file: &str| {
            let text = format!(
                "[base]\n[[axis]]\nname = \"agent\"\nkey = \"config\"\nvalues = [\"{file}\"]\n"
            );
            Spec::parse(&text, "t.toml", "t", Path::new(".")).unwrap()
        };
        let mut state = dir.open(&spec("a/x.toml")).unwrap();
        assert_eq!(state.points[0].point.name, "agent=x");
        state.points[0].attempts = 1;
        dir.save_outcome(&state.points[0]).unwrap();
        assert!(
            dir.open(&spec("a/x.toml")).is_ok(),
            "the same file is the same run"
        );
        let e = dir.open(&spec("b/x.toml")).unwrap_err().to_string();
        assert!(
            e.contains("agent=x has other overrides (config ./a/x.toml)"),
            "{e}"
        );
    }

    #[test]
    fn a_run_is_complete_with_the_checkpoint_of_its_last_step() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("r");
        std::fs::create_dir_all(run.join("checkpoints")).unwrap();
        std::fs::write(run.join("config.toml"), "[train]\nsteps = 40\n").unwrap();
        assert!(run_has_files(&run) && !run_has_checkpoint(&run) && !run_is_complete(&run));
        std::fs::write(run.join("checkpoints/step-0000000020.json"), "{}").unwrap();
        assert!(run_has_checkpoint(&run) && !run_is_complete(&run));
        std::fs::write(run.join("checkpoints/step-0000000040.json"), "{}").unwrap();
        assert!(run_is_complete(&run));
        assert_eq!(
            run_config_value(&run, "train.steps").and_then(|v| v.as_integer()),
            Some(40)
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_held_lock_means_running() {
        use std::os::fd::AsRawFd as _;
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("r");
        std::fs::create_dir_all(&run).unwrap();
        assert!(!run_is_locked(&run));
        // A lock file left by a process that died holds no lock.
        let f = File::create(run.join(".lock")).unwrap();
        assert!(!run_is_locked(&run));
        // SAFETY: flock on a descriptor we own.
        assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
        // flock locks belong to the open file description: a second open sees it held.
        assert!(run_is_locked(&run));
        drop(f);
        assert!(!run_is_locked(&run));
        // A fresh run is built in a locked sibling until its first update.
        let staging = tmp.path().join(".r.new-123");
        std::fs::create_dir_all(&staging).unwrap();
        let g = File::create(staging.join(".lock")).unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { libc::flock(g.as_raw_fd(), libc::LOCK_EX) }, 0);
        assert!(run_is_locked(&run));
    }
}
