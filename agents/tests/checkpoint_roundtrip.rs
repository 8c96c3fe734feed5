//! Checkpoints: round trip of tensors and metadata, VarStore and optimizer restore, pruning,
//! and every error a damaged or mismatched checkpoint gives.

use std::fs;
use std::path::Path;

use agents::checkpoint::{
    self, copy_into, copy_into_tensors, load, load_latest, save, var_store_tensors, Checkpoint,
    CheckpointError, TensorDiff,
};
use serde_json::json;
use tch::nn::{self, VarStore};
use tch::{Device, Kind, Tensor};

fn meta(step: u64) -> Checkpoint {
    Checkpoint {
        step,
        config_toml: "seed = 3\n[model]\nheads = 2\n".to_string(),
        rng_state: vec![step, u64::MAX, 0x1234_5678_9abc_def0],
        extra: json!({"curriculum_level": 2, "best": 0.5}),
    }
}

fn sample_tensors(step: u64) -> Vec<(String, Tensor)> {
    let s = step as f64;
    vec![
        (
            "model/w".into(),
            Tensor::from_slice(&[1.5f32, -2.0, s as f32]).view([3, 1]),
        ),
        ("model/scalar".into(), Tensor::from(s)),
        (
            "model/empty".into(),
            Tensor::zeros([0, 4], (Kind::Float, Device::Cpu)),
        ),
        ("optim/step".into(), Tensor::from_slice(&[step as i64])),
        (
            "optim/m".into(),
            Tensor::arange(6, (Kind::Double, Device::Cpu)).view([2, 3]) * s,
        ),
        ("mask".into(), Tensor::from_slice(&[true, false, true])),
        (
            "half".into(),
            Tensor::from_slice(&[0.5f32, 1.0]).to_kind(Kind::Half),
        ),
    ]
}

fn assert_same(a: &[(String, Tensor)], b: &[(String, Tensor)]) {
    let mut a: Vec<_> = a.iter().collect();
    a.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        assert_eq!(ta.kind(), tb.kind(), "{na}");
        assert_eq!(ta.size(), tb.size(), "{na}");
        assert!(ta.equal(tb), "{na}: {ta} vs {tb}");
    }
}

#[test]
fn tensors_and_metadata_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let tensors = sample_tensors(7);
    let path = save(tmp.path(), &meta(7), &tensors, 3).unwrap();
    assert_eq!(path, tmp.path().join("checkpoints/step-0000000007.json"));
    let loaded = load(&path).unwrap();
    assert_eq!(loaded.checkpoint, meta(7));
    assert_same(&tensors, &loaded.tensors);
    // The .safetensors path works too, and load_latest finds it.
    let again = load(&path.with_extension("safetensors")).unwrap();
    assert_eq!(again.checkpoint.step, 7);
    assert_eq!(load_latest(tmp.path()).unwrap().path, path);
    assert_eq!(checkpoint::read_metadata(&path).unwrap(), meta(7));
    // Prefix selection strips the prefix.
    let optim = loaded.with_prefix("optim/");
    assert_eq!(
        optim.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["m", "step"]
    );
}

#[test]
fn keeps_the_last_n_and_latest_is_the_highest_step() {
    let tmp = tempfile::tempdir().unwrap();
    for step in [10, 20, 30, 40, 50] {
        save(tmp.path(), &meta(step), &sample_tensors(step), 3).unwrap();
    }
    let steps: Vec<u64> = checkpoint::list(tmp.path())
        .unwrap()
        .iter()
        .map(|e| e.step)
        .collect();
    assert_eq!(steps, [30, 40, 50]);
    let mut files: Vec<String> = fs::read_dir(tmp.path().join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 6, "{files:?}");
    let latest = load_latest(tmp.path()).unwrap();
    assert_eq!(latest.checkpoint.step, 50);
    assert_same(&sample_tensors(50), &latest.tensors);

    // Saving again at the same step replaces it; keep_last = 0 keeps everything.
    save(tmp.path(), &meta(50), &sample_tensors(51), 0).unwrap();
    assert_same(
        &sample_tensors(51),
        &load_latest(tmp.path()).unwrap().tensors,
    );
    save(tmp.path(), &meta(60), &sample_tensors(60), 0).unwrap();
    assert_eq!(checkpoint::list(tmp.path()).unwrap().len(), 4);
}

#[test]
fn saving_after_resuming_an_older_checkpoint_drops_the_abandoned_later_ones() {
    let tmp = tempfile::tempdir().unwrap();
    for step in [10, 20, 30] {
        save(tmp.path(), &meta(step), &sample_tensors(step), 3).unwrap();
    }
    // Resumed from step 10 explicitly, the run saves at 15: 20 and 30 belong to the
    // abandoned continuation and must not come back through load_latest.
    save(tmp.path(), &meta(15), &sample_tensors(15), 3).unwrap();
    let steps: Vec<u64> = checkpoint::list(tmp.path())
        .unwrap()
        .iter()
        .map(|e| e.step)
        .collect();
    assert_eq!(steps, [10, 15]);
    assert_eq!(load_latest(tmp.path()).unwrap().checkpoint.step, 15);
    // load() also takes the run directory or its checkpoints folder.
    assert_eq!(load(tmp.path()).unwrap().checkpoint.step, 15);
    assert_eq!(
        load(&tmp.path().join("checkpoints"))
            .unwrap()
            .checkpoint
            .step,
        15
    );
}

