//! Fault injection on real training processes: SIGINT, SIGTERM and SIGKILL at seeded points
//! of a run, then `resume`; a second writer while a run trains; `overwrite` with bad input;
//! an unwritable `checkpoints/`; a full disk; a second signal. Every training process is
//! this test binary run again as a child (the ignored `child_trains` test, which does
//! nothing unless the parent sets `FAULT_INJECTION_CHILD`), training through
//! `agents::train::train` exactly as `factorexe train` does.
//!
//! What "runs lose nothing" means here: after any of these faults and a resume, the records
//! in `metrics.jsonl` and in the event files (as TensorBoard reads them: files in name order,
//! restart markers purging what came before) are those of an uninterrupted run of the same
//! config, as a multiset of (step, tag, value). Values are compared for every record except
//! the wall-clock ones, whose (step, tag) must still match:
//! - `perf/*` (throughput and time: they depend on the machine's load, not on the run);
//! - the hyperparameters record `_hparams_/session_start_info` (it holds the start time).
//!
//! The seed of the fault points is `FAULT_SEED` (default fixed); each test prints the points
//! it chose, so a failure can be replayed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use agents::config::{Override, RunConfig};
use agents::runner::RunError;
use agents::train::{train, TrainOptions};
use protobuf::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tensorboard_proto::event::{Event, SessionLog_SessionStatus};

const CHILD_ENV: &str = "FAULT_INJECTION_CHILD";
/// Exit status of a child whose `train` returned an error.
const CHILD_ERROR: i32 = 3;
const STEPS: u64 = 40;

/// A tiny chain-supervised run with a curriculum (so that an evaluation fed to it by mistake
/// changes the training), scalars averaged over 4 updates and checkpoints every 7 (so that
/// checkpoints fall between log points).
const CONFIG: &str = r#"
seed = 3
[env]
name = "cycle"
length = 6
[train]
steps = 40
batch_size = 16
levels = [1, 2, 3]
sampler = "curriculum"
threshold = 0.3
[algo]
name = "cot_supervised"
[model]
heads = 2
head_dim = 8
mlp_factor = 2
decoder_layers = 1
[optim]
lr = 3e-3
warmup_steps = 2
[eval]
every = 5
episodes = 8
examples = 1
[log]
every = 4
checkpoint_every = 7
keep_checkpoints = 0
"#;

fn config(sets: &[&str]) -> RunConfig {
    let sets: Vec<Override> = sets.iter().map(|s| Override::parse(s).unwrap()).collect();
    RunConfig::from_toml_str(CONFIG, "fault_injection", "fault_injection", &sets).unwrap()
}

fn options(dir: &Path, mode: &str, sets: &[&str]) -> TrainOptions {
    let mut opts = TrainOptions::new(config(sets));
    opts.run_dir = Some(dir.to_path_buf());
    opts.resume = mode == "resume";
    opts.overwrite = mode == "overwrite";
    opts.threads = Some(1);
    opts.progress = false;
    opts.print = true;
    opts.passive_openmp = false;
    opts
}

#[test]
#[ignore = "child process of the fault-injection tests"]
fn child_trains() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split('\n');
    let mode = parts.next().unwrap().to_string();
    let dir = PathBuf::from(parts.next().unwrap());
    let sets: Vec<&str> = parts.filter(|s| !s.is_empty()).collect();
    match train(options(&dir, &mode, &sets)) {
        Ok(s) => println!(
            "child: steps {} interrupted {} checkpoint {}",
            s.steps,
            s.interrupted,
            s.checkpoint.is_some()
        ),
        Err(e) => {
            eprintln!("child: error: {e}");
            std::process::exit(CHILD_ERROR);
        }
    }
}

