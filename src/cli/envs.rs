//! `factorexe envs`: list the named envs, show a problem with its oracle chain, run the env
//! checker.

use ::envs::registry::{self, EnvEntry, ParamSpec, COT_PARAMS, THINK_PARAMS};
use ::envs::{check_env_with, CheckOptions, Difficulty, Env, EnvParams, EnvRng};
use anyhow::{bail, Context};
use clap::Subcommand;
use rand::SeedableRng;

/// Arguments of `factorexe envs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the named envs, their parameters and defaults.
    List,
    /// Print a problem of an env, then play its oracle and print the end state.
    ///
    /// Example: factorexe envs show cycle --length 8 --hops 4 --seed 0
    Show(EnvArgs),
    /// Run the env checker (check_env) on an env.
    ///
    /// Example: factorexe envs check cvpr --length 20
    Check(EnvArgs),
}

/// An env name and its parameters.
#[derive(Debug, clap::Args)]
struct EnvArgs {
    /// Env name (see `factorexe envs list`).
    name: String,
    /// Env parameters and options as `--key value` or `--key=value`: the env's parameters
    /// (e.g. `--length 8 --max-chain-len 4`, see `factorexe envs list`); `--seed S`;
    /// for `show`, `--hops H` (or `--difficulty`, `--digits`), default the hardest level;
    /// for `check`, `--episodes N` per difficulty (default 3) and `--max-difficulties N`
    /// (default 8).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "--KEY VALUE"
    )]
    params: Vec<String>,
}

/// The parsed `--key value` list: env parameters apart, the command's own options taken out.
struct Parsed {
    params: EnvParams,
    seed: Option<u64>,
    difficulty: Option<Difficulty>,
    /// The flag the difficulty was given with (`--hops`, `--level`, ...), for messages.
    difficulty_flag: Option<String>,
    episodes: Option<usize>,
    max_difficulties: Option<usize>,
}

fn parse(args: &[String]) -> anyhow::Result<Parsed> {
    let mut out = Parsed {
        params: EnvParams::new(),
        seed: None,
        difficulty: None,
        difficulty_flag: None,
        episodes: None,
        max_difficulties: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            bail!("expected `--key value`, got `{arg}`");
        };
        let (key, value) = match flag.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => {
                let v = it
                    .next()
                    .with_context(|| format!("`--{flag}` needs a value"))?;
                (flag.to_string(), v.clone())
            }
        };
        let number = |what: &str| -> anyhow::Result<u64> {
            value.parse::<u64>().with_context(|| {
                format!("`--{what}` must be a non-negative integer, got `{value}`")
            })
        };
        match key.as_str() {
            "seed" => out.seed = Some(number("seed")?),
            "hops" | "difficulty" | "digits" | "level" => {
                out.difficulty_flag = Some(format!("`--{key}`"));
                out.difficulty = Some(
                    Difficulty::try_from(number(&key)?)
                        .with_context(|| format!("`--{key}` is too large"))?,
                )
            }
            "episodes" => {
                let n = number("episodes")?;
                if n == 0 {
                    bail!("`--episodes` must be at least 1 (episodes per difficulty)");
                }
                out.episodes = Some(usize::try_from(n).context("`--episodes` is too large")?);
            }
            "max-difficulties" | "max_difficulties" => {
                let n = number("max-difficulties")?;
                if n == 0 {
                    bail!("`--max-difficulties` must be at least 1");
                }
                out.max_difficulties =
                    Some(usize::try_from(n).context("`--max-difficulties` is too large")?);
            }
            _ => out.params.set_text(&key, &value),
        }
    }
    Ok(out)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::List => {
            list();
            Ok(())
        }
        Command::Show(a) => show(&a),
        Command::Check(a) => check(&a),
    }
}

fn list() {
    // Columns as wide as the longest env and parameter names, so that help texts line up.
    let entries = registry::entries();
    let name_w = entries.iter().map(|e| e.name.len()).max().unwrap_or(0);
    let param_w = entries
        .iter()
        .flat_map(|e| e.all_params())
        .map(|p| p.name.len())
        .max()
        .unwrap_or(0);
    let param = |indent: usize, p: &ParamSpec| {
        println!(
            "{:indent$}--{:<param_w$}  {} (default {})",
            "",
            dashed(p.name),
            p.help,
            p.default
        );
    };
    for e in &entries {
        println!("{:<name_w$}  {}", e.name, e.summary);
        println!("{:name_w$}  difficulty = {}", "", e.difficulty);
        for p in e.params {
            param(name_w + 2, p);
        }
        if e.cot {
            println!("{:name_w$}  + the chain-of-thought parameters below", "");
        }
        println!();
    }
    println!("chain-of-thought parameters (every token task):");
    for p in COT_PARAMS {
        param(2, p);
    }
    println!("\nthought tokens (every env; `--thoughts K` wraps it in Think):");
    for p in THINK_PARAMS {
        param(2, p);
    }
}

fn dashed(name: &str) -> String {
    name.replace('_', "-")
}

