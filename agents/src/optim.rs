//! AdamW written over tch tensors, gradient clipping by global norm, a learning-rate schedule
//! (linear warmup, then constant or cosine decay), and gradient accumulation helpers.
//!
//! The optimizer is ours rather than libtorch's so that its moment tensors are plain named
//! tensors: a checkpoint saves them next to the parameters and `--resume` continues with the
//! same optimizer state (libtorch's C++ optimizers do not expose theirs through tch).
//!
//! Gradient accumulation: an agent splits a batch into micro-batches
//! ([`micro_batches`]), scales each micro-batch loss so that the micro-batch losses sum to
//! the full-batch loss (divide sums by the full batch's count, not the micro-batch's), calls
//! `backward` on each, then calls [`AdamW::step`] once. libtorch adds the gradients of
//! successive backward passes, so the step sees the same gradient as one large batch.

use std::ops::Range;

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Kind, Tensor};

/// What can go wrong while stepping or restoring the optimizer.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// The gradient norm is NaN or infinite: the loss diverged. Nothing was updated.
    #[error(
        "the gradient norm is {norm} at update {step}: training diverged (lower optim.lr, \
         enable optim.clip_grad_norm, or check the loss)"
    )]
    NonFiniteGradient {
        /// The norm that was measured.
        norm: f64,
        /// The 0-based update count.
        step: u64,
    },
    /// Restoring from saved state tensors that do not match the parameters.
    #[error("optimizer state does not match the model: {0}")]
    StateMismatch(String),
    /// A libtorch call failed.
    #[error(transparent)]
    Tch(#[from] tch::TchError),
}

/// Runs libtorch's CPU ops on one thread until dropped, then restores the thread count.
///
/// For the optimizer's ops: most are too short for a second thread to pay for waking it
/// (AdamW over a 3.1M-parameter model took 100-109 ms with two threads against 33-39 ms with
/// one when it ran per parameter tensor; docs/performance.md).
pub(crate) struct OneThread(i32);

impl OneThread {
    /// Lowers this thread's libtorch thread count to one until the guard drops.
    pub(crate) fn new() -> Self {
        let n = tch::get_num_threads();
        if n > 1 {
            tch::set_num_threads(1);
        }
        OneThread(n)
    }
}

impl Drop for OneThread {
    fn drop(&mut self) {
        if self.0 > 1 {
            tch::set_num_threads(self.0);
        }
    }
}

/// How the learning rate evolves after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Stay at the peak `lr` (the original's schedule).
    #[default]
    Constant,
    /// Half-cosine from the peak down to `lr * min_lr_ratio` at the last step.
    Cosine,
}

/// Optimizer settings: the TOML section `[optim]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Peak learning rate, `> 0`.
    pub lr: f64,
    /// AdamW's first-moment decay, in `[0, 1)`.
    pub beta1: f64,
    /// AdamW's second-moment decay, in `[0, 1)`.
    pub beta2: f64,
    /// AdamW's denominator epsilon, `> 0`.
    pub eps: f64,
    /// Decoupled weight decay (scaled by the lr), `>= 0`. Applied to matrices and embedding
    /// tables only (tensors with two or more dimensions), not to biases and LayerNorm gains,
    /// which the original also decayed (that only pulls offsets and gains towards 0).
    pub weight_decay: f64,
    /// Clip the global L2 norm of the gradient to this value; `0` disables clipping.
    pub clip_grad_norm: f64,
    /// Linear warmup length in updates: `lr(t) = lr * min(1, (t + 1) / warmup_steps)`.
    pub warmup_steps: u64,
    /// What follows the warmup.
    pub schedule: ScheduleKind,
    /// Cosine only: the final lr as a fraction of the peak, in `[0, 1]`.
    pub min_lr_ratio: f64,
}

impl Default for OptimConfig {
    /// The original's optimizer settings: AdamW, weight decay 1e-4, clip 1.0, 100
    /// warmup steps then constant, with a higher lr that suits the small CPU configs.
    fn default() -> Self {
        OptimConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-4,
            clip_grad_norm: 1.0,
            warmup_steps: 100,
            schedule: ScheduleKind::Constant,
            min_lr_ratio: 0.0,
        }
    }
}

