//! End-to-end tests of `factorexe sweep`: a small local sweep runs, reports and shows its
//! status; a sweep whose driver gets SIGTERM midway resumes to the same records as one never
//! interrupted; a failing point is listed and retried only when asked; typos in axis keys are
//! refused before anything runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use studies::metrics::Metrics;
use studies::state::run_is_locked;

const CONFIG: &str = r#"
seed = 2
[env]
name = "cycle"
length = 5
[train]
steps = 40
batch_size = 16
levels = [1, 2]
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
every = 10
episodes = 10
[log]
every = 5
"#;

const SPEC: &str = r#"
seeds = [0, 1, 2]
[base]
config = "tiny.toml"
[[axis]]
name = "width"
keys = ["model.heads", "model.head_dim"]
values = [[1, 8], [2, 4]]
[[report.plot]]
x = "params"
y = "eval/accuracy/greedy/mean"
log_x = true
"#;

fn factorexe(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_factorexe"))
        .args(args)
        .current_dir(dir)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .output()
        .expect("the factorexe binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A temporary directory holding `tiny.toml` and the sweep spec `sweep.toml`.
fn setup(spec: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("tiny.toml"), CONFIG).expect("write the config");
    std::fs::write(dir.path().join("sweep.toml"), spec).expect("write the spec");
    dir
}

/// A run's (step, tag, value) records without the wall-clock `perf/*` ones.
fn records(run: &Path) -> Vec<(u64, String, f64)> {
    let m = Metrics::read(&run.join("metrics.jsonl"));
    let mut out: Vec<(u64, String, f64)> = m
        .by_tag
        .iter()
        .filter(|(t, _)| !t.starts_with("perf/"))
        .flat_map(|(t, v)| v.iter().map(move |&(s, x)| (s, t.clone(), x)))
        .collect();
    out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    out
}

/// Starts `exe sweep run sweep.toml --out OUT --jobs JOBS` in `dir`, output captured.
fn spawn_sweep(exe: &Path, dir: &Path, out: &str, jobs: &str) -> std::process::Child {
    Command::new(exe)
        .args([
            "sweep",
            "run",
            "sweep.toml",
            "--out",
            out,
            "--jobs",
            jobs,
            "--no-progress",
        ])
        .current_dir(dir)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the factorexe binary starts")
}

fn run_names(sweep: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(sweep.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[test]
fn sweep_interrupted_by_sigterm_resumes_to_the_records_of_an_uninterrupted_one() {
    let tmp = setup(SPEC);
    let d = tmp.path();

    // Uninterrupted.
    let out = factorexe(
        d,
        &[
            "sweep",
            "run",
            "sweep.toml",
            "--out",
            "a",
            "--jobs",
            "2",
            "--no-progress",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("6 done, 0 pending, 0 failed"),
        "{}",
        text(&out)
    );
    let a = d.join("a");
    assert_eq!(
        run_names(&a),
        [
            "width=1-8,seed=0",
            "width=1-8,seed=1",
            "width=1-8,seed=2",
            "width=2-4,seed=0",
            "width=2-4,seed=1",
            "width=2-4,seed=2"
        ]
    );

    // Status.
    let st = factorexe(d, &["sweep", "status", "a"]);
    assert!(st.status.success(), "{}", text(&st));
    let st = text(&st);
    assert!(st.contains("done     width=2-4,seed=1"), "{st}");
    assert!(
        st.contains("6 points: 6 done, 0 running, 0 failed, 0 pending"),
        "{st}"
    );

    // Report: the CSV holds each run's last record of each greedy accuracy.
    let rep = factorexe(d, &["sweep", "report", "a"]);
    assert!(rep.status.success(), "{}", text(&rep));
    let table = text(&rep);
    assert!(table.contains("width  done"), "{table}");
    assert!(table.contains("3/3"), "{table}");
    let csv = std::fs::read_to_string(a.join("report/runs.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "point,width,seed,status,params,updates,batch_size,eval/accuracy/greedy/d1,\
         eval/accuracy/greedy/d2,eval/accuracy/greedy/mean"
    );
    assert_eq!(lines.len(), 7);
    for (line, name) in lines[1..].iter().zip(run_names(&a)) {
        let m = Metrics::read(&a.join("runs").join(&name).join("metrics.jsonl"));
        let want = format!(
            "\"{name}\",{},{},done,",
            &name[6..9],
            &name[name.len() - 1..]
        );
        assert!(line.starts_with(&want), "{line} vs {want}");
        let fields: Vec<&str> = line.rsplit(',').take(3).collect();
        for (f, tag) in fields.iter().zip(["mean", "d2", "d1"]) {
            let v = m.last(&format!("eval/accuracy/greedy/{tag}")).unwrap();
            assert_eq!(f.parse::<f64>().unwrap(), v, "{name} {tag}");
        }
        assert!(line.contains(",40,16,"), "{line}");
    }
    let summary = std::fs::read_to_string(a.join("report/summary.csv")).unwrap();
    assert!(summary.starts_with("width,metric,n,mean,std,ci95_low,ci95_high\n"));
    assert!(
        summary.contains("\n1-8,eval/accuracy/greedy/mean,3,"),
        "{summary}"
    );
    let png = std::fs::read(a.join("report/eval_accuracy_greedy_mean_vs_params.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");

    // Interrupted: SIGTERM to the driver once a run has logged and still trains.
    let b = d.join("b");
    let mut driver = spawn_sweep(Path::new(env!("CARGO_BIN_EXE_factorexe")), d, "b", "2");
    let started = Instant::now();
    let mid_run = || {
        std::fs::read_dir(b.join("runs")).is_ok_and(|it| {
            it.flatten()
                .any(|e| e.path().join("metrics.jsonl").is_file() && run_is_locked(&e.path()))
        })
    };
    while !mid_run() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no run got under way"
        );
        assert!(
            driver.try_wait().unwrap().is_none(),
            "the driver ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our child's pid.
    unsafe {
        libc::kill(driver.id() as i32, libc::SIGTERM);
    }
    let out = driver.wait_with_output().unwrap();
    let first = text(&out);
    assert_eq!(out.status.code(), Some(130), "{first}");
    assert!(first.contains("stopped "), "{first}");
    let st = text(&factorexe(d, &["sweep", "status", "b"]));
    assert!(st.contains("pending  width=1-8,seed=0"), "{st}");
    assert!(st.contains(" 0 running, 0 failed"), "{st}");

    let out = factorexe(
        d,
        &[
            "sweep",
            "run",
            "sweep.toml",
            "--out",
            "b",
            "--jobs",
            "2",
            "--no-progress",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("6 done, 0 pending, 0 failed"),
        "{}",
        text(&out)
    );
    let mut resumed = 0;
    for name in run_names(&a) {
        let (ra, rb) = (
            records(&a.join("runs").join(&name)),
            records(&b.join("runs").join(&name)),
        );
        assert!(!ra.is_empty());
        assert_eq!(ra, rb, "{name}: records differ after the interruption");
        let log = std::fs::read_to_string(b.join("logs").join(format!("{name}.err"))).unwrap();
        resumed += usize::from(log.contains("train --resume"));
    }
    assert!(
        resumed >= 1,
        "no run was resumed from a checkpoint:\n{first}"
    );
    // Finished runs are not started again.
    let out = factorexe(
        d,
        &["sweep", "run", "sweep.toml", "--out", "b", "--no-progress"],
    );
    assert!(text(&out).contains("6 done, 0 to run"), "{}", text(&out));
}

#[test]
fn a_failing_point_is_listed_and_retried_only_when_asked() {
    let tmp = setup(
        r#"
        [base]
        config = "tiny.toml"
        set = { "train.steps" = 10 }
        [[axis]]
        key = "seed"
        values = [0, 1]
        "#,
    );
    let d = tmp.path();
    // The run directory of seed=1 is taken by a file: that run fails when it starts.
    std::fs::create_dir_all(d.join("s/runs")).unwrap();
    std::fs::write(d.join("s/runs/seed=1"), "in the way").unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["sweep", "run", "sweep.toml", "--out", "s", "--no-progress"];
        args.extend(extra);
        factorexe(d, &args)
    };
    let out = run(&[]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("1 done, 0 pending, 1 failed"), "{t}");
    assert!(t.contains("failed seed=1: "), "{t}");
    assert!(t.contains("--retry-failed"), "{t}");
    let st = text(&factorexe(d, &["sweep", "status", "s"]));
    assert!(st.contains("failed   seed=1  (exit 1) "), "{st}");
    assert!(
        st.contains("1 done, 0 running, 1 failed, 0 pending"),
        "{st}"
    );

    // Without --retry-failed it stays failed and is not started again.
    let out = run(&[]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("0 to run, 1 failed (kept)"),
        "{}",
        text(&out)
    );
    let err = std::fs::read_to_string(d.join("s/logs/seed=1.err")).unwrap();
    assert_eq!(err.matches("=== sweep: attempt").count(), 1, "{err}");

    std::fs::remove_file(d.join("s/runs/seed=1")).unwrap();
    let out = run(&["--retry-failed"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("2 done, 0 pending, 0 failed"),
        "{}",
        text(&out)
    );
    let st = text(&factorexe(d, &["sweep", "status", "s"]));
    assert!(
        st.contains("2 done, 0 running, 0 failed, 0 pending"),
        "{st}"
    );
}

#[test]
fn typos_and_empty_axes_are_refused_before_any_run() {
    let tmp = setup(
        r#"
        [base]
        config = "tiny.toml"
        [[axis]]
        key = "model.haeds"
        values = [1, 2]
        "#,
    );
    let d = tmp.path();
    let out = factorexe(
        d,
        &["sweep", "run", "sweep.toml", "--out", "t", "--no-progress"],
    );
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("2 point(s) have an invalid config; nothing was started"),
        "{t}"
    );
    assert!(t.contains("haeds=1: ") && t.contains("haeds"), "{t}");
    assert!(run_names(&d.join("t")).is_empty());

    std::fs::write(
        d.join("empty.toml"),
        "[base]\nconfig = \"tiny.toml\"\n[[axis]]\nkey = \"seed\"\nvalues = []\n",
    )
    .unwrap();
    let out = factorexe(d, &["sweep", "run", "empty.toml"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("`values` is empty"), "{}", text(&out));
    let out = factorexe(d, &["sweep", "report", "t", "--plot", "x=nope,y=a"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("x = \"nope\""), "{}", text(&out));
}

/// The path of the sweep spec files shipped in `configs/sweeps/`.
fn shipped_specs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/sweeps");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|it| it.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn shipped_sweep_specs_parse_and_their_points_validate() {
    for spec in shipped_specs() {
        let s = studies::Spec::load(&spec).unwrap_or_else(|e| panic!("{e}"));
        // Check each config file's first point with the binary (all points would take too
        // long here).
        let dir = studies::SweepDir::new(std::env::temp_dir().join("unused-sweep"));
        let mut checked = std::collections::BTreeSet::new();
        for point in s.points() {
            let config = s.config_of(&point).to_path_buf();
            assert!(
                config.is_file(),
                "{}: {} missing",
                spec.display(),
                config.display()
            );
            if !checked.insert(config) {
                continue;
            }
            let mut args = vec!["train".to_string()];
            args.extend(studies::local::config_args(&s, &dir, &point));
            args.push("--dry-run".into());
            let out = Command::new(env!("CARGO_BIN_EXE_factorexe"))
                .args(&args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{} ({}): {}",
                spec.display(),
                point.name,
                text(&out)
            );
        }
    }
}

/// Rebuilding while a sweep runs replaces its binary on disk: the runs still to start use the
/// driver's own build and every point finishes (Linux, where `/proc/self/exe` names it).
#[cfg(target_os = "linux")]
#[test]
fn a_sweep_whose_binary_is_replaced_midway_finishes() {
    let tmp = setup(SPEC);
    let d = tmp.path();
    // A copy of the binary that the test can delete, as `cargo build` does to the original.
    let exe = d.join("factorexe-copy");
    std::fs::copy(env!("CARGO_BIN_EXE_factorexe"), &exe).unwrap();
    let driver = spawn_sweep(&exe, d, "c", "1");
    let started = Instant::now();
    while !d.join("c/runs").is_dir()
        || std::fs::read_dir(d.join("c/runs"))
            .unwrap()
            .next()
            .is_none()
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no run got under way"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_file(&exe).unwrap();
    let out = driver.wait_with_output().unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("6 done, 0 pending, 0 failed"), "{all}");
}
