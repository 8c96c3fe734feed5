//! `factorexe bench train`: where the time of a config's training update goes.
//!
//! Builds the config's env and agent through the registries (as `factorexe train` does, with
//! no run directory), plays the run's first updates with the run's seeds, and reads the
//! phase timers the agent and the policy report and the analytic FLOPs the model counts (and
//! the agents' backward passes add) through [`agents::profile`]. The peak the FLOPs are compared with is a large fp32 matmul
//! measured in the same process at the same thread count.

use std::path::Path;
use std::time::Instant;

use agents::agent::Agent;
use agents::config::{Override, RunConfig};
use agents::profile::{self, PhaseTotal};
use agents::rollout::{Collector, Lockstep};
use agents::runner::{ACT_SALT, TRAIN_SALT};
use anyhow::Context;
use envs::{derive_seed, Env};
use tch::{Device, Kind, Tensor};

use super::TrainArgs;

/// The phases the report shows under each part of an update, in order; a phase an agent
/// reports that is not listed here is shown under `update` after them.
const ROLLOUT_PHASES: [&str; 3] = [
    agents::policy::ROLLOUT_MODEL,
    "rollout_sample",
    agents::policy::ROLLOUT_ANSWER_CE,
];
const UPDATE_PHASES: [&str; 7] = [
    "answer_ce",
    "score",
    "forward",
    "loss",
    "backward",
    "grad_variance",
    "optimizer",
];

