//! Throughput of the CoT transformer on synthetic Cycle batches: the CotSupervised training
//! step (teacher-forced chain CE under the action mask + AdamW) and chain sampling with and
//! without the KV cache. `scripts/bench/train_vs_pytorch.sh` runs it next to a PyTorch-eager
//! twin (`scripts/bench/train_vs_pytorch.py`) and compares.
//!
//! ```text
//! cargo run --release -p factorexe-agents --example bench_train_step -- \
//!     [--batch 512] [--heads 4] [--head-dim 32] [--decoder-layers 2] [--encoder-layers 0]
//!     [--mlp-factor 4] [--repeat 1] [--input-len 40] [--max-hops 5] [--steps 20]
//!     [--warmup 3] [--threads 2] [--sample-len 16] [--sample-batch 512] [--mode all]
//!     [--device cpu|cuda]
//! ```
//! Prints one `RESULT key=value ...` line per measurement.

use std::time::Instant;

use agents::model::{CotTransformer, ModelConfig, ModelLayout};
use agents::optim::{AdamW, OptimConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tch::{nn, Device, Kind, Tensor};

struct Args {
    batch: i64,
    heads: usize,
    head_dim: usize,
    decoder_layers: usize,
    encoder_layers: usize,
    mlp_factor: f64,
    repeat: usize,
    input_len: usize,
    max_hops: usize,
    steps: usize,
    warmup: usize,
    threads: i32,
    sample_len: usize,
    sample_batch: i64,
    mode: String,
    device: Device,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        batch: 512,
        heads: 4,
        head_dim: 32,
        decoder_layers: 2,
        encoder_layers: 0,
        mlp_factor: 4.0,
        repeat: 1,
        input_len: 40,
        max_hops: 5,
        steps: 20,
        warmup: 3,
        threads: 2,
        sample_len: 16,
        sample_batch: 512,
        mode: "all".into(),
        device: Device::Cpu,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let [key, value] = pair else {
            return Err(format!("missing value after {}", pair[0]));
        };
        let bad = |e: &dyn std::fmt::Display| format!("{key} {value}: {e}");
        match key.as_str() {
            "--batch" => a.batch = value.parse().map_err(|e| bad(&e))?,
            "--heads" => a.heads = value.parse().map_err(|e| bad(&e))?,
            "--head-dim" => a.head_dim = value.parse().map_err(|e| bad(&e))?,
            "--decoder-layers" => a.decoder_layers = value.parse().map_err(|e| bad(&e))?,
            "--encoder-layers" => a.encoder_layers = value.parse().map_err(|e| bad(&e))?,
            "--mlp-factor" => a.mlp_factor = value.parse().map_err(|e| bad(&e))?,
            "--repeat" => a.repeat = value.parse().map_err(|e| bad(&e))?,
            "--input-len" => a.input_len = value.parse().map_err(|e| bad(&e))?,
            "--max-hops" => a.max_hops = value.parse().map_err(|e| bad(&e))?,
            "--steps" => a.steps = value.parse().map_err(|e| bad(&e))?,
            "--warmup" => a.warmup = value.parse().map_err(|e| bad(&e))?,
            "--threads" => a.threads = value.parse().map_err(|e| bad(&e))?,
            "--sample-len" => a.sample_len = value.parse().map_err(|e| bad(&e))?,
            "--sample-batch" => a.sample_batch = value.parse().map_err(|e| bad(&e))?,
            "--mode" => a.mode = value.clone(),
            "--device" => {
                a.device = match value.as_str() {
                    "cpu" => Device::Cpu,
                    "cuda" if tch::Cuda::is_available() => Device::Cuda(0),
                    "cuda" => return Err("--device cuda: no CUDA device is available".into()),
                    _ => return Err(format!("{key} {value}: expected cpu or cuda")),
                }
            }
            _ => return Err(format!("unknown flag {key}")),
        }
    }
    Ok(a)
}

/// A teacher-forcing batch of Cycle problems, laid out as the CotSupervised agent builds it.
struct Batch {
    input: Tensor,
    difficulty: Tensor,
    prev: Tensor,
    targets: Tensor,
    mask: Tensor,
    weight: Tensor,
}

