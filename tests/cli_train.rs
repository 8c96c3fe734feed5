//! End-to-end tests of `factorexe train` and `factorexe eval`: a tiny run writes its run
//! directory, prints the accuracy table, resumes, stops cleanly on Ctrl-C, and bad configs
//! fail with messages that name the key.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const CONFIG: &str = r#"
seed = 2
[env]
name = "cycle"
length = 6
[train]
steps = 12
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
every = 6
episodes = 10
[log]
every = 3
"#;

fn factorexe(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_factorexe"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the factorexe binary runs")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A temporary directory holding `tiny.toml`.
fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let cfg = dir.path().join("tiny.toml");
    std::fs::write(&cfg, CONFIG).expect("write the config");
    (dir, cfg)
}

#[test]
fn train_writes_a_run_directory_and_eval_prints_the_table() {
    let (dir, _) = setup();
    let d = dir.path();
    let out = factorexe(
        d,
        &[
            "train",
            "--config",
            "tiny.toml",
            "--device",
            "cpu",
            "--threads",
            "1",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("done: step 12"), "{stdout}");
    assert!(
        stdout.contains("difficulty  problems   greedy  sampled"),
        "{stdout}"
    );
    let run = d.join("runs/tiny");
    for f in [
        "config.toml",
        "metrics.jsonl",
        "checkpoints/step-0000000012.json",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let has_events = std::fs::read_dir(&run).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("events.out.tfevents")
    });
    assert!(has_events);
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    for tag in [
        "train/loss",
        "train/grad_norm",
        "train/lr",
        "perf/examples_per_s",
        "perf/episodes_per_s",
        "perf/env_steps_per_s",
        "perf/eval_s",
    ] {
        assert!(metrics.contains(&format!("\"tag\":\"{tag}\"")), "{tag}");
    }
    assert!(metrics.contains("eval/accuracy/sampled/d2"));

    // Training again into the same run directory needs --resume or --overwrite.
    let again = factorexe(d, &["train", "--config", "tiny.toml", "--device", "cpu"]);
    let (_, stderr) = text(&again);
    assert!(!again.status.success());
    assert!(
        stderr.contains("--resume") && stderr.contains("--overwrite"),
        "{stderr}"
    );

    // Resume to a longer run.
    let resumed = factorexe(
        d,
        &[
            "train",
            "--config",
            "tiny.toml",
            "--resume",
            "--set",
            "train.steps=15",
        ],
    );
    let (stdout, stderr) = text(&resumed);
    assert!(resumed.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("resumed at step 12") && stdout.contains("done: step 15"),
        "{stdout}"
    );

    let eval = factorexe(
        d,
        &[
            "eval",
            "--run",
            "runs/tiny",
            "--episodes",
            "8",
            "--levels",
            "1,2,3",
            "--device",
            "cpu",
        ],
    );
    let (stdout, stderr) = text(&eval);
    assert!(eval.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("step 15") && stdout.contains("8 fresh problems"),
        "{stdout}"
    );
    let rows: Vec<&str> = stdout.lines().skip(2).collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    for (row, level) in rows.iter().zip(1..) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[0], level.to_string(), "{row}");
        assert_eq!(cells[1], "8", "{row}");
        assert!(cells[2].ends_with('%') && cells[3].ends_with('%'), "{row}");
    }
}

/// The default is one thread; `--threads N` reaches libtorch (and the run's history records
/// the count, which a reproducible run must keep).
#[test]
fn the_thread_count_is_one_unless_set_and_recorded_in_the_history() {
    let (dir, _) = setup();
    let d = dir.path();
    for (name, flag) in [("one", None), ("two", Some("2"))] {
        let mut args = vec![
            "train",
            "--config",
            "tiny.toml",
            "--set",
            "train.steps=1",
            "--set",
            "eval.every=0",
        ];
        let set_name = format!("name=\"{name}\"");
        args.extend(["--set", &set_name]);
        if let Some(n) = flag {
            args.extend(["--threads", n]);
        }
        let out = factorexe(d, &args);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}{stderr}");
        let history = std::fs::read_to_string(d.join("runs").join(name).join("history.jsonl"))
            .expect("the run's history");
        let start = history.lines().next().expect("a start event");
        let threads: String = start
            .split("\"threads\":")
            .nth(1)
            .expect("the start event records the threads")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert_eq!(threads, flag.unwrap_or("1"), "{history}");
    }
}

