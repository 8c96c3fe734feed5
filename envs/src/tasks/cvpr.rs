//! C-VPR(L): conditional pointer value retrieval (Abnar et al. 2023; reference §1.1).
//!
//! `H` distinct positions `p1 < ... < pH` are drawn uniformly from `1..L`; the input is
//! uniform filler in `0..L` overwritten with the increasing pointer chain
//! `x[0] = p1, x[p1] = p2, ..., x[p_{H-1}] = pH`, and `x[pH]` = a target drawn uniformly from
//! `0..=pH` (so the chain stops there). With `f(i) = x[i]`, the chain is `[p1, ..., pH]` and
//! the answer is `f^(H+1)(0)` = the target. Any `H` works per problem, so one batch can mix
//! hop counts (the original could not).

use crate::env::{Difficulty, EnvRng};
use crate::error::EnvError;
use crate::task::{Problem, Task, TaskSpec};
use crate::tasks::cycle::{check_hops, check_length, pointer_spec};
use crate::tasks::sampling::Draws;

/// C-VPR(L): difficulty = hops `H` in `1..=L-1`; input vocab = vocab = answer vocab = `L`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cvpr {
    spec: TaskSpec,
}

impl Cvpr {
    /// C-VPR over sequences of `length` tokens; `length` must be in `2..=2^20`.
    pub fn new(length: usize) -> Result<Self, EnvError> {
        check_length(length)?;
        Ok(Cvpr {
            spec: pointer_spec(format!("cvpr(L={length})"), length),
        })
    }

    /// The sequence length `L`.
    pub fn length(&self) -> usize {
        self.spec.input_len
    }
}

impl Task for Cvpr {
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
        let n = self.spec.input_len as u32;
        let mut draws = Draws::new(rng);
        // A uniform H-subset of the positions 1..L by Robert Floyd's algorithm (one draw per
        // element), kept as a bitset in `answer`, used as scratch until the end. For H past
        // half, draw the complement instead.
        let complement = difficulty > (n - 1) / 2;
        let take = if complement {
            n - 1 - difficulty
        } else {
            difficulty
        };
        let bits = &mut out.answer;
        bits.clear();
        bits.resize(n.div_ceil(32) as usize, 0);
        if n <= 128 {
            // The same in a register, so that a membership test never waits for a store.
            let mut set = 0u128;
            for j in (n - take)..n {
                let t = 1 + draws.below(j);
                let pick = if (set >> t) & 1 == 1 { j } else { t };
                set |= 1 << pick;
            }
            for (w, word) in bits.iter_mut().enumerate() {
                *word = (set >> (32 * w)) as u32;
            }
        } else {
            for j in (n - take)..n {
                let t = 1 + draws.below(j);
                let taken = (bits[(t >> 5) as usize] >> (t & 31)) & 1 == 1;
                let pick = if taken { j } else { t };
                bits[(pick >> 5) as usize] |= 1 << (pick & 31);
            }
        }
        // Walking the set bits gives the pointers in ascending order and the clear bits the
        // filler positions, with no per-position branch to mispredict.
        let flip = if complement { u32::MAX } else { 0 };
        out.input.clear();
        out.input.resize(n as usize, 0);
        out.chain.clear();
        out.chain.resize(n as usize, 0);
        let mut pointer_count = 0;
        for (w, &word) in bits.iter().enumerate() {
            let base = (w as u32) << 5;
            let mut valid = if n - base >= 32 {
                u32::MAX
            } else {
                (1 << (n - base)) - 1
            };
            if w == 0 {
                valid &= !1; // position 0 is always the chain's start
            }
            let pointers = (word ^ flip) & valid;
            let mut p = pointers;
            while p != 0 {
                out.chain[pointer_count] = base + p.trailing_zeros();
                pointer_count += 1;
                p &= p - 1;
            }
            let mut f = !pointers & valid;
            while f != 0 {
                out.input[(base + f.trailing_zeros()) as usize] = draws.below(n);
                f &= f - 1;
            }
        }
        out.chain.truncate(pointer_count);
        let mut prev = 0usize;
        for &p in &out.chain {
            out.input[prev] = p;
            prev = p as usize;
        }
        let target = draws.below(prev as u32 + 1);
        out.input[prev] = target;
        out.answer.clear();
        out.answer.push(target);
        out.difficulty = difficulty;
        Ok(())
    }
}