fn model(vs: &VarStore, hidden: i64, with_head: bool) {
    let root = vs.root();
    let _enc = nn::linear(&root / "enc", 4, hidden, Default::default());
    if with_head {
        let _head = nn::linear(&root / "head", hidden, 2, Default::default());
    } else {
        let _dec = nn::linear(&root / "dec", hidden, 3, Default::default());
    }
}

#[test]
fn var_store_restores_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    tch::manual_seed(1);
    let vs = VarStore::new(Device::Cpu);
    model(&vs, 8, true);
    let mut tensors = var_store_tensors(&vs, "model/");
    assert_eq!(
        tensors.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        [
            "model/enc.bias",
            "model/enc.weight",
            "model/head.bias",
            "model/head.weight"
        ]
    );
    let moment = Tensor::ones([8, 4], (Kind::Float, Device::Cpu)) * 0.25;
    tensors.push(("optim/enc.weight.m".to_string(), moment.shallow_clone()));
    save(tmp.path(), &meta(1), &tensors, 3).unwrap();
    let expected: Vec<(String, Tensor)> =
        tensors.iter().map(|(n, t)| (n.clone(), t.copy())).collect();

    // A fresh model with other random weights gets the saved ones back.
    tch::manual_seed(2);
    let mut vs2 = VarStore::new(Device::Cpu);
    model(&vs2, 8, true);
    let loaded = load_latest(tmp.path()).unwrap();
    loaded.copy_into(&mut vs2, "model/").unwrap();
    assert_same(&expected[..4], &var_store_tensors(&vs2, "model/"));

    // Optimizer state outside a VarStore: the target's storage receives the data.
    let target = Tensor::zeros([8, 4], (Kind::Float, Device::Cpu));
    loaded
        .copy_into_tensors(
            &[("enc.weight.m".to_string(), target.shallow_clone())],
            "optim/",
        )
        .unwrap();
    assert!(target.equal(&moment));
    // Gradients stay enabled on the restored variables.
    assert!(vs2.trainable_variables().iter().all(|t| t.requires_grad()));
}

#[test]
fn mismatch_lists_every_difference_and_copies_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let vs = VarStore::new(Device::Cpu);
    model(&vs, 8, true);
    save(tmp.path(), &meta(1), &var_store_tensors(&vs, "model/"), 3).unwrap();

    let mut other = VarStore::new(Device::Cpu);
    model(&other, 5, false);
    let before = var_store_tensors(&other, "")
        .iter()
        .map(|(n, t)| (n.clone(), t.copy()))
        .collect::<Vec<_>>();
    let loaded = load_latest(tmp.path()).unwrap();
    let err = loaded.copy_into(&mut other, "model/").unwrap_err();
    let CheckpointError::Mismatch {
        diffs,
        source_name,
        prefix,
    } = &err
    else {
        panic!("{err}");
    };
    assert!(source_name.ends_with("step-0000000001.json"));
    assert_eq!(prefix, "model/");
    assert_eq!(
        diffs.0,
        vec![
            TensorDiff::Missing {
                name: "dec.bias".into(),
                shape: vec![3]
            },
            TensorDiff::Missing {
                name: "dec.weight".into(),
                shape: vec![3, 5]
            },
            TensorDiff::Shape {
                name: "enc.bias".into(),
                model: vec![5],
                checkpoint: vec![8]
            },
            TensorDiff::Shape {
                name: "enc.weight".into(),
                model: vec![5, 4],
                checkpoint: vec![8, 4]
            },
            TensorDiff::Unexpected {
                name: "head.bias".into(),
                shape: vec![2]
            },
            TensorDiff::Unexpected {
                name: "head.weight".into(),
                shape: vec![2, 8]
            },
        ]
    );
    let msg = err.to_string();
    for needle in [
        "6 difference",
        "missing from the checkpoint: dec.weight [3, 5]",
        "shape of enc.weight: model [5, 4], checkpoint [8, 4]",
        "not in the model: head.bias [2]",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in:\n{msg}");
    }
    assert_same(&before, &var_store_tensors(&other, ""));

    // dtype differences are reported, not cast silently.
    let target = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
    let saved = vec![(
        "optim/m".to_string(),
        Tensor::zeros([2, 3], (Kind::Double, Device::Cpu)),
    )];
    let err = copy_into_tensors(&[("m".to_string(), target)], &saved, "optim/").unwrap_err();
    assert!(
        err.to_string()
            .contains("dtype of m: model Float, checkpoint Double"),
        "{err}"
    );

    // A prefix that matches nothing reports every model tensor as missing.
    let err = copy_into(&mut other, &loaded.tensors, "nothing/").unwrap_err();
    assert!(err.to_string().contains("4 difference"), "{err}");
}