/// A training child, its output read line by line as it comes.
struct Proc {
    child: Child,
    lines: Receiver<(bool, String)>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn text(&self) -> String {
        format!(
            "status {:?}\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

fn spawn(mode: &str, dir: &Path, sets: &[&str]) -> Proc {
    let mut spec = format!("{mode}\n{}", dir.display());
    for s in sets {
        spec.push('\n');
        spec.push_str(s);
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_trains",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the test binary runs as a child");
    let (tx, rx) = mpsc::channel();
    let stdout = Arc::new(Mutex::new(String::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    fn pump(
        r: impl Read + Send + 'static,
        is_err: bool,
        tx: mpsc::Sender<(bool, String)>,
        all: Arc<Mutex<String>>,
    ) {
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                let mut a = all.lock().unwrap();
                a.push_str(&line);
                a.push('\n');
                drop(a);
                let _ = tx.send((is_err, line));
            }
        });
    }
    pump(
        child.stdout.take().unwrap(),
        false,
        tx.clone(),
        Arc::clone(&stdout),
    );
    pump(child.stderr.take().unwrap(), true, tx, Arc::clone(&stderr));
    Proc {
        child,
        lines: rx,
        stdout,
        stderr,
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a line of stdout (or stderr) that satisfies `pred`.
    fn wait_for(&mut self, on_stderr: bool, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((is_err, line)) if is_err == on_stderr && pred(&line) => return,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.child.kill();
                    let out = self.collect();
                    panic!("the awaited line never came\n{}", out.text());
                }
            }
        }
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    fn finish(mut self) -> Outcome {
        self.collect()
    }

    fn collect(&mut self) -> Outcome {
        let status = self.child.wait().unwrap();
        // The pumps end at EOF; drain them so that every line is in.
        while self.lines.recv_timeout(Duration::from_secs(10)).is_ok() {}
        let stdout = self.stdout.lock().unwrap().clone();
        let stderr = self.stderr.lock().unwrap().clone();
        Outcome {
            status,
            stdout,
            stderr,
        }
    }
}

fn run_child(mode: &str, dir: &Path, sets: &[&str]) -> Outcome {
    spawn(mode, dir, sets).finish()
}

fn assert_clean_exit(out: &Outcome, what: &str) {
    assert!(out.status.success(), "{what}\n{}", out.text());
    assert!(!out.stderr.contains("panicked"), "{what}\n{}", out.text());
}

/// (step, tag, value): `None` for the values that are not compared (see the module doc).
type Records = Vec<(u64, String, Option<String>)>;

fn compared(tag: &str) -> bool {
    !(tag.starts_with("perf/") || tag.starts_with("_hparams_/"))
}

/// `metrics.jsonl` as records, sorted. The value is kept as written (JSON text).
fn jsonl_records(dir: &Path) -> Records {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let mut out: Records = text
        .lines()
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            let tag = v["tag"].as_str().unwrap().to_string();
            let (_, value) = line.rsplit_once("\"value\":").unwrap();
            let value = value.trim_end_matches('}').to_string();
            let value = compared(&tag).then_some(value);
            (v["step"].as_u64().unwrap(), tag, value)
        })
        .collect();
    out.sort();
    out
}

/// What TensorBoard's reader keeps of a run's event files, sorted: the files in name order,
/// each `SessionLog.START` at step `s` purging the records with step `>= s` read before it,
/// a truncated last record ending its file. Scalars are compared by value, other summaries
/// by their serialized content.
fn event_records(dir: &Path) -> Records {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .contains("tfevents")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no event file in {}", dir.display());
    let mut out: Records = Vec::new();
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let mut at = 0usize;
        while at + 12 <= bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            let start = at + 12;
            if start + len + 4 > bytes.len() {
                break;
            }
            let event = Event::parse_from_bytes(&bytes[start..start + len])
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            at = start + len + 4;
            let step = u64::try_from(event.get_step()).unwrap();
            if event.has_session_log()
                && event.get_session_log().get_status() == SessionLog_SessionStatus::START
            {
                out.retain(|r| r.0 < step);
            }
            if event.has_summary() {
                for v in event.get_summary().get_value() {
                    let tag = v.get_tag().to_string();
                    let value = if !compared(&tag) {
                        None
                    } else if v.has_simple_value() {
                        Some(format!("{:e}", v.get_simple_value()))
                    } else {
                        Some(format!("{:x?}", v.write_to_bytes().unwrap()))
                    };
                    out.push((step, tag, value));
                }
            }
        }
    }
    out.sort();
    out
}

