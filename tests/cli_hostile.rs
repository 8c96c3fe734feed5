//! Every subcommand over a table of hostile arguments (huge, zero, negative, NaN, wrong
//! type, empty, missing files): each must fail with an error message, never a panic, an
//! abort, a hang or a silent success.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TINY: &str = r#"
seed = 1
[env]
name = "cycle"
length = 5
[train]
steps = 2
batch_size = 8
levels = [1, 2]
[algo]
name = "cot_supervised"
[model]
heads = 2
head_dim = 8
mlp_factor = 2
decoder_layers = 1
[eval]
every = 0
episodes = 4
"#;

/// Values no numeric flag may accept silently.
const BAD_NUMBERS: [&str; 6] = ["-1", "18446744073709551615", "1e999", "nan", "abc", ""];

/// How a run of `args` ended: `Err` with why it is not a clean refusal.
fn refused(dir: &Path, args: &[&str]) -> Result<(), String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_factorexe"))
        .args(args)
        .current_dir(dir)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("still running after 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    match status.code() {
        None => Err(format!("killed by a signal ({status}); stderr: {stderr}")),
        Some(0) => Err("succeeded".into()),
        Some(101) => Err(format!("panicked: {stderr}")),
        Some(_) if stderr.contains("panicked") => Err(format!("panicked: {stderr}")),
        Some(_) if !first.to_lowercase().starts_with("error") => {
            Err(format!("its first line is not an error message: {stderr}"))
        }
        Some(_) => Ok(()),
    }
}

#[test]
fn hostile_arguments_are_refused_with_a_message() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let d = dir.path();
    std::fs::write(d.join("tiny.toml"), TINY).expect("write the config");
    let trained = Command::new(env!("CARGO_BIN_EXE_factorexe"))
        .args(["train", "--config", "tiny.toml", "--no-progress"])
        .current_dir(d)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .output()
        .expect("train runs");
    assert!(trained.status.success(), "{trained:?}");

    let mut cases: Vec<Vec<String>> = Vec::new();
    let mut add = |prefix: &[&str], flag: &str, values: &[&str]| {
        for v in values {
            let mut c: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
            c.push(flag.to_string());
            c.push(v.to_string());
            cases.push(c);
        }
    };
    let train = [
        "train",
        "--config",
        "tiny.toml",
        "--overwrite",
        "--no-progress",
    ];
    let eval = ["eval", "--run", "runs/tiny"];
    let compare = ["search", "compare", "--run", "runs/tiny", "--episodes", "2"];
    let zero_too: Vec<&str> = BAD_NUMBERS.iter().copied().chain(["0"]).collect();
    add(&train, "--threads", &zero_too);
    add(&train, "--device", &["gpu", "", "cuda:99x"]);
    for key in ["train.steps", "optim.lr"] {
        let values: Vec<String> = zero_too.iter().map(|v| format!("{key}={v}")).collect();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        add(&train, "--set", &values);
    }
    add(
        &train,
        "--set",
        &[
            "nokey=1",
            "=",
            "train.steps",
            "model.heads=0",
            "env.length=-1",
        ],
    );
    add(
        &["train"],
        "--config",
        &["", "/nonexistent.toml", "tiny.toml/x"],
    );
    add(&["train"], "--resume", &["/nonexistent", ""]);
    let mut from: Vec<&str> = zero_too.clone();
    from.extend(["/nonexistent.json", "tiny.toml"]);
    add(
        &["train", "--resume", "runs/tiny"],
        "--from-checkpoint",
        &from,
    );
    add(
        &train,
        "--set",
        &["model.head_dim=1000000", "train.batch_size=1000000000"],
    );
    add(&eval, "--episodes", &zero_too);
    add(&eval, "--levels", &["0", "99", "-1", "nan", ""]);
    add(&eval, "--threads", &zero_too);
    add(&eval, "--checkpoint", &["/nonexistent.json", ""]);
    add(&["eval"], "--run", &["", "/nonexistent", "tiny.toml"]);
    add(&compare, "--budgets", &zero_too);
    add(&compare, "--episodes", &zero_too);
    add(&compare, "--batch", &["0", "-1", "nan", ""]);
    add(&compare, "--levels", &["0", "99", "-1", "nan", ""]);
    add(
        &compare,
        "--algos",
        &["alphazero", "", ",", "greedy,greedy"],
    );
    add(&compare, "--threads", &zero_too);
    add(&["envs", "show", "cycle"], "--length", &zero_too);
    add(&["envs", "show", "cycle"], "--hops", &zero_too);
    add(
        &["envs", "show", "cycle"],
        "--seed",
        &["-1", "nan", "abc", ""],
    );
    add(
        &["envs", "show", "multiplication"],
        "--max-digits",
        &zero_too,
    );
    add(&["envs", "show"], "--length", &["5"]);
    add(&["bench", "envs"], "--length", &zero_too);
    add(&["bench", "envs"], "--batch", &zero_too);
    add(&["bench", "envs"], "--seconds", &BAD_NUMBERS);
    add(&["bench", "search"], "--batch", &zero_too);
    add(&["bench", "search"], "--sims", &zero_too);
    add(&["bench", "search"], "--actions", &zero_too);
    add(&["bench", "search"], "--hidden", &zero_too);
    let bench_train = ["bench", "train", "--config", "tiny.toml"];
    add(&bench_train, "--steps", &zero_too);
    add(&bench_train, "--warmup", &BAD_NUMBERS);
    add(&bench_train, "--threads", &zero_too);
    add(
        &bench_train,
        "--set",
        &["model.heads=0", "algo.nope=1", "=", ""],
    );
    add(&["bench", "train"], "--config", &["", "/nonexistent.toml"]);
    add(&["info"], "--bogus", &["1"]);

    // Four processes at a time: most of each case is loading libtorch.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(case) = cases.get(i) else { break };
                let args: Vec<&str> = case.iter().map(String::as_str).collect();
                if let Err(why) = refused(d, &args) {
                    let line = format!("factorexe {}: {why}", shell_words(&args));
                    failures
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(line);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    println!(
        "{} hostile cases, {} not refused cleanly",
        cases.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}

fn shell_words(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(' ') {
                format!("{a:?}")
            } else {
                a.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