pub fn profile(a: &TrainArgs) -> anyhow::Result<()> {
    super::super::train::passive_openmp();
    let overrides = a
        .set
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut cfg = RunConfig::load(&a.config, &overrides)?;
    cfg.validate()?;
    agents::registry::resolve(&mut cfg)?;
    let device = a.runtime.apply()?;
    let env = cfg.env.build()?;
    let sampler = cfg.train.sampler()?;
    sampler.validate(&env.spec().difficulty)?;
    let mut agent = agents::registry::build(&cfg, &env, device)
        .with_context(|| format!("building the agent of {}", a.config.display()))?;
    let threads = tch::get_num_threads();
    // The peak is measured before and after the updates and the higher rate kept: a
    // moment when another process held a core would otherwise lower the peak and inflate
    // the MFU (a one-off measurement on a shared machine once read half the true peak).
    let peak_before = matmul_peak(device, threads);
    let dispatch = small_op_seconds(device);

    let problems = cfg.train.batch_size;
    let mut batch = Lockstep::new(&env, 0);
    let mut totals: Vec<PhaseTotal> = Vec::new();
    let (mut episodes, mut env_steps, mut wall, mut cpu) = (0u64, 0u64, 0f64, 0f64);
    profile::enable(device);
    for step in 0..a.warmup + a.steps {
        let seed = derive_seed(cfg.seed ^ TRAIN_SALT, step);
        let act_seed = derive_seed(cfg.seed ^ ACT_SALT, step);
        tch::manual_seed((seed >> 1) as i64);
        let start = Instant::now();
        let cpu_start = process_cpu_seconds();
        let (experience, played) = {
            let _phase = profile::phase("rollout");
            let mut ctx = Collector::new(&env, &mut batch, &sampler, problems, seed, act_seed);
            let experience = agent.collect(&mut ctx)?;
            (experience, ctx.played())
        };
        {
            let _phase = profile::phase("update");
            agent.update(experience)?;
        }
        let secs = start.elapsed().as_secs_f64();
        let cpu_secs = process_cpu_seconds() - cpu_start;
        let phases = profile::take();
        if step < a.warmup {
            continue;
        }
        wall += secs;
        cpu += cpu_secs;
        episodes += played.episodes;
        env_steps += played.steps;
        for p in phases {
            match totals.iter_mut().find(|t| t.name == p.name) {
                Some(t) => {
                    t.seconds += p.seconds;
                    t.flops += p.flops;
                }
                None => totals.push(p),
            }
        }
    }
    profile::disable();
    let peak_after = matmul_peak(device, threads);
    let peak = peak_before.max(peak_after);

    let updates = a.steps as f64;
    let get = |name: &str| {
        totals
            .iter()
            .find(|t| t.name == name)
            .copied()
            .unwrap_or(PhaseTotal {
                name: "",
                seconds: 0.0,
                flops: 0.0,
            })
    };
    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    for (part, listed) in [
        ("rollout", &ROLLOUT_PHASES[..]),
        ("update", &UPDATE_PHASES[..]),
    ] {
        let whole = get(part);
        let mut children: Vec<PhaseTotal> = listed.iter().map(|n| get(n)).collect();
        if part == "update" {
            children.extend(totals.iter().copied().filter(|t| {
                !["rollout", "update"].contains(&t.name)
                    && !ROLLOUT_PHASES.contains(&t.name)
                    && !UPDATE_PHASES.contains(&t.name)
            }));
        }
        let named: Vec<(String, f64, f64)> = listed
            .iter()
            .zip(&children)
            .map(|(n, c)| (n.to_string(), c.seconds, c.flops))
            .chain(
                children[listed.len()..]
                    .iter()
                    .map(|c| (c.name.to_string(), c.seconds, c.flops)),
            )
            .collect();
        let inner: f64 = named.iter().map(|r| r.1).sum();
        let inner_flops: f64 = named.iter().map(|r| r.2).sum();
        rows.push((part.to_string(), whole.seconds, inner_flops + whole.flops));
        for (n, s, f) in named {
            let short = n.strip_prefix("rollout_").unwrap_or(&n).to_string();
            rows.push((format!("{part}/{short}"), s, f));
        }
        let rest = if part == "rollout" { "env" } else { "other" };
        rows.push((
            format!("{part}/{rest}"),
            (whole.seconds - inner).max(0.0),
            whole.flops,
        ));
    }
    let total_flops: f64 = rows
        .iter()
        .filter(|r| !r.0.contains('/'))
        .map(|r| r.2)
        .sum();

    header(&a.config, &cfg, &env, agent.as_ref(), device, threads, a);
    println!(
        "# fp32 matmul peak ({MATMUL_N}x{MATMUL_N} by {MATMUL_N}x{MATMUL_N}; {}; the best \
         repetition, measured before and after the updates and the higher kept): {:.1} GFLOP/s \
         (before {:.1}, after {:.1}); one small op dispatched and run: {:.2} us",
        if device == Device::Cpu && threads > 1 {
            format!(
                "{threads} threads, each multiplying its own pair at once on one libtorch \
                 thread, rates added"
            )
        } else if device == Device::Cpu {
            "1 thread".to_string()
        } else {
            format!("{device:?}")
        },
        peak / 1e9,
        peak_before / 1e9,
        peak_after / 1e9,
        dispatch * 1e6
    );
    println!(
        "# MFU = analytic model FLOPs / (wall seconds x that peak). Model FLOPs: 2*m*n*k per \
         matmul the model runs in its forward passes (decoder steps while sampling, \
         teacher-forced passes), attention scores and mixing included, counted for the rows \
         it computes (a memory's keys and values once per distinct row: per table row when \
         the memory is held as a table, per problem when K samples share it); backward = 2 x \
         forward; LayerNorm, softmax, element-wise ops and the optimizer count 0."
    );
    println!(
        "# at_peak_ms = FLOPs / peak (the compute); overhead_ms = ms - at_peak_ms (host-side \
         Rust and op dispatch, memory-bound ops, small matmuls below peak). Times per update; \
         cpu_ms_per_update is the process's CPU time (all threads), steadier than wall time \
         on a shared machine."
    );
    println!(
        "train updates={} examples_per_s={:.0} episodes_per_s={:.0} env_steps_per_s={:.0} \
         update_ms={:.2} cpu_ms_per_update={:.2} gflop_per_update={:.3} mfu={:.2}%",
        a.steps,
        problems as f64 * updates / wall,
        episodes as f64 / wall,
        env_steps as f64 / wall,
        wall / updates * 1e3,
        cpu / updates * 1e3,
        total_flops / updates / 1e9,
        100.0 * total_flops / (wall * peak)
    );
    // Phases this agent does not have (nothing timed, nothing counted) are left out.
    for (name, secs, flops) in rows.into_iter().filter(|r| r.1 > 0.0 || r.2 > 0.0) {
        let ms = secs / updates * 1e3;
        let at_peak = flops / peak / updates * 1e3;
        println!(
            "phase name={name} ms={ms:.2} share={:.1}% gflop={:.4} mfu={} at_peak_ms={at_peak:.2} \
             overhead_ms={:.2}",
            100.0 * secs / wall,
            flops / updates / 1e9,
            if secs > 0.0 {
                format!("{:.2}%", 100.0 * flops / (secs * peak))
            } else {
                "n/a".into()
            },
            (ms - at_peak).max(0.0)
        );
    }
    Ok(())
}