/// Cycle(L): a random single-cycle permutation `f`; with `h` hops the action sequence is
/// `f^1(0) .. f^h(0), ANSWER, f^(h+1)(0)`, padded to `max_hops + 2` steps.
fn cycle_batch(rng: &mut StdRng, b: usize, l: usize, max_hops: usize) -> Batch {
    let t = max_hops + 2;
    let answer = l as i64; // the ANSWER marker; START/PAD is l + 1
    let a = l + 1;
    let mut input = Vec::with_capacity(b * l);
    let mut difficulty = Vec::with_capacity(b);
    let mut prev = Vec::with_capacity(b * t);
    let mut targets = Vec::with_capacity(b * t);
    let mut mask = Vec::with_capacity(b * t * a);
    let mut weight = Vec::with_capacity(b * t);
    let mut order: Vec<usize> = (0..l).collect();
    for _ in 0..b {
        for i in (1..l).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let mut f = vec![0i64; l];
        for i in 0..l {
            f[order[i]] = order[(i + 1) % l] as i64;
        }
        input.extend_from_slice(&f);
        let hops = rng.random_range(1..=max_hops);
        difficulty.push(hops as i64 - 1);
        let mut node = 0i64;
        let mut actions = Vec::with_capacity(t);
        for _ in 0..hops {
            node = f[node as usize];
            actions.push(node);
        }
        actions.push(answer);
        actions.push(f[node as usize]);
        prev.push(answer + 1);
        for k in 0..t {
            let valid = k < actions.len();
            if k + 1 < t {
                prev.push(if valid { actions[k] } else { answer + 1 });
            }
            targets.push(if valid { actions[k] } else { 0 });
            weight.push(if valid { 1f32 } else { 0f32 });
            let answering = k == hops + 1;
            // Chain phase: every token and ANSWER; answer phase: tokens only.
            mask.extend((0..a).map(|x| valid && !(answering && x == l)));
        }
    }
    let (b, l, t, a) = (b as i64, l as i64, t as i64, a as i64);
    Batch {
        input: Tensor::from_slice(&input).view([b, l]),
        difficulty: Tensor::from_slice(&difficulty),
        prev: Tensor::from_slice(&prev).view([b, t]),
        targets: Tensor::from_slice(&targets).view([b, t]),
        mask: Tensor::from_slice(&mask).view([b, t, a]),
        weight: Tensor::from_slice(&weight).view([b, t]),
    }
}

impl Batch {
    fn into_device(self, device: Device) -> Batch {
        Batch {
            input: self.input.to_device(device),
            difficulty: self.difficulty.to_device(device),
            prev: self.prev.to_device(device),
            targets: self.targets.to_device(device),
            mask: self.mask.to_device(device),
            weight: self.weight.to_device(device),
        }
    }
}

fn build(args: &Args, max_steps: usize) -> (nn::VarStore, CotTransformer) {
    let cfg = ModelConfig {
        heads: args.heads,
        head_dim: args.head_dim,
        mlp_factor: args.mlp_factor,
        encoder_layers: args.encoder_layers,
        decoder_layers: args.decoder_layers,
        repeat: args.repeat,
        ..ModelConfig::default()
    };
    let l = args.input_len;
    let layout = ModelLayout {
        input_len: l,
        input_vocab: l,
        difficulty_vocab: args.max_hops,
        max_steps,
        emitted_vocab: l + 2,
        num_actions: l + 1,
        chain: true,
        answer: None,
    };
    let vs = nn::VarStore::new(args.device);
    let model = CotTransformer::with_seed(&vs.root(), &cfg, &layout, 0)
        .unwrap_or_else(|e| panic!("bad bench config: {e}"));
    (vs, model)
}

