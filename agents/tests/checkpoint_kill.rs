//! A process SIGKILLed while saving checkpoints in a loop leaves the newest complete
//! checkpoint loadable and intact; a restarted process continues from it and cleans up.
//!
//! The test re-runs its own binary as the child (the ignored test below, which does nothing
//! unless the parent sets CHECKPOINT_KILL_DIR).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agents::checkpoint::{self, load_latest, save, Checkpoint, CheckpointError};
use tch::{Device, Kind, Tensor};

const ENV: &str = "CHECKPOINT_KILL_DIR";
/// 4 MiB of f32 per checkpoint: long enough to be caught mid-write now and then.
const NUMEL: i64 = 1 << 20;

fn tensors(step: u64) -> Vec<(String, Tensor)> {
    vec![
        (
            "model/w".to_string(),
            Tensor::full([NUMEL], step as f64, (Kind::Float, Device::Cpu)),
        ),
        ("optim/step".to_string(), Tensor::from_slice(&[step as i64])),
    ]
}

fn meta(step: u64) -> Checkpoint {
    Checkpoint {
        step,
        config_toml: String::new(),
        rng_state: vec![step],
        extra: serde_json::Value::Null,
    }
}

#[test]
#[ignore = "child process of killed_mid_save_leaves_a_loadable_checkpoint"]
fn child_saves_forever() {
    let Ok(dir) = std::env::var(ENV) else { return };
    let dir = Path::new(&dir);
    let mut step = match load_latest(dir) {
        Ok(l) => l.checkpoint.step + 1,
        Err(CheckpointError::NoCheckpoint { .. }) => 1,
        Err(e) => panic!("restart could not load: {e}"),
    };
    loop {
        save(dir, &meta(step), &tensors(step), 2).unwrap();
        step += 1;
    }
}

fn assert_intact(dir: &Path) -> u64 {
    let loaded = load_latest(dir).unwrap_or_else(|e| panic!("after kill: {e}"));
    let step = loaded.checkpoint.step;
    assert_eq!(loaded.checkpoint.rng_state, [step]);
    let expected = tensors(step);
    for ((n, t), (en, et)) in loaded.tensors.iter().zip(&expected) {
        assert_eq!(n, en);
        assert!(t.equal(et), "{n} differs at step {step}");
    }
    step
}

#[test]
fn killed_mid_save_leaves_a_loadable_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut last = 0;
    // Different delays land the kill at different points of the write sequence.
    for (round, delay_ms) in [3u64, 17, 41, 9].into_iter().enumerate() {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "child_saves_forever",
                "--ignored",
                "--test-threads=1",
            ])
            .env(ENV, tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until this child has written at least one checkpoint of its own.
        let start = Instant::now();
        loop {
            let newest = checkpoint::list(tmp.path()).unwrap().last().map(|e| e.step);
            if newest.is_some_and(|s| s > last) {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("round {round}: child exited early with {status}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "child wrote nothing"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();

        let step = assert_intact(tmp.path());
        assert!(step > last, "round {round}: step {step} after {last}");
        last = step;
    }
    // keep_last = 2, pruned after each save: at most 3 complete checkpoints (killed before
    // pruning) plus the debris of the last kill (a temp file, an orphaned tensor file).
    let entries = checkpoint::list(tmp.path()).unwrap();
    assert!(entries.len() <= 3, "{entries:?}");
    let files = std::fs::read_dir(tmp.path().join("checkpoints"))
        .unwrap()
        .count();
    assert!(files <= 2 * entries.len() + 2, "{files} files");
}
