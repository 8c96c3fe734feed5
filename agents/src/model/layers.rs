//! The transformer's building blocks: linear maps, LayerNorm, attention, MLP and the two layer
//! kinds, as plain structs over tensors created on an `nn::Path`.
//!
//! Initialisation follows flax's defaults, which the original models used: kernels are
//! LeCun-normal (a normal truncated to two standard deviations, rescaled so the variance is
//! `1/fan_in`), embeddings are `N(0, 1/width)`, LayerNorm scales are 1 and biases 0.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tch::{nn, Tensor};

/// LayerNorm epsilon, flax's default.
pub(crate) const LN_EPS: f64 = 1e-6;

/// Standard deviation of a standard normal truncated to `[-2, 2]`; dividing by it makes the
/// truncated draw's variance exactly the target (as `jax.nn.initializers.variance_scaling`).
const TRUNC_STD: f64 = 0.879_625_661_034_239_8;

/// Draws initial weights from its own seeded RNG (not libtorch's global one), so a model's
/// weights depend only on its seed, whatever else runs in the process.
pub(crate) struct Initializer {
    rng: StdRng,
}

impl Initializer {
    pub(crate) fn new(seed: u64) -> Initializer {
        Initializer {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// A standard normal draw (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.rng.random::<f64>();
        let u2 = self.rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn tensor(p: &nn::Path, name: &str, dims: &[i64], values: Vec<f32>) -> Tensor {
        let t = Tensor::from_slice(&values).view(dims).to_device(p.device());
        p.var_copy(name, &t)
    }

    /// A LeCun-normal kernel: a standard normal truncated to `[-2, 2]` (by rejection), scaled
    /// to variance `1/fan_in`.
    pub(crate) fn lecun_normal(
        &mut self,
        p: &nn::Path,
        name: &str,
        dims: &[i64],
        fan_in: i64,
    ) -> Tensor {
        let std = (1.0 / fan_in as f64).sqrt() / TRUNC_STD;
        let n: i64 = dims.iter().product();
        let values = (0..n)
            .map(|_| loop {
                let x = self.normal();
                if x.abs() <= 2.0 {
                    break (x * std) as f32;
                }
            })
            .collect();
        Self::tensor(p, name, dims, values)
    }

    /// An embedding table `[rows, width]` drawn from `N(0, 1/width)`.
    pub(crate) fn embedding(&mut self, p: &nn::Path, name: &str, rows: i64, width: i64) -> Tensor {
        let std = (1.0 / width as f64).sqrt();
        let values = (0..rows * width)
            .map(|_| (self.normal() * std) as f32)
            .collect();
        Self::tensor(p, name, &[rows, width], values)
    }
}

/// `x W^T (+ b)`, the weight stored `[out, in]` as in PyTorch so `aten::linear` runs it.
#[derive(Debug)]
pub(crate) struct Linear {
    pub(crate) weight: Tensor,
    pub(crate) bias: Option<Tensor>,
}

impl Linear {
    pub(crate) fn new(
        init: &mut Initializer,
        p: &nn::Path,
        inp: i64,
        out: i64,
        bias: bool,
    ) -> Linear {
        Linear {
            weight: init.lecun_normal(p, "weight", &[out, inp], inp),
            bias: bias.then(|| p.zeros("bias", &[out])),
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }

    /// Outputs `i * width .. (i + 1) * width` of the map alone: one block of a fused weight,
    /// its own product.
    pub(crate) fn forward_block(&self, x: &Tensor, i: i64, width: i64) -> Tensor {
        let bias = self.bias.as_ref().map(|b| b.narrow(0, i * width, width));
        x.linear(&self.weight.narrow(0, i * width, width), bias.as_ref())
    }
}

/// LayerNorm over the last dimension: a scale, and a bias only when the config has biases.
#[derive(Debug)]
pub(crate) struct Norm {
    pub(crate) scale: Tensor,
    pub(crate) bias: Option<Tensor>,
    width: i64,
}

impl Norm {
    pub(crate) fn new(p: &nn::Path, width: i64, bias: bool) -> Norm {
        Norm {
            scale: p.ones("scale", &[width]),
            bias: bias.then(|| p.zeros("bias", &[width])),
            width,
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm(
            [self.width],
            Some(&self.scale),
            self.bias.as_ref(),
            LN_EPS,
            true,
        )
    }
}

/// Dropout that costs nothing when off.
pub(crate) fn dropout(x: Tensor, p: f64, train: bool) -> Tensor {
    if train && p > 0.0 {
        x.dropout(p, true)
    } else {
        x
    }
}

/// Sizes shared by every attention block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    pub(crate) heads: i64,
    pub(crate) head_dim: i64,
    pub(crate) width: i64,
    pub(crate) mlp: i64,
    pub(crate) bias: bool,
    pub(crate) dropout: f64,
}

/// `[B, T, n*width]` -> `[n, B, heads, T, head_dim]`: a free view plus one permute, so q, k and
/// v come out of one fused projection without copies.
fn split_heads(x: &Tensor, n: i64, d: Dims) -> Tensor {
    let (b, t) = (x.size()[0], x.size()[1]);
    x.view([b, t, n, d.heads, d.head_dim])
        .permute([2, 0, 3, 1, 4])
}

/// `[B, T, width]` -> `[B, heads, T, head_dim]`, a view.
fn heads(x: &Tensor, d: Dims) -> Tensor {
    let (b, t) = (x.size()[0], x.size()[1]);
    x.view([b, t, d.heads, d.head_dim]).transpose(1, 2)
}

/// `[B, heads, T, head_dim]` -> `[B, T, width]`.
fn merge_heads(x: &Tensor, d: Dims) -> Tensor {
    let (b, t) = (x.size()[0], x.size()[2]);
    x.transpose(1, 2).reshape([b, t, d.width])
}

/// Keys and values `[G, heads, S, head_dim]` of one layer's memory for `G` memories, each
/// read by `group` consecutive decoder rows (the `K` samples of one problem share its memory).
#[derive(Debug)]
pub(crate) struct MemoryKv {
    pub(crate) k: Tensor,
    pub(crate) v: Tensor,
    pub(crate) group: i64,
}

impl MemoryKv {
    /// From keys and values `[G, S, width]`, each memory read by `group` rows.
    pub(crate) fn new(k: &Tensor, v: &Tensor, d: Dims, group: i64) -> MemoryKv {
        MemoryKv {
            k: heads(k, d),
            v: heads(v, d),
            group,
        }
    }

    /// The keys and values of decoder rows `index` (afterwards one memory per row).
    pub(crate) fn index_select(&self, index: &Tensor) -> MemoryKv {
        let index = if self.group > 1 {
            index.floor_divide_scalar(self.group)
        } else {
            index.shallow_clone()
        };
        MemoryKv {
            k: self.k.index_select(0, &index),
            v: self.v.index_select(0, &index),
            group: 1,
        }
    }
}

/// Multi-head self-attention with one fused q/k/v projection.
#[derive(Debug)]
pub(crate) struct SelfAttention {
    pub(crate) qkv: Linear,
    pub(crate) out: Linear,
    dims: Dims,
}

impl SelfAttention {
    pub(crate) fn new(init: &mut Initializer, p: &nn::Path, d: Dims) -> SelfAttention {
        SelfAttention {
            qkv: Linear::new(init, &(p / "qkv"), d.width, 3 * d.width, d.bias),
            out: Linear::new(init, &(p / "out"), d.width, d.width, d.bias),
            dims: d,
        }
    }

    /// Attention over the whole sequence `x [B, T, width]`, causal or not.
    pub(crate) fn forward(&self, x: &Tensor, causal: bool) -> Tensor {
        // q, k and v each its own product with its block of the fused weight: the attention
        // kernel returns their gradients laid out as each product's backward reads them,
        // where heads split from one [B, T, 3 * width] product would have their gradients
        // stacked and copied back into that layout (two copies of the activations).
        let w = self.dims.width;
        let [q, k, v] = [0, 1, 2].map(|i| heads(&self.qkv.forward_block(x, i, w), self.dims));
        let a = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            causal,
            None,
            false,
        );
        self.out.forward(&merge_heads(&a, self.dims))
    }

    /// One decoding step: `x [B, 1, width]` at position `pos` attends to the cached keys and
    /// values of positions `0..pos` and itself; its own key and value are written into
    /// `cache [2, B, heads, T_max, head_dim]` at `pos`.
    pub(crate) fn step(&self, x: &Tensor, cache: &mut Tensor, pos: i64) -> Tensor {
        let qkv = split_heads(&self.qkv.forward(x), 3, self.dims);
        cache.narrow(3, pos, 1).copy_(&qkv.narrow(0, 1, 2));
        let kv = cache.narrow(3, 0, pos + 1);
        let a = Tensor::scaled_dot_product_attention(
            &qkv.get(0),
            &kv.get(0),
            &kv.get(1),
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        self.out.forward(&merge_heads(&a, self.dims))
    }
}

/// Multi-head cross-attention from the chain to the encoder memory.
#[derive(Debug)]
pub(crate) struct CrossAttention {
    pub(crate) q: Linear,
    pub(crate) kv: Linear,
    pub(crate) out: Linear,
    dims: Dims,
}

impl CrossAttention {
    pub(crate) fn new(init: &mut Initializer, p: &nn::Path, d: Dims) -> CrossAttention {
        CrossAttention {
            q: Linear::new(init, &(p / "q"), d.width, d.width, d.bias),
            kv: Linear::new(init, &(p / "kv"), d.width, 2 * d.width, d.bias),
            out: Linear::new(init, &(p / "out"), d.width, d.width, d.bias),
            dims: d,
        }
    }

    /// `x [B, T, width]` attends to all of the memory (no mask). The `group` rows that share
    /// a memory are one batch entry of `group * T` queries, so each memory's keys and values
    /// are read once for all of them.
    pub(crate) fn forward(&self, x: &Tensor, kv: &MemoryKv) -> Tensor {
        let (b, t) = (x.size()[0], x.size()[1]);
        let q = self
            .q
            .forward(x)
            .view([
                b / kv.group,
                kv.group * t,
                self.dims.heads,
                self.dims.head_dim,
            ])
            .transpose(1, 2);
        let a = Tensor::scaled_dot_product_attention(
            &q,
            &kv.k,
            &kv.v,
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        self.out
            .forward(&merge_heads(&a, self.dims).view([b, t, self.dims.width]))
    }
}

/// `Dense(mlp) -> SiLU -> Dense(width)`.
#[derive(Debug)]
pub(crate) struct Mlp {
    pub(crate) up: Linear,
    pub(crate) down: Linear,
}

impl Mlp {
    pub(crate) fn new(init: &mut Initializer, p: &nn::Path, d: Dims) -> Mlp {
        Mlp {
            up: Linear::new(init, &(p / "up"), d.width, d.mlp, d.bias),
            down: Linear::new(init, &(p / "down"), d.mlp, d.width, d.bias),
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        self.down.forward(&self.up.forward(x).silu())
    }
}

/// Pre-LN self-attention layer (the original's `TransformerLayer`):
/// `h += Attn(LN(h)); h += MLP(LN(h))`.
#[derive(Debug)]
pub(crate) struct EncoderLayer {
    pub(crate) ln_attn: Norm,
    pub(crate) attn: SelfAttention,
    pub(crate) ln_mlp: Norm,
    pub(crate) mlp: Mlp,
    dims: Dims,
}

impl EncoderLayer {
    pub(crate) fn new(init: &mut Initializer, p: &nn::Path, d: Dims) -> EncoderLayer {
        EncoderLayer {
            ln_attn: Norm::new(&(p / "ln_attn"), d.width, d.bias),
            attn: SelfAttention::new(init, &(p / "attn"), d),
            ln_mlp: Norm::new(&(p / "ln_mlp"), d.width, d.bias),
            mlp: Mlp::new(init, &(p / "mlp"), d),
            dims: d,
        }
    }

    pub(crate) fn forward(&self, h: &Tensor, train: bool) -> Tensor {
        let p = self.dims.dropout;
        let h = h + dropout(self.attn.forward(&self.ln_attn.forward(h), false), p, train);
        let m = dropout(self.mlp.forward(&self.ln_mlp.forward(&h)), p, train);
        h + m
    }
}

/// Pre-LN decoder layer (the original's `CrossTransformerLayer` with a causal self-mask):
/// `h += SelfAttn(LN1(h)); h += CrossAttn(LN2(h), LN3(memory)); h += MLP(LN4(h))`.
#[derive(Debug)]
pub(crate) struct DecoderLayer {
    pub(crate) ln_self: Norm,
    pub(crate) self_attn: SelfAttention,
    pub(crate) ln_cross_q: Norm,
    pub(crate) ln_cross_kv: Norm,
    pub(crate) cross: CrossAttention,
    pub(crate) ln_mlp: Norm,
    pub(crate) mlp: Mlp,
    dims: Dims,
}

impl DecoderLayer {
    pub(crate) fn new(init: &mut Initializer, p: &nn::Path, d: Dims) -> DecoderLayer {
        DecoderLayer {
            ln_self: Norm::new(&(p / "ln_self"), d.width, d.bias),
            self_attn: SelfAttention::new(init, &(p / "self_attn"), d),
            ln_cross_q: Norm::new(&(p / "ln_cross_q"), d.width, d.bias),
            ln_cross_kv: Norm::new(&(p / "ln_cross_kv"), d.width, d.bias),
            cross: CrossAttention::new(init, &(p / "cross"), d),
            ln_mlp: Norm::new(&(p / "ln_mlp"), d.width, d.bias),
            mlp: Mlp::new(init, &(p / "mlp"), d),
            dims: d,
        }
    }

    /// Cross-attention keys and values of memory rows `[.., width]`, each `[.., width]` (split
    /// into heads by [`MemoryKv::new`]). Two products rather than one of twice the width, so
    /// that their gradients need no copy (as in [`SelfAttention::forward`]). The memory is
    /// fixed for a problem and the layer's weights are shared across repeats, so this runs
    /// once per layer, not per application.
    pub(crate) fn memory_kv(&self, memory: &Tensor) -> (Tensor, Tensor) {
        let x = self.ln_cross_kv.forward(memory);
        let w = self.dims.width;
        (
            self.cross.kv.forward_block(&x, 0, w),
            self.cross.kv.forward_block(&x, 1, w),
        )
    }

    /// Teacher-forced pass over `h [B, T, width]` with a causal self-mask.
    pub(crate) fn forward(&self, h: &Tensor, kv: &MemoryKv, train: bool) -> Tensor {
        let p = self.dims.dropout;
        let h = h + dropout(
            self.self_attn.forward(&self.ln_self.forward(h), true),
            p,
            train,
        );
        let c = dropout(
            self.cross.forward(&self.ln_cross_q.forward(&h), kv),
            p,
            train,
        );
        let h = h + c;
        let m = dropout(self.mlp.forward(&self.ln_mlp.forward(&h)), p, train);
        h + m
    }

    /// One decoding step of `h [B, 1, width]` at `pos`, reading and extending `cache`.
    pub(crate) fn step(&self, h: &Tensor, kv: &MemoryKv, cache: &mut Tensor, pos: i64) -> Tensor {
        let h = h + self.self_attn.step(&self.ln_self.forward(h), cache, pos);
        let h = &h + self.cross.forward(&self.ln_cross_q.forward(&h), kv);
        &h + self.mlp.forward(&self.ln_mlp.forward(&h))
    }
}
