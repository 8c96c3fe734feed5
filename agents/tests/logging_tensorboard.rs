//! Writes runs with every kind of summary and reads them back with the official `tensorboard`
//! Python package (scripts/tb_readback.py), checking tags and values as TensorBoard sees them,
//! including the HPARAMS tab's comparison of two runs and the purge of a resumed run's tail.
//!
//! Needs the `tensorboard` package that scripts/setup installs; without it these tests fail
//! (telling to run scripts/setup) rather than pass silently.

use std::path::{Path, PathBuf};
use std::process::Command;

use agents::logging::{hparams_from_toml, markdown_table, HParam, Histogram, Logger};
use serde_json::Value;

fn python_path() -> PathBuf {
    let dir = option_env!("FACTOREXE_PYTHONPATH")
        .map(str::to_string)
        .or_else(|| std::env::var("FACTOREXE_PYTHONPATH").ok())
        .unwrap_or_else(|| {
            panic!(
                "FACTOREXE_PYTHONPATH is not set: run scripts/setup (it installs the tensorboard \
                 package and writes .cargo/config.toml), then rebuild"
            )
        });
    let dir = PathBuf::from(dir);
    assert!(
        dir.join("tensorboard").is_dir(),
        "the tensorboard Python package is missing from {}: run scripts/setup",
        dir.display()
    );
    dir
}

/// Runs scripts/tb_readback.py on `logdir` and parses its JSON.
fn read_back(logdir: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tb_readback.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(logdir)
        .env("PYTHONPATH", python_path())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): install python3 and run scripts/setup")
        });
    assert!(
        out.status.success(),
        "{} failed ({}); if tensorboard is missing, run scripts/setup\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("tb_readback prints JSON")
}

fn tags(run: &Value, plugin: &str) -> Vec<String> {
    run["plugins"][plugin]
        .as_array()
        .unwrap_or_else(|| panic!("no {plugin} plugin data in {run}"))
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn series(run: &Value, kind: &str, tag: &str) -> Vec<(u64, Value)> {
    run[kind][tag]
        .as_array()
        .unwrap_or_else(|| panic!("no {kind} {tag} in {run}"))
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].clone()))
        .collect()
}

fn scalars(run: &Value, tag: &str) -> Vec<(u64, f64)> {
    series(run, "scalars", tag)
        .into_iter()
        .map(|(s, v)| (s, v.as_f64().unwrap()))
        .collect()
}

const CONFIG_A: &str =
    "seed = 1\nalgo = \"cot\"\n[model]\nheads = 2\nbias = false\n[optim]\nlr = 0.001\n";
const CONFIG_B: &str =
    "seed = 2\nalgo = \"answer_only\"\n[model]\nheads = 4\nbias = true\n[optim]\nlr = 0.0003\n";

fn metric_tags() -> Vec<String> {
    vec!["eval/accuracy_greedy".to_string(), "train/loss".to_string()]
}

/// A small PNG (plotters' bitmap backend, as `search compare` draws its plot).
fn small_png(dir: &Path) -> Vec<u8> {
    use plotters::prelude::*;
    let path = dir.join("small.png");
    {
        let area = BitMapBackend::new(&path, (6, 4)).into_drawing_area();
        area.fill(&BLUE).unwrap();
        area.present().unwrap();
    }
    std::fs::read(&path).unwrap()
}

/// One run with scalars, a text table, two histograms, an image and hparams.
fn write_run(dir: &Path, config: &str, scale: f64) -> Histogram {
    let mut log = Logger::create(dir).unwrap();
    log.image("plots/small", &small_png(dir), 3).unwrap();
    log.hparams(&hparams_from_toml(config).unwrap(), &metric_tags())
        .unwrap();
    for step in 0..5u64 {
        log.scalar("train/loss", scale / (step + 1) as f64, step)
            .unwrap();
        log.scalar("train/lr", 1e-3, step).unwrap();
    }
    log.scalar("eval/accuracy_greedy", 0.25 * scale, 4).unwrap();
    log.scalar("eval/accuracy_sampled/d3", 0.125, 4).unwrap();
    let table = markdown_table(
        &["input", "chain", "answer", "target"],
        &[vec!["3 + 4", "7 | carry 0", "7", "7"]],
    );
    log.text("eval/examples", &table, 4).unwrap();
    log.histogram("charts/chain_length", &[3.0, 4.0, 4.0, 6.0], 4)
        .unwrap();
    let entropy: Vec<f64> = (0..200).map(|i| (i as f64 * 0.1).sin().abs()).collect();
    log.histogram("charts/token_entropy", &entropy, 4).unwrap();
    log.flush().unwrap();
    Histogram::from_values(&entropy)
}

