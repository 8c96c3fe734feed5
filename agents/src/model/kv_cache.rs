//! The decoder's incremental state: self-attention keys and values of the chain so far, and
//! the cross-attention keys and values of the encoder memory (computed once per problem).

use super::layers::MemoryKv;
use tch::Tensor;

/// Incremental decoding state of a batch of problems, made by
/// [`super::CotTransformer::start_decode`] and advanced by
/// [`super::CotTransformer::decode_step`].
///
/// Self-attention caches are preallocated `[2, B, heads, max_steps, head_dim]` tensors, one
/// per layer application (`decoder_layers * repeat` of them, since each application of a
/// shared layer sees different inputs); a step writes one slot in place, so emitting the
/// t-th token costs O(t) attention work and no allocation of the cache.
#[derive(Debug)]
pub struct DecodeState {
    /// Per layer application, keys and values `[2, B, heads, max_steps, head_dim]`.
    pub(crate) self_kv: Vec<Tensor>,
    /// Per decoder layer, the memory's keys and values `[G, heads, S, head_dim]`, each
    /// memory read by `B / G` consecutive rows.
    pub(crate) cross_kv: Vec<MemoryKv>,
    /// Number of tokens already fed (the next step's position).
    pub(crate) pos: i64,
    /// Batch size.
    pub(crate) batch: i64,
}

impl DecodeState {
    /// Number of tokens fed so far (START included); the next step decodes at this position.
    pub fn position(&self) -> usize {
        self.pos as usize
    }

    /// Batch size.
    pub fn batch_size(&self) -> usize {
        self.batch as usize
    }

    /// A new state holding rows `index` (an i64 tensor of batch indices, repeats allowed) of
    /// this one, e.g. to expand each problem into several beams or to keep the survivors of a
    /// beam-search step.
    pub fn index_select(&self, index: &Tensor) -> DecodeState {
        tch::no_grad(|| {
            let index = index.to_device(self.device());
            DecodeState {
                self_kv: self
                    .self_kv
                    .iter()
                    .map(|t| t.index_select(1, &index))
                    .collect(),
                cross_kv: self
                    .cross_kv
                    .iter()
                    .map(|kv| kv.index_select(&index))
                    .collect(),
                pos: self.pos,
                batch: index.size()[0],
            }
        })
    }

    /// Each row repeated as `k` consecutive rows that continue from its state (the `K`
    /// samples of a problem after a step they took alike); the memory's keys and values
    /// stay shared by the repeated rows, not copied.
    pub fn repeat_rows(&self, k: usize) -> DecodeState {
        let k = k.max(1) as i64;
        if k == 1 {
            return self.copy();
        }
        tch::no_grad(|| {
            let index = Tensor::arange(self.batch, (tch::Kind::Int64, self.device()))
                .repeat_interleave_self_int(k, 0, None);
            DecodeState {
                self_kv: self
                    .self_kv
                    .iter()
                    .map(|t| t.index_select(1, &index))
                    .collect(),
                cross_kv: self
                    .cross_kv
                    .iter()
                    .map(|kv| MemoryKv {
                        k: kv.k.shallow_clone(),
                        v: kv.v.shallow_clone(),
                        group: kv.group * k,
                    })
                    .collect(),
                pos: self.pos,
                batch: self.batch * k,
            }
        })
    }

    /// A deep copy (new cache tensors), so the two states can be advanced separately.
    pub fn copy(&self) -> DecodeState {
        tch::no_grad(|| DecodeState {
            self_kv: self.self_kv.iter().map(Tensor::copy).collect(),
            cross_kv: self
                .cross_kv
                .iter()
                .map(|kv| MemoryKv {
                    k: kv.k.shallow_clone(),
                    v: kv.v.shallow_clone(),
                    group: kv.group,
                })
                .collect(),
            pos: self.pos,
            batch: self.batch,
        })
    }

    fn device(&self) -> tch::Device {
        self.self_kv
            .first()
            .or(self.cross_kv.first().map(|kv| &kv.k))
            .map_or(tch::Device::Cpu, Tensor::device)
    }
}