fn first_checkpoint(dir: &Path) -> std::path::PathBuf {
    save(dir, &meta(5), &sample_tensors(5), 3).unwrap()
}

#[test]
fn bit_flip_is_reported_with_the_file_name() {
    let tmp = tempfile::tempdir().unwrap();
    let json = first_checkpoint(tmp.path());
    let st = json.with_extension("safetensors");
    let mut bytes = fs::read(&st).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x40;
    fs::write(&st, bytes).unwrap();
    let err = load_latest(tmp.path()).unwrap_err();
    assert!(
        matches!(err, CheckpointError::Corrupt { ref path, .. } if *path == st),
        "{err}"
    );
    assert!(
        err.to_string().contains("CRC32")
            && err.to_string().contains("step-0000000005.safetensors"),
        "{err}"
    );
}

#[test]
fn truncation_is_reported_with_the_file_name() {
    let tmp = tempfile::tempdir().unwrap();
    let json = first_checkpoint(tmp.path());
    let st = json.with_extension("safetensors");
    let bytes = fs::read(&st).unwrap();
    fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let err = load(&json).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("truncated") && msg.contains("step-0000000005.safetensors"),
        "{msg}"
    );
}

#[test]
fn damaged_or_foreign_sidecar_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let json = first_checkpoint(tmp.path());
    let good = fs::read_to_string(&json).unwrap();

    fs::write(&json, &good[..good.len() / 2]).unwrap();
    let err = load(&json).unwrap_err();
    assert!(
        matches!(err, CheckpointError::Corrupt { ref path, .. } if *path == json),
        "{err}"
    );
    assert!(err.to_string().contains("invalid JSON"), "{err}");

    fs::write(
        &json,
        good.replace("\"format_version\": 1", "\"format_version\": 99"),
    )
    .unwrap();
    let err = load(&json).unwrap_err();
    assert!(
        err.to_string()
            .contains("format version 99, this build reads version 1"),
        "{err}"
    );

    fs::write(&json, good.replace("\"tensors_crc32\"", "\"renamed\"")).unwrap();
    let err = load(&json).unwrap_err();
    assert!(err.to_string().contains("tensors_crc32"), "{err}");

    fs::write(&json, &good).unwrap();
    fs::remove_file(json.with_extension("safetensors")).unwrap();
    let err = load(&json).unwrap_err();
    assert!(
        matches!(err, CheckpointError::Io { ref path, .. } if *path == json.with_extension("safetensors")),
        "{err}"
    );
}

#[test]
fn no_checkpoint_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = load_latest(tmp.path()).unwrap_err();
    assert!(matches!(err, CheckpointError::NoCheckpoint { .. }));
    assert!(err.to_string().contains("no checkpoint in"), "{err}");
}

#[test]
fn failed_save_leaves_the_previous_checkpoint_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let first = first_checkpoint(tmp.path());
    // A dtype safetensors cannot hold makes the save fail before anything is renamed.
    let mut bad = sample_tensors(6);
    bad.push((
        "complex".into(),
        Tensor::zeros([2], (Kind::ComplexFloat, Device::Cpu)),
    ));
    let err = save(tmp.path(), &meta(6), &bad, 3).unwrap_err();
    assert!(err.to_string().contains("complex"), "{err}");
    // Duplicate names are refused as well.
    let dup = vec![("a", Tensor::from(1.0)), ("a", Tensor::from(2.0))];
    assert!(save(tmp.path(), &meta(6), &dup, 3)
        .unwrap_err()
        .to_string()
        .contains("given twice"));

    let latest = load_latest(tmp.path()).unwrap();
    assert_eq!(latest.path, first);
    assert_same(&sample_tensors(5), &latest.tensors);
    assert_eq!(
        fs::read_dir(tmp.path().join("checkpoints"))
            .unwrap()
            .count(),
        2
    );
}

#[test]
fn leftovers_of_a_killed_save_are_ignored_then_cleaned() {
    let tmp = tempfile::tempdir().unwrap();
    let first = first_checkpoint(tmp.path());
    let dir = tmp.path().join("checkpoints");
    // Killed while writing step 9: a half temp file, and a tensor file renamed into place
    // whose sidecar was never written.
    fs::write(dir.join(".step-0000000009.safetensors.tmp"), b"partial").unwrap();
    fs::write(dir.join(".step-0000000009.json.tmp"), b"{\"format").unwrap();
    fs::write(
        dir.join("step-0000000009.safetensors"),
        b"whole but orphaned",
    )
    .unwrap();
    let latest = load_latest(tmp.path()).unwrap();
    assert_eq!(latest.path, first);

    save(tmp.path(), &meta(12), &sample_tensors(12), 3).unwrap();
    let mut files: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "step-0000000005.json",
            "step-0000000005.safetensors",
            "step-0000000012.json",
            "step-0000000012.safetensors"
        ]
    );
}
