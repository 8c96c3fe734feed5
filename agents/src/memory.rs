//! A lower bound on the memory a run needs, checked before any tensor is allocated.
//!
//! A config with a huge width or batch would otherwise end in the allocator's abort
//! ("memory allocation of N bytes failed"), which no error handler can catch. The estimate
//! counts only what training must hold (weights, gradients and AdamW's two moments, plus the
//! activations one update keeps for its backward pass), so it never refuses a run that would
//! fit; it is compared with the memory the OS says is available.

use crate::config::RunConfig;
use crate::model::{ModelConfig, ModelLayout};
use envs::EnvSpec;

/// Bytes per `f32` element.
const F32: u64 = 4;

/// What a run needs at least, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// A lower bound on the model's parameter count.
    pub parameters: u64,
    /// Weights, gradients and AdamW's two moments: 16 bytes per parameter.
    pub parameter_bytes: u64,
    /// Activations one training batch keeps for the backward pass.
    pub activation_bytes: u64,
}

impl MemoryEstimate {
    /// The sum of the parts.
    pub fn total_bytes(&self) -> u64 {
        self.parameter_bytes.saturating_add(self.activation_bytes)
    }
}

/// The lower bound for `model` on `layout`, training `batch_rows` sequences per update.
///
/// Parameters: the embeddings, per encoder layer `4 d^2` (attention) `+ 2 d m` (MLP), per
/// decoder layer `8 d^2` (self and cross attention) `+ 2 d m`, and the chain head `d a`,
/// with `d` the width, `m` the MLP size and `a` the actions (layers applied `repeat` times
/// share their weights). Activations per sequence and layer application: at least the
/// residual stream, the MLP's hidden units and the attention probabilities,
/// `T (2 d + m + h T_k)` floats, over `T` positions attending to `T_k` keys with `h` heads.
pub fn estimate(model: &ModelConfig, layout: &ModelLayout, batch_rows: u64) -> MemoryEstimate {
    let d = model.width() as u64;
    let m = model.mlp_dim() as u64;
    let h = model.heads as u64;
    let repeat = model.repeat as u64;
    let enc = model.encoder_layers as u64;
    let dec = model.decoder_layers as u64;
    let n_in = layout.input_len as u64 + u64::from(model.difficulty_token);
    let t = layout.max_steps as u64;
    let mul = |a: u64, b: u64| a.saturating_mul(b);
    let add = |a: u64, b: u64| a.saturating_add(b);

    let embeddings = mul(
        add(
            add(layout.input_vocab as u64, layout.difficulty_vocab as u64),
            add(layout.emitted_vocab as u64, add(n_in, t)),
        ),
        d,
    );
    let per_enc = add(mul(4, mul(d, d)), mul(2, mul(d, m)));
    let per_dec = add(mul(8, mul(d, d)), mul(2, mul(d, m)));
    let mut parameters = add(embeddings, add(mul(enc, per_enc), mul(dec, per_dec)));
    if layout.chain {
        parameters = add(parameters, mul(d, layout.num_actions as u64));
    }

    let per_position = |keys: u64| add(add(mul(2, d), m), mul(h, keys));
    let enc_floats = mul(mul(enc, repeat), mul(n_in, per_position(n_in)));
    let dec_floats = if layout.chain {
        mul(mul(dec, repeat), mul(t, per_position(add(t, n_in))))
    } else {
        0
    };
    let activation_bytes = mul(mul(add(enc_floats, dec_floats), batch_rows), F32);
    MemoryEstimate {
        parameters,
        parameter_bytes: mul(parameters, 4 * F32),
        activation_bytes,
    }
}

