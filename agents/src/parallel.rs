//! Data parallelism over CPU threads: an update's batch split into one shard per thread,
//! each shard's forward and backward pass run at the same time on its own copy of the
//! model with one libtorch thread, and the shards' gradients summed into the model.
//!
//! Why: the models here are small, and libtorch's intra-op threads split each op of one
//! pass between the cores; most ops are too small for that to pay (a second thread made the
//! answer-only step 1.35-1.75x faster), while two independent one-thread passes over half
//! the batch each run at nearly a single thread's full speed (docs/performance.md). The
//! summed gradient equals the one-pass gradient up to float rounding, like micro-batches.
//!
//! The shards are contiguous ranges of the batch in a fixed order and their gradients are
//! added in that order, so a run is deterministic for a given thread count.
//!
//! ```
//! use agents::parallel::{shard_count, DataParallel};
//! use tch::Device;
//!
//! // With two libtorch threads on the CPU, a batch of 512 rows is two shards of 256.
//! assert_eq!(shard_count(true, 2, Device::Cpu, 512), 2);
//! // Off (`train.data_parallel = false`), or with one thread, it is one.
//! assert_eq!(shard_count(false, 2, Device::Cpu, 512), 1);
//! assert_eq!(shard_count(true, 1, Device::Cpu, 512), 1);
//! let _splitter = DataParallel::new(true);
//! ```

use std::collections::BTreeMap;
use std::ops::Range;

use tch::{Device, Tensor};

use crate::error::AgentError;
use crate::optim::{micro_batches, OneThread};
use crate::policy::CotPolicy;
use crate::profile;

/// Fewest rows per shard: below this a shard's ops are too small to be worth a thread.
pub const MIN_ROWS_PER_SHARD: usize = 16;

/// Copies of a policy, one per extra thread, and the threads that run them, kept between
/// updates (see the module doc).
#[derive(Debug, Default)]
pub struct DataParallel {
    enabled: bool,
    replicas: Vec<CotPolicy>,
    /// Long-lived threads for the replicas' shards (at least one per replica). A thread made
    /// afresh for every update started with a cold allocator arena and cold MKL buffers:
    /// twice the calling thread's time in page faults, and its shard finished last.
    workers: Option<rayon::ThreadPool>,
}

impl DataParallel {
    /// A splitter; `enabled = false` runs every update as one shard on libtorch's threads.
    pub fn new(enabled: bool) -> Self {
        DataParallel {
            enabled,
            replicas: Vec::new(),
            workers: None,
        }
    }

    /// How many shards an update of `rows` rows of `policy` takes now: libtorch's thread
    /// count when enabled, on the CPU, without dropout, and every shard would have at least
    /// [`MIN_ROWS_PER_SHARD`] rows; otherwise 1. Dropout masks come from libtorch's one
    /// global generator, whose draws concurrent shards would interleave in no fixed order
    /// (the run would no longer be reproducible), so a model with dropout is not split.
    pub fn shards(&self, policy: &CotPolicy, rows: usize) -> usize {
        let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1);
        let enabled = self.enabled && policy.model().config().dropout == 0.0;
        shard_count(enabled, threads, policy.device(), rows)
    }

    /// Splits `0..rows` into shards (see [`DataParallel::shards`]) and each shard into
    /// `micro_batches` parts, and runs `work(policy, part)` on every part, all shards at once;
    /// leaves the sum of their gradients in `policy`'s parameters (added to what they held:
    /// zero them first, as for any backward pass). The first shard runs on `policy` itself,
    /// the others on replicas holding a copy of its weights. Returns each part's result in
    /// row order. `work` must only call `backward` on losses of the policy it is given, and
    /// normalize them by the whole batch's counts (as micro-batches do), so that the parts'
    /// gradients add up to the batch's.
    ///
    /// Meant to be called from a thread outside any rayon pool (as the trainers do): called
    /// from inside one, the thread would run that pool's other jobs, on one libtorch thread,
    /// while it waits for the shards.
    pub fn run<R, F>(
        &mut self,
        policy: &mut CotPolicy,
        rows: usize,
        micro_batches_per_shard: usize,
        work: F,
    ) -> Result<Vec<R>, AgentError>
    where
        R: Send,
        F: Fn(&CotPolicy, Range<usize>) -> Result<R, AgentError> + Sync,
    {
        // One shard's parts, one after the other on the calling thread.
        let parts = |policy: &CotPolicy, shard: Range<usize>| -> Result<Vec<R>, AgentError> {
            micro_batches(shard.len(), micro_batches_per_shard)
                .into_iter()
                .map(|r| work(policy, shard.start + r.start..shard.start + r.end))
                .collect()
        };
        let shards = self.shards(policy, rows);
        if shards < 2 {
            return parts(policy, 0..rows);
        }
        let ranges = micro_batches(rows, shards);
        let start = profile::phase("shard_start");
        self.replicas.truncate(shards - 1);
        while self.replicas.len() < shards - 1 {
            self.replicas.push(policy.replica()?);
        }
        for replica in &mut self.replicas {
            replica.copy_weights_from(policy)?;
            for (_, mut v) in replica.var_store().variables() {
                v.zero_grad();
            }
        }
        let workers = match &mut self.workers {
            Some(pool) if pool.current_num_threads() >= shards - 1 => pool,
            slot => slot.insert(worker_threads(shards - 1)?),
        };
        drop(start);
        let profiling = profile::enabled();
        let device = policy.device();
        // Every shard, this thread's included, runs its ops on one thread (restored when
        // this guard drops, also if a shard panics).
        let one_thread = OneThread::new();
        let main: &CotPolicy = policy;
        let mut rest: Vec<ShardOutput<R>> = (1..shards)
            .map(|_| (Err("the shard did not run".to_string()), Vec::new()))
            .collect();
        let (first, wait) = workers.in_place_scope(|scope| {
            let parts = &parts;
            for ((replica, range), slot) in self
                .replicas
                .iter_mut()
                .zip(ranges[1..].iter().cloned())
                .zip(rest.iter_mut())
            {
                scope.spawn(move |_| {
                    tch::set_num_threads(1);
                    if profiling {
                        profile::enable(device);
                    }
                    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        parts(replica, range)
                    }))
                    .map_err(|panic| panic_message(panic.as_ref()));
                    let totals = if profiling {
                        let t = profile::take();
                        profile::disable();
                        t
                    } else {
                        Vec::new()
                    };
                    *slot = (out, totals);
                });
            }
            let first = parts(main, ranges[0].clone());
            // The scope waits for the other shards after this closure returns: the wait's
            // phase opens here and closes once the scope has returned.
            (first, profile::phase("shard_wait"))
        });
        drop(wait);
        drop(one_thread);
        let mut results = first?;
        for (out, totals) in rest {
            let out = out.map_err(|message| {
                AgentError::Incompatible(format!("a data-parallel shard panicked: {message}"))
            })?;
            results.extend(out?);
            // The shards ran at the same time as this thread's: their FLOPs count, their
            // seconds are already in this thread's wall time.
            for t in totals {
                profile::add_flops(t.name, || t.flops);
            }
        }
        let _phase = profile::phase("shard_sum");
        add_replica_gradients(policy, &self.replicas)?;
        Ok(results)
    }
}