/// Every file under `dir` with its content, by relative path.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Asserts that `dir` holds exactly `files`, naming the files that differ.
fn assert_unchanged(dir: &Path, files: &BTreeMap<PathBuf, Vec<u8>>, what: &str) {
    let now = snapshot(dir);
    let differ: Vec<String> = files
        .keys()
        .chain(now.keys())
        .filter(|k| files.get(*k) != now.get(*k))
        .map(|k| {
            let state = match (files.contains_key(k), now.contains_key(k)) {
                (true, true) => "changed",
                (true, false) => "removed",
                _ => "added",
            };
            format!("{} {state}", k.display())
        })
        .collect();
    assert!(differ.is_empty(), "{what}: {differ:?}");
}

fn restore(files: &BTreeMap<PathBuf, Vec<u8>>, dir: &Path) {
    for (rel, bytes) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The uninterrupted run of [`CONFIG`], made once per test binary by a child.
struct Reference {
    jsonl: Records,
    events: Records,
    files: BTreeMap<PathBuf, Vec<u8>>,
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let out = run_child("fresh", &dir, &[]);
        assert_clean_exit(&out, "the uninterrupted run");
        assert!(out.stdout.contains("done: step 40"), "{}", out.text());
        assert!(
            !dir.join(".lock").exists(),
            "a finished run leaves no lock file"
        );
        assert_eq!(
            entries(tmp.path()),
            ["run"],
            "nothing but the run directory is left"
        );
        Reference {
            jsonl: jsonl_records(&dir),
            events: event_records(&dir),
            files: snapshot(&dir),
        }
    })
}

/// Asserts that `dir` holds exactly the reference's records; the first difference is shown.
fn assert_same_records(dir: &Path, what: &str) {
    let r = reference();
    for (kind, got, want) in [
        ("metrics.jsonl", jsonl_records(dir), &r.jsonl),
        ("event files", event_records(dir), &r.events),
    ] {
        if &got != want {
            let missing: Vec<_> = want.iter().filter(|x| !got.contains(x)).take(8).collect();
            let extra: Vec<_> = got.iter().filter(|x| !want.contains(x)).take(8).collect();
            panic!(
                "{what}: the {kind} differ from the uninterrupted run's ({} vs {} records)\n\
                 missing: {missing:#?}\nextra: {extra:#?}",
                got.len(),
                want.len()
            );
        }
    }
}

fn seed() -> u64 {
    std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_240_531)
}

/// Trains, delivers `sig` at a seeded point after update `after[k]`, resumes, and compares
/// the records with the uninterrupted run's.
fn interrupt_and_resume(sig: libc::c_int, salt: u64, after: &[u64]) -> tempfile::TempDir {
    let mut rng = SmallRng::seed_from_u64(seed() ^ salt);
    let wait_step = after[rng.random_range(0..after.len())];
    let delay_ms = rng.random_range(0..20u64);
    eprintln!("signal {sig}: after the log line of step {wait_step}, then {delay_ms} ms");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut p = spawn("fresh", &dir, &[]);
    let line = format!("step {wait_step}/");
    p.wait_for(false, |l| l.starts_with(&line));
    std::thread::sleep(Duration::from_millis(delay_ms));
    p.signal(sig);
    let out = p.finish();
    if sig == libc::SIGKILL {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{}", out.text());
    } else {
        assert_clean_exit(&out, "the interrupted run");
        let stopped: u64 = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("interrupted: step "))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("the run was not interrupted\n{}", out.text()));
        assert!(
            (wait_step..STEPS).contains(&stopped),
            "stopped at {stopped}\n{}",
            out.text()
        );
        eprintln!("signal {sig}: stopped after update {stopped}");
        assert!(
            out.stderr.contains("interrupted: finishing this update"),
            "{}",
            out.text()
        );
    }
    let resumed = run_child("resume", &dir, &[]);
    assert_clean_exit(&resumed, "the resumed run");
    assert!(
        resumed.stdout.contains("done: step 40"),
        "{}",
        resumed.text()
    );
    assert_same_records(&dir, &format!("signal {sig} then resume"));
    tmp
}

