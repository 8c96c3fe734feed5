//! Tests of the CoT transformer: shapes, KV cache equivalence, causality, weight sharing,
//! readouts, parameter counts and config parsing.

use super::*;
use envs::spec::{DifficultyRange, EnvSpec, ObsLayout, TokenField};
use tch::{nn, Device, Kind, Tensor};

fn layout(input_len: usize, vocab: usize, max_steps: usize) -> ModelLayout {
    ModelLayout {
        input_len,
        input_vocab: vocab,
        difficulty_vocab: 3,
        max_steps,
        emitted_vocab: vocab + 2,
        num_actions: vocab + 1,
        chain: true,
        answer: None,
    }
}

fn tiny() -> ModelConfig {
    ModelConfig {
        heads: 2,
        head_dim: 4,
        mlp_factor: 2.0,
        encoder_layers: 1,
        decoder_layers: 2,
        ..ModelConfig::default()
    }
}

fn build(cfg: &ModelConfig, layout: &ModelLayout, seed: u64) -> (nn::VarStore, CotTransformer) {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = CotTransformer::with_seed(&vs.root(), cfg, layout, seed).unwrap();
    (vs, model)
}

/// Pseudo-random tokens from a local LCG, so parallel tests do not share libtorch's RNG.
fn tokens(shape: &[i64], hi: i64, seed: i64) -> Tensor {
    let n: i64 = shape.iter().product();
    let mut state = seed as u64 ^ 0x9E37_79B9_7F4A_7C15;
    let values: Vec<i64> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) % hi as u64) as i64
        })
        .collect();
    Tensor::from_slice(&values).view(shape)
}

/// A random teacher-forcing prefix: START then actions.
fn prefix(model: &CotTransformer, b: i64, t: i64, seed: i64) -> Tensor {
    let l = model.layout();
    let actions = tokens(&[b, t - 1], l.num_actions as i64, seed);
    let start = Tensor::full([b, 1], l.start_token(), (Kind::Int64, Device::Cpu));
    Tensor::cat(&[start, actions], 1)
}

