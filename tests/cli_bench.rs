//! `factorexe bench` end to end, with tiny sizes: the output format and clear failures.

use std::collections::HashMap;
use std::process::{Command, Output};

fn factorexe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_factorexe"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .expect("the factorexe binary runs")
}

/// Runs `args`, asserts success and returns the measurement lines (those not starting with
/// `#`) as (kind, key -> value), after checking the `#` header.
fn measure(args: &[&str]) -> Vec<(String, HashMap<String, String>)> {
    let out = factorexe(args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "factorexe {args:?} failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let comments: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
    assert!(comments.iter().any(|l| l.contains("one thread")), "{text}");
    assert!(comments.iter().any(|l| l.contains("build ")), "{text}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|line| {
            let mut words = line.split(' ');
            let kind = words.next().unwrap_or_default().to_string();
            let fields = words
                .map(|w| {
                    let (k, v) = w
                        .split_once('=')
                        .unwrap_or_else(|| panic!("`{w}` in `{line}` is not key=value"));
                    (k.to_string(), v.to_string())
                })
                .collect();
            (kind, fields)
        })
        .collect()
}

/// `fields[key]` as a positive, finite number.
fn positive(fields: &HashMap<String, String>, key: &str) -> f64 {
    let v: f64 = fields
        .get(key)
        .unwrap_or_else(|| panic!("no `{key}` in {fields:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("`{key}` is not a number in {fields:?}"));
    assert!(v.is_finite() && v > 0.0, "{key} = {v}");
    v
}

#[test]
fn bench_envs_prints_one_line_per_task() {
    let lines = measure(&[
        "bench",
        "envs",
        "--length",
        "12",
        "--batch",
        "4",
        "--seconds",
        "0.02",
    ]);
    let tasks: Vec<&str> = lines.iter().map(|(_, f)| f["task"].as_str()).collect();
    assert_eq!(tasks, ["cycle", "cvpr"]);
    for (kind, f) in &lines {
        assert_eq!(kind, "envs");
        assert_eq!((f["length"].as_str(), f["batch"].as_str()), ("12", "4"));
        for key in [
            "problems_per_s",
            "problems_per_cpu_s",
            "token_steps_per_s",
            "token_steps_per_cpu_s",
        ] {
            positive(f, key);
        }
    }
    let only = measure(&[
        "bench",
        "envs",
        "--task",
        "cvpr",
        "--length",
        "5",
        "--batch",
        "2",
        "--seconds",
        "0",
    ]);
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].1["task"], "cvpr");
}

#[test]
fn bench_search_prints_mcts_and_gumbel() {
    let lines = measure(&[
        "bench",
        "search",
        "--batch",
        "2",
        "--sims",
        "3",
        "--actions",
        "4",
        "--hidden",
        "4",
        "--seconds",
        "0",
    ]);
    let algos: Vec<&str> = lines.iter().map(|(_, f)| f["algo"].as_str()).collect();
    assert_eq!(algos, ["mcts", "gumbel"]);
    for (kind, f) in &lines {
        assert_eq!(kind, "search");
        assert_eq!((f["batch"].as_str(), f["sims"].as_str()), ("2", "3"));
        let per_s = positive(f, "sims_per_s");
        let ms = positive(f, "ms_per_search");
        // sims_per_s = batch * sims / seconds per search, within the printed rounding.
        let expected = 6.0 / (ms * 1e-3);
        assert!(
            (per_s - expected).abs() <= 0.01 * expected + 1.0,
            "{per_s} vs {expected}"
        );
        if f["sims_per_cpu_s"] != "n/a" {
            positive(f, "sims_per_cpu_s");
        }
    }
}

#[test]
fn bad_sizes_fail_before_measuring() {
    for args in [
        &["bench", "envs", "--batch", "0"][..],
        &["bench", "envs", "--seconds=-1"],
        &["bench", "envs", "--task", "binpack"],
        &["bench", "search", "--sims", "0"],
        &["bench", "envs", "--length", "1"],
    ] {
        let out = factorexe(args);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(out.stdout.is_empty(), "{args:?} printed before failing");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(">= 1")
                || err.contains("in 1..=")
                || err.contains("0..=3600")
                || err.contains("possible values: cycle, cvpr")
                || err.contains("`length` = 1: 2..="),
            "{args:?}: {err}"
        );
    }
}

/// The `train` and `phase` lines of `factorexe bench train` as (kind, key -> value), with
/// percent signs dropped.
fn profile_lines(text: &str) -> Vec<(String, HashMap<String, String>)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|line| {
            let mut words = line.split(' ');
            let kind = words.next().unwrap_or_default().to_string();
            let fields = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_end_matches('%').to_string()))
                .collect();
            (kind, fields)
        })
        .collect()
}

