//! [`CotTransformer`]: an input encoder, a causal chain decoder that cross-attends to it, and
//! the heads (next chain token, value, answer-only).

use super::config::{ModelConfig, ModelError, ModelLayout, Pooling};
use super::kv_cache::DecodeState;
use super::layers::{
    dropout, DecoderLayer, Dims, EncoderLayer, Initializer, Linear, MemoryKv, Norm,
};
use tch::{nn, Device, Kind, Tensor};

/// The encoder memory of a batch of problems, computed once per problem by
/// [`CotTransformer::encode`] and read by every decoder call.
///
/// Its rows are `[CLS]` (when the answer head pools by CLS), the input tokens, then the
/// difficulty token (when enabled).
#[derive(Debug)]
pub struct Encoded {
    memory: Memory,
    /// Decoder rows served.
    batch: i64,
    len: i64,
    /// Consecutive rows that share one memory (`batch / group` memories are held).
    group: i64,
}

/// Without encoder layers, a memory row depends only on (token, position) (or is the
/// difficulty or CLS embedding), so a batch's memory is a gather from a table of
/// `input_vocab * input_len + difficulty_vocab + 1` distinct rows. When that table is smaller
/// than the batch, per-row work (the cross-attention LayerNorm and K/V projections, forward
/// and backward) runs on the table and is gathered afterwards: the same numbers for fewer
/// FLOPs.
#[derive(Debug)]
enum Memory {
    /// `[B, S, width]`.
    Dense(Tensor),
    /// `table [R, width]` and `rows [B * S]` (i64 indices into it).
    Factored { table: Tensor, rows: Tensor },
}

impl Encoded {
    /// Batch size.
    pub fn batch_size(&self) -> usize {
        self.batch as usize
    }

    /// Number of memory rows per problem.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.batch == 0
    }

    /// The memory `[B, S, width]` (gathered when it is held factored, one copy per row when
    /// rows share it).
    pub fn memory(&self) -> Tensor {
        if self.group > 1 {
            return self.ungrouped().memory();
        }
        match &self.memory {
            Memory::Dense(m) => m.shallow_clone(),
            Memory::Factored { table, rows } => {
                table.index_select(0, rows).view([self.batch, self.len, -1])
            }
        }
    }

    /// The memory with `rows [B, R, width]` appended to every problem's rows (extra tokens
    /// the decoder can attend to, such as a population member's embedding in `Poppy`);
    /// the result is held dense, and gradients flow into `rows`.
    pub fn with_extra_rows(&self, rows: &Tensor) -> Encoded {
        let memory = self.memory();
        let rows = rows.to_device(memory.device()).to_kind(memory.kind());
        let extra = rows.size()[1];
        Encoded {
            memory: Memory::Dense(Tensor::cat(&[memory, rows], 1)),
            batch: self.batch,
            len: self.len + extra,
            group: 1,
        }
    }

    /// Rows `index` of the batch (repeats allowed); each row gets its own memory.
    pub fn index_select(&self, index: &Tensor) -> Encoded {
        let batch = index.size()[0];
        let index = index.to_device(self.device());
        let index = if self.group > 1 {
            index.floor_divide_scalar(self.group)
        } else {
            index
        };
        let memory = match &self.memory {
            Memory::Dense(m) => Memory::Dense(m.index_select(0, &index)),
            Memory::Factored { table, rows } => Memory::Factored {
                table: table.shallow_clone(),
                rows: rows
                    .view([self.batch / self.group, self.len])
                    .index_select(0, &index)
                    .view([-1]),
            },
        };
        Encoded {
            memory,
            batch,
            len: self.len,
            group: 1,
        }
    }

    /// This encoding read by `k` consecutive decoder rows per problem: the memory of problem
    /// `g` serves rows `g*k..(g+1)*k` (the `K` samples of a problem), its cross-attention
    /// keys and values computed and read once for all of them. The numbers are those of
    /// encoding every row.
    pub fn shared_by(self, k: usize) -> Encoded {
        let k = k.max(1) as i64;
        Encoded {
            batch: self.batch * k,
            group: self.group * k,
            ..self
        }
    }

    /// One decoder row per memory (what [`shared_by`](Self::shared_by) shared, unshared):
    /// the problems themselves, e.g. to decode a step all their rows take alike.
    pub fn one_row_per_memory(&self) -> Encoded {
        let memory = match &self.memory {
            Memory::Dense(m) => Memory::Dense(m.shallow_clone()),
            Memory::Factored { table, rows } => Memory::Factored {
                table: table.shallow_clone(),
                rows: rows.shallow_clone(),
            },
        };
        Encoded {
            memory,
            batch: self.batch / self.group,
            len: self.len,
            group: 1,
        }
    }

    /// Consecutive rows that share one memory (1 unless made by [`shared_by`](Self::shared_by)).
    pub fn rows_per_memory(&self) -> usize {
        self.group as usize
    }

    fn ungrouped(&self) -> Encoded {
        self.index_select(&Tensor::arange(self.batch, (Kind::Int64, self.device())))
    }

    fn device(&self) -> Device {
        match &self.memory {
            Memory::Dense(m) => m.device(),
            Memory::Factored { rows, .. } => rows.device(),
        }
    }
}