/// Memory this process may still use, in bytes: the smaller of the kernel's `MemAvailable`
/// and the cgroup's limit less its usage. `None` where neither can be read (not Linux).
pub fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kb| kb.saturating_mul(1024))
    });
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let cgroup = match (
        read("/sys/fs/cgroup/memory.max"),
        read("/sys/fs/cgroup/memory.current"),
    ) {
        (Some(max), Some(used)) => Some(max.saturating_sub(used)),
        _ => None,
    };
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Refuses a run whose lower-bound memory exceeds what is available, before anything is
/// allocated; the message gives the figures and the keys that size them. Runs that cannot
/// be estimated (an env without the token fields) pass.
pub fn check_fits(cfg: &RunConfig, spec: &EnvSpec, available: Option<u64>) -> Result<(), String> {
    let Some(available) = available else {
        return Ok(());
    };
    let Ok(layout) = ModelLayout::from_spec(spec) else {
        return Ok(());
    };
    let need = estimate(&cfg.model, &layout, cfg.train.batch_size as u64);
    if need.total_bytes() <= available {
        return Ok(());
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    Err(format!(
        "this run needs at least {:.1} GiB but {:.1} GiB of memory is available: \
         at least {} parameters ({:.1} GiB for weights, gradients and AdamW moments; \
         sized by model.heads = {}, model.head_dim = {}, model.mlp_factor = {}, \
         model.encoder_layers = {}, model.decoder_layers = {}) and {:.1} GiB of activations \
         (also sized by train.batch_size = {} and model.repeat = {}); make the model or the \
         batch smaller",
        gib(need.total_bytes()),
        gib(available),
        need.parameters,
        gib(need.parameter_bytes),
        cfg.model.heads,
        cfg.model.head_dim,
        cfg.model.mlp_factor,
        cfg.model.encoder_layers,
        cfg.model.decoder_layers,
        gib(need.activation_bytes),
        cfg.train.batch_size,
        cfg.model.repeat,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use envs::Env;
    use tch::nn::VarStore;

    fn config(sets: &[&str]) -> RunConfig {
        let base = "seed = 1\n[env]\nname = \"cycle\"\nlength = 8\n[train]\nlevels = [1, 2, 3]\n\
                    [algo]\nname = \"cot_supervised\"\n";
        crate::testing::config(base, sets)
    }

    fn layout_of(cfg: &RunConfig) -> (envs::AnyEnv, ModelLayout) {
        let env = cfg.env.build().unwrap();
        let layout = ModelLayout::from_spec(env.spec()).unwrap();
        (env, layout)
    }

    /// The estimate is a lower bound, and not a loose one: within 2x of the built model.
    #[test]
    fn the_parameter_estimate_bounds_the_real_count_from_below() {
        for sets in [
            &[][..],
            &["model.encoder_layers=2", "model.decoder_layers=3"][..],
            &["model.heads=8", "model.head_dim=8", "model.mlp_factor=1"][..],
        ] {
            let cfg = config(sets);
            let (env, layout) = layout_of(&cfg);
            let vs = VarStore::new(tch::Device::Cpu);
            let model =
                crate::model::CotTransformer::new(&(vs.root() / "net"), &cfg.model, &layout)
                    .unwrap();
            let real = model.num_parameters() as u64;
            let est = estimate(&cfg.model, &layout, 1).parameters;
            assert!(
                est <= real && 2 * est >= real,
                "{sets:?}: estimate {est}, real {real}"
            );
            drop(env);
        }
    }

    #[test]
    fn a_model_too_large_is_refused_naming_the_keys() {
        let cfg = config(&["model.heads=64", "model.head_dim=4096"]);
        let (env, _) = layout_of(&cfg);
        let err = check_fits(&cfg, env.spec(), Some(8 << 30)).unwrap_err();
        assert!(
            err.contains("GiB") && err.contains("model.head_dim = 4096"),
            "{err}"
        );
        // The same config passes where the memory is there, and an unknown amount passes.
        check_fits(&cfg, env.spec(), Some(u64::MAX)).unwrap();
        check_fits(&cfg, env.spec(), None).unwrap();
    }

    #[test]
    fn a_huge_batch_is_refused_for_its_activations() {
        let cfg = config(&["train.batch_size=1000000000"]);
        let (env, _) = layout_of(&cfg);
        let err = check_fits(&cfg, env.spec(), Some(16 << 30)).unwrap_err();
        assert!(err.contains("train.batch_size = 1000000000"), "{err}");
        config_fits_by_default(&config(&[]));
    }

    fn config_fits_by_default(cfg: &RunConfig) {
        let (env, _) = layout_of(cfg);
        check_fits(cfg, env.spec(), Some(1 << 30)).unwrap();
    }

    #[test]
    fn available_memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(available_bytes().is_some_and(|b| b > 0));
        }
    }
}