impl OptimConfig {
    /// Checks every field; the error names the key (`optim.<field>`) and its allowed values.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("optim.{name} = {v}: expected a finite number > 0"))
            }
        };
        let unit = |name: &str, v: f64| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("optim.{name} = {v}: expected a number in [0, 1)"))
            }
        };
        positive("lr", self.lr)?;
        unit("beta1", self.beta1)?;
        unit("beta2", self.beta2)?;
        positive("eps", self.eps)?;
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(format!(
                "optim.weight_decay = {}: expected a finite number >= 0",
                self.weight_decay
            ));
        }
        if !(self.clip_grad_norm.is_finite() && self.clip_grad_norm >= 0.0) {
            return Err(format!(
                "optim.clip_grad_norm = {}: expected a finite number >= 0 (0 = no clipping)",
                self.clip_grad_norm
            ));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err(format!(
                "optim.min_lr_ratio = {}: expected a number in [0, 1]",
                self.min_lr_ratio
            ));
        }
        Ok(())
    }
}

/// The learning rate as a function of the 0-based update count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    peak: f64,
    warmup_steps: u64,
    kind: ScheduleKind,
    min_lr_ratio: f64,
    total_steps: u64,
}

impl LrSchedule {
    /// The schedule `cfg` describes over a run of `total_steps` updates (cosine reaches its
    /// floor at the last one).
    pub fn new(cfg: &OptimConfig, total_steps: u64) -> Self {
        LrSchedule {
            peak: cfg.lr,
            warmup_steps: cfg.warmup_steps,
            kind: cfg.schedule,
            min_lr_ratio: cfg.min_lr_ratio,
            total_steps,
        }
    }