/// Outputs of a teacher-forced pass over a chain.
#[derive(Debug)]
pub struct Heads {
    /// `[B, T, num_actions]`: position `t` scores the action taken at step `t`.
    pub logits: Tensor,
    /// `[B, T]`: the value estimate before the action at step `t`.
    pub value: Tensor,
}

/// Outputs of one decoding step.
#[derive(Debug)]
pub struct StepHeads {
    /// `[B, num_actions]`: scores of the next action.
    pub logits: Tensor,
    /// `[B]`: the value estimate at this step.
    pub value: Tensor,
}

/// The chain decoder: embeddings, shared layers, final LayerNorm and heads.
#[derive(Debug)]
struct Decoder {
    tok: Tensor,
    pos: Tensor,
    layers: Vec<DecoderLayer>,
    norm: Norm,
    chain_head: Linear,
    value_head: Linear,
}

/// The CoT transformer: pre-LN, SiLU MLPs, no biases by default, learned positions,
/// `repeat`-times weight sharing. See `docs/agents-layout.md` for the contract.
#[derive(Debug)]
pub struct CotTransformer {
    cfg: ModelConfig,
    layout: ModelLayout,
    dims: Dims,
    device: Device,
    tok: Tensor,
    pos: Tensor,
    difficulty: Option<Tensor>,
    cls: Option<Tensor>,
    encoder: Vec<EncoderLayer>,
    decoder: Option<Decoder>,
    answer_norm: Option<Norm>,
    answer_head: Option<Linear>,
    params: Vec<Tensor>,
}

