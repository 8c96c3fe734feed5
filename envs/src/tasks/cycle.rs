//! Cycle(L): follow pointers around a uniformly random single L-cycle.
//!
//! The input is the successor table `f` of a cyclic permutation of `0..L` (one cycle through
//! every node, no fixed points). At `H` hops the chain is `[f^1(0), ..., f^H(0)]` and the answer
//! is `f^(H+1)(0)`, so the oracle's actions are the visited nodes ending in the answer.

use crate::env::{Difficulty, EnvRng};
use crate::error::EnvError;
use crate::spec::DifficultyRange;
use crate::task::{Problem, Task, TaskSpec};
use crate::tasks::sampling::Draws;

/// Largest `L` the pointer tasks accept (tokens are `u32`, observations hold `L` of them).
pub const MAX_POINTER_LEN: usize = 1 << 20;

/// Cycle(L): difficulty = hops `H` in `1..=L-1`; input vocab = vocab = answer vocab = `L`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    spec: TaskSpec,
}

impl Cycle {
    /// Cycle over `length` nodes; `length` must be in `2..=2^20`.
    pub fn new(length: usize) -> Result<Self, EnvError> {
        check_length(length)?;
        Ok(Cycle {
            spec: pointer_spec(format!("cycle(L={length})"), length),
        })
    }

    /// The number of nodes `L`.
    pub fn length(&self) -> usize {
        self.spec.input_len
    }
}

/// Rejects `L` outside `2..=MAX_POINTER_LEN`, naming the parameter.
pub(crate) fn check_length(length: usize) -> Result<(), EnvError> {
    if (2..=MAX_POINTER_LEN).contains(&length) {
        Ok(())
    } else {
        Err(EnvError::invalid(
            "length",
            length,
            format!("2..={MAX_POINTER_LEN}"),
        ))
    }
}

/// The spec shared by the pointer tasks: hops in `1..=L-1`, every vocab `L`, one answer token.
pub(crate) fn pointer_spec(name: String, length: usize) -> TaskSpec {
    TaskSpec {
        name,
        input_len: length,
        input_vocab: length,
        vocab: length,
        answer_len: 1,
        answer_vocab: length,
        max_chain_len: length - 1,
        difficulty: DifficultyRange {
            min: 1,
            max: (length - 1) as Difficulty,
        },
    }
}

/// Rejects hops outside `1..=L-1`, naming the parameter and the range.
pub(crate) fn check_hops(spec: &TaskSpec, hops: Difficulty) -> Result<(), EnvError> {
    if spec.difficulty.contains(hops) {
        Ok(())
    } else {
        Err(EnvError::invalid(
            "hops",
            hops,
            format!("1..=L-1 = 1..={} for {}", spec.difficulty.max, spec.name),
        ))
    }
}

impl Task for Cycle {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn check_difficulty(&self, difficulty: Difficulty) -> Result<(), EnvError> {
        check_hops(&self.spec, difficulty)
    }

    fn sample_into(
        &self,
        difficulty: Difficulty,
        rng: &mut EnvRng,
        out: &mut Problem,
    ) -> Result<(), EnvError> {
        check_hops(&self.spec, difficulty)?;
        let n = self.spec.input_len;
        // A single cycle is 0 followed by the other nodes in visiting order, and each of the
        // (L-1)! orders gives a different cycle: a uniform shuffle of 1..L is a uniform cycle.
        // The visiting order is the oracle chain, so no pointer chasing is needed.
        let order = &mut out.chain;
        order.clear();
        order.extend(1..n as u32);
        Draws::new(rng).shuffle(order);
        out.input.clear();
        out.input.resize(n, 0);
        let mut prev = 0usize;
        for &node in order.iter() {
            out.input[prev] = node;
            prev = node as usize;
        }
        out.input[prev] = 0;
        let h = difficulty as usize;
        out.answer.clear();
        out.answer.push(order.get(h).copied().unwrap_or(0));
        order.truncate(h);
        out.difficulty = difficulty;
        Ok(())
    }
}