#[test]
fn sigint_then_resume_loses_nothing() {
    interrupt_and_resume(libc::SIGINT, 1, &[4, 8, 12, 16]);
}

#[test]
fn sigterm_is_a_sigint_and_resume_loses_nothing() {
    interrupt_and_resume(libc::SIGTERM, 2, &[4, 8, 12, 16]);
}

/// SIGKILL loses what came after the last periodic checkpoint; the resume from that older
/// checkpoint drops those records and writes them again. TensorBoard's own reader (the
/// official Python package, when scripts/setup installed it) must agree.
#[test]
fn sigkill_then_resume_from_an_older_checkpoint_loses_nothing() {
    let tmp = interrupt_and_resume(libc::SIGKILL, 3, &[8, 12, 16, 20]);
    tensorboard_agrees(&tmp.path().join("run"));
}

/// Reads `run` and the reference side by side with `scripts/tb_readback.py` and compares
/// what TensorBoard shows: the scalar series (values too, but for wall-clock tags), and the
/// steps of the text and histogram series.
fn tensorboard_agrees(run: &Path) {
    let pythonpath = option_env!("FACTOREXE_PYTHONPATH")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("FACTOREXE_PYTHONPATH").map(PathBuf::from));
    let Some(pythonpath) = pythonpath.filter(|p| p.join("tensorboard").is_dir()) else {
        eprintln!("skipped the TensorBoard check: no tensorboard package (run scripts/setup)");
        return;
    };
    let logdir = tempfile::tempdir().unwrap();
    restore(&reference().files, &logdir.path().join("reference"));
    restore(&snapshot(run), &logdir.path().join("resumed"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tb_readback.py");
    let out = match Command::new("python3")
        .arg(&script)
        .arg(logdir.path())
        .env("PYTHONPATH", &pythonpath)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped the TensorBoard check: cannot run python3 ({e})");
            return;
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (a, b) = (&back["runs"]["reference"], &back["runs"]["resumed"]);
    let scalars = |run: &serde_json::Value| -> Vec<(String, u64, Option<f64>)> {
        let mut v = Vec::new();
        for (tag, points) in run["scalars"].as_object().unwrap() {
            for p in points.as_array().unwrap() {
                let value = compared(tag).then(|| p[1].as_f64().unwrap());
                v.push((tag.clone(), p[0].as_u64().unwrap(), value));
            }
        }
        v
    };
    assert!(!scalars(a).is_empty(), "TensorBoard read no scalars");
    assert_eq!(scalars(a), scalars(b), "TensorBoard's scalars differ");
    for kind in ["text", "histograms"] {
        let steps = |run: &serde_json::Value| -> Vec<(String, Vec<u64>)> {
            run[kind]
                .as_object()
                .unwrap()
                .iter()
                .map(|(tag, points)| {
                    let s = points.as_array().unwrap().iter();
                    (tag.clone(), s.map(|p| p[0].as_u64().unwrap()).collect())
                })
                .collect()
        };
        assert_eq!(steps(a), steps(b), "TensorBoard's {kind} differ");
    }
}

/// `resume` of a run that already finished changes none of its records or checkpoints.
#[test]
fn resuming_a_finished_run_keeps_its_last_scalars() {
    let r = reference();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    restore(&r.files, &dir);
    let mut opts = options(&dir, "resume", &[]);
    opts.print = false;
    let summary = train(opts).unwrap();
    assert_eq!((summary.steps, summary.interrupted), (STEPS, false));
    assert!(summary.eval.is_some());
    assert_unchanged(&dir, &r.files, "a finished run resumed");
    assert_same_records(&dir, "a finished run resumed");
}

/// While a run trains, another process that would resume, overwrite or start it is refused
/// with the trainer's PID, and the run finishes as if alone.
#[test]
fn a_second_writer_is_refused_and_the_first_run_finishes_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut p = spawn("fresh", &dir, &[]);
    p.wait_for(false, |l| l.starts_with("step 4/"));
    let pid = p.pid();
    let lock = std::fs::read_to_string(dir.join(".lock")).unwrap();
    assert_eq!(
        lock.trim(),
        pid.to_string(),
        "the lock file names its holder"
    );
    for mode in ["resume", "overwrite", "fresh"] {
        let mut opts = options(&dir, mode, &[]);
        opts.print = false;
        match train(opts) {
            Err(e @ RunError::InUse { pid: Some(p), .. }) if p == pid => {
                assert!(e.to_string().contains(&format!("PID {pid}")), "{e}");
            }
            other => panic!("{mode}: expected a refusal naming PID {pid}, got {other:?}"),
        }
    }
    let out = p.finish();
    assert_clean_exit(&out, "the first run");
    assert!(out.stdout.contains("done: step 40"), "{}", out.text());
    assert_eq!(entries(tmp.path()), ["run"]);
    assert_same_records(&dir, "a run that another process tried to write");
}