impl CotTransformer {
    /// Creates the model's variables under `vs`, with an init seed drawn from libtorch's
    /// global RNG (so `tch::manual_seed` fixes the weights). Prefer
    /// [`CotTransformer::with_seed`] where other threads may use that RNG.
    pub fn new(
        vs: &nn::Path,
        cfg: &ModelConfig,
        layout: &ModelLayout,
    ) -> Result<CotTransformer, ModelError> {
        let seed = Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]);
        Self::with_seed(vs, cfg, layout, seed as u64)
    }

    /// Creates the model's variables under `vs`, the initial weights a function of `seed`
    /// alone (see the layers module for the flax-default init).
    pub fn with_seed(
        vs: &nn::Path,
        cfg: &ModelConfig,
        layout: &ModelLayout,
        seed: u64,
    ) -> Result<CotTransformer, ModelError> {
        cfg.validate()?;
        layout.validate()?;
        if cfg.difficulty_token && layout.difficulty_vocab == 0 {
            return Err(ModelError::InvalidLayout(
                "difficulty_token is on but difficulty_vocab is 0".into(),
            ));
        }
        let dims = Dims {
            heads: cfg.heads as i64,
            head_dim: cfg.head_dim as i64,
            width: cfg.width() as i64,
            mlp: cfg.mlp_dim() as i64,
            bias: cfg.bias,
            dropout: cfg.dropout,
        };
        let w = dims.width;
        let init = &mut Initializer::new(seed);
        let inp = vs / "input";
        let tok = init.embedding(&inp, "tok", layout.input_vocab as i64, w);
        let pos = init.embedding(&inp, "pos", layout.input_len as i64, w);
        let difficulty = cfg
            .difficulty_token
            .then(|| init.embedding(&inp, "difficulty", layout.difficulty_vocab as i64, w));
        let cls = (layout.answer.is_some() && cfg.pooling == Pooling::Cls)
            .then(|| init.embedding(&inp, "cls", 1, w));
        let enc = vs / "encoder";
        let encoder = (0..cfg.encoder_layers)
            .map(|i| EncoderLayer::new(init, &(&enc / i), dims))
            .collect();
        let decoder = layout.chain.then(|| {
            let p = vs / "decoder";
            Decoder {
                tok: init.embedding(&p, "tok", layout.emitted_vocab as i64, w),
                pos: init.embedding(&p, "pos", layout.max_steps as i64, w),
                layers: (0..cfg.decoder_layers)
                    .map(|i| DecoderLayer::new(init, &(&p / i), dims))
                    .collect(),
                norm: Norm::new(&(&p / "ln_final"), w, cfg.bias),
                chain_head: Linear::new(
                    init,
                    &(&p / "chain_head"),
                    w,
                    layout.num_actions as i64,
                    cfg.bias,
                ),
                value_head: Linear::new(init, &(&p / "value_head"), w, 1, cfg.bias),
            }
        });
        // The original's CLS readout skips the final LayerNorm; both pooling
        // modes normalise here.
        let (answer_norm, answer_head) = match layout.answer {
            Some(a) => {
                let p = vs / "answer";
                (
                    Some(Norm::new(&(&p / "ln_final"), w, cfg.bias)),
                    Some(Linear::new(
                        init,
                        &(&p / "head"),
                        w,
                        (a.len * a.vocab) as i64,
                        cfg.bias,
                    )),
                )
            }
            None => (None, None),
        };
        let mut model = CotTransformer {
            cfg: cfg.clone(),
            layout: layout.clone(),
            dims,
            device: vs.device(),
            tok,
            pos,
            difficulty,
            cls,
            encoder,
            decoder,
            answer_norm,
            answer_head,
            params: Vec::new(),
        };
        model.params = model.collect_params();
        Ok(model)
    }

    fn collect_params(&self) -> Vec<Tensor> {
        fn linear(out: &mut Vec<Tensor>, l: &Linear) {
            out.push(l.weight.shallow_clone());
            out.extend(l.bias.iter().map(Tensor::shallow_clone));
        }
        fn norm(out: &mut Vec<Tensor>, n: &Norm) {
            out.push(n.scale.shallow_clone());
            out.extend(n.bias.iter().map(Tensor::shallow_clone));
        }
        let mut out = vec![self.tok.shallow_clone(), self.pos.shallow_clone()];
        out.extend(self.difficulty.iter().map(Tensor::shallow_clone));
        out.extend(self.cls.iter().map(Tensor::shallow_clone));
        for l in &self.encoder {
            norm(&mut out, &l.ln_attn);
            linear(&mut out, &l.attn.qkv);
            linear(&mut out, &l.attn.out);
            norm(&mut out, &l.ln_mlp);
            linear(&mut out, &l.mlp.up);
            linear(&mut out, &l.mlp.down);
        }
        if let Some(d) = &self.decoder {
            out.push(d.tok.shallow_clone());
            out.push(d.pos.shallow_clone());
            for l in &d.layers {
                norm(&mut out, &l.ln_self);
                linear(&mut out, &l.self_attn.qkv);
                linear(&mut out, &l.self_attn.out);
                norm(&mut out, &l.ln_cross_q);
                norm(&mut out, &l.ln_cross_kv);
                linear(&mut out, &l.cross.q);
                linear(&mut out, &l.cross.kv);
                linear(&mut out, &l.cross.out);
                norm(&mut out, &l.ln_mlp);
                linear(&mut out, &l.mlp.up);
                linear(&mut out, &l.mlp.down);
            }
            norm(&mut out, &d.norm);
            linear(&mut out, &d.chain_head);
            linear(&mut out, &d.value_head);
        }
        if let (Some(n), Some(h)) = (&self.answer_norm, &self.answer_head) {
            norm(&mut out, n);
            linear(&mut out, h);
        }
        out
    }

    /// The config the model was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The layout the model was built for.
    pub fn layout(&self) -> &ModelLayout {
        &self.layout
    }

    /// The device holding the parameters.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The model's own parameter tensors (shallow clones sharing storage with the VarStore).
    pub fn parameters(&self) -> &[Tensor] {
        &self.params
    }

    /// Number of scalar parameters.
    pub fn num_parameters(&self) -> usize {
        self.params.iter().map(|t| t.numel()).sum()
    }

    /// Length of the encoder memory: `[CLS] + input_len + [difficulty]`.
    pub fn memory_len(&self) -> usize {
        self.layout.input_len
            + usize::from(self.cls.is_some())
            + usize::from(self.difficulty.is_some())
    }

    /// Forward FLOPs of encoding one problem: the encoder layers over its memory rows
    /// (`2 * m * n * k` per matrix product, attention scores and mixing included; LayerNorm,
    /// softmax and element-wise ops left out, as everywhere here). 0 without encoder layers.
    pub fn encoder_flops_per_problem(&self) -> f64 {
        let d = self.dims.width as f64;
        let m = self.dims.mlp as f64;
        let s = self.memory_len() as f64;
        self.cfg.encoder_layers as f64
            * self.cfg.repeat as f64
            * (2.0 * s * (4.0 * d * d + 2.0 * d * m) + 4.0 * s * s * d)
    }

    /// Forward FLOPs of the cross-attention keys and values of one memory row, every decoder
    /// layer. A memory row is projected once however many decoder rows read it, and a
    /// memory held as a table of distinct rows (no encoder layers) is projected once per
    /// table row, so a batch's count depends on how it was encoded.
    pub fn memory_kv_flops_per_row(&self) -> f64 {
        if self.decoder.is_none() {
            return 0.0;
        }
        let d = self.dims.width as f64;
        self.cfg.decoder_layers as f64 * 4.0 * d * d
    }

    /// Forward FLOPs of one decoder row over `chain_len` positions (teacher forcing) reading
    /// `memory_rows` memory rows ([`memory_len`](Self::memory_len), plus any extra rows): the
    /// decoder layers (causal self-attention counted over its lower triangle, cross-attention
    /// over the memory, whose keys and values are not included: see
    /// [`memory_kv_flops_per_row`](Self::memory_kv_flops_per_row)) and the heads. 0 without
    /// a chain decoder.
    pub fn chain_flops_per_row(&self, chain_len: usize, memory_rows: usize) -> f64 {
        if self.decoder.is_none() {
            return 0.0;
        }
        let d = self.dims.width as f64;
        let m = self.dims.mlp as f64;
        let s = memory_rows as f64;
        let t = chain_len as f64;
        let per_app =
            2.0 * t * (6.0 * d * d + 2.0 * d * m) + 4.0 * d * t * (t + 1.0) / 2.0 + 4.0 * t * s * d;
        self.cfg.decoder_layers as f64 * self.cfg.repeat as f64 * per_app
            + 2.0 * t * d * (self.layout.num_actions as f64 + 1.0)
    }

    /// Forward FLOPs of the answer head's readout of one problem
    /// ([`answer_only`](Self::answer_only)); 0 without an answer head.
    pub fn answer_flops_per_problem(&self) -> f64 {
        let d = self.dims.width as f64;
        self.layout
            .answer
            .map_or(0.0, |a| 2.0 * d * (a.len * a.vocab) as f64)
    }

    /// Forward FLOPs of one problem encoded on its own and read by one decoder row over
    /// `chain_len` positions (without a chain decoder: the answer head's readout): what a
    /// pass costs per example without a factored or shared memory (a training step costs
    /// about three times this). Passes count what they actually compute through
    /// [`crate::profile::add_model_flops`], which for a factored or shared memory is less.
    pub fn flops_per_example(&self, chain_len: usize) -> f64 {
        let readout = if self.decoder.is_some() {
            self.chain_flops_per_row(chain_len, self.memory_len())
        } else {
            self.answer_flops_per_problem()
        };
        self.encoder_flops_per_problem()
            + self.memory_len() as f64 * self.memory_kv_flops_per_row()
            + readout
    }

    /// Forward FLOPs per row of [`decode_step`](Self::decode_step) at position `pos` (0 =
    /// the START token) reading `memory_rows` memory rows: the decoder's matmuls and
    /// attention over `pos + 1` cached positions and the memory, and the heads; the same
    /// terms as [`chain_flops_per_row`](Self::chain_flops_per_row) counts for one position,
    /// so a chain decoded step by step costs what its teacher-forced pass does.
    pub fn decode_step_flops(&self, pos: usize, memory_rows: usize) -> f64 {
        self.chain_flops_per_row(pos + 1, memory_rows) - self.chain_flops_per_row(pos, memory_rows)
    }

    /// Encodes `input [B, input_len]` (i64 tokens) and `difficulty [B]` (i64, ignored unless
    /// the config has a difficulty token) into the memory the decoder reads.
    pub fn encode(&self, input: &Tensor, difficulty: &Tensor, train: bool) -> Encoded {
        let b = input.size()[0];
        let table_rows = self.layout.input_vocab * self.layout.input_len
            + self
                .difficulty
                .as_ref()
                .map_or(0, |_| self.layout.difficulty_vocab)
            + usize::from(self.cls.is_some());
        let factorable = self.encoder.is_empty() && !(train && self.cfg.dropout > 0.0);
        // The gather saves work once the table is well below the batch's row count.
        if factorable && 2 * table_rows <= b as usize * self.memory_len() {
            self.encode_factored(input, difficulty)
        } else {
            self.encode_dense(input, difficulty, train)
        }
    }

    /// The memory computed row by row.
    pub(crate) fn encode_dense(&self, input: &Tensor, difficulty: &Tensor, train: bool) -> Encoded {
        let input = input.to_device(self.device);
        let b = input.size()[0];
        crate::profile::add_model_flops(|| b as f64 * self.encoder_flops_per_problem());
        let mut x = Tensor::embedding(&self.tok, &input, -1, false, false) + &self.pos;
        if let Some(table) = &self.difficulty {
            let dt = Tensor::embedding(table, &difficulty.to_device(self.device), -1, false, false);
            x = Tensor::cat(&[x, dt.unsqueeze(1)], 1);
        }
        if let Some(cls) = &self.cls {
            x = Tensor::cat(
                &[cls.unsqueeze(0).expand([b, 1, self.dims.width], false), x],
                1,
            );
        }
        let mut h = dropout(x, self.cfg.dropout, train);
        for _ in 0..self.cfg.repeat {
            for layer in &self.encoder {
                h = layer.forward(&h, train);
            }
        }
        let len = h.size()[1];
        Encoded {
            memory: Memory::Dense(h),
            batch: b,
            len,
            group: 1,
        }
    }

    /// The memory as a table of every (token, position) embedding sum, the difficulty and
    /// CLS embeddings, and per-problem row indices (only without encoder layers).
    pub(crate) fn encode_factored(&self, input: &Tensor, difficulty: &Tensor) -> Encoded {
        let (l, v) = (self.layout.input_len as i64, self.layout.input_vocab as i64);
        let w = self.dims.width;
        let input = input.to_device(self.device);
        let b = input.size()[0];
        let mut tables = vec![(self.tok.unsqueeze(1) + self.pos.unsqueeze(0)).view([v * l, w])];
        let opts = (Kind::Int64, self.device);
        let mut rows = vec![input * l + Tensor::arange(l, opts)];
        let mut next = v * l;
        if let Some(table) = &self.difficulty {
            tables.push(table.shallow_clone());
            rows.push(difficulty.to_device(self.device).view([b, 1]) + next);
            next += table.size()[0];
        }
        if let Some(cls) = &self.cls {
            tables.push(cls.shallow_clone());
            rows.insert(0, Tensor::full([b, 1], next, opts));
        }
        let rows = Tensor::cat(&rows, 1);
        let len = rows.size()[1];
        Encoded {
            memory: Memory::Factored {
                table: Tensor::cat(&tables, 0),
                rows: rows.view([-1]),
            },
            batch: b,
            len,
            group: 1,
        }
    }

    /// Cross-attention keys and values `[G, heads, S, head_dim]` of every decoder layer, one
    /// per memory (`G = B / rows_per_memory`).
    fn cross_kv(&self, dec: &Decoder, enc: &Encoded) -> Vec<MemoryKv> {
        // Every layer projects the rows the memory holds: a table's rows, or each problem's.
        crate::profile::add_model_flops(|| {
            let rows = match &enc.memory {
                Memory::Dense(m) => m.size()[0] * m.size()[1],
                Memory::Factored { table, .. } => table.size()[0],
            };
            rows as f64 * self.memory_kv_flops_per_row()
        });
        dec.layers
            .iter()
            .map(|layer| {
                let (k, v) = match &enc.memory {
                    Memory::Dense(m) => layer.memory_kv(m),
                    Memory::Factored { table, rows } => {
                        let shape = [enc.batch / enc.group, enc.len, -1];
                        let (k, v) = layer.memory_kv(table);
                        (
                            k.index_select(0, rows).view(shape),
                            v.index_select(0, rows).view(shape),
                        )
                    }
                };
                MemoryKv::new(&k, &v, self.dims, enc.group)
            })
            .collect()
    }

    fn decoder(&self) -> &Decoder {
        match &self.decoder {
            Some(d) => d,
            None => panic!(
                "this CotTransformer was built without a chain decoder (layout.chain = false)"
            ),
        }
    }

    /// Teacher-forced pass: `prev [B, T]` holds START then the actions of steps `0..T-1`;
    /// returns logits and values at every position.
    ///
    /// # Panics
    /// When `T > max_steps` or the model has no chain decoder.
    pub fn forward_chain(&self, enc: &Encoded, prev: &Tensor, train: bool) -> Heads {
        let dec = self.decoder();
        let t = prev.size()[1];
        assert!(
            t as usize <= self.layout.max_steps,
            "chain of {t} positions exceeds max_steps = {}",
            self.layout.max_steps
        );
        crate::profile::add_model_flops(|| {
            prev.size()[0] as f64 * self.chain_flops_per_row(t as usize, enc.len())
        });
        let prev = prev.to_device(self.device);
        let x = Tensor::embedding(&dec.tok, &prev, -1, false, false) + dec.pos.narrow(0, 0, t);
        let mut h = dropout(x, self.cfg.dropout, train);
        let kv = self.cross_kv(dec, enc);
        for _ in 0..self.cfg.repeat {
            for (layer, kv) in dec.layers.iter().zip(&kv) {
                h = layer.forward(&h, kv, train);
            }
        }
        let h = dec.norm.forward(&h);
        Heads {
            logits: dec.chain_head.forward(&h),
            value: dec.value_head.forward(&h).squeeze_dim(-1),
        }
    }

    /// Prepares incremental decoding of the problems in `enc`: computes the memory's
    /// cross-attention keys and values and allocates the self-attention caches.
    /// Decoding never records gradients (train with [`CotTransformer::forward_chain`]).
    ///
    /// # Panics
    /// When the model has no chain decoder.
    pub fn start_decode(&self, enc: &Encoded) -> DecodeState {
        let dec = self.decoder();
        let b = enc.batch;
        tch::no_grad(|| {
            let cross_kv = self.cross_kv(dec, enc);
            let shape = [
                2,
                b,
                self.dims.heads,
                self.layout.max_steps as i64,
                self.dims.head_dim,
            ];
            let apps = dec.layers.len() * self.cfg.repeat;
            let self_kv = (0..apps)
                .map(|_| Tensor::zeros(shape, (Kind::Float, self.device)))
                .collect();
            DecodeState {
                self_kv,
                cross_kv,
                pos: 0,
                batch: b,
            }
        })
    }

    /// Feeds `prev_action [B]` (START at the first step) and returns the scores of the next
    /// action; equal to the matching position of [`CotTransformer::forward_chain`].
    ///
    /// # Panics
    /// When `max_steps` tokens were already fed or the model has no chain decoder.
    pub fn decode_step(&self, state: &mut DecodeState, prev_action: &Tensor) -> StepHeads {
        let dec = self.decoder();
        let pos = state.pos;
        assert!(
            (pos as usize) < self.layout.max_steps,
            "decode_step past max_steps = {}",
            self.layout.max_steps
        );
        crate::profile::add_model_flops(|| {
            let memory_rows = state
                .cross_kv
                .first()
                .map_or(self.memory_len(), |kv| kv.k.size()[2] as usize);
            prev_action.size()[0] as f64 * self.decode_step_flops(pos as usize, memory_rows)
        });
        tch::no_grad(|| {
            let prev = prev_action.to_device(self.device).view([-1, 1]);
            let mut h =
                Tensor::embedding(&dec.tok, &prev, -1, false, false) + dec.pos.narrow(0, pos, 1);
            let mut app = 0;
            for _ in 0..self.cfg.repeat {
                for (layer, kv) in dec.layers.iter().zip(&state.cross_kv) {
                    h = layer.step(&h, kv, &mut state.self_kv[app], pos);
                    app += 1;
                }
            }
            state.pos += 1;
            let h = dec.norm.forward(&h.squeeze_dim(1));
            StepHeads {
                logits: dec.chain_head.forward(&h),
                value: dec.value_head.forward(&h).squeeze_dim(-1),
            }
        })
    }

    /// Answer-only readout `[B, answer_len, answer_vocab]`: final LayerNorm over the memory,
    /// then the CLS state or the mean over all states, then a linear head.
    ///
    /// # Panics
    /// When the layout has no answer head.
    pub fn answer_only(&self, enc: &Encoded) -> Tensor {
        let (Some(norm), Some(head), Some(shape)) =
            (&self.answer_norm, &self.answer_head, self.layout.answer)
        else {
            panic!("this CotTransformer was built without an answer head (layout.answer = None)");
        };
        crate::profile::add_model_flops(|| enc.batch as f64 * self.answer_flops_per_problem());
        let h = norm.forward(&enc.memory());
        let pooled = match self.cfg.pooling {
            Pooling::Cls => h.select(1, 0),
            Pooling::Mean => h.mean_dim(1, false, Kind::Float),
        };
        head.forward(&pooled)
            .view([-1, shape.len as i64, shape.vocab as i64])
    }
}
