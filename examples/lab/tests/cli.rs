//! The example crate's `lab` binary, driven as a user drives it: its own task, agent and
//! searcher go through `envs list/check`, `train`, `eval` and `search compare`, and expert
//! iteration plays with its searcher; the run's `config.toml` and TensorBoard
//! hyperparameters carry their names and settings.

use std::path::Path;
use std::process::{Command, Output};

const CLONER: &str = r#"
seed = 0
[env]
name = "prefix_parity"
bits = 8
[train]
steps = 150
batch_size = 64
levels = [2, 3, 4]
[algo]
name = "chain_cloner"
answer_weight = 3.0
[model]
heads = 2
head_dim = 16
mlp_factor = 2
decoder_layers = 1
[optim]
lr = 3e-3
warmup_steps = 10
[eval]
every = 0
episodes = 200
sampled = false
"#;

fn lab(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(args)
        .current_dir(dir)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .output()
        .expect("the lab binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = lab(dir, args);
    let t = text(&out);
    assert!(out.status.success(), "lab {args:?} failed:\n{t}");
    t
}

/// The greedy accuracies (%) of the accuracy table's rows `difficulty problems greedy ...`.
fn greedy_accuracies(output: &str) -> Vec<(u32, f64)> {
    output
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let d = f.first()?.parse().ok()?;
            let _problems: usize = f.get(1)?.parse().ok()?;
            let acc = f.get(2)?.strip_suffix('%')?.parse().ok()?;
            Some((d, acc))
        })
        .collect()
}

fn event_file_bytes(run: &Path) -> Vec<u8> {
    let entry = std::fs::read_dir(run)
        .expect("the run directory")
        .filter_map(Result::ok)
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("events.out.tfevents")
        })
        .expect("an event file");
    std::fs::read(entry.path()).expect("read the event file")
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn the_users_task_agent_and_searcher_run_on_every_command() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let d = dir.path();

    // The task: listed, checked, and its chain cap checked against the oracle's chains.
    assert!(ok(d, &["envs", "list"]).contains("prefix_parity"));
    let check = ok(d, &["envs", "check", "prefix_parity", "--bits", "8"]);
    assert!(check.contains("ok"), "{check}");
    let short = ok(
        d,
        &[
            "envs",
            "check",
            "prefix_parity",
            "--bits",
            "6",
            "--max-chain-len",
            "2",
        ],
    );
    assert!(
        short.contains("difficulty 4") && short.contains("--max-chain-len = 2"),
        "{short}"
    );
    let bad = lab(d, &["envs", "show", "prefix_parity", "--bits", "99"]);
    assert!(
        !bad.status.success() && text(&bad).contains("bits"),
        "{}",
        text(&bad)
    );

    // The agent: trained by name; its name and settings are in config.toml and hparams.
    std::fs::write(d.join("cloner.toml"), CLONER).expect("write the config");
    let trained = ok(d, &["train", "--config", "cloner.toml"]);
    let run = d.join("runs/cloner");
    let config: toml::Table = std::fs::read_to_string(run.join("config.toml"))
        .expect("config.toml")
        .parse()
        .expect("config.toml is TOML");
    assert_eq!(config["algo"]["name"].as_str(), Some("chain_cloner"));
    assert_eq!(config["algo"]["answer_weight"].as_float(), Some(3.0));
    assert_eq!(config["env"]["name"].as_str(), Some("prefix_parity"));
    assert_eq!(config["env"]["bits"].as_integer(), Some(8));
    let events = event_file_bytes(&run);
    for needle in [
        "algo.name",
        "chain_cloner",
        "algo.answer_weight",
        "env.bits",
    ] {
        assert!(contains(&events, needle), "hparams lack {needle}");
    }
    let accs = greedy_accuracies(&trained);
    println!("chain_cloner after 150 updates, greedy accuracy per difficulty: {accs:?}");
    assert_eq!(accs.len(), 3, "{trained}");
    assert!(accs.iter().all(|&(_, a)| a >= 90.0), "{trained}");

    // Evaluation rebuilds the agent by name from the run directory.
    let eval = ok(d, &["eval", "--run", "runs/cloner", "--episodes", "100"]);
    assert_eq!(greedy_accuracies(&eval).len(), 3, "{eval}");

    // The searcher: listed and compared next to the built-in ones, with its own setting.
    assert!(ok(d, &["search", "list"]).contains("lookahead"));
    let compare = ok(
        d,
        &[
            "search",
            "compare",
            "--run",
            "runs/cloner",
            "--algos",
            "greedy,lookahead,gumbel",
            "--budgets",
            "1,3",
            "--episodes",
            "20",
            "--searcher-set",
            "lookahead.prior_weight=0.5",
        ],
    );
    assert!(compare.contains("lookahead"), "{compare}");
    let csv = std::fs::read_to_string(run.join("search/compare.csv")).expect("compare.csv");
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .filter(|r: &Vec<&str>| r[0] == "lookahead" && r[1] == "3")
        .collect();
    assert_eq!(rows.len(), 3, "{csv}");
    for r in &rows {
        // At most 3 evaluator calls per action: chain + marker + answer <= 5 actions at d4.
        let evals: f64 = r[6].parse().expect("evals_per_problem");
        assert!(evals > 0.0 && evals <= 3.0 * 5.0, "{csv}");
    }
    let typo = lab(
        d,
        &[
            "search",
            "compare",
            "--run",
            "runs/cloner",
            "--algos",
            "lookahead",
            "--searcher-set",
            "lookahead.prior_wieght=1",
        ],
    );
    let t = text(&typo);
    assert!(
        !typo.status.success() && t.contains("prior_wieght") && t.contains("prior_weight"),
        "{t}"
    );

    // Expert iteration plays with the user's searcher; the spec is written out in full.
    let exit = CLONER
        .replace("name = \"chain_cloner\"\nanswer_weight = 3.0", "name = \"expert_iteration\"\nbudget = 3\nsearcher = { name = \"lookahead\", prior_weight = 0.25 }")
        .replace("steps = 150", "steps = 3");
    std::fs::write(d.join("exit.toml"), exit).expect("write the config");
    ok(d, &["train", "--config", "exit.toml"]);
    let config: toml::Table = std::fs::read_to_string(d.join("runs/exit/config.toml"))
        .expect("config.toml")
        .parse()
        .expect("config.toml is TOML");
    let searcher = &config["algo"]["searcher"];
    assert_eq!(searcher["name"].as_str(), Some("lookahead"));
    assert_eq!(searcher["prior_weight"].as_float(), Some(0.25));
    let events = event_file_bytes(&d.join("runs/exit"));
    assert!(
        contains(&events, "algo.searcher.prior_weight"),
        "hparams lack the searcher's setting"
    );
    // A searcher that plays whole chains cannot be expert iteration's.
    let beam = CLONER.replace(
        "name = \"chain_cloner\"\nanswer_weight = 3.0",
        "name = \"expert_iteration\"\nsearcher = \"beam\"",
    );
    std::fs::write(d.join("beam.toml"), beam).expect("write the config");
    let refused = lab(d, &["train", "--config", "beam.toml"]);
    let t = text(&refused);
    assert!(
        !refused.status.success() && t.contains("plays whole chains"),
        "{t}"
    );
    assert!(
        !d.join("runs/beam").exists(),
        "a refused run left a directory"
    );
}