/// `bench train` of a config for 2 updates after 1 warm-up on `threads` CPU threads; its
/// stdout.
fn bench_train(config: &str, threads: &str) -> String {
    let out = factorexe(&[
        "bench",
        "train",
        "--config",
        config,
        "--steps",
        "2",
        "--warmup",
        "1",
        "--threads",
        threads,
        "--device",
        "cpu",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{config}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn bench_train_profiles_a_config_s_update() {
    let dir = std::env::temp_dir().join(format!("fx_bench_train_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("rl.toml");
    std::fs::write(
        &config,
        "[env]\nname = \"cycle\"\nlength = 5\nmax_chain_len = 2\n\
         [train]\nbatch_size = 4\nlevels = [1, 2]\n\
         [algo]\nname = \"reinforce\"\nsamples_per_problem = 2\nreward = \"answer_ce\"\n\
         answer_supervision = 1.0\n\
         [model]\nheads = 2\nhead_dim = 8\ndecoder_layers = 1\n",
    )
    .unwrap();
    let path = config.to_str().unwrap();
    let text = bench_train(path, "1");
    assert!(text.contains("# MFU = analytic model FLOPs"), "{text}");
    let lines = profile_lines(&text);
    let train = &lines
        .iter()
        .find(|(k, _)| k == "train")
        .expect("a train line")
        .1;
    // 4 problems x 2 samples per update.
    assert_eq!(train["updates"], "2");
    for key in [
        "episodes_per_s",
        "examples_per_s",
        "update_ms",
        "gflop_per_update",
        "mfu",
    ] {
        positive(train, key);
    }
    let phase = |name: &str| {
        lines
            .iter()
            .find(|(k, f)| k == "phase" && f.get("name").map(String::as_str) == Some(name))
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| panic!("no phase {name} in\n{text}"))
    };
    for name in [
        "rollout",
        "rollout/model",
        "update/forward",
        "update/backward",
        "update/optimizer",
    ] {
        positive(&phase(name), "ms");
    }
    positive(&phase("rollout/model"), "gflop");
    // The answer-CE return is read off the training pass: no FLOPs of a separate pass.
    assert_eq!(phase("update/answer_ce")["gflop"], "0.0000", "{text}");

    // A bad override names its key.
    let out = factorexe(&[
        "bench",
        "train",
        "--config",
        path,
        "--set",
        "algo.sampels=2",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("sampels"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Answer-only training reports its FLOPs and its forward and backward phases, with either
/// readout.
#[test]
fn bench_train_profiles_answer_only_training() {
    let dir = std::env::temp_dir().join(format!("fx_bench_sup_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for readout in ["decoder", "answer_head"] {
        let config = dir.join(format!("{readout}.toml"));
        std::fs::write(
            &config,
            format!(
                "[env]\nname = \"cycle\"\nlength = 5\n\
                 [train]\nbatch_size = 512\nlevels = [1, 2]\n\
                 [algo]\nname = \"supervised\"\nreadout = \"{readout}\"\n\
                 [model]\nheads = 4\nhead_dim = 32\ndecoder_layers = 2\n"
            ),
        )
        .unwrap();
        let text = bench_train(config.to_str().unwrap(), "1");
        let lines = profile_lines(&text);
        let train = &lines
            .iter()
            .find(|(k, _)| k == "train")
            .expect("a train line")
            .1;
        positive(train, "gflop_per_update");
        positive(train, "mfu");
        for name in ["update/forward", "update/backward"] {
            let phase = lines
                .iter()
                .find(|(k, f)| k == "phase" && f.get("name").map(String::as_str) == Some(name))
                .unwrap_or_else(|| panic!("{readout}: no phase {name} in\n{text}"));
            positive(&phase.1, "gflop");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// At two threads the supervised update runs as two data-parallel shards (on worker threads
/// kept across updates), and the peak is measured before and after the updates with the
/// higher kept: the MFU printed is the FLOPs over that peak, never above 100%.
#[test]
fn bench_train_at_two_threads_profiles_its_shards_against_the_higher_peak() {
    let dir = std::env::temp_dir().join(format!("fx_bench_dp_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("sup.toml");
    std::fs::write(
        &config,
        "[env]\nname = \"cycle\"\nlength = 5\n\
         [train]\nbatch_size = 64\nlevels = [1, 2]\n\
         [algo]\nname = \"supervised\"\n\
         [model]\nheads = 2\nhead_dim = 16\ndecoder_layers = 1\n",
    )
    .unwrap();
    let text = bench_train(config.to_str().unwrap(), "2");
    let peak_line = text
        .lines()
        .find(|l| l.starts_with("# fp32 matmul peak"))
        .unwrap_or_else(|| panic!("no peak line in\n{text}"));
    let number_after = |tag: &str| -> f64 {
        let rest =
            &peak_line[peak_line.find(tag).unwrap_or_else(|| panic!("{tag}?")) + tag.len()..];
        rest.trim_start()
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number after `{tag}` in {peak_line}"))
    };
    let (peak, before, after) = (
        number_after("kept):"),
        number_after("(before"),
        number_after(", after"),
    );
    assert!(before > 0.0 && after > 0.0, "{peak_line}");
    assert!((peak - before.max(after)).abs() < 0.11, "{peak_line}");
    let lines = profile_lines(&text);
    let train = &lines.iter().find(|(k, _)| k == "train").expect("train").1;
    let mfu = positive(train, "mfu");
    assert!(mfu <= 100.0, "MFU {mfu}% above the peak:\n{text}");
    let shards = lines.iter().find(|(k, f)| {
        k == "phase" && f.get("name").map(String::as_str) == Some("update/shard_wait")
    });
    assert!(
        shards.is_some(),
        "two threads, but no data-parallel shards:\n{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
