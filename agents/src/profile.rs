//! Phase timers for profiling a training update (`factorexe bench train`).
//!
//! Agents wrap the parts of `collect` and `update` in [`phase`] guards (`"forward"`,
//! `"backward"`, `"optimizer"`, ...). Timing is off unless the calling thread turned it on
//! with [`enable`]: a guard then costs one thread-local read, so training runs pay nothing
//! and their logs do not change. With timing on, each guard adds its wall seconds to its
//! phase; [`take`] returns and clears the totals. On CUDA, a guard synchronizes the device
//! when it ends, so that a phase is charged for its own kernels rather than for those it
//! queued before (which slows the run down: profile only when measuring).
//!
//! Phases may nest (the bench times `collect` as a whole while the policy times its model
//! calls inside it); a reader subtracts the nested ones where it wants exclusive times.
//!
//! Next to the seconds, the model counts the analytic FLOPs of the matrix products it runs
//! with [`add_model_flops`], where it runs them and for the rows it actually computes (a
//! memory's keys and values once per distinct row, not once per decoder row that reads
//! them): they go to the innermost open phase. Code that knows a cost the model does not see
//! (a backward pass: twice the forward's FLOPs, read with [`model_flops`]) adds it with
//! [`add_flops`]. From these the bench derives each phase's share of the machine's peak.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::time::Instant;

use tch::Device;

/// What one phase accumulated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhaseTotal {
    /// The phase's name.
    pub name: &'static str,
    /// Wall seconds inside the phase.
    pub seconds: f64,
    /// Analytic model FLOPs attributed to the phase.
    pub flops: f64,
}

/// Per-thread accumulated phases, present while profiling is on.
struct Totals {
    device: Device,
    phases: Vec<PhaseTotal>,
    /// The phases open now, innermost last.
    open: Vec<&'static str>,
    /// Every FLOP [`add_model_flops`] counted since profiling was enabled.
    model_flops: f64,
}

impl Totals {
    fn entry(&mut self, name: &'static str) -> &mut PhaseTotal {
        let i = match self.phases.iter().position(|p| p.name == name) {
            Some(i) => i,
            None => {
                self.phases.push(PhaseTotal {
                    name,
                    seconds: 0.0,
                    flops: 0.0,
                });
                self.phases.len() - 1
            }
        };
        &mut self.phases[i]
    }
}

thread_local! {
    static TOTALS: RefCell<Option<Totals>> = const { RefCell::new(None) };
}

/// Turns phase timing on for this thread, for work on `device` (CUDA phases synchronize
/// at their end), and clears the totals.
pub fn enable(device: Device) {
    TOTALS.with(|t| {
        *t.borrow_mut() = Some(Totals {
            device,
            phases: Vec::new(),
            open: Vec::new(),
            model_flops: 0.0,
        })
    });
}

/// Turns phase timing off for this thread.
pub fn disable() {
    TOTALS.with(|t| *t.borrow_mut() = None);
}

/// Whether this thread is timing phases.
pub fn enabled() -> bool {
    TOTALS.with(|t| t.borrow().is_some())
}

/// What each phase accumulated since profiling was enabled or last taken, in first-seen
/// order, and clears it.
pub fn take() -> Vec<PhaseTotal> {
    TOTALS.with(|t| {
        t.borrow_mut()
            .as_mut()
            .map(|t| std::mem::take(&mut t.phases))
            .unwrap_or_default()
    })
}

/// Adds `seconds` to phase `name` (when profiling is on).
pub fn add_seconds(name: &'static str, seconds: f64) {
    TOTALS.with(|t| {
        if let Some(t) = t.borrow_mut().as_mut() {
            t.entry(name).seconds += seconds;
        }
    });
}

/// Adds `flops` analytic model FLOPs to phase `name` (when profiling is on). `flops` is a
/// closure so that a run without profiling does not even compute the count.
pub fn add_flops(name: &'static str, flops: impl FnOnce() -> f64) {
    if !enabled() {
        return;
    }
    let f = flops();
    TOTALS.with(|t| {
        if let Some(t) = t.borrow_mut().as_mut() {
            t.entry(name).flops += f;
        }
    });
}

/// Phase name of model FLOPs counted while no phase is open.
pub const UNPHASED: &str = "model_unphased";

/// Adds `flops` analytic FLOPs of the model's own computation to the innermost open phase
/// (when profiling is on), and to the running total [`model_flops`] reads. The model calls
/// this where it computes; other code adds costs the model does not see with [`add_flops`].
pub fn add_model_flops(flops: impl FnOnce() -> f64) {
    if !enabled() {
        return;
    }
    let f = flops();
    TOTALS.with(|t| {
        if let Some(t) = t.borrow_mut().as_mut() {
            t.model_flops += f;
            let name = t.open.last().copied().unwrap_or(UNPHASED);
            t.entry(name).flops += f;
        }
    });
}