/// `overwrite` with input that turns out bad leaves the old run byte for byte, and a fresh
/// run that fails to start leaves no directory behind.
#[test]
fn a_failed_overwrite_leaves_the_old_run_intact() {
    let r = reference();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    restore(&r.files, &dir);
    let missing_init = tmp.path().join("no_such_run");
    let init = format!("algo.init={}", missing_init.display());
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("a bad env parameter", vec!["env.lenght=6"], "lenght"),
        ("an impossible level", vec!["train.levels=[1, 99]"], "99"),
        (
            "a bad init run (found at the first update)",
            vec!["algo.name=reinforce", &init],
            "algo.init",
        ),
    ];
    for (what, sets, needle) in cases {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let sets_cfg: Vec<Override> =
                sets.iter().map(|s| Override::parse(s).unwrap()).collect();
            let cfg = RunConfig::from_toml_str(CONFIG, "t", "t", &sets_cfg);
            let cfg = match cfg {
                Ok(c) => c,
                Err(e) => return Err(e.to_string()),
            };
            let mut opts = TrainOptions::new(cfg);
            opts.run_dir = Some(dir.clone());
            opts.overwrite = true;
            opts.threads = Some(1);
            opts.progress = false;
            opts.print = false;
            opts.passive_openmp = false;
            train(opts).map(|_| ()).map_err(|e| e.to_string())
        }))
        .unwrap_or_else(|_| panic!("{what}: train panicked"));
        let err = result.expect_err(what);
        assert!(err.contains(needle), "{what}: {err}");
        assert_unchanged(&dir, &r.files, &format!("{what}: the old run changed"));
        assert_eq!(entries(tmp.path()), ["run"], "{what}: debris left");
    }
    if !tch::Cuda::is_available() {
        let mut opts = options(&dir, "overwrite", &[]);
        opts.print = false;
        opts.device = tch::Device::Cuda(0);
        let err = train(opts).expect_err("no CUDA device").to_string();
        assert!(err.contains("cuda"), "{err}");
        assert_unchanged(&dir, &r.files, "a missing device: the old run changed");
    }
    let fresh = tmp.path().join("fresh/run");
    let mut opts = options(&fresh, "fresh", &["algo.name=reinforce", &init]);
    opts.print = false;
    let err = train(opts).expect_err("a bad init run").to_string();
    assert!(err.contains("algo.init"), "{err}");
    assert_eq!(
        entries(tmp.path()),
        ["run"],
        "a failed fresh start left a stub"
    );
}

/// Makes a directory unwritable even for root (an immutable directory, or mode 0555 for
/// other users), restoring it on drop; `None` when neither works here.
struct Unwritable(PathBuf);