#[test]
fn every_kind_reads_back_and_two_runs_compare_in_hparams() {
    let tmp = tempfile::tempdir().unwrap();
    let entropy = write_run(&tmp.path().join("a"), CONFIG_A, 1.0);
    write_run(&tmp.path().join("b"), CONFIG_B, 2.0);

    let back = read_back(tmp.path());
    let a = &back["runs"]["a"];

    // Tags per plugin.
    assert_eq!(
        tags(a, "scalars"),
        [
            "eval/accuracy_greedy",
            "eval/accuracy_sampled/d3",
            "train/loss",
            "train/lr"
        ]
    );
    assert_eq!(tags(a, "text"), ["eval/examples"]);
    assert_eq!(
        tags(a, "histograms"),
        ["charts/chain_length", "charts/token_entropy"]
    );
    assert_eq!(
        tags(a, "hparams"),
        ["_hparams_/experiment", "_hparams_/session_start_info"]
    );
    assert_eq!(tags(a, "images"), ["plots/small"]);

    // The image: its size and bytes as the IMAGES tab gets them.
    let png = std::fs::read(tmp.path().join("a/small.png")).unwrap();
    let image = series(a, "images", "plots/small");
    assert_eq!(image.len(), 1);
    assert_eq!(image[0].0, 3);
    assert_eq!(
        image[0].1,
        serde_json::json!({
            "width": 6,
            "height": 4,
            "png_bytes": png.len(),
            "png_crc32": crc32fast::hash(&png),
        })
    );

    // Scalars: steps and values (TensorBoard stores f32).
    let loss = scalars(a, "train/loss");
    assert_eq!(
        loss.iter().map(|p| p.0).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    for (step, v) in &loss {
        assert!((v - 1.0 / (*step + 1) as f64).abs() < 1e-6, "{loss:?}");
    }
    assert_eq!(
        scalars(&back["runs"]["b"], "eval/accuracy_greedy"),
        [(4, 0.5)]
    );

    // Text: the markdown as written.
    let text = series(a, "text", "eval/examples");
    assert_eq!(text.len(), 1);
    assert_eq!(text[0].0, 4);
    assert_eq!(
        text[0].1.as_str().unwrap(),
        "| input | chain | answer | target |\n| --- | --- | --- | --- |\n| `3 + 4` | `7 | carry 0` | `7` | `7` |\n"
    );

    // Histograms, as TensorBoard migrates them to [left, right, count] rows.
    let lengths = series(a, "histograms", "charts/chain_length");
    assert_eq!(lengths[0].0, 4);
    assert_eq!(
        lengths[0].1,
        serde_json::json!([
            [3.0, 3.5, 1.0],
            [3.5, 4.5, 2.0],
            [4.5, 5.5, 0.0],
            [5.5, 6.0, 1.0]
        ])
    );
    let ent = &series(a, "histograms", "charts/token_entropy")[0].1;
    let counts: Vec<f64> = ent
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[2].as_f64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<f64>(), 200.0);
    assert_eq!(counts, entropy.bucket);
    let first = &ent[0];
    assert!((first[0].as_f64().unwrap() - entropy.min).abs() < 1e-6);

    // Hyperparameters of each run, and the experiment record.
    let start = &a["hparams"]["session_start_info"];
    assert_eq!(start["model.heads"], 2.0);
    assert_eq!(start["algo"], "cot");
    assert_eq!(start["model.bias"], false);
    assert_eq!(start["optim.lr"], 0.001);
    assert_eq!(
        a["hparams"]["experiment"]["metrics"],
        serde_json::json!(metric_tags())
    );

    // The HPARAMS tab: both runs listed with their hyperparameters and metric values.
    let tab = &back["hparams_tab"];
    assert_eq!(
        tab["hparams"],
        serde_json::json!(["algo", "model.bias", "model.heads", "optim.lr", "seed"])
    );
    assert_eq!(tab["metrics"], serde_json::json!(metric_tags()));
    let sessions = tab["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{tab}");
    assert_eq!(sessions[0]["name"], "a");
    assert_eq!(sessions[1]["hparams"]["algo"], "answer_only");
    assert_eq!(sessions[1]["hparams"]["model.heads"], 4.0);
    let m = &sessions[1]["metrics"];
    assert_eq!(m["eval/accuracy_greedy"], 0.5);
    assert!((m["train/loss"].as_f64().unwrap() - 2.0 / 5.0).abs() < 1e-6);
}

#[test]
fn hparams_without_metric_tags_let_tensorboard_infer_the_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = Logger::create(&tmp.path().join("r")).unwrap();
    log.hparams(
        &[
            ("k".to_string(), HParam::from(3usize)),
            ("mode".to_string(), HParam::from("beam")),
        ],
        &[],
    )
    .unwrap();
    log.scalar("eval/accuracy", 0.75, 10).unwrap();
    drop(log);
    let back = read_back(tmp.path());
    assert_eq!(
        tags(&back["runs"]["r"], "hparams"),
        ["_hparams_/session_start_info"]
    );
    let tab = &back["hparams_tab"];
    assert_eq!(tab["hparams"], serde_json::json!(["k", "mode"]));
    assert_eq!(tab["metrics"], serde_json::json!(["eval/accuracy"]));
    assert_eq!(tab["sessions"][0]["metrics"]["eval/accuracy"], 0.75);
}

#[test]
fn resumed_run_replaces_the_interrupted_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    {
        let mut log = Logger::create(&dir).unwrap();
        for step in 0..10u64 {
            log.scalar("train/loss", step as f64, step).unwrap();
        }
        log.text("eval/examples", "old", 8).unwrap();
    }
    {
        // As if the checkpoint at step 5 were resumed after a crash at step 9.
        let mut log = Logger::resume(&dir, 5).unwrap();
        for step in 5..8u64 {
            log.scalar("train/loss", 100.0 + step as f64, step).unwrap();
        }
    }
    let back = read_back(tmp.path());
    let run = &back["runs"]["run"];
    assert_eq!(
        scalars(run, "train/loss"),
        [
            (0, 0.0),
            (1, 1.0),
            (2, 2.0),
            (3, 3.0),
            (4, 4.0),
            (5, 105.0),
            (6, 106.0),
            (7, 107.0)
        ]
    );
    // Older data of every kind past the resume step is gone too.
    assert!(run["text"]["eval/examples"]
        .as_array()
        .is_none_or(|a| a.is_empty()));
}
