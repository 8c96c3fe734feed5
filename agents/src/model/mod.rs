//! The CoT transformer: an input encoder, a causal chain decoder with cross-attention to the
//! encoded input, and heads for the next chain token, a value and an answer-only readout.
//!
//! Training uses [`CotTransformer::forward_chain`] (teacher forcing); acting and search use
//! [`CotTransformer::start_decode`] + [`CotTransformer::decode_step`], which keep a KV cache so
//! the t-th chain token costs O(t) and the input is encoded once per problem.
//!
//! Architecture (the original model's): token + learned positional embeddings, an
//! optional difficulty token appended to the input, pre-LN layers with scale-only LayerNorm
//! (eps 1e-6), SiLU MLPs, no biases by default, `repeat` reusing each stack's layers; the
//! decoder layer is self-attention (causal), cross-attention to the memory, MLP; a final
//! LayerNorm feeds the chain and value heads. Init follows flax defaults (see `layers`).
//!
//! Where the time goes, and what is done about it (CPU): one fused q/k/v matmul per
//! self-attention; libtorch's fused `scaled_dot_product_attention` (3x faster than explicit
//! matmul + softmax at these shapes); cross-attention K/V computed once per layer and reused by
//! every repeat and every decoding step; without encoder layers, the per-row cross-attention
//! work runs on the table of distinct (token, position) rows (see [`Encoded`]).

mod config;
mod kv_cache;
mod layers;
mod transformer;

pub use config::{AnswerShape, ModelConfig, ModelError, ModelLayout, Pooling};
pub use kv_cache::DecodeState;
pub use transformer::{CotTransformer, Encoded, Heads, StepHeads};

/// Sets libtorch's intra-op thread count (`None` keeps libtorch's default, one per core).
/// Inter-op parallelism is not used by this model's sequential graph.
pub fn set_threads(threads: Option<usize>) {
    if let Some(n) = threads {
        tch::set_num_threads(n.max(1) as i32);
    }
}

/// Keeps freed memory in the process instead of returning it to the OS after every step.
///
/// A training step allocates and frees activation buffers of tens of MB; glibc's defaults
/// return them to the kernel (munmap, heap trimming), so the next step page-faults and the
/// kernel zeroes the same pages again (kernel time was ~19% of a training step's profile at
/// the reference config, ~9% with this, startup included). This raises the mmap threshold to
/// glibc's maximum (32 MiB) and disables trimming below 1 GiB. Process-wide; call once at
/// startup. No-op off glibc.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only changes glibc's allocator parameters; these two are valid
        // parameter ids with in-range values, and it is safe to call at any time.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

#[cfg(test)]
mod tests;
