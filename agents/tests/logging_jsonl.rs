//! metrics.jsonl, config.toml and event-file bookkeeping of the Logger (no Python needed).

use std::fs;
use std::path::Path;

use agents::logging::{write_config, Logger, CONFIG_FILE, METRICS_FILE};

fn lines(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join(METRICS_FILE))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn event_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("events.out.tfevents."))
        .collect();
    v.sort();
    v
}

#[test]
fn every_scalar_is_one_json_line_visible_after_flush() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut log = Logger::create(&dir).unwrap();
    log.scalar("train/loss", 0.1, 3).unwrap();
    log.scalar("eval/acc \"quoted\"", 1e300, 4).unwrap();
    log.scalar("train/grad_norm", f64::NAN, 5).unwrap();
    log.scalar("train/x", f64::NEG_INFINITY, 5).unwrap();
    log.text("eval/examples", "not a scalar", 5).unwrap();
    log.histogram("charts/len", &[1.0, 2.0], 5).unwrap();
    log.flush().unwrap();
    assert_eq!(
        lines(&dir),
        [
            r#"{"step":3,"tag":"train/loss","value":0.1}"#,
            r#"{"step":4,"tag":"eval/acc \"quoted\"","value":1e+300}"#,
            r#"{"step":5,"tag":"train/grad_norm","value":"NaN"}"#,
            r#"{"step":5,"tag":"train/x","value":"-inf"}"#,
        ]
    );
    // Every line parses as JSON with the three fields.
    for l in lines(&dir) {
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert!(v["step"].is_u64() && v["tag"].is_string() && !v["value"].is_null());
    }
    // The event file holds the header, a START marker and five summaries.
    let size = fs::metadata(log.event_file()).unwrap().len();
    assert!(size > 200, "event file has {size} bytes");
}

#[test]
fn drop_flushes() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let mut log = Logger::create(tmp.path()).unwrap();
        log.scalar("perf/examples_per_s", 1234.5, 1).unwrap();
        assert!(lines(tmp.path()).is_empty(), "buffered until flush or drop");
    }
    assert_eq!(
        lines(tmp.path()),
        [r#"{"step":1,"tag":"perf/examples_per_s","value":1234.5}"#]
    );
}

#[test]
fn create_starts_an_empty_jsonl_and_never_clobbers_event_files() {
    let tmp = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        let mut log = Logger::create(tmp.path()).unwrap();
        log.scalar("train/loss", 1.0, 0).unwrap();
    }
    // Same process, same second: still three distinct files.
    assert_eq!(event_files(tmp.path()).len(), 3);
    assert_eq!(lines(tmp.path()).len(), 1);
}

#[test]
fn resume_keeps_earlier_steps_and_drops_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let mut log = Logger::create(dir).unwrap();
        for step in 0..6u64 {
            log.scalar("train/loss", step as f64, step).unwrap();
        }
    }
    // A process killed mid-write leaves half a line at the end.
    let mut text = fs::read_to_string(dir.join(METRICS_FILE)).unwrap();
    text.push_str(r#"{"step":6,"tag":"train/lo"#);
    fs::write(dir.join(METRICS_FILE), text).unwrap();

    let mut log = Logger::resume(dir, 4).unwrap();
    log.scalar("train/loss", 40.0, 4).unwrap();
    drop(log);
    assert_eq!(
        lines(dir),
        [
            r#"{"step":0,"tag":"train/loss","value":0.0}"#,
            r#"{"step":1,"tag":"train/loss","value":1.0}"#,
            r#"{"step":2,"tag":"train/loss","value":2.0}"#,
            r#"{"step":3,"tag":"train/loss","value":3.0}"#,
            r#"{"step":4,"tag":"train/loss","value":40.0}"#,
        ]
    );
    assert_eq!(
        event_files(dir).len(),
        2,
        "resume adds a file, keeps the old"
    );
}

#[test]
fn resume_without_earlier_metrics_starts_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = Logger::resume(tmp.path(), 7).unwrap();
    log.scalar("a", 1.0, 7).unwrap();
    drop(log);
    assert_eq!(lines(tmp.path()), [r#"{"step":7,"tag":"a","value":1.0}"#]);
}

#[test]
fn config_is_written_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new/run");
    let path = write_config(&dir, "seed = 1\n").unwrap();
    assert_eq!(path, dir.join(CONFIG_FILE));
    write_config(&dir, "seed = 2\n[model]\nheads = 4\n").unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "seed = 2\n[model]\nheads = 4\n"
    );
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [CONFIG_FILE], "no temporary left behind");
}

#[test]
fn unwritable_run_dir_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a_file");
    fs::write(&file, "x").unwrap();
    let err = Logger::create(&file.join("run")).err().unwrap();
    assert!(err.to_string().contains("a_file"), "{err}");
}