fn build(a: &EnvArgs) -> anyhow::Result<(EnvEntry, ::envs::AnyEnv, Parsed)> {
    let parsed = parse(&a.params)?;
    let entry = registry::entry(&a.name)?;
    let env = registry::make(&a.name, &parsed.params).map_err(|e| as_flags_error(e, &entry))?;
    Ok((entry, env, parsed))
}

/// The options `show` and `check` take besides the env's parameters.
const OWN_OPTIONS: &str =
    "--seed, --hops (or --difficulty, --digits, --level), --episodes, --max-difficulties";

/// An env error as a command-line user reads it: parameters named by the flags they typed.
fn as_flags_error(e: ::envs::EnvError, entry: &EnvEntry) -> anyhow::Error {
    match e {
        ::envs::EnvError::UnknownParameter { env, name, .. } => {
            let flags: Vec<String> = entry
                .all_params()
                .map(|p| format!("--{}", dashed(p.name)))
                .collect();
            let names: Vec<&str> = entry.all_params().map(|p| p.name).collect();
            let hint = registry::closest(&name, &names)
                .map(|n| format!(" (did you mean `--{}`?)", dashed(n)))
                .unwrap_or_default();
            anyhow::anyhow!(
                "`{env}` has no option `--{}`{hint}; its parameters: {}; options: {OWN_OPTIONS}",
                dashed(&name),
                flags.join(", ")
            )
        }
        other => anyhow::anyhow!(as_flags(&other.to_string(), entry)),
    }
}

/// `text` with the env's parameter names written as the flags that set them: a name in
/// backticks, or a multi-word name (`max_chain_len`) anywhere, becomes `--max-chain-len`.
/// One-word names outside backticks are left alone: they read as ordinary words.
fn as_flags(text: &str, entry: &EnvEntry) -> String {
    let mut out = text.to_string();
    for p in entry.all_params() {
        let flag = format!("--{}", dashed(p.name));
        out = out.replace(&format!("`{}`", p.name), &format!("`{flag}`"));
        if p.name.contains('_') {
            out = out.replace(p.name, &flag);
        }
    }
    out.replace("`hops`", "`--hops`")
        .replace("`difficulty`", "`--difficulty`")
        .replace("`digits`", "`--digits`")
}

fn show(a: &EnvArgs) -> anyhow::Result<()> {
    let (entry, mut env, p) = build(a)?;
    let spec = env.spec().clone();
    let difficulty = p.difficulty.unwrap_or(spec.difficulty.max);
    let seed = p.seed.unwrap_or(0);
    // Reset first: a difficulty out of range fails before anything is printed.
    env.reset(&mut EnvRng::seed_from_u64(seed), difficulty)
        .map_err(|e| {
            let msg = as_flags_error(e, &entry).to_string();
            match &p.difficulty_flag {
                Some(typed) => anyhow::anyhow!(msg
                    .replace("`--hops`", typed)
                    .replace("`--difficulty`", typed)
                    .replace("`--digits`", typed)),
                None => anyhow::anyhow!(msg),
            }
        })?;
    let fields: Vec<String> = spec
        .obs
        .token_fields
        .iter()
        .map(|f| format!("{} {}×[0,{})", f.name, f.len, f.vocab))
        .collect();
    println!("{}", spec.name);
    println!(
        "  observation: {} tokens ({}), {} features",
        spec.obs.tokens,
        fields.join(", "),
        spec.obs.features
    );
    println!(
        "  actions {}, max episode steps {}, {} {}..={}, reward range {:?}",
        spec.num_actions,
        spec.max_episode_steps,
        entry.difficulty,
        spec.difficulty.min,
        spec.difficulty.max,
        spec.reward_range
    );
    println!("\nseed {seed}, {} {difficulty}:", entry.difficulty);
    println!("{}", env.render());
    let mut actions = Vec::new();
    let mut total = 0.0;
    while let Some(a) = env.oracle_action() {
        actions.push(a.to_string());
        total += env.step(a)?.reward;
    }
    if actions.is_empty() {
        println!("\n(no oracle for this state)");
        return Ok(());
    }
    println!("\noracle actions: {}", actions.join(" "));
    println!("{}", env.render());
    println!(
        "return {total}, solved {}",
        match env.info().solved {
            Some(true) => "yes",
            Some(false) => "no",
            None => "n/a",
        }
    );
    Ok(())
}

fn check(a: &EnvArgs) -> anyhow::Result<()> {
    let (entry, mut env, p) = build(a)?;
    let defaults = CheckOptions::default();
    let opts = CheckOptions {
        seed: p.seed.unwrap_or(defaults.seed),
        episodes_per_difficulty: p.episodes.unwrap_or(defaults.episodes_per_difficulty),
        max_difficulties: p.max_difficulties.unwrap_or(defaults.max_difficulties),
    };
    let report = check_env_with(&mut env, &opts)
        .map_err(|e| anyhow::anyhow!(as_flags(&e.to_string(), &entry)))?;
    println!(
        "check_env({}): ok, {} episodes, {} steps, difficulties {:?}, seed {}",
        report.env, report.episodes, report.steps, report.difficulties, opts.seed
    );
    for w in &report.warnings {
        println!("warning: {}", as_flags(w, &entry));
    }
    Ok(())
}