fn inputs(model: &CotTransformer, b: i64, seed: i64) -> (Tensor, Tensor) {
    let l = model.layout();
    (
        tokens(&[b, l.input_len as i64], l.input_vocab as i64, seed),
        tokens(&[b], l.difficulty_vocab as i64, seed + 1),
    )
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn shapes_of_every_head() {
    let lay = layout(6, 5, 7).with_answer_head(2, 4);
    let (_vs, m) = build(&tiny(), &lay, 0);
    let (x, d) = inputs(&m, 3, 1);
    let enc = m.encode(&x, &d, false);
    assert_eq!(enc.memory().size(), [3, 1 + 6 + 1, 8]);
    let heads = m.forward_chain(&enc, &prefix(&m, 3, 5, 2), false);
    assert_eq!(heads.logits.size(), [3, 5, 6]);
    assert_eq!(heads.value.size(), [3, 5]);
    let mut st = m.start_decode(&enc);
    let step = m.decode_step(&mut st, &Tensor::full([3], 6, (Kind::Int64, Device::Cpu)));
    assert_eq!(step.logits.size(), [3, 6]);
    assert_eq!(step.value.size(), [3]);
    assert_eq!(st.position(), 1);
    assert_eq!(m.answer_only(&enc).size(), [3, 2, 4]);
}

/// Decodes `prev` step by step with the cache and compares every position with the
/// teacher-forced pass.
fn cached_matches_full(cfg: &ModelConfig, lay: &ModelLayout, t: i64) {
    let (_vs, m) = build(cfg, lay, 3);
    let b = 4;
    let (x, d) = inputs(&m, b, 4);
    let enc = m.encode(&x, &d, false);
    let prev = prefix(&m, b, t, 5);
    let full = tch::no_grad(|| m.forward_chain(&enc, &prev, false));
    let mut st = m.start_decode(&enc);
    for i in 0..t {
        let step = m.decode_step(&mut st, &prev.select(1, i));
        let dl = max_abs_diff(&step.logits, &full.logits.select(1, i));
        let dv = max_abs_diff(&step.value, &full.value.select(1, i));
        assert!(
            dl < 1e-5 && dv < 1e-5,
            "t={t} pos {i}: logits diff {dl}, value diff {dv}"
        );
    }
}

#[test]
fn cached_decoding_equals_the_full_pass() {
    let lay = layout(6, 5, 9);
    for t in [1, 2, 5, 9] {
        cached_matches_full(&tiny(), &lay, t);
    }
    let shared = ModelConfig {
        repeat: 3,
        ..tiny()
    };
    cached_matches_full(&shared, &lay, 9);
    let plain = ModelConfig {
        difficulty_token: false,
        encoder_layers: 0,
        bias: true,
        ..tiny()
    };
    cached_matches_full(&plain, &lay, 9);
    cached_matches_full(&shared, &lay.clone().with_answer_head(1, 5), 4);
    // The default config at a realistic width.
    cached_matches_full(&ModelConfig::default(), &layout(40, 40, 16), 16);
}

#[test]
fn a_future_token_does_not_change_earlier_logits() {
    let lay = layout(6, 5, 8);
    let (_vs, m) = build(&tiny(), &lay, 7);
    let (x, d) = inputs(&m, 2, 8);
    let enc = m.encode(&x, &d, false);
    let prev = prefix(&m, 2, 8, 9);
    let changed = prev.copy();
    let k = 5;
    changed
        .narrow(1, k, 1)
        .copy_(&((prev.narrow(1, k, 1) + 1).remainder(5)));
    let a = m.forward_chain(&enc, &prev, false);
    let b = m.forward_chain(&enc, &changed, false);
    let before = max_abs_diff(&a.logits.narrow(1, 0, k), &b.logits.narrow(1, 0, k));
    let after = max_abs_diff(&a.logits.narrow(1, k, 8 - k), &b.logits.narrow(1, k, 8 - k));
    assert_eq!(before, 0.0, "positions before {k} changed");
    assert!(after > 1e-4, "position {k} ignores its own input");
    let v_before = max_abs_diff(&a.value.narrow(1, 0, k), &b.value.narrow(1, 0, k));
    assert_eq!(v_before, 0.0);
}

#[test]
fn the_difficulty_token_is_read() {
    let (_vs, m) = build(&tiny(), &layout(6, 5, 4), 10);
    let (x, _) = inputs(&m, 2, 11);
    let zeros = Tensor::zeros([2], (Kind::Int64, Device::Cpu));
    let ones = Tensor::ones([2], (Kind::Int64, Device::Cpu));
    let prev = prefix(&m, 2, 4, 12);
    let a = m.forward_chain(&m.encode(&x, &zeros, false), &prev, false);
    let b = m.forward_chain(&m.encode(&x, &ones, false), &prev, false);
    assert!(max_abs_diff(&a.logits, &b.logits) > 1e-4);
    let off = ModelConfig {
        difficulty_token: false,
        ..tiny()
    };
    let (_vs, m) = build(&off, &layout(6, 5, 4), 10);
    let a = m.forward_chain(&m.encode(&x, &zeros, false), &prev, false);
    let b = m.forward_chain(&m.encode(&x, &ones, false), &prev, false);
    assert_eq!(max_abs_diff(&a.logits, &b.logits), 0.0);
}

#[test]
fn repeat_shares_weights() {
    let lay = layout(6, 5, 5);
    let (_vs1, once) = build(&tiny(), &lay, 13);
    let twice_cfg = ModelConfig {
        repeat: 2,
        ..tiny()
    };
    let (_vs2, twice) = build(&twice_cfg, &lay, 13);
    assert_eq!(once.num_parameters(), twice.num_parameters());
    // Same seed, same weights, but the stacks run twice: different outputs.
    let (x, d) = inputs(&once, 2, 14);
    let prev = prefix(&once, 2, 5, 15);
    let a = once.forward_chain(&once.encode(&x, &d, false), &prev, false);
    let b = twice.forward_chain(&twice.encode(&x, &d, false), &prev, false);
    assert!(max_abs_diff(&a.logits, &b.logits) > 1e-4);
    assert!(twice.flops_per_example(5) > 1.9 * once.flops_per_example(5) - 4.0 * 5.0 * 8.0 * 8.0);
}

fn var(vs: &nn::VarStore, name: &str) -> Tensor {
    vs.variables()
        .remove(name)
        .unwrap_or_else(|| panic!("no variable {name}: {:?}", vs.variables().keys()))
}

#[test]
fn answer_head_reads_cls_or_the_mean() {
    let lay = layout(6, 5, 4).with_answer_head(2, 3).without_chain();
    for pooling in [Pooling::Cls, Pooling::Mean] {
        let cfg = ModelConfig { pooling, ..tiny() };
        let (vs, m) = build(&cfg, &lay, 16);
        let (x, d) = inputs(&m, 3, 17);
        let enc = m.encode(&x, &d, true);
        let out = m.answer_only(&enc);
        let ln = enc.memory().layer_norm(
            [8],
            Some(&var(&vs, "answer.ln_final.scale")),
            None,
            1e-6,
            true,
        );
        let pooled = match pooling {
            Pooling::Cls => ln.select(1, 0),
            Pooling::Mean => ln.mean_dim(1, false, Kind::Float),
        };
        let expect = pooled
            .matmul(&var(&vs, "answer.head.weight").tr())
            .view([3, 2, 3]);
        assert!(max_abs_diff(&out, &expect) < 1e-6, "{pooling:?}");
        let has_cls = vs.variables().contains_key("input.cls");
        assert_eq!(has_cls, pooling == Pooling::Cls);
        assert_eq!(enc.len() as i64, 6 + 1 + i64::from(has_cls));
        // The readout trains the encoder.
        out.sum(Kind::Float).backward();
        let g = var(&vs, "encoder.0.attn.qkv.weight").grad();
        assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
}

#[test]
fn parameter_count_matches_a_hand_count() {
    // d = 8, mlp = 16, 1 encoder layer, 2 decoder layers, no biases.
    let lay = layout(6, 5, 7).with_answer_head(2, 4);
    let (_vs, m) = build(&tiny(), &lay, 0);
    let d = 8;
    let mlp = 16;
    let embeddings = 5 * d + 6 * d + 3 * d + d /* cls */ + 7 * d /* emitted vocab */ + 7 * d;
    let encoder = 2 * d + 4 * d * d + 2 * d * mlp;
    let decoder = 4 * d + 8 * d * d + 2 * d * mlp;
    let heads = d + d * 6 + d /* value */ + d + d * 2 * 4;
    assert_eq!(
        m.num_parameters(),
        embeddings + encoder + 2 * decoder + heads
    );
    let biased = ModelConfig {
        bias: true,
        ..tiny()
    };
    let (_vs, mb) = build(&biased, &lay, 0);
    let enc_bias = 2 * d + 3 * d + d + mlp + d;
    let dec_bias = 4 * d + (3 * d + d) + (d + 2 * d + d) + mlp + d;
    let head_bias = d + 6 + 1 + d + 8;
    assert_eq!(
        mb.num_parameters(),
        m.num_parameters() + enc_bias + 2 * dec_bias + head_bias
    );
}

#[test]
fn parameter_counts_match_the_original_models() {
    // CoTTransformer, Cycle 2-40, 6x64, mlp 4, T_C = 2: 2,440,320 parameters in the original flax model.
    // Its answer head reads the last chain position; ours is the answer head on the memory
    // plus a value head: + d (value) + d (answer LayerNorm), mean pooling (no CLS).
    let cfg = ModelConfig {
        heads: 6,
        head_dim: 64,
        mlp_factor: 4.0,
        encoder_layers: 0,
        decoder_layers: 1,
        pooling: Pooling::Mean,
        ..ModelConfig::default()
    };
    let lay = ModelLayout {
        input_len: 40,
        input_vocab: 40,
        difficulty_vocab: 2,
        max_steps: 3,
        emitted_vocab: 41,
        num_actions: 40,
        chain: true,
        answer: Some(AnswerShape { len: 1, vocab: 40 }),
    };
    let (_vs, m) = build(&cfg, &lay, 0);
    assert_eq!(m.num_parameters(), 2_440_320 + 384 + 384);
    // Supervised T1, Cycle-40, 9x16, mlp 1, cls, max_hops 1: 142,272, plus our final LN
    // before the CLS readout (the original's CLS readout has none).
    let cfg = ModelConfig {
        heads: 9,
        head_dim: 16,
        mlp_factor: 1.0,
        encoder_layers: 1,
        pooling: Pooling::Cls,
        ..ModelConfig::default()
    };
    let lay = ModelLayout {
        difficulty_vocab: 1,
        ..lay.without_chain()
    };
    let (_vs, m) = build(&cfg, &lay, 0);
    assert_eq!(m.num_parameters(), 142_272 + 144);
}

#[test]
fn flops_match_a_hand_count() {
    let cfg = ModelConfig {
        encoder_layers: 0,
        decoder_layers: 1,
        difficulty_token: false,
        ..tiny()
    };
    let (_vs, m) = build(&cfg, &layout(6, 5, 7), 0);
    let (d, mlp, s, t, a) = (8.0, 16.0, 6.0, 3.0, 6.0);
    let per_layer = 2.0 * t * (3.0 * d * d + d * d) // self qkv + out
        + 4.0 * d * (1.0 + 2.0 + 3.0) // causal scores + mixing
        + 2.0 * t * 2.0 * d * d // cross q + out
        + 2.0 * s * 2.0 * d * d // memory k, v
        + 4.0 * t * s * d // cross scores + mixing
        + 2.0 * t * 2.0 * d * mlp;
    let heads = 2.0 * t * d * (a + 1.0);
    assert_eq!(m.flops_per_example(3), per_layer + heads);
}

#[test]
fn same_seed_same_weights_and_init_scale() {
    let lay = layout(40, 40, 8);
    let (vs1, _m1) = build(&ModelConfig::default(), &lay, 21);
    let (vs2, _m2) = build(&ModelConfig::default(), &lay, 21);
    for (name, t) in vs1.variables() {
        assert_eq!(max_abs_diff(&t, &var(&vs2, &name)), 0.0, "{name}");
    }
    // LeCun normal: std 1/sqrt(fan_in), truncated at 2 / 0.8796 of that.
    let w = var(&vs1, "decoder.0.mlp.down.weight"); // [128, 512], fan_in 512
    let std = (1.0f64 / 512.0).sqrt();
    let got = w.std(true).double_value(&[]);
    assert!((got / std - 1.0).abs() < 0.02, "std {got} vs {std}");
    let bound = 2.0 * std / 0.879_625_661_034_239_8;
    assert!(w.abs().max().double_value(&[]) <= bound * 1.0001);
    let e = var(&vs1, "input.tok"); // N(0, 1/128)
    let got = e.std(true).double_value(&[]);
    assert!(
        (got * 128f64.sqrt() - 1.0).abs() < 0.05,
        "embedding std {got}"
    );
}

#[test]
fn selected_decode_states_continue_like_their_source_rows() {
    let (_vs, m) = build(&tiny(), &layout(6, 5, 6), 22);
    let (x, d) = inputs(&m, 3, 23);
    let enc = m.encode(&x, &d, false);
    let prev = prefix(&m, 3, 6, 24);
    let mut st = m.start_decode(&enc);
    for i in 0..3 {
        m.decode_step(&mut st, &prev.select(1, i));
    }
    let idx = Tensor::from_slice(&[2i64, 0, 2]);
    let mut sel = st.index_select(&idx);
    let mut copy = st.copy();
    assert_eq!(sel.batch_size(), 3);
    let full = m.forward_chain(&enc, &prev, false);
    let a = m.decode_step(&mut sel, &prev.select(1, 3).index_select(0, &idx));
    let b = m.decode_step(&mut copy, &prev.select(1, 3));
    assert!(max_abs_diff(&a.logits, &full.logits.select(1, 3).index_select(0, &idx)) < 1e-5);
    assert!(max_abs_diff(&b.logits, &full.logits.select(1, 3)) < 1e-5);
    // Advancing the copy left the original at its position.
    assert_eq!(st.position(), 3);
    assert_eq!(copy.position(), 4);
    let enc_sel = enc.index_select(&idx);
    assert_eq!(enc_sel.batch_size(), 3);
}

#[test]
fn dropout_is_active_only_in_training() {
    let cfg = ModelConfig {
        dropout: 0.5,
        ..tiny()
    };
    let (_vs, m) = build(&cfg, &layout(6, 5, 4), 25);
    let (x, d) = inputs(&m, 2, 26);
    let prev = prefix(&m, 2, 4, 27);
    let eval = |train| {
        m.forward_chain(&m.encode(&x, &d, train), &prev, train)
            .logits
    };
    assert_eq!(max_abs_diff(&eval(false), &eval(false)), 0.0);
    assert!(max_abs_diff(&eval(true), &eval(true)) > 1e-4);
}

fn cot_spec(input_len: usize, vocab: usize, emitted_len: usize) -> EnvSpec {
    let field = |name: &str, offset, len, vocab| TokenField {
        name: name.into(),
        offset,
        len,
        vocab,
    };
    EnvSpec {
        name: "cycle(L=8)".into(),
        obs: ObsLayout {
            tokens: input_len + 1 + emitted_len,
            features: 0,
            token_fields: vec![
                field("input", 0, input_len, vocab),
                field("difficulty", input_len, 1, 4),
                field("emitted", input_len + 1, emitted_len, vocab + 2),
            ],
            feature_fields: vec![],
        },
        num_actions: vocab + 1,
        max_episode_steps: emitted_len,
        difficulty: DifficultyRange { min: 1, max: 4 },
        reward_range: (0.0, 1.0),
    }
}

#[test]
fn layout_reads_a_cot_spec_and_names_what_is_missing() {
    let spec = cot_spec(8, 8, 7);
    let lay = ModelLayout::from_spec(&spec).unwrap();
    assert_eq!(
        lay,
        ModelLayout {
            input_len: 8,
            input_vocab: 8,
            difficulty_vocab: 4,
            max_steps: 7,
            emitted_vocab: 10,
            num_actions: 9,
            chain: true,
            answer: None,
        }
    );
    assert_eq!(lay.start_token(), 9);
    let mut broken = spec.clone();
    broken.obs.token_fields.remove(1);
    let err = ModelLayout::from_spec(&broken).unwrap_err().to_string();
    assert!(
        err.contains("difficulty") && err.contains("cycle(L=8)"),
        "{err}"
    );
    let mut broken = spec;
    broken.obs.token_fields[2].vocab = 3;
    assert!(matches!(
        ModelLayout::from_spec(&broken),
        Err(ModelError::InvalidLayout(_))
    ));
}

#[test]
fn config_parses_from_toml_and_rejects_bad_values() {
    let cfg: ModelConfig =
        toml::from_str("heads = 6\nhead_dim = 16\nmlp_factor = 1\nrepeat = 2\npooling = \"mean\"")
            .unwrap();
    assert_eq!(cfg.width(), 96);
    assert_eq!(cfg.mlp_dim(), 96);
    assert_eq!(cfg.pooling, Pooling::Mean);
    assert_eq!(cfg.decoder_layers, ModelConfig::default().decoder_layers);
    let half: ModelConfig = toml::from_str("mlp_factor = 0.5").unwrap();
    assert_eq!(half.mlp_dim(), 64);
    assert!(toml::from_str::<ModelConfig>("layers = 3").is_err());
    for bad in [
        ModelConfig {
            heads: 0,
            ..ModelConfig::default()
        },
        ModelConfig {
            repeat: 0,
            ..ModelConfig::default()
        },
        ModelConfig {
            dropout: 1.0,
            ..ModelConfig::default()
        },
    ] {
        let vs = nn::VarStore::new(Device::Cpu);
        let err = CotTransformer::new(&vs.root(), &bad, &layout(4, 4, 4));
        assert!(matches!(err, Err(ModelError::InvalidConfig(_))));
    }
    let no_heads = layout(4, 4, 4).without_chain();
    let vs = nn::VarStore::new(Device::Cpu);
    let err = CotTransformer::new(&vs.root(), &ModelConfig::default(), &no_heads);
    assert!(matches!(err, Err(ModelError::InvalidLayout(_))));
}

#[test]
fn factored_memory_equals_the_dense_one() {
    // No encoder layers and a batch larger than the (token, position) table: encode gathers.
    let cfg = ModelConfig {
        encoder_layers: 0,
        repeat: 2,
        ..tiny()
    };
    for lay in [layout(6, 5, 5), layout(6, 5, 5).with_answer_head(1, 5)] {
        let (vs, m) = build(&cfg, &lay, 30);
        let (x, d) = inputs(&m, 16, 31);
        let prev = prefix(&m, 16, 5, 32);
        let fact = m.encode_factored(&x, &d);
        let dense = m.encode_dense(&x, &d, false);
        assert!(max_abs_diff(&fact.memory(), &dense.memory()) < 1e-6);
        let a = m.forward_chain(&fact, &prev, true);
        let b = m.forward_chain(&dense, &prev, true);
        assert!(max_abs_diff(&a.logits, &b.logits) < 1e-5);
        // Same gradients through the table as through the dense rows.
        let grads = |h: &Heads| {
            for mut t in vs.trainable_variables() {
                t.zero_grad();
            }
            (h.logits.square().sum(Kind::Float) + h.value.sum(Kind::Float)).backward();
            [
                "input.tok",
                "input.pos",
                "input.difficulty",
                "decoder.1.cross.kv.weight",
            ]
            .map(|n| var(&vs, n).grad().copy())
        };
        let (ga, gb) = (grads(&a), grads(&b));
        for (x, y) in ga.iter().zip(&gb) {
            let scale = y.abs().max().double_value(&[]).max(1.0);
            assert!(max_abs_diff(x, y) / scale < 1e-5);
        }
        // Decoding from either form and selecting rows agree too.
        let idx = Tensor::from_slice(&[3i64, 3, 0]);
        let (fs, ds) = (fact.index_select(&idx), dense.index_select(&idx));
        let (mut sf, mut sd) = (m.start_decode(&fs), m.start_decode(&ds));
        let start = prev.select(1, 0).index_select(0, &idx);
        let (a, b) = (
            m.decode_step(&mut sf, &start),
            m.decode_step(&mut sd, &start),
        );
        assert!(max_abs_diff(&a.logits, &b.logits) < 1e-5);
        if lay.answer.is_some() {
            assert!(max_abs_diff(&m.answer_only(&fact), &m.answer_only(&dense)) < 1e-5);
        }
    }
}

#[test]
fn a_memory_shared_by_k_rows_equals_one_memory_per_row() {
    // 3 problems x 4 samples; dense (an encoder layer) and factored (none) memories.
    let (g, k) = (3i64, 4i64);
    for encoder_layers in [0, 1] {
        let cfg = ModelConfig {
            encoder_layers,
            ..tiny()
        };
        let (vs, m) = build(&cfg, &layout(6, 5, 5), 40);
        let (x, d) = inputs(&m, g, 41);
        let per_row =
            Tensor::arange(g, (Kind::Int64, Device::Cpu)).repeat_interleave_self_int(k, 0, None);
        let (xs, ds) = (x.index_select(0, &per_row), d.index_select(0, &per_row));
        let prev = prefix(&m, g * k, 5, 42);
        let shared = m.encode(&x, &d, true).shared_by(k as usize);
        let own = m.encode(&xs, &ds, true);
        assert_eq!(shared.batch_size(), (g * k) as usize);
        assert_eq!(shared.rows_per_memory(), k as usize);
        assert!(max_abs_diff(&shared.memory(), &own.memory()) < 1e-6);
        let a = m.forward_chain(&shared, &prev, true);
        let b = m.forward_chain(&own, &prev, true);
        assert!(max_abs_diff(&a.logits, &b.logits) < 1e-5);
        assert!(max_abs_diff(&a.value, &b.value) < 1e-5);
        // The same gradients reach the memory's weights.
        let grads = |h: &Heads| {
            for mut t in vs.trainable_variables() {
                t.zero_grad();
            }
            (h.logits.square().sum(Kind::Float) + h.value.sum(Kind::Float)).backward();
            [
                "input.tok",
                "decoder.0.cross.kv.weight",
                "decoder.1.cross.q.weight",
            ]
            .map(|n| var(&vs, n).grad().copy())
        };
        let (ga, gb) = (grads(&a), grads(&b));
        for (x, y) in ga.iter().zip(&gb) {
            let scale = y.abs().max().double_value(&[]).max(1.0);
            assert!(max_abs_diff(x, y) / scale < 1e-5);
        }
        // Decoding step by step, and rows selected from a shared state, agree too.
        let (mut ss, mut so) = tch::no_grad(|| (m.start_decode(&shared), m.start_decode(&own)));
        for t in 0..3 {
            let fed = prev.select(1, t);
            let (a, b) = (m.decode_step(&mut ss, &fed), m.decode_step(&mut so, &fed));
            assert!(max_abs_diff(&a.logits, &b.logits) < 1e-5, "step {t}");
        }
        // START decoded once per problem, then the cache repeated for its rows.
        let mut once = tch::no_grad(|| m.start_decode(&shared.one_row_per_memory()));
        let first = m.decode_step(&mut once, &prev.select(1, 0).narrow(0, 0, g));
        let mut repeated = once.repeat_rows(k as usize);
        assert_eq!(repeated.batch_size(), (g * k) as usize);
        let mut so2 = tch::no_grad(|| m.start_decode(&own));
        let b0 = m.decode_step(&mut so2, &prev.select(1, 0));
        assert!(
            max_abs_diff(
                &first.logits.repeat_interleave_self_int(k, 0, None),
                &b0.logits
            ) < 1e-5
        );
        for t in 1..3 {
            let fed = prev.select(1, t);
            let (a, b) = (
                m.decode_step(&mut repeated, &fed),
                m.decode_step(&mut so2, &fed),
            );
            assert!(
                max_abs_diff(&a.logits, &b.logits) < 1e-5,
                "repeated, step {t}"
            );
        }
        let idx = Tensor::from_slice(&[11i64, 0, 5, 5]);
        let (mut ss, mut so) = (ss.index_select(&idx), so.index_select(&idx));
        let fed = prev.select(1, 3).index_select(0, &idx);
        let (a, b) = (m.decode_step(&mut ss, &fed), m.decode_step(&mut so, &fed));
        assert!(max_abs_diff(&a.logits, &b.logits) < 1e-5);
        let picked = shared.index_select(&idx);
        assert!(max_abs_diff(&picked.memory(), &own.memory().index_select(0, &idx)) < 1e-6);
    }
}

/// The model FLOPs a closure's passes count (profiling on for its duration).
fn counted(f: impl FnOnce()) -> f64 {
    crate::profile::enable(Device::Cpu);
    f();
    let flops = crate::profile::model_flops();
    crate::profile::disable();
    flops
}

#[test]
fn passes_count_the_flops_they_compute() {
    let cfg = ModelConfig {
        encoder_layers: 0,
        ..tiny()
    };
    let (_vs, m) = build(&cfg, &layout(6, 5, 5), 0);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b;
    // Two problems: each memory row is projected (dense), as `flops_per_example` counts.
    let (x, d) = inputs(&m, 2, 1);
    let prev = prefix(&m, 2, 4, 2);
    let teacher = counted(|| {
        m.forward_chain(&m.encode(&x, &d, false), &prev, false);
    });
    assert!(close(teacher, 2.0 * m.flops_per_example(4)), "{teacher}");
    // Decoding step by step costs what the teacher-forced pass does.
    let stepwise = counted(|| {
        let mut state = m.start_decode(&m.encode(&x, &d, false));
        for p in 0..4 {
            m.decode_step(&mut state, &prev.select(1, p));
        }
    });
    assert!(close(stepwise, teacher), "{stepwise} vs {teacher}");
    // Sixteen problems: the memory is a table of its 6 x 5 + 3 distinct rows, whose keys and
    // values are projected once for the batch, not once per problem and position.
    let (x, d) = inputs(&m, 16, 3);
    let prev = prefix(&m, 16, 4, 4);
    let factored = counted(|| {
        m.forward_chain(&m.encode(&x, &d, false), &prev, false);
    });
    let s = m.memory_len();
    let expected = 16.0 * m.chain_flops_per_row(4, s) + 33.0 * m.memory_kv_flops_per_row();
    assert!(close(factored, expected), "{factored} vs {expected}");
    assert!(factored < 16.0 * m.flops_per_example(4));
    // Extra memory rows (one per problem) are projected and attended to like the others.
    let (x, d) = inputs(&m, 2, 5);
    let prev = prefix(&m, 2, 4, 6);
    let extra = Tensor::zeros([2, 1, 8], (Kind::Float, Device::Cpu));
    let with_extra = counted(|| {
        let enc = m.encode(&x, &d, false).with_extra_rows(&extra);
        m.forward_chain(&enc, &prev, false);
    });
    let expected =
        2.0 * ((s + 1) as f64 * m.memory_kv_flops_per_row() + m.chain_flops_per_row(4, s + 1));
    assert!(close(with_extra, expected), "{with_extra} vs {expected}");
}

#[test]
fn shared_and_encoded_memories_count_once_per_problem() {
    // An encoder layer, an answer head, and 2 problems read by 3 decoder rows each.
    let lay = layout(6, 5, 5).with_answer_head(1, 5);
    let (_vs, m) = build(&tiny(), &lay, 0);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b;
    let s = m.memory_len() as f64;
    let (x, d) = inputs(&m, 2, 7);
    let prev = prefix(&m, 6, 4, 8);
    let shared = counted(|| {
        let enc = m.encode(&x, &d, false).shared_by(3);
        m.forward_chain(&enc, &prev, false);
    });
    let expected = 2.0 * (m.encoder_flops_per_problem() + s * m.memory_kv_flops_per_row())
        + 6.0 * m.chain_flops_per_row(4, m.memory_len());
    assert!(m.encoder_flops_per_problem() > 0.0);
    assert!(close(shared, expected), "{shared} vs {expected}");
    // The answer head reads the encoded memory: no keys and values projected.
    let answer = counted(|| {
        let _ = m.answer_only(&m.encode(&x, &d, false));
    });
    let expected = 2.0 * (m.encoder_flops_per_problem() + m.answer_flops_per_problem());
    assert!(m.answer_flops_per_problem() > 0.0);
    assert!(close(answer, expected), "{answer} vs {expected}");
}
