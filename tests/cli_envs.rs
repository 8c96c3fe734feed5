//! `factorexe envs` end to end: the listing, a shown problem with its oracle chain, the env
//! checker on every registered env, and clear failures on bad input.

use std::process::{Command, Output};

use factorexe::envs::registry::{self, COT_PARAMS, THINK_PARAMS};

fn factorexe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_factorexe"))
        .args(args)
        .current_dir(std::env::temp_dir())
        // Keep error output to the message, whatever the caller's environment asks for.
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .expect("the factorexe binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `args`, asserts success and returns stdout.
fn ok(args: &[&str]) -> String {
    let out = factorexe(args);
    assert!(
        out.status.success(),
        "factorexe {args:?} failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Runs `args`, asserts failure with nothing on stdout and returns stderr.
fn fails(args: &[&str]) -> String {
    let out = factorexe(args);
    assert!(
        !out.status.success(),
        "factorexe {args:?} should fail:\n{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).is_empty(),
        "factorexe {args:?} printed before failing:\n{}",
        stdout(&out)
    );
    stderr(&out)
}

/// The numbers after `label` on the first line that starts with it.
fn numbers_after(text: &str, label: &str) -> Vec<u32> {
    let line = text
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{text}"));
    line[label.len()..]
        .split_whitespace()
        .map(|t| {
            t.parse()
                .unwrap_or_else(|_| panic!("`{t}` in `{line}` is not a token"))
        })
        .collect()
}

#[test]
fn list_names_every_env_and_the_shared_parameters() {
    let text = ok(&["envs", "list"]);
    for name in ["cycle", "cvpr", "multiplication", "binpack"] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{name} "))),
            "`{name}` is not listed:\n{text}"
        );
    }
    for e in registry::entries() {
        assert!(
            text.contains(e.summary),
            "no summary of {}:\n{text}",
            e.name
        );
        for p in e.params {
            assert!(text.contains(&format!("--{}", p.name.replace('_', "-"))));
        }
    }
    assert!(text.contains("thought tokens"), "{text}");
    for p in THINK_PARAMS.iter().chain(COT_PARAMS) {
        let flag = format!("--{}", p.name.replace('_', "-"));
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&flag))
            .unwrap_or_else(|| panic!("`{flag}` is not listed:\n{text}"));
        assert!(line.contains(p.help) && line.contains(p.default), "{line}");
    }
}

/// Checks a shown pointer task: the oracle's actions are `f(0), ..., f^H(0)`, ANSWER (token
/// `L`), then `f^(H+1)(0)`, where `f` is the printed input, and the play ends solved.
fn check_pointer_show(text: &str, length: usize, hops: usize) {
    let input = numbers_after(text, "input:");
    assert_eq!(input.len(), length, "{text}");
    let actions = numbers_after(text, "oracle actions:");
    assert_eq!(actions.len(), hops + 2, "{text}");
    let mut node = 0u32;
    for (k, &a) in actions[..hops].iter().enumerate() {
        node = input[node as usize];
        assert_eq!(a, node, "chain token {k} is not f^{}(0):\n{text}", k + 1);
    }
    assert_eq!(actions[hops] as usize, length, "ANSWER token:\n{text}");
    let answer = input[node as usize];
    assert_eq!(*actions.last().unwrap(), answer, "{text}");
    assert!(text.contains("[solved]"), "{text}");
    assert!(text.contains("return 1, solved yes"), "{text}");
}

#[test]
fn show_cycle_prints_the_problem_and_a_deterministic_oracle_chain() {
    let args = [
        "envs", "show", "cycle", "--length", "8", "--hops", "4", "--seed", "0",
    ];
    let first = ok(&args);
    assert!(first.starts_with("cycle(L=8)"), "{first}");
    assert!(first.contains("seed 0, hops 4:"), "{first}");
    check_pointer_show(&first, 8, 4);
    // The input is a single 8-cycle: following it from 0 visits every node once.
    let input = numbers_after(&first, "input:");
    let mut seen = [false; 8];
    let mut node = 0;
    for _ in 0..8 {
        assert!(!seen[node], "not a single cycle: {input:?}");
        seen[node] = true;
        node = input[node] as usize;
    }
    assert_eq!(node, 0);

    assert_eq!(ok(&args), first, "same seed, same output");
    let differs = ["1", "2", "3"].iter().any(|s| {
        ok(&[
            "envs", "show", "cycle", "--length", "8", "--hops", "4", "--seed", s,
        ]) != first
    });
    assert!(differs, "seeds 0..=3 all gave the same problem");
}