/// Every FLOP [`add_model_flops`] counted on this thread since profiling was enabled (0 when
/// it is off): the difference across a forward pass is that pass's FLOPs.
pub fn model_flops() -> f64 {
    TOTALS.with(|t| t.borrow().as_ref().map_or(0.0, |t| t.model_flops))
}

/// Waits for the profiled device's queued work (a no-op on the CPU or when profiling is off).
pub fn synchronize() {
    let device = TOTALS.with(|t| t.borrow().as_ref().map(|t| t.device));
    if let Some(Device::Cuda(i)) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Times phase `name` until the guard is dropped or [finished](Phase::finish) (when
/// profiling is on).
#[must_use = "the phase ends when the guard is dropped"]
pub fn phase(name: &'static str) -> Phase {
    let start = enabled().then(|| {
        synchronize();
        let counted = TOTALS.with(|t| {
            t.borrow_mut().as_mut().map_or(0.0, |t| {
                t.open.push(name);
                t.model_flops
            })
        });
        (Instant::now(), counted)
    });
    Phase {
        name,
        start,
        _this_thread: PhantomData,
    }
}

/// A running phase; see [`phase`]. Not `Send`: it ends on the thread whose phases it
/// belongs to.
#[derive(Debug)]
pub struct Phase {
    name: &'static str,
    /// When it began, and [`model_flops`] then.
    start: Option<(Instant, f64)>,
    _this_thread: PhantomData<*const ()>,
}

impl Phase {
    /// Ends the phase and returns the model FLOPs counted on this thread while it ran
    /// (nested phases included; 0 when profiling is off): a forward pass's FLOPs, from
    /// which its backward pass is charged ([`backward`]).
    pub fn finish(self) -> f64 {
        let flops = self
            .start
            .map_or(0.0, |(_, counted)| model_flops() - counted);
        drop(self);
        flops
    }
}

/// Backpropagates `loss` inside the `backward` phase, charged twice `forward_flops` (the
/// backward pass of a matmul costs two forward ones).
pub fn backward(loss: &tch::Tensor, forward_flops: f64) {
    {
        let _phase = phase("backward");
        loss.backward();
    }
    add_flops("backward", || 2.0 * forward_flops);
}

impl Drop for Phase {
    fn drop(&mut self) {
        if let Some((start, _)) = self.start {
            synchronize();
            add_seconds(self.name, start.elapsed().as_secs_f64());
            TOTALS.with(|t| {
                if let Some(t) = t.borrow_mut().as_mut() {
                    if let Some(i) = t.open.iter().rposition(|&n| n == self.name) {
                        t.open.remove(i);
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_timed_only_when_enabled() {
        disable();
        drop(phase("a"));
        add_flops("a", || unreachable!("not counted while profiling is off"));
        assert!(take().is_empty());
        enable(Device::Cpu);
        {
            let _a = phase("a");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(phase("b"));
        drop(phase("a"));
        add_flops("b", || 3.0);
        add_flops("b", || 4.0);
        let t = take();
        assert_eq!(t.iter().map(|p| p.name).collect::<Vec<_>>(), ["a", "b"]);
        assert!(t[0].seconds >= 0.005, "{t:?}");
        assert_eq!((t[0].flops, t[1].flops), (0.0, 7.0));
        assert!(take().is_empty(), "take clears");
        // Model FLOPs go to the innermost open phase, and to the running total.
        {
            let _outer = phase("outer");
            add_model_flops(|| 1.0);
            {
                let _inner = phase("inner");
                add_model_flops(|| 2.0);
            }
            add_model_flops(|| 4.0);
        }
        add_model_flops(|| 8.0);
        assert_eq!(model_flops(), 15.0);
        // A finished phase returns what was counted while it ran, nested phases included.
        let outer = phase("outer");
        add_model_flops(|| 16.0);
        let inner = phase("inner");
        add_model_flops(|| 32.0);
        assert_eq!(inner.finish(), 32.0);
        assert_eq!(outer.finish(), 48.0);
        add_model_flops(|| 64.0);
        let t = take();
        let flops = |n: &str| t.iter().find(|p| p.name == n).map(|p| p.flops);
        assert_eq!(flops("outer"), Some(5.0 + 16.0));
        assert_eq!(flops("inner"), Some(2.0 + 32.0));
        assert_eq!(flops(UNPHASED), Some(8.0 + 64.0));
        disable();
        assert_eq!(model_flops(), 0.0);
        assert!(!enabled());
    }
}
