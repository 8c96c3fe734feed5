//! Criterion bench `model`: the CoT transformer's per-call costs at the default config
//! (4 heads x 32, 0 encoder layers, 2 decoder layers, mlp 4) on Cycle L=40 shapes, one thread:
//! decoding an 8-token chain with the KV cache at batch 1 (a search node's cost is one of its
//! steps) and 256, and
//! a teacher-forced forward + backward at batch 64.
//!
//! `cargo bench -p factorexe-agents --bench model`. Whole-step throughput against PyTorch is
//! `scripts/bench/train_vs_pytorch.sh`.

use std::hint::black_box;

use agents::model::{CotTransformer, ModelConfig, ModelLayout};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tch::{nn, Device, Kind, Tensor};

const L: usize = 40;
const MAX_STEPS: usize = 16;

fn model() -> (nn::VarStore, CotTransformer) {
    let layout = ModelLayout {
        input_len: L,
        input_vocab: L,
        difficulty_vocab: 5,
        max_steps: MAX_STEPS,
        emitted_vocab: L + 2,
        num_actions: L + 1,
        chain: true,
        answer: None,
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let m = CotTransformer::with_seed(&vs.root(), &ModelConfig::default(), &layout, 0)
        .expect("valid config");
    (vs, m)
}

fn problems(b: i64) -> (Tensor, Tensor) {
    tch::manual_seed(0);
    (
        Tensor::randint(L as i64, [b, L as i64], (Kind::Int64, Device::Cpu)),
        Tensor::randint(5, [b], (Kind::Int64, Device::Cpu)),
    )
}

fn decode(c: &mut Criterion) {
    let (_vs, m) = model();
    let mut g = c.benchmark_group("decode_step");
    for b in [1i64, 256] {
        let (x, d) = problems(b);
        let enc = m.encode(&x, &d, false);
        let start = Tensor::full([b], m.layout().start_token(), (Kind::Int64, Device::Cpu));
        // Tokens decoded per iteration: a fresh 8-token chain per problem.
        g.throughput(Throughput::Elements(8 * b as u64));
        g.bench_function(format!("b{b}_8_tokens"), |bench| {
            bench.iter(|| {
                let mut st = m.start_decode(&enc);
                let mut prev = start.shallow_clone();
                for _ in 0..8 {
                    prev = m.decode_step(&mut st, &prev).logits.argmax(-1, false);
                }
                black_box(prev)
            })
        });
    }
    g.finish();
}

fn train(c: &mut Criterion) {
    let (_vs, m) = model();
    let b = 64;
    let (x, d) = problems(b);
    let prev = Tensor::randint(L as i64 + 1, [b, 7], (Kind::Int64, Device::Cpu));
    let mut g = c.benchmark_group("forward_backward");
    g.throughput(Throughput::Elements(b as u64));
    g.bench_function("b64_t7", |bench| {
        bench.iter(|| {
            let enc = m.encode(&x, &d, true);
            let h = m.forward_chain(&enc, &prev, true);
            h.logits
                .log_softmax(-1, Kind::Float)
                .mean(Kind::Float)
                .backward();
        })
    });
    g.finish();
}

fn config() -> Criterion {
    tch::set_num_threads(1);
    agents::model::tune_allocator();
    Criterion::default().sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = decode, train
}
criterion_main!(benches);
