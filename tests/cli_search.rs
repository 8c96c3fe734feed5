//! End-to-end test of `factorexe search compare`: a tiny trained run is compared across
//! searchers and budgets; the table (with intervals and compute) and the paired verdicts are
//! printed and the CSVs, PNG and TensorBoard events are written; forcing an untrained value
//! head is refused; bad arguments fail with messages that say what is allowed.

use std::path::Path;
use std::process::{Command, Output};

const CONFIG: &str = r#"
seed = 2
[env]
name = "cycle"
length = 6
[train]
steps = 10
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
every = 0
episodes = 10
[log]
every = 5
"#;

fn factorexe(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_factorexe"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the factorexe binary runs")
}

/// Whether `needle` occurs in `haystack` (candidates found by the first 16 bytes).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let head = &needle[..needle.len().min(16)];
    haystack
        .windows(head.len())
        .enumerate()
        .any(|(i, w)| w == head && haystack[i..].starts_with(needle))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn compare_prints_the_table_and_writes_csv_png_and_events() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let d = dir.path();
    std::fs::write(d.join("tiny.toml"), CONFIG).expect("write the config");
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
    assert!(out.status.success(), "{}", text(&out));

    let out = factorexe(
        d,
        &[
            "search",
            "compare",
            "--run",
            "runs/tiny",
            "--algos",
            "greedy,vote,mcts,gumbel",
            "--budgets",
            "1,2,4",
            "--episodes",
            "12",
            "--device",
            "cpu",
            "--threads",
            "1",
        ],
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("value: likelihood"), "{all}");
    assert!(
        all.contains("searcher  budget  evals/problem  x greedy  ms/problem  tokens/problem"),
        "{all}"
    );
    assert!(all.contains("\ngumbel         4"), "{all}");
    assert!(all.contains("paired verdicts"), "{all}");
    assert!(all.contains("~1x greedy's compute"), "{all}");
    let search = d.join("runs/tiny/search");
    let csv = std::fs::read_to_string(search.join("compare.csv")).expect("compare.csv");
    // Greedy once per level, 3 searchers x 3 budgets x 2 levels.
    assert_eq!(csv.lines().count(), 1 + 2 + 3 * 3 * 2, "{csv}");
    assert!(search.join("paired.csv").exists());
    assert!(search.join("problems.csv").exists());
    let png = std::fs::read(search.join("compare.png")).expect("compare.png");
    assert_eq!(&png[..4], b"\x89PNG");
    let events: Vec<Vec<u8>> = std::fs::read_dir(&search)
        .expect("the output dir")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("events.out.tfevents.")
        })
        .map(|e| std::fs::read(e.path()).expect("an event file"))
        .collect();
    assert!(
        !events.is_empty(),
        "no TensorBoard event file in {}",
        search.display()
    );
    // The plot is logged as an image: its tag and its PNG bytes, verbatim (a protobuf bytes
    // field), are in the event file.
    assert!(
        events
            .iter()
            .any(|e| contains(e, b"search/plot") && contains(e, &png)),
        "compare.png is not in the TensorBoard events"
    );

    // A second comparison into the same directory keeps the first one's results.
    let first_csv = csv;
    let first_metrics = std::fs::read_to_string(search.join("metrics.jsonl")).expect("metrics");
    let out = factorexe(
        d,
        &[
            "search",
            "compare",
            "--run",
            "runs/tiny",
            "--algos",
            "greedy",
            "--episodes",
            "3",
            "--device",
            "cpu",
            "--threads",
            "1",
        ],
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("are kept in"), "{all}");
    let kept = search.join("earlier/1");
    let read = |p: std::path::PathBuf| std::fs::read_to_string(&p).expect("a kept file");
    assert_eq!(read(kept.join("compare.csv")), first_csv);
    assert_eq!(read(kept.join("metrics.jsonl")), first_metrics);
    assert!(kept.join("compare.png").exists());
    let second = read(search.join("compare.csv"));
    assert_eq!(second.lines().count(), 1 + 2, "{second}");

    // A machine without fonts (fontconfig finds none) still gets the table, the CSV and the
    // events, with a warning instead of the plot (seen on a bare GPU machine).
    let fc = d.join("fonts.conf");
    std::fs::write(
        &fc,
        format!(
            "<?xml version=\"1.0\"?>\n<fontconfig><cachedir>{}</cachedir></fontconfig>\n",
            d.join("fc-cache").display()
        ),
    )
    .expect("write an empty fontconfig");
    let out = Command::new(env!("CARGO_BIN_EXE_factorexe"))
        .args([
            "search",
            "compare",
            "--run",
            "runs/tiny",
            "--algos",
            "greedy",
            "--episodes",
            "4",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--out",
            "nofont",
        ])
        .env("FONTCONFIG_FILE", &fc)
        .current_dir(d)
        .output()
        .expect("the factorexe binary runs");
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("warning: no plot"), "{all}");
    assert!(d.join("nofont/compare.csv").exists(), "{all}");
    assert!(!d.join("nofont/compare.png").exists(), "{all}");

    // A value head the run never trained is refused, unless asked for by name.
    let out = factorexe(
        d,
        &[
            "search",
            "compare",
            "--run",
            "runs/tiny",
            "--algos",
            "greedy",
            "--episodes",
            "2",
            "--value",
            "head",
            "--out",
            "head",
            "--device",
            "cpu",
            "--threads",
            "1",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("never trains its value head"),
        "{}",
        text(&out)
    );
    let out = factorexe(
        d,
        &[
            "search",
            "compare",
            "--run",
            "runs/tiny",
            "--algos",
            "greedy",
            "--episodes",
            "2",
            "--value",
            "head",
            "--allow-untrained-value",
            "--out",
            "head",
            "--device",
            "cpu",
            "--threads",
            "1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("WARNING: --value head"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("value: head (UNTRAINED)"),
        "{}",
        text(&out)
    );

    // Bad arguments name what is allowed.
    let out = factorexe(
        d,
        &[
            "search",
            "compare",
            "--run",
            "runs/tiny",
            "--algos",
            "alphago",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("greedy, vote, beam, mcts, gumbel"),
        "{}",
        text(&out)
    );
    let out = factorexe(
        d,
        &["search", "compare", "--run", "runs/tiny", "--budgets", "0"],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("each >= 1"), "{}", text(&out));
    let out = factorexe(d, &["search", "compare", "--run", "runs/none"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("is runs/none a run directory"),
        "{}",
        text(&out)
    );
}
