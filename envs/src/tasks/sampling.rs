//! Fast exact uniform integers for problem generators.
//!
//! Problem generation is a long run of small bounded draws (a shuffle, filler tokens), so the
//! cost is in the draws. Each draw here takes 32 bits (half of one 64-bit generator output)
//! and maps them to `0..n` by Lemire's multiply-and-reject method: exactly uniform, with a
//! division only on the rare slow path.

use rand::RngCore;

/// Uniform integers in `0..n` from 32-bit halves of the generator's 64-bit outputs.
/// Deterministic for a given RNG state.
#[derive(Debug)]
pub struct Draws<'a, R: RngCore> {
    rng: &'a mut R,
    spare: Option<u32>,
}

impl<'a, R: RngCore> Draws<'a, R> {
    /// Draws from `rng` (which advances only when both halves of an output are used up).
    pub fn new(rng: &'a mut R) -> Self {
        Draws { rng, spare: None }
    }

    /// 32 uniform random bits.
    #[inline]
    pub fn bits(&mut self) -> u32 {
        match self.spare.take() {
            Some(x) => x,
            None => {
                let v = self.rng.next_u64();
                self.spare = Some((v >> 32) as u32);
                v as u32
            }
        }
    }

    /// Maps 32 random bits `x` to `0..n`; on the rare rejection, draws fresh bits.
    #[inline]
    fn lemire(&mut self, x: u32, n: u32) -> u32 {
        let mut m = u64::from(x) * u64::from(n);
        if (m as u32) < n {
            // The 2^32 mod n lowest products would over-represent some results; reject them.
            let threshold = n.wrapping_neg() % n;
            while (m as u32) < threshold {
                m = u64::from(self.rng.next_u32()) * u64::from(n);
            }
        }
        (m >> 32) as u32
    }

    /// A uniform integer in `0..n`; `n` must be at least 1.
    #[inline]
    pub fn below(&mut self, n: u32) -> u32 {
        debug_assert!(n > 0, "below(0) has no values");
        let x = self.bits();
        self.lemire(x, n)
    }

    /// Writes a uniform integer in `0..n` (`n >= 1`) at `out[k]` for each `k` of `at`, in
    /// order, two per generator output.
    pub fn fill_below_at(&mut self, out: &mut [u32], at: &[u32], n: u32) {
        let mut pairs = at.chunks_exact(2);
        for pair in &mut pairs {
            let v = self.rng.next_u64();
            out[pair[0] as usize] = self.lemire(v as u32, n);
            out[pair[1] as usize] = self.lemire((v >> 32) as u32, n);
        }
        for &k in pairs.remainder() {
            out[k as usize] = self.below(n);
        }
    }

    /// Fisher–Yates shuffle: every order of `a` equally likely; two draws per generator
    /// output.
    pub fn shuffle(&mut self, a: &mut [u32]) {
        let mut i = a.len().saturating_sub(1);
        while i >= 2 {
            let v = self.rng.next_u64();
            let j = self.lemire(v as u32, i as u32 + 1);
            a.swap(i, j as usize);
            let j = self.lemire((v >> 32) as u32, i as u32);
            a.swap(i - 1, j as usize);
            i -= 2;
        }
        if i == 1 {
            let j = self.below(2);
            a.swap(1, j as usize);
        }
    }
}
