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
//! Next to the seconds, code that knows the shapes it computes on adds the analytic model
//! FLOPs of a phase with [`add_flops`] (the policy's decoding steps, the teacher-forced
//! passes), from which the bench derives each phase's share of the machine's peak.

use std::cell::RefCell;
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
    TOTALS.with(|t| {
        if let Some(t) = t.borrow_mut().as_mut() {
            t.entry(name).flops += flops();
        }
    });
}

/// Waits for the profiled device's queued work (a no-op on the CPU or when profiling is off).
pub fn synchronize() {
    let device = TOTALS.with(|t| t.borrow().as_ref().map(|t| t.device));
    if let Some(Device::Cuda(i)) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Times phase `name` until the guard is dropped (when profiling is on).
#[must_use = "the phase ends when the guard is dropped"]
pub fn phase(name: &'static str) -> Phase {
    let start = enabled().then(|| {
        synchronize();
        Instant::now()
    });
    Phase { name, start }
}

/// A running phase; see [`phase`].
#[derive(Debug)]
pub struct Phase {
    name: &'static str,
    start: Option<Instant>,
}

impl Drop for Phase {
    fn drop(&mut self) {
        if let Some(start) = self.start {
            synchronize();
            add_seconds(self.name, start.elapsed().as_secs_f64());
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
        disable();
        assert!(!enabled());
    }
}
