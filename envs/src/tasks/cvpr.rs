//! C-VPR(L): conditional pointer value retrieval (Abnar et al. 2023).
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
        let hops = difficulty as usize;
        let mut draws = Draws::new(rng);
        // The pointers are a uniform H-subset of the positions 1..L, in ascending order. A
        // partial Fisher-Yates shuffle of 1..L (in `chain`, used as scratch) draws the first
        // `take` elements of a uniform order, a uniform take-subset; for H past half, that
        // subset is the complement. A bitset then sorts it.
        let complement = difficulty > (n - 1) / 2;
        let take = if complement {
            n - 1 - difficulty
        } else {
            difficulty
        } as usize;
        out.chain.clear();
        out.chain.extend(1..n);
        // Every element of `input` is written below (filler everywhere, then the chain), so a
        // buffer of the right length is not cleared first.
        if out.input.len() != n as usize {
            out.input.clear();
            out.input.resize(n as usize, 0);
        }
        let chain = &mut out.chain[..];
        let input = &mut out.input[..];
        // The shuffle's draws, j_i in i..L-1, go to `input` before the filler does.
        let swaps = &mut input[..take];
        draws.fill_below_each(swaps, n, |i| n - 1 - i as u32);
        let mut prev = 0usize;
        if n <= 128 {
            // The set in a register: no store to wait for, and the pointers come out of it
            // in one branch-free loop of exactly H steps.
            let mut set = 0u128;
            for (i, &j) in swaps.iter().enumerate() {
                let j = i + j as usize;
                let v = chain[j];
                chain[j] = chain[i];
                set |= 1 << v;
            }
            draws.fill_below(input, n);
            let valid = (u128::MAX >> (128 - n)) & !1;
            let mut pointers = if complement { !set & valid } else { set };
            for slot in &mut chain[..hops] {
                let p = pointers.trailing_zeros();
                pointers &= pointers - 1;
                *slot = p;
                input[prev] = p;
                prev = p as usize;
            }
        } else {
            let words = &mut out.answer;
            words.clear();
            words.resize(n.div_ceil(32) as usize, 0);
            for (i, &j) in swaps.iter().enumerate() {
                let j = i + j as usize;
                let v = chain[j];
                chain[j] = chain[i];
                words[(v >> 5) as usize] |= 1 << (v & 31);
            }
            draws.fill_below(input, n);
            let flip = if complement { u32::MAX } else { 0 };
            let mut count = 0;
            for (w, &word) in words.iter().enumerate() {
                let base = (w as u32) << 5;
                let mut valid = if n - base >= 32 {
                    u32::MAX
                } else {
                    (1 << (n - base)) - 1
                };
                if w == 0 {
                    valid &= !1; // position 0 is always the chain's start
                }
                let mut pointers = (word ^ flip) & valid;
                while pointers != 0 {
                    let p = base + pointers.trailing_zeros();
                    pointers &= pointers - 1;
                    chain[count] = p;
                    count += 1;
                    input[prev] = p;
                    prev = p as usize;
                }
            }
        }
        out.chain.truncate(hops);
        let target = draws.below(prev as u32 + 1);
        out.input[prev] = target;
        out.answer.clear();
        out.answer.push(target);
        out.difficulty = difficulty;
        Ok(())
    }
}