#[test]
fn config_errors_name_the_key_and_the_allowed_values() {
    let (dir, _) = setup();
    let d = dir.path();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--set", "model.layerz=2"],
            &[
                "--set model.layerz=2",
                "unknown field `layerz`",
                "decoder_layers",
            ],
        ),
        (
            &["--set", "optim.schedule=linear"],
            &["--set optim.schedule=linear", "constant", "cosine"],
        ),
        (&["--set", "optim.lr=0"], &["optim.lr", "> 0"]),
        (&["--set", "env.lenght=6"], &["lenght", "length"]),
        (&["--set", "trian.steps=3"], &["trian", "train", "optim"]),
    ];
    for (extra, needles) in cases {
        let mut args = vec!["train", "--config", "tiny.toml"];
        args.extend_from_slice(extra);
        let out = factorexe(d, &args);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{extra:?} should fail: {stdout}");
        for n in *needles {
            assert!(stderr.contains(n), "{extra:?}: `{n}` not in: {stderr}");
        }
    }
    std::fs::write(d.join("bad.toml"), format!("{CONFIG}\n[train2]\nx = 1\n")).unwrap();
    let out = factorexe(d, &["train", "--config", "bad.toml"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("bad.toml") && stderr.contains("train2"),
        "{stderr}"
    );
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_exits_cleanly() {
    let (dir, _) = setup();
    let d = dir.path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_factorexe"))
        .args([
            "train",
            "--config",
            "tiny.toml",
            "--no-progress",
            "--set",
            "train.steps=100000",
            "--set",
            "eval.every=0",
            "--set",
            "log.every=1",
        ])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn factorexe");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    // Wait for training to be under way, then send SIGINT as a terminal's Ctrl-C does.
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let started = line.starts_with("step 2/");
        seen.push(line);
        if started {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    seen.extend(lines.map(|l| l.unwrap()));
    let out = child.wait_with_output().unwrap();
    let stdout = seen.join("\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Saved but not finished: a status of its own, not success and not a crash.
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(stdout.contains("interrupted: step"), "{stdout}");
    assert!(stdout.contains("factorexe train --resume"), "{stdout}");
    assert!(
        stderr.contains("interrupted: finishing this update"),
        "{stderr}"
    );
    let checkpoints: Vec<_> = std::fs::read_dir(d.join("runs/tiny/checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    assert_eq!(checkpoints.len(), 1, "{checkpoints:?}");
}

/// `factorexe train ... | head -1`: the reader goes away, yet training finishes and saves;
/// only the lines nobody reads are lost.
#[test]
fn a_closed_stdout_does_not_end_training() {
    let (dir, _) = setup();
    let d = dir.path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_factorexe"))
        .args(["train", "--config", "tiny.toml", "--no-progress"])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("factorexe runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("factorexe ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = d.join("runs/tiny/checkpoints/step-0000000012.json");
    assert!(last.exists(), "no final checkpoint: {stderr}");
}

/// A model too large for memory is refused before anything is allocated or written, with
/// the figures and the keys that size it.
#[test]
fn a_model_too_large_for_memory_is_refused_before_it_starts() {
    let (dir, _) = setup();
    let d = dir.path();
    let out = factorexe(
        d,
        &[
            "train",
            "--config",
            "tiny.toml",
            "--device",
            "cpu",
            "--set",
            "model.heads=1024",
            "--set",
            "model.head_dim=4096",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.to_lowercase().starts_with("error")
            && stderr.contains("GiB")
            && stderr.contains("model.head_dim"),
        "{stderr}"
    );
    assert!(!d.join("runs/tiny").exists(), "nothing left behind");
}

/// The dead end of a diverged run is open: the error says how to continue from the last
/// checkpoint with a lower learning rate, and a resume accepts that change (recorded in the
/// run's history); an older checkpoint can be named with --from-checkpoint.
#[test]
fn a_diverged_run_continues_with_a_lower_learning_rate() {
    let (dir, _) = setup();
    let d = dir.path();
    let out = factorexe(
        d,
        &[
            "train",
            "--config",
            "tiny.toml",
            "--device",
            "cpu",
            "--set",
            "optim.lr=1e30",
            "--set",
            "optim.warmup_steps=1",
            "--set",
            "optim.clip_grad_norm=0",
            "--set",
            "log.checkpoint_every=1",
            "--set",
            "log.keep_checkpoints=0",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("diverged")
            && stderr.contains("factorexe train --resume")
            && stderr.contains("--set optim.lr="),
        "{stderr}"
    );
    let checkpoints: Vec<String> = std::fs::read_dir(d.join("runs/tiny/checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    assert!(
        !checkpoints.is_empty(),
        "a checkpoint before the divergence"
    );

    // From the first checkpoint (the later ones were made with the huge rate), lower rate.
    let resumed = factorexe(
        d,
        &[
            "train",
            "--resume",
            "runs/tiny",
            "--from-checkpoint",
            "1",
            "--set",
            "optim.lr=1e-3",
            "--set",
            "optim.clip_grad_norm=1",
            "--set",
            "train.steps=3",
            "--device",
            "cpu",
        ],
    );
    let (stdout, stderr) = text(&resumed);
    // optim.clip_grad_norm is not a change a resume accepts: refused, naming what is.
    assert!(!resumed.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("optim.clip_grad_norm") && stderr.contains("optim.lr"),
        "{stderr}"
    );
    let resumed = factorexe(
        d,
        &[
            "train",
            "--resume",
            "runs/tiny",
            "--from-checkpoint",
            "1",
            "--set",
            "optim.lr=1e-9",
            "--set",
            "train.steps=3",
            "--device",
            "cpu",
        ],
    );
    let (stdout, stderr) = text(&resumed);
    assert!(
        stdout.contains("resumed at step 1") && stdout.contains("changed on resume: optim.lr"),
        "{stdout}{stderr}"
    );
    let history = std::fs::read_to_string(d.join("runs/tiny/history.jsonl")).unwrap();
    assert!(
        history.contains("\"resume\"") && history.contains("optim.lr"),
        "{history}"
    );
    if checkpoints.len() > 1 {
        assert!(d.join("runs/tiny/superseded/1/checkpoints").is_dir());
    }

    let unknown = factorexe(
        d,
        &["train", "--resume", "runs/tiny", "--from-checkpoint", "77"],
    );
    let (_, stderr) = text(&unknown);
    assert!(
        !unknown.status.success() && stderr.contains("no checkpoint of step 77"),
        "{stderr}"
    );
    let without_resume = factorexe(
        d,
        &["train", "--config", "tiny.toml", "--from-checkpoint", "1"],
    );
    assert!(!without_resume.status.success());
}