    /// The learning rate of update `t` (0-based).
    pub fn lr(&self, t: u64) -> f64 {
        // The original's warmup: lr/100 at t = 0 for 100 warmup steps, peak from t = 99 on.
        if self.warmup_steps > 0 && t + 1 < self.warmup_steps {
            return self.peak * (t + 1) as f64 / self.warmup_steps as f64;
        }
        match self.kind {
            ScheduleKind::Constant => self.peak,
            ScheduleKind::Cosine => {
                let start = self.warmup_steps.saturating_sub(1);
                let span = self.total_steps.saturating_sub(1).saturating_sub(start);
                let progress = if span == 0 {
                    1.0
                } else {
                    (t.saturating_sub(start) as f64 / span as f64).min(1.0)
                };
                let floor = self.peak * self.min_lr_ratio;
                floor + (self.peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// What one [`AdamW::step`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Global L2 norm of the raw (unclipped) gradient, as the original logged it.
    pub grad_norm: f64,
    /// The learning rate used.
    pub lr: f64,
    /// Whether clipping scaled the gradient down.
    pub clipped: bool,
}

/// One trainable parameter and where its moments lie in the flat moment buffers.
#[derive(Debug)]
struct Slot {
    name: String,
    param: Tensor,
    /// First element in the flat buffers.
    offset: i64,
    numel: i64,
    decay: bool,
}

impl Slot {
    /// This parameter's part of a flat buffer, in the parameter's shape (a view).
    fn part(&self, flat: &Tensor) -> Tensor {
        flat.narrow(0, self.offset, self.numel)
            .view(self.param.size().as_slice())
    }
}

/// AdamW (decoupled weight decay, bias-corrected moments, optax's formula) over the
/// trainable variables of a [`VarStore`], with global-norm clipping and an lr schedule.
///
/// The moments of all parameters live in two flat buffers and each update runs its
/// element-wise arithmetic once over all parameters, leaving each parameter tensor two or
/// three ops (gathering its gradient, its weight decay, adding its slice of the step) where
/// it had about fifteen: at these model sizes the per-op cost, not the arithmetic, is what
/// an optimizer step takes.
#[derive(Debug)]
pub struct AdamW {
    slots: Vec<Slot>,
    /// First and second moments of every parameter, `[total parameters]`, in slot order.
    m: Tensor,
    v: Tensor,
    cfg: OptimConfig,
    schedule: LrSchedule,
    step: u64,
    /// Whether the parameters live on the CPU (the step then runs on one thread).
    on_cpu: bool,
}

/// Name prefix of the first-moment tensors in [`AdamW::state_tensors`].
pub const M_PREFIX: &str = "m.";
/// Name prefix of the second-moment tensors in [`AdamW::state_tensors`].
pub const V_PREFIX: &str = "v.";
/// Name of the update-count tensor in [`AdamW::state_tensors`].
pub const STEP_NAME: &str = "step";

impl AdamW {
    /// An optimizer over every trainable variable of `vs`, for a run of `total_steps` updates
    /// (the cosine schedule needs the length). Parameters are kept in name order so that the
    /// state is laid out the same way in every process.
    pub fn new(vs: &VarStore, cfg: &OptimConfig, total_steps: u64) -> Self {
        let mut named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let mut offset = 0;
        let slots: Vec<Slot> = named
            .into_iter()
            .map(|(name, param)| {
                let numel = param.numel() as i64;
                let decay = param.dim() >= 2;
                let slot = Slot {
                    name,
                    param,
                    offset,
                    numel,
                    decay,
                };
                offset += numel;
                slot
            })
            .collect();
        // Single precision at least (half-precision moments would round small squared
        // gradients to zero); double when a parameter is.
        let kind = if slots.iter().any(|s| s.param.kind() == Kind::Double) {
            Kind::Double
        } else {
            Kind::Float
        };
        let opts = (kind, vs.device());
        AdamW {
            m: Tensor::zeros([offset], opts),
            v: Tensor::zeros([offset], opts),
            slots,
            cfg: cfg.clone(),
            schedule: LrSchedule::new(cfg, total_steps),
            step: 0,
            on_cpu: vs.device() == tch::Device::Cpu,
        }
    }

    /// The number of updates taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The learning rate the next update will use.
    pub fn current_lr(&self) -> f64 {
        self.schedule.lr(self.step)
    }

    /// The schedule in force.
    pub fn schedule(&self) -> &LrSchedule {
        &self.schedule
    }

    /// Clears the accumulated gradients of every parameter.
    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            s.param.zero_grad();
        }
    }

    /// The global L2 norm of the gradients accumulated so far (parameters without a
    /// gradient count as zero).
    pub fn grad_norm(&self) -> f64 {
        tch::no_grad(|| {
            self.flat_gradient()
                .map_or(0.0, |(g, _)| g.norm().double_value(&[]))
        })
    }

    /// One AdamW update from the accumulated gradients: clip by global norm, update the
    /// moments, decay the weights, step, advance the schedule. Gradients are left in place
    /// (call [`zero_grad`](Self::zero_grad) before the next accumulation). A non-finite
    /// gradient norm changes nothing and is an error.
    pub fn step(&mut self) -> Result<StepStats, OptimError> {
        let _phase = crate::profile::phase("optimizer");
        let _one = self.on_cpu.then(OneThread::new);
        let gradient = tch::no_grad(|| self.flat_gradient());
        let grad_norm = tch::no_grad(|| {
            gradient
                .as_ref()
                .map_or(0.0, |(g, _)| g.norm().double_value(&[]))
        });
        if !grad_norm.is_finite() {
            return Err(OptimError::NonFiniteGradient {
                norm: grad_norm,
                step: self.step,
            });
        }
        let lr = self.schedule.lr(self.step);
        let clip = self.cfg.clip_grad_norm;
        let clipped = clip > 0.0 && grad_norm > clip;
        let scale = if clipped {
            clip / (grad_norm + 1e-6)
        } else {
            1.0
        };
        let (b1, b2, eps, wd) = (
            self.cfg.beta1,
            self.cfg.beta2,
            self.cfg.eps,
            self.cfg.weight_decay,
        );
        let t = (self.step + 1) as i32;
        let bias1 = 1.0 - b1.powi(t);
        let bias2 = 1.0 - b2.powi(t);
        if let Some((mut g, with_grad)) = gradient {
            tch::no_grad(|| {
                if scale != 1.0 {
                    let _ = g.g_mul_scalar_(scale);
                }
                // A parameter without a gradient keeps its moments (saved here, restored
                // after the flat update) and its value (skipped below).
                let kept: Vec<(Tensor, Tensor, Tensor, Tensor)> = self
                    .slots
                    .iter()
                    .zip(&with_grad)
                    .filter(|(_, &has)| !has)
                    .map(|(s, _)| {
                        let (m, v) = (s.part(&self.m), s.part(&self.v));
                        (m.copy(), v.copy(), m, v)
                    })
                    .collect();
                // m <- m + (1 - b1)(g - m) ; v <- v + (1 - b2)(g^2 - v)
                let _ = self.m.lerp_(&g, 1.0 - b1);
                let _ = g.g_mul_(&g.shallow_clone());
                let _ = self.v.lerp_(&g, 1.0 - b2);
                for (m0, v0, mut m, mut v) in kept {
                    m.copy_(&m0);
                    v.copy_(&v0);
                }
                // step = -lr (m / bias1) / (sqrt(v / bias2) + eps), computed in g's buffer.
                g.copy_(&self.v);
                let _ = g.sqrt_().g_div_scalar_(bias2.sqrt()).g_add_scalar_(eps);
                let _ = g.reciprocal_().g_mul_(&self.m).g_mul_scalar_(-lr / bias1);
                for (s, has) in self.slots.iter_mut().zip(with_grad) {
                    if !has {
                        continue;
                    }
                    if s.decay && wd > 0.0 {
                        let _ = s.param.g_mul_scalar_(1.0 - lr * wd);
                    }
                    let _ = s.param.g_add_(&s.part(&g));
                }
            });
        }
        self.step += 1;
        Ok(StepStats {
            grad_norm,
            lr,
            clipped,
        })
    }

    /// Every parameter's gradient in one flat tensor in slot order (zeros for a parameter
    /// without one), and which parameters had one; `None` when none had.
    fn flat_gradient(&self) -> Option<(Tensor, Vec<bool>)> {
        let grads: Vec<Tensor> = self.slots.iter().map(|s| s.param.grad()).collect();
        let with_grad: Vec<bool> = grads.iter().map(Tensor::defined).collect();
        if !with_grad.contains(&true) {
            return None;
        }
        let kind = self.m.kind();
        let flat: Vec<Tensor> = self
            .slots
            .iter()
            .zip(&grads)
            .map(|(s, g)| {
                if g.defined() {
                    g.reshape([-1]).to_kind(kind)
                } else {
                    Tensor::zeros([s.numel], (kind, self.m.device()))
                }
            })
            .collect();
        Some((Tensor::cat(&flat, 0), with_grad))
    }

    /// The optimizer state as named tensors for a checkpoint: copies of the moments of each
    /// parameter (`m.<param>`, `v.<param>`) and the update count (`step`). Callers add a namespace
    /// prefix (`optim/`, see `crate::checkpoint`).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.slots.len() + 1);
        for s in &self.slots {
            out.push((format!("{M_PREFIX}{}", s.name), s.part(&self.m).copy()));
            out.push((format!("{V_PREFIX}{}", s.name), s.part(&self.v).copy()));
        }
        out.push((STEP_NAME.to_string(), Tensor::from(self.step as i64)));
        out
    }

    /// Restores the state [`state_tensors`](Self::state_tensors) produced, prefix removed.
    /// Every moment must be present with its parameter's shape and no unknown moment may
    /// be; the error lists each difference.
    pub fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<(), OptimError> {
        let find = |name: &str| tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t);
        let mut problems = Vec::new();
        let step = match find(STEP_NAME).map(|t| t.f_int64_value(&[])) {
            None => {
                problems.push(format!("missing `{STEP_NAME}`"));
                None
            }
            Some(Err(_)) => {
                problems.push(format!("`{STEP_NAME}` is not a single integer"));
                None
            }
            Some(Ok(n)) => Some(n),
        };
        let mut updates = Vec::with_capacity(self.slots.len());
        for (i, s) in self.slots.iter().enumerate() {
            for (prefix, which) in [(M_PREFIX, 0), (V_PREFIX, 1)] {
                let name = format!("{prefix}{}", s.name);
                match find(&name) {
                    None => problems.push(format!("missing `{name}`")),
                    Some(t) if t.size() != s.param.size() => problems.push(format!(
                        "`{name}` has shape {:?}, the parameter has {:?}",
                        t.size(),
                        s.param.size()
                    )),
                    Some(t) => updates.push((i, which, t)),
                }
            }
        }
        let known: Vec<String> = self
            .slots
            .iter()
            .flat_map(|s| {
                [
                    format!("{M_PREFIX}{}", s.name),
                    format!("{V_PREFIX}{}", s.name),
                ]
            })
            .collect();
        for (n, _) in tensors {
            if (n.starts_with(M_PREFIX) || n.starts_with(V_PREFIX)) && !known.contains(n) {
                problems.push(format!("unexpected `{n}` (no such parameter)"));
            }
        }
        if !problems.is_empty() {
            return Err(OptimError::StateMismatch(problems.join("; ")));
        }
        tch::no_grad(|| -> Result<(), OptimError> {
            for (i, which, t) in updates {
                let s = &self.slots[i];
                let mut dst = s.part(if which == 0 { &self.m } else { &self.v });
                dst.f_copy_(t)?;
            }
            Ok(())
        })?;
        self.step = step.map_or(0, |s| s.max(0) as u64);
        Ok(())
    }
}