#[test]
fn show_cvpr_follows_its_pointer_chain_to_the_answer() {
    for hops in [1, 5, 11] {
        let h = hops.to_string();
        let text = ok(&[
            "envs", "show", "cvpr", "--length", "12", "--hops", &h, "--seed", "7",
        ]);
        check_pointer_show(&text, 12, hops);
        // C-VPR's pointers increase.
        let actions = numbers_after(&text, "oracle actions:");
        assert!(actions[..hops].windows(2).all(|w| w[0] < w[1]), "{text}");
    }
}

#[test]
fn show_defaults_to_the_hardest_level_and_accepts_key_equals_value() {
    let text = ok(&["envs", "show", "cycle", "--length=6"]);
    assert!(text.contains("seed 0, hops 5:"), "{text}");
    check_pointer_show(&text, 6, 5);
}

#[test]
fn check_passes_for_every_registered_env() {
    let names: Vec<&str> = registry::entries().iter().map(|e| e.name).collect();
    for name in ["cycle", "cvpr", "multiplication", "binpack"] {
        assert!(names.contains(&name), "{name} is not registered");
    }
    for name in names {
        let text = ok(&["envs", "check", name, "--episodes", "1"]);
        let line = text.lines().next().unwrap_or_default();
        assert!(
            line.starts_with(&format!("check_env({name}")) && line.contains("): ok,"),
            "{text}"
        );
    }
    // Wrapped in thought tokens, too.
    let text = ok(&["envs", "check", "cycle", "--length", "5", "--thoughts", "2"]);
    assert!(text.starts_with("check_env(think("), "{text}");
}

#[test]
fn an_unknown_env_is_rejected_with_the_names() {
    let err = fails(&["envs", "show", "cylce"]);
    assert!(err.contains("`env` = cylce"), "{err}");
    assert!(
        err.contains("one of: cycle, cvpr, multiplication, binpack"),
        "{err}"
    );
    assert!(!err.contains("backtrace"), "{err}");
    let err = fails(&["envs", "check", "nope"]);
    assert!(err.contains("one of: cycle"), "{err}");
}

#[test]
fn hops_out_of_range_name_the_parameter_and_the_range() {
    for hops in ["8", "9", "0"] {
        let err = fails(&["envs", "show", "cycle", "--length", "8", "--hops", hops]);
        assert!(err.contains(&format!("`--hops` = {hops}")), "{err}");
        assert!(err.contains("1..=7"), "{err}");
    }
    let err = fails(&["envs", "show", "cvpr", "--length", "10", "--hops", "10"]);
    assert!(
        err.contains("`--hops` = 10") && err.contains("1..=9"),
        "{err}"
    );
}

#[test]
fn bad_parameters_name_the_parameter_and_what_is_allowed() {
    let err = fails(&["envs", "show", "cycle", "--length", "8", "--lenght", "3"]);
    assert!(
        err.contains("no option `--lenght` (did you mean `--length`?)")
            && err.contains("its parameters: --length, --max-chain-len"),
        "{err}"
    );
    // Messages name the flag as typed: `--set` belongs to train, `--level` is an alias.
    let err = fails(&["envs", "check", "cycle", "--set", "length=3"]);
    assert!(err.contains("no option `--set`"), "{err}");
    let err = fails(&["envs", "show", "cycle", "--length", "8", "--level", "9"]);
    assert!(err.contains("`--level` = 9"), "{err}");
    let err = fails(&["envs", "check", "cycle", "--episodes", "0"]);
    assert!(err.contains("`--episodes` must be at least 1"), "{err}");

    let err = fails(&["envs", "check", "cycle", "--length", "1"]);
    assert!(
        err.contains("`--length` = 1") && err.contains("2..=1048576"),
        "{err}"
    );

    let err = fails(&["envs", "show", "cycle", "--length", "many"]);
    assert!(err.contains("`--length` = many"), "{err}");
    assert!(err.contains("non-negative integer"), "{err}");

    let err = fails(&["envs", "show", "binpack", "--reward", "often"]);
    assert!(err.contains("`--reward` = often") && err.contains("dense or sparse"));

    let err = fails(&["envs", "show", "cycle", "--seed", "-1"]);
    assert!(
        err.contains("`--seed` must be a non-negative integer"),
        "{err}"
    );

    let err = fails(&["envs", "show", "cycle", "--hops"]);
    assert!(err.contains("`--hops` needs a value"), "{err}");

    let err = fails(&["envs", "show", "cycle", "length", "8"]);
    assert!(
        err.contains("expected `--key value`, got `length`"),
        "{err}"
    );
}