fn header(
    path: &Path,
    cfg: &RunConfig,
    env: &envs::AnyEnv,
    agent: &dyn Agent<Batch = agents::agent::AnyBatch>,
    device: Device,
    threads: i32,
    a: &TrainArgs,
) {
    let sets = if a.set.is_empty() {
        String::new()
    } else {
        format!(" --set {}", a.set.join(" --set "))
    };
    println!(
        "# factorexe bench train: {}{sets}; agent {} ({} parameters), env {}, {} problems x {} \
         samples per update; device {device:?}, {threads} threads; {} updates measured after {} \
         warm-up",
        path.display(),
        agent.name(),
        agent.num_parameters(),
        env.spec().name,
        cfg.train.batch_size,
        agent.experience().samples_per_problem(),
        a.steps,
        a.warmup
    );
    super::machine_line();
}

/// Side of the square matmul that measures the peak.
const MATMUL_N: i64 = 1024;

/// This machine's fp32 matmul peak (FLOP/s) at `threads` threads. On the CPU with two or
/// more threads, `threads` products run at once, each on its own thread with one libtorch
/// thread (as data-parallel shards run), and their rates are added: one product split over
/// libtorch's threads sometimes ran on a single core (half the peak, so twice the MFU).
fn matmul_peak(device: Device, threads: i32) -> f64 {
    if device != Device::Cpu || threads < 2 {
        return matmul_rate(device, None);
    }
    let saved = tch::get_num_threads();
    // The threads start timing together, once each has its operands and a first product.
    let start = std::sync::Barrier::new(threads as usize);
    let total = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    tch::set_num_threads(1);
                    matmul_rate(Device::Cpu, Some(&start))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(0.0))
            .sum::<f64>()
    });
    tch::set_num_threads(saved);
    total
}

/// The best fp32 matmul rate (FLOP/s) over about half a second of `MATMUL_N`-sided
/// products on `device` at this thread's libtorch thread count; the timing starts after
/// `start` (when given) lets every thread through.
fn matmul_rate(device: Device, start: Option<&std::sync::Barrier>) -> f64 {
    let opts = (Kind::Float, device);
    let x = Tensor::randn([MATMUL_N, MATMUL_N], opts);
    let y = Tensor::randn([MATMUL_N, MATMUL_N], opts);
    let out = x.mm(&y);
    if let Some(barrier) = start {
        barrier.wait();
    }
    profile::enable(device);
    let flops = 2.0 * (MATMUL_N as f64).powi(3);
    let mut best = 0f64;
    let started = Instant::now();
    let mut reps = 0;
    while reps < 3 || (started.elapsed().as_secs_f64() < 0.5 && reps < 1000) {
        let t = Instant::now();
        let _ = x.mm_out(&out, &y);
        profile::synchronize();
        best = best.max(flops / t.elapsed().as_secs_f64());
        reps += 1;
    }
    profile::disable();
    best
}

/// Seconds of one small element-wise op (dispatch plus a few floats of work), the floor
/// under every op of a small model's step.
fn small_op_seconds(device: Device) -> f64 {
    let mut x = Tensor::zeros([8], (Kind::Float, device));
    let y = Tensor::ones([8], (Kind::Float, device));
    let n = 2000;
    for _ in 0..100 {
        let _ = x.g_add_(&y);
    }
    profile::enable(device);
    profile::synchronize();
    let t = Instant::now();
    for _ in 0..n {
        let _ = x.g_add_(&y);
    }
    profile::synchronize();
    profile::disable();
    t.elapsed().as_secs_f64() / f64::from(n)
}

/// CPU seconds (user and system, all threads) this process has used.
fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes the struct it is given and nothing else.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0.0;
        }
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}