/// Splits `0..n` into `parts` contiguous ranges whose lengths differ by at most one (empty
/// ranges are dropped when `parts > n`).
pub fn micro_batches(n: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    let base = n / parts;
    let extra = n % parts;
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for i in 0..parts {
        let len = base + usize::from(i < extra);
        if len > 0 {
            out.push(start..start + len);
        }
        start += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, nn::Module, Device};

    fn cfg() -> OptimConfig {
        OptimConfig {
            warmup_steps: 0,
            ..OptimConfig::default()
        }
    }

    #[test]
    fn warmup_is_linear_then_constant() {
        let c = OptimConfig {
            lr: 1e-3,
            warmup_steps: 100,
            ..OptimConfig::default()
        };
        let s = LrSchedule::new(&c, 1000);
        assert!((s.lr(0) - 1e-5).abs() < 1e-12);
        assert!((s.lr(49) - 5e-4).abs() < 1e-12);
        assert!((s.lr(98) - 9.9e-4).abs() < 1e-12);
        assert_eq!(s.lr(99), 1e-3);
        assert_eq!(s.lr(999), 1e-3);
        assert_eq!(s.lr(5000), 1e-3);
    }

    #[test]
    fn cosine_decays_from_peak_to_floor_after_warmup() {
        let c = OptimConfig {
            lr: 1.0,
            warmup_steps: 10,
            schedule: ScheduleKind::Cosine,
            min_lr_ratio: 0.1,
            ..OptimConfig::default()
        };
        let s = LrSchedule::new(&c, 110);
        assert!((s.lr(0) - 0.1).abs() < 1e-12);
        assert!((s.lr(9) - 1.0).abs() < 1e-12, "{}", s.lr(9));
        // Halfway between the end of warmup (t = 9) and the last step (t = 109).
        assert!((s.lr(59) - 0.55).abs() < 1e-12, "{}", s.lr(59));
        assert!((s.lr(109) - 0.1).abs() < 1e-12);
        assert!((s.lr(500) - 0.1).abs() < 1e-12);
        let mut prev = f64::INFINITY;
        for t in 9..110 {
            assert!(s.lr(t) <= prev);
            prev = s.lr(t);
        }
    }

    #[test]
    fn cosine_without_warmup_starts_at_peak() {
        let c = OptimConfig {
            lr: 2.0,
            warmup_steps: 0,
            schedule: ScheduleKind::Cosine,
            ..OptimConfig::default()
        };
        let s = LrSchedule::new(&c, 3);
        assert_eq!(s.lr(0), 2.0);
        assert!((s.lr(1) - 1.0).abs() < 1e-12);
        assert!(s.lr(2).abs() < 1e-12);
    }

    #[test]
    fn matches_a_hand_computed_adamw_step() {
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2, 1], nn::Init::Const(1.0));
        let b = vs.root().var("b", &[1], nn::Init::Const(0.5));
        let c = OptimConfig {
            lr: 0.1,
            weight_decay: 0.01,
            clip_grad_norm: 0.0,
            warmup_steps: 0,
            ..OptimConfig::default()
        };
        let mut opt = AdamW::new(&vs, &c, 10);
        // loss = sum(w) * 3 + b * 4: grads 3 and 4.
        let loss = w.sum(Kind::Float) * 3.0 + b.sum(Kind::Float) * 4.0;
        loss.backward();
        let st = opt.step().unwrap();
        assert!((st.grad_norm - (9.0f64 * 2.0 + 16.0).sqrt()).abs() < 1e-5);
        // First step: m_hat = g, v_hat = g^2, update = sign(g) (up to eps).
        // w decays: 1 * (1 - 0.1 * 0.01) - 0.1 = 0.899 ; b has no decay: 0.5 - 0.1 = 0.4.
        let wv = Vec::<f32>::try_from(w.flatten(0, -1)).unwrap();
        assert!((wv[0] - 0.899).abs() < 1e-6, "{wv:?}");
        assert!((b.double_value(&[0]) - 0.4).abs() < 1e-6);
        assert_eq!(opt.steps(), 1);
    }

    /// A parameter no loss has reached (a head the agent does not train) is neither
    /// stepped nor decayed, and its moments stay zero, while the others update as usual.
    #[test]
    fn a_parameter_without_a_gradient_is_left_alone() {
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2, 1], nn::Init::Const(1.0));
        let unused = vs.root().var("unused", &[2, 2], nn::Init::Const(0.5));
        let c = OptimConfig {
            lr: 0.1,
            weight_decay: 0.5,
            clip_grad_norm: 0.0,
            warmup_steps: 0,
            ..OptimConfig::default()
        };
        let mut opt = AdamW::new(&vs, &c, 10);
        for _ in 0..2 {
            opt.zero_grad();
            (w.sum(Kind::Float) * 3.0).backward();
            opt.step().unwrap();
        }
        assert!(!unused.grad().defined());
        assert!(unused.equal(&Tensor::full([2, 2], 0.5, (Kind::Float, Device::Cpu))));
        for (name, t) in opt.state_tensors() {
            if name.ends_with("unused") {
                assert_eq!(t.abs().sum(Kind::Float).double_value(&[]), 0.0, "{name}");
            }
        }
        // w: two sign(g) steps of lr with decay lr * wd applied before each.
        let expect = (1.0 * (1.0 - 0.05) - 0.1) * (1.0 - 0.05) - 0.1;
        let wv = Vec::<f32>::try_from(w.flatten(0, -1)).unwrap();
        assert!(
            (f64::from(wv[0]) - expect).abs() < 1e-5,
            "{wv:?} vs {expect}"
        );

        // Resumed with moments for it (from a run that trained it), it keeps them too.
        let mut state = opt.state_tensors();
        for (name, t) in &mut state {
            if name.ends_with("unused") {
                *t = t.ones_like() * 0.25;
            }
        }
        let mut resumed = AdamW::new(&vs, &c, 10);
        resumed.load_state(&state).unwrap();
        resumed.zero_grad();
        (w.sum(Kind::Float) * 3.0).backward();
        resumed.step().unwrap();
        for (name, t) in resumed.state_tensors() {
            if name.ends_with("unused") {
                assert!(t.equal(&(t.ones_like() * 0.25)), "{name} changed: {t}");
            }
        }
        assert!(unused.equal(&Tensor::full([2, 2], 0.5, (Kind::Float, Device::Cpu))));
    }

    #[test]
    fn clipping_scales_the_update_and_reports_the_raw_norm() {
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[1], nn::Init::Const(0.0));
        let c = OptimConfig {
            lr: 1.0,
            beta1: 0.0,
            beta2: 0.0,
            eps: 1e-8,
            weight_decay: 0.0,
            clip_grad_norm: 1.0,
            warmup_steps: 0,
            ..OptimConfig::default()
        };
        let mut opt = AdamW::new(&vs, &c, 10);
        (w.sum(Kind::Float) * 10.0).backward();
        let st = opt.step().unwrap();
        assert!(st.clipped);
        assert!((st.grad_norm - 10.0).abs() < 1e-5);
        // With beta = 0 the step is g/|g| whatever the scale: still -1.
        assert!((w.double_value(&[0]) + 1.0).abs() < 1e-5);
    }

    #[test]
    fn a_nan_gradient_is_an_error_and_changes_nothing() {
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[1], nn::Init::Const(1.0));
        let mut opt = AdamW::new(&vs, &cfg(), 10);
        (w.sum(Kind::Float) * f64::NAN).backward();
        let err = opt.step().unwrap_err().to_string();
        assert!(err.contains("NaN") && err.contains("optim.lr"), "{err}");
        assert_eq!(w.double_value(&[0]), 1.0);
        assert_eq!(opt.steps(), 0);
    }

    /// Micro-batches whose losses are normalized by the full batch size add up to exactly
    /// the gradient (and therefore the update) of one big batch.
    #[test]
    fn accumulation_equals_one_big_batch() {
        // Double precision: in f32 the summation order alone moves Adam's normalized update
        // by more than any tolerance that would still catch a wrong normalization.
        tch::manual_seed(0);
        let x = Tensor::randn([12, 3], (Kind::Double, Device::Cpu));
        let y = Tensor::randn([12, 1], (Kind::Double, Device::Cpu));
        let run = |parts: usize| {
            tch::manual_seed(1);
            let mut vs = VarStore::new(Device::Cpu);
            let lin = nn::linear(vs.root() / "lin", 3, 1, Default::default());
            vs.double();
            let mut opt = AdamW::new(&vs, &cfg(), 10);
            for _ in 0..3 {
                opt.zero_grad();
                for r in micro_batches(12, parts) {
                    let xb = x.narrow(0, r.start as i64, r.len() as i64);
                    let yb = y.narrow(0, r.start as i64, r.len() as i64);
                    let loss = (lin.forward(&xb) - yb).square().sum(Kind::Double) / 12.0;
                    loss.backward();
                }
                opt.step().unwrap();
            }
            (lin.ws.copy(), lin.bs.unwrap().copy())
        };
        let (w1, b1) = run(1);
        for parts in [2, 3, 5] {
            let (w, b) = run(parts);
            assert!(w.allclose(&w1, 1e-9, 1e-12, false), "parts {parts}");
            assert!(b.allclose(&b1, 1e-9, 1e-12, false), "parts {parts}");
        }
    }

    #[test]
    fn state_round_trips_and_mismatches_are_named() {
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2], nn::Init::Const(1.0));
        let mut opt = AdamW::new(&vs, &cfg(), 10);
        (w.sum(Kind::Float) * 2.0).backward();
        opt.step().unwrap();
        let state: Vec<(String, Tensor)> = opt
            .state_tensors()
            .into_iter()
            .map(|(n, t)| (n, t.copy()))
            .collect();

        let vs2 = VarStore::new(Device::Cpu);
        let _w2 = vs2.root().var("w", &[2], nn::Init::Const(1.0));
        let mut opt2 = AdamW::new(&vs2, &cfg(), 10);
        opt2.load_state(&state).unwrap();
        assert_eq!(opt2.steps(), 1);
        for ((n1, t1), (n2, t2)) in opt.state_tensors().iter().zip(opt2.state_tensors().iter()) {
            assert_eq!(n1, n2);
            assert!(t1.equal(t2), "{n1}");
        }

        let vs3 = VarStore::new(Device::Cpu);
        let _w3 = vs3.root().var("w", &[3], nn::Init::Const(1.0));
        let _u3 = vs3.root().var("u", &[1], nn::Init::Const(1.0));
        let mut opt3 = AdamW::new(&vs3, &cfg(), 10);
        let err = opt3.load_state(&state).unwrap_err().to_string();
        assert!(err.contains("`m.w` has shape [2]"), "{err}");
        assert!(err.contains("missing `m.u`"), "{err}");

        // A damaged update count is named, not a panic.
        let mut damaged = state;
        for (name, t) in &mut damaged {
            if name == STEP_NAME {
                *t = Tensor::from_slice(&[1i64, 2]);
            }
        }
        let err = opt2.load_state(&damaged).unwrap_err().to_string();
        assert!(err.contains("`step` is not a single integer"), "{err}");
    }

    #[test]
    fn micro_batches_cover_the_range_evenly() {
        assert_eq!(micro_batches(10, 3), vec![0..4, 4..7, 7..10]);
        assert_eq!(micro_batches(2, 5), vec![0..1, 1..2]);
        assert_eq!(micro_batches(7, 1), vec![0..7]);
        assert_eq!(micro_batches(0, 3), Vec::<Range<usize>>::new());
    }

    #[test]
    fn validation_names_the_key_and_range() {
        let bad = OptimConfig {
            beta2: 1.5,
            ..OptimConfig::default()
        };
        let e = bad.validate().unwrap_err();
        assert!(e.contains("optim.beta2") && e.contains("[0, 1)"), "{e}");
        let bad = OptimConfig {
            lr: -1.0,
            ..OptimConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("optim.lr"));
    }
}