impl Unwritable {
    fn new(dir: &Path) -> Option<Unwritable> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let ok = Command::new("chattr")
                .arg("+i")
                .arg(dir)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            ok.then(|| Unwritable(dir.to_path_buf()))
        } else {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).ok()?;
            Some(Unwritable(dir.to_path_buf()))
        }
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

/// A resume whose `checkpoints/` cannot be written fails before it changes anything, not
/// at its first checkpoint after the training.
#[test]
fn an_unwritable_checkpoint_folder_fails_before_training() {
    let r = reference();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    restore(&r.files, &dir);
    let checkpoints = dir.join("checkpoints");
    let Some(_guard) = Unwritable::new(&checkpoints) else {
        eprintln!("skipped: cannot make a directory unwritable here (no chattr +i as root)");
        return;
    };
    if std::fs::write(checkpoints.join("probe"), b"x").is_ok() {
        eprintln!("skipped: the directory is still writable (filesystem ignores the flag)");
        let _ = std::fs::remove_file(checkpoints.join("probe"));
        return;
    }
    let mut opts = options(&dir, "resume", &["train.steps=44"]);
    opts.print = false;
    let start = Instant::now();
    let err = train(opts)
        .expect_err("checkpoints/ is unwritable")
        .to_string();
    assert!(
        err.contains("checkpoints") && err.contains("cannot write"),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(20));
    assert_unchanged(&dir, &r.files, "the run changed");
}

/// A run that fills its disk fails with an error (no panic), keeps a loadable checkpoint,
/// and once there is room again, resumes to the uninterrupted run's records. Needs a small
/// tmpfs, which only root (CAP_SYS_ADMIN) can mount: skipped elsewhere.
#[test]
fn a_full_disk_fails_cleanly_and_the_run_resumes() {
    let r = reference();
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // About half of what the finished run occupies, in pages (tmpfs counts whole pages).
    let pages: usize = r.files.values().map(|b| b.len().div_ceil(4096)).sum();
    let size = pages / 2 * 4096;
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root with CAP_SYS_ADMIN)");
        return;
    }
    struct Mount(PathBuf);
    impl Drop for Mount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _mount = Mount(mnt.clone());
    let dir = mnt.join("run");
    let out = run_child("fresh", &dir, &[]);
    assert_eq!(out.status.code(), Some(CHILD_ERROR), "{}", out.text());
    assert!(!out.stderr.contains("panicked"), "{}", out.text());
    assert!(
        out.stderr.contains("No space left on device"),
        "{}",
        out.text()
    );
    let latest = agents::checkpoint::load_latest(&dir)
        .unwrap_or_else(|e| panic!("no loadable checkpoint after a full disk: {e}"));
    eprintln!(
        "disk full: {size} bytes, latest checkpoint at step {}",
        latest.checkpoint.step
    );
    let grown = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    assert!(grown, "remounting the tmpfs larger");
    let resumed = run_child("resume", &dir, &[]);
    assert_clean_exit(&resumed, "the resumed run");
    assert_same_records(&dir, "a full disk then resume");
}

/// A second signal while the first one's checkpoint is being made ends the process at once,
/// by that signal (as a shell expects of a program it interrupted), without a panic.
#[test]
fn a_second_signal_exits_at_once() {
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    // A long run whose final evaluation (what the first signal starts) takes a while.
    let mut p = spawn(
        "fresh",
        &dir,
        &["train.steps=100000", "eval.every=0", "eval.episodes=20000"],
    );
    p.wait_for(false, |l| l.starts_with("step 4/"));
    p.signal(libc::SIGTERM);
    p.wait_for(true, |l| l.contains("interrupted: finishing this update"));
    let second = Instant::now();
    p.signal(libc::SIGINT);
    let out = p.finish();
    let took = second.elapsed();
    assert_eq!(out.status.signal(), Some(libc::SIGINT), "{}", out.text());
    assert!(!out.stderr.contains("panicked"), "{}", out.text());
    assert!(took < Duration::from_secs(3), "took {took:?}");
}
