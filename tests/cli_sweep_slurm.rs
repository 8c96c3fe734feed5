//! `factorexe sweep run --backend slurm` end to end on a one-node Slurm cluster on this
//! machine (`scripts/slurm-local start`, which installs Debian's Slurm when it is missing):
//! every point of a small sweep finishes as a job-array task, and the report equals that of
//! the same spec run locally. Skipped, with the reason printed, where Slurm cannot be
//! installed (not root, or no apt-get).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
seed = 2
[env]
name = "cycle"
length = 5
[train]
steps = 20
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
name = "slurm_e2e"
seeds = [0, 1]
[base]
config = "tiny.toml"
[[axis]]
key = "model.heads"
values = [1, 2]
[report]
metrics = ["eval/accuracy/greedy/*", "train/loss"]
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

/// Stops the local cluster when dropped, if `script` is set.
struct StopCluster {
    script: Option<std::path::PathBuf>,
}

impl Drop for StopCluster {
    fn drop(&mut self) {
        if let Some(s) = &self.script {
            let _ = Command::new(s).arg("stop").output();
        }
    }
}

#[test]
fn a_slurm_sweep_finishes_every_point_and_reports_as_a_local_one() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-local");
    // A cluster this test starts, it stops (after its jobs); one already up is left as it was.
    let was_up = Command::new(&script)
        .arg("status")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("slurmctld.pid: running"));
    let up = Command::new(&script)
        .arg("start")
        .output()
        .expect("scripts/slurm-local runs");
    if up.status.code() == Some(3) {
        eprintln!("skipped: {}", text(&up).trim());
        return;
    }
    assert!(up.status.success(), "slurm-local start: {}", text(&up));
    let _stop = StopCluster {
        script: (!was_up).then(|| script.clone()),
    };

    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("tiny.toml"), CONFIG).unwrap();
    std::fs::write(d.join("sweep.toml"), SPEC).unwrap();

    let out = factorexe(
        d,
        &[
            "sweep",
            "run",
            "sweep.toml",
            "--out",
            "slurm",
            "--backend",
            "slurm",
            "--time",
            "10",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("4 array task(s)"), "{}", text(&out));
    let script = std::fs::read_to_string(d.join("slurm/slurm/array.sbatch")).unwrap();
    for line in [
        "#SBATCH --array=0,1,2,3",
        "#SBATCH --signal=B:TERM@120",
        "#SBATCH --requeue",
        "#SBATCH --time=10",
        "#SBATCH --cpus-per-task=1",
    ] {
        assert!(script.contains(line), "{line} missing:\n{script}");
    }

    // The local twin meanwhile.
    let out = factorexe(
        d,
        &[
            "sweep",
            "run",
            "sweep.toml",
            "--out",
            "local",
            "--no-progress",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    let started = Instant::now();
    loop {
        let st = factorexe(d, &["sweep", "status", "slurm"]);
        assert!(st.status.success(), "{}", text(&st));
        let st = text(&st);
        if st.contains("4 points: 4 done") && st.contains("0 array task(s) queued or running") {
            break;
        }
        assert!(!st.contains("failed "), "{st}");
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the Slurm sweep did not finish:\n{st}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Nothing is left to submit.
    let out = factorexe(
        d,
        &[
            "sweep",
            "run",
            "sweep.toml",
            "--out",
            "slurm",
            "--backend",
            "slurm",
        ],
    );
    assert!(text(&out).contains("nothing to run"), "{}", text(&out));

    for dir in ["slurm", "local"] {
        let out = factorexe(d, &["sweep", "report", dir]);
        assert!(out.status.success(), "{}", text(&out));
    }
    for f in ["runs.csv", "summary.csv"] {
        let a = std::fs::read_to_string(d.join("slurm/report").join(f)).unwrap();
        let b = std::fs::read_to_string(d.join("local/report").join(f)).unwrap();
        assert_eq!(a, b, "{f} differs between the Slurm and the local sweep");
        assert_eq!(
            a.lines().count(),
            if f == "runs.csv" { 5 } else { 1 + 2 * 4 }
        );
    }
}