fn bench_train(args: &Args) {
    let t = args.max_hops + 2;
    let (vs, model) = build(args, t);
    let mut opt = AdamW::new(&vs, &OptimConfig::default(), 1_000_000);
    let mut rng = StdRng::seed_from_u64(1);
    let batches: Vec<Batch> = (0..4)
        .map(|_| {
            cycle_batch(&mut rng, args.batch as usize, args.input_len, args.max_hops)
                .into_device(args.device)
        })
        .collect();
    let mut step = |b: &Batch| {
        opt.zero_grad();
        let enc = model.encode(&b.input, &b.difficulty, true);
        let heads = model.forward_chain(&enc, &b.prev, true);
        let logp = heads
            .logits
            .masked_fill(&b.mask.logical_not(), -1e9)
            .log_softmax(-1, Kind::Float);
        let ce = -logp
            .gather(-1, &b.targets.unsqueeze(-1), false)
            .squeeze_dim(-1);
        let loss = (ce * &b.weight).sum(Kind::Float) / b.weight.sum(Kind::Float);
        loss.backward();
        opt.step().unwrap_or_else(|e| panic!("{e}"));
        loss.double_value(&[])
    };
    for i in 0..args.warmup {
        step(&batches[i % batches.len()]);
    }
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    let mut last = 0.0;
    for i in 0..args.steps {
        last = step(&batches[i % batches.len()]);
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let examples = (args.steps as i64 * args.batch) as f64 / secs;
    // The forward FLOPs the model runs per example (the padded length; a memory held as a
    // table of distinct rows projected once per batch), as the profiler counts them.
    agents::profile::enable(args.device);
    tch::no_grad(|| {
        let b = &batches[0];
        model.forward_chain(&model.encode(&b.input, &b.difficulty, true), &b.prev, false);
    });
    let flops = agents::profile::model_flops() / args.batch as f64;
    agents::profile::disable();
    println!(
        "RESULT kind=train impl=rust device={:?} threads={} examples_per_s={examples:.1} step_ms={:.2} \
         examples_per_cpu_s={:.1} params={} fwd_flops_per_example={flops:.0} \
         train_flops_per_s={:.3e} loss={last:.4}",
        args.device,
        args.threads,
        1e3 * secs / args.steps as f64,
        (args.steps as i64 * args.batch) as f64 / cpu,
        model.num_parameters(),
        3.0 * flops * examples,
    );
}

/// User + system CPU seconds of this process (all threads), from `/proc/self/stat`: on a
/// shared machine, work per CPU-second is steadier than work per wall-second.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}

/// Gumbel-max sampling of one token per row.
fn sample(logits: &Tensor) -> Tensor {
    let u = logits.rand_like().clamp(1e-12, 1.0);
    (logits - (-u.log()).log()).argmax(-1, false)
}

fn bench_sample(args: &Args) {
    let n = args.sample_len;
    let (_vs, model) = build(args, n);
    let mut rng = StdRng::seed_from_u64(2);
    let b = cycle_batch(
        &mut rng,
        args.sample_batch as usize,
        args.input_len,
        args.max_hops,
    )
    .into_device(args.device);
    let start_tok = Tensor::full(
        [args.sample_batch],
        model.layout().start_token(),
        (Kind::Int64, args.device),
    );
    let cached = || {
        tch::no_grad(|| {
            let enc = model.encode(&b.input, &b.difficulty, false);
            let mut st = model.start_decode(&enc);
            let mut prev = start_tok.shallow_clone();
            for _ in 0..n {
                prev = sample(&model.decode_step(&mut st, &prev).logits);
            }
            prev
        })
    };
    // The original's decoding: re-run the whole prefix for every new token.
    let uncached = || {
        tch::no_grad(|| {
            let enc = model.encode(&b.input, &b.difficulty, false);
            let mut tokens = start_tok.unsqueeze(1);
            for t in 0..n as i64 {
                let logits = model
                    .forward_chain(&enc, &tokens, false)
                    .logits
                    .select(1, t);
                let next = sample(&logits);
                if t + 1 < n as i64 {
                    tokens = Tensor::cat(&[tokens, next.unsqueeze(1)], 1);
                }
            }
            tokens
        })
    };
    // Reading a value back waits for the device, so the times include the GPU's work.
    let time = |f: &dyn Fn() -> Tensor| {
        let _ = f().sum(Kind::Int64).int64_value(&[]);
        let reps = args.steps.max(1);
        let start = Instant::now();
        for _ in 0..reps {
            let _ = f().sum(Kind::Int64).int64_value(&[]);
        }
        start.elapsed().as_secs_f64() / reps as f64
    };
    let with_cache = time(&cached);
    let without = time(&uncached);
    let per_s = |s: f64| args.sample_batch as f64 / s;
    println!(
        "RESULT kind=sample device={:?} chain_len={n} batch={} cached_chains_per_s={:.1} \
         uncached_chains_per_s={:.1} speedup={:.2}",
        args.device,
        args.sample_batch,
        per_s(with_cache),
        per_s(without),
        without / with_cache
    );
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_train_step: {e}");
            std::process::exit(2);
        }
    };
    if std::env::var_os("BENCH_NO_TUNE_ALLOCATOR").is_none() {
        agents::model::tune_allocator();
    }
    tch::set_num_threads(args.threads);
    tch::manual_seed(0);
    if args.mode == "all" || args.mode == "train" {
        bench_train(&args);
    }
    if args.mode == "all" || args.mode == "sample" {
        bench_sample(&args);
    }
}