/// `n` threads for replicas' shards, kept across updates.
fn worker_threads(n: usize) -> Result<rayon::ThreadPool, AgentError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("data-parallel-{}", i + 1))
        .build()
        .map_err(|e| {
            AgentError::Incompatible(format!("could not start the data-parallel threads: {e}"))
        })
}

/// What a replica's shard returns: its parts' results (or the message of its panic) and the
/// phases its thread profiled.
type ShardOutput<R> = (
    Result<Result<Vec<R>, AgentError>, String>,
    Vec<profile::PhaseTotal>,
);

/// The text a panic carried, if it was a string.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// The shards of an update of `rows` rows on `device` with `threads` libtorch threads; see
/// [`DataParallel::shards`].
pub fn shard_count(enabled: bool, threads: usize, device: Device, rows: usize) -> usize {
    if !enabled || device != Device::Cpu || threads < 2 {
        return 1;
    }
    threads.min(rows / MIN_ROWS_PER_SHARD).max(1)
}

/// Adds each replica's gradients into `policy`'s, parameter by parameter in name order.
fn add_replica_gradients(policy: &CotPolicy, replicas: &[CotPolicy]) -> Result<(), AgentError> {
    let sorted = |p: &CotPolicy| -> BTreeMap<String, Tensor> {
        p.var_store().variables().into_iter().collect()
    };
    let main = sorted(policy);
    let others: Vec<_> = replicas.iter().map(sorted).collect();
    tch::no_grad(|| {
        for (name, var) in &main {
            let mut grad = var.grad();
            for other in &others {
                let Some(rv) = other.get(name) else {
                    return Err(AgentError::Incompatible(format!(
                        "a data-parallel replica has no parameter `{name}`"
                    )));
                };
                let rg = rv.grad();
                match (grad.defined(), rg.defined()) {
                    (true, true) => {
                        let _ = grad.f_add_(&rg)?;
                    }
                    (false, false) => {}
                    _ => {
                        return Err(AgentError::Incompatible(format!(
                            "parameter `{name}` got a gradient in some data-parallel shards \
                             only (set train.data_parallel = false for this agent)"
                        )))
                    }
                }
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_or_on_one_thread_or_on_a_small_batch_is_one_shard() {
        let cpu = Device::Cpu;
        assert_eq!(shard_count(false, 2, cpu, 512), 1);
        assert_eq!(shard_count(true, 2, cpu, 512), 2);
        assert_eq!(shard_count(true, 4, cpu, 512), 4);
        assert_eq!(shard_count(true, 4, cpu, 3 * MIN_ROWS_PER_SHARD), 3);
        assert_eq!(shard_count(true, 2, cpu, 2 * MIN_ROWS_PER_SHARD - 1), 1);
        assert_eq!(shard_count(true, 2, Device::Cuda(0), 512), 1);
        assert_eq!(shard_count(true, 1, cpu, 512), 1);
    }
}
