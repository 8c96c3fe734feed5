//! Fast exact uniform integers for problem generators.
//!
//! Problem generation is a long run of small bounded draws (a shuffle, filler tokens), so the
//! cost is in the draws. A single draw takes 32 bits (half of one 64-bit generator output)
//! and maps them to `0..n` by Lemire's multiply-and-reject method: exactly uniform, with a
//! division only on the rare slow path. Runs of draws ([`Draws::fill_below`],
//! [`Draws::fill_below_each`]) take several from one 64-bit output instead (Brackett-Rozinsky
//! and Lemire, "Batched ranged random integer generation", 2024): one multiplication per draw,
//! and as many draws per output as the bounds' product allows.

use rand::RngCore;

/// A batch of draws uses at most this many bits of a 64-bit output, so that a leftover of at
/// least `2^BATCH_BITS` is accepted at once and the exact test (one division) runs with
/// probability below `2^(BATCH_BITS - 64)` = 1/256.
const BATCH_BITS: u32 = 56;

/// Bits needed to hold `0..max` (`max >= 1`).
#[inline]
fn bits_below(max: u64) -> u32 {
    64 - (max - 1).leading_zeros()
}

/// Draws per 64-bit output for bounds of at most `max`.
#[inline]
fn batch_len(max: u64) -> usize {
    (BATCH_BITS / bits_below(max).max(1)) as usize
}

/// Maps one 64-bit output `r` to `out[i]` in `0..bound(i)` for each `i`, as the digits of
/// `floor(r * prod / 2^64)` in the mixed radix of the bounds (`prod` = their product);
/// returns what is left of `r`, `r * prod mod 2^64`, for the rejection test.
#[inline(always)]
fn split(mut r: u64, out: &mut [u32], bound: impl Fn(usize) -> u64) -> u64 {
    for (i, slot) in out.iter_mut().enumerate() {
        let m = u128::from(r) * u128::from(bound(i));
        *slot = (m >> 64) as u32;
        r = m as u64;
    }
    r
}

/// Whether leftover `r` of a batch of `len` draws with these bounds is accepted: Lemire's
/// test for the bounds' product, `r >= 2^64 mod prod`. Callers accept `r >= 2^BATCH_BITS`
/// without it (the product is at most that, so the threshold is below it).
#[cold]
#[inline(never)]
fn accept_slow(r: u64, len: usize, bound: impl Fn(usize) -> u64) -> bool {
    let prod: u64 = (0..len).map(bound).product();
    r >= prod.wrapping_neg() % prod
}

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

    /// Writes a uniform integer in `0..n` (`n >= 1`) to every element of `out`, from
    /// `56 / bits(n)` draws per generator output (8 for `n <= 128`).
    pub fn fill_below(&mut self, out: &mut [u32], n: u32) {
        debug_assert!(n > 0, "fill_below(_, 0) has no values");
        let n = u64::from(n);
        let per = batch_len(n);
        // Two batches at a time: each batch is a chain of dependent multiplications, and two
        // independent chains keep the multiplier busy.
        let mut pairs = out.chunks_exact_mut(2 * per);
        for pair in &mut pairs {
            let (a, b) = pair.split_at_mut(per);
            let mut ra = self.rng.next_u64();
            let mut rb = self.rng.next_u64();
            for (x, y) in a.iter_mut().zip(b.iter_mut()) {
                let ma = u128::from(ra) * u128::from(n);
                let mb = u128::from(rb) * u128::from(n);
                *x = (ma >> 64) as u32;
                *y = (mb >> 64) as u32;
                ra = ma as u64;
                rb = mb as u64;
            }
            // A rejected batch is drawn again from fresh bits, on its own.
            if ra < 1 << BATCH_BITS && !accept_slow(ra, per, |_| n) {
                self.fill_below_each(a, n as u32, |_| n as u32);
            }
            if rb < 1 << BATCH_BITS && !accept_slow(rb, per, |_| n) {
                self.fill_below_each(b, n as u32, |_| n as u32);
            }
        }
        self.fill_below_each(pairs.into_remainder(), n as u32, |_| n as u32);
    }

    /// Writes a uniform integer in `0..bound(i)` to `out[i]` for every `i`, where every bound
    /// is in `1..=max`; `56 / bits(max)` draws per generator output.
    #[inline]
    pub fn fill_below_each(
        &mut self,
        out: &mut [u32],
        max: u32,
        bound: impl Fn(usize) -> u32 + Copy,
    ) {
        debug_assert!(max > 0, "bounds must be at least 1");
        let per = batch_len(u64::from(max));
        let mut start = 0;
        for chunk in out.chunks_mut(per) {
            let b = |i: usize| u64::from(bound(start + i));
            loop {
                let r = split(self.rng.next_u64(), chunk, b);
                if r >= 1 << BATCH_BITS || accept_slow(r, chunk.len(), b) {
                    break;
                }
            }
            start += chunk.len();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays fixed outputs, then counts up from 1.
    struct Replay {
        outputs: Vec<u64>,
        next: usize,
    }

    impl Replay {
        fn new(outputs: &[u64]) -> Self {
            Replay {
                outputs: outputs.to_vec(),
                next: 0,
            }
        }
    }

    impl RngCore for Replay {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.next += 1;
            self.outputs
                .get(self.next - 1)
                .copied()
                .unwrap_or(self.next as u64)
        }
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            rand::rand_core::impls::fill_bytes_via_next(self, dst)
        }
    }

    /// The mixed-radix digits of `floor(r * prod / 2^64)` for constant bound `n`, most
    /// significant first, computed independently with 128-bit arithmetic.
    fn digits(r: u64, n: u64, len: usize) -> Vec<u32> {
        let prod = u128::from(n).pow(len as u32);
        let mut x = (u128::from(r) * prod) >> 64;
        let mut out = vec![0u32; len];
        for slot in out.iter_mut().rev() {
            *slot = (x % u128::from(n)) as u32;
            x /= u128::from(n);
        }
        out
    }

    #[test]
    fn a_batch_is_the_digits_of_lemires_draw_in_the_bounds_product() {
        let r = 0x9e37_79b9_7f4a_7c15;
        let mut rng = Replay::new(&[r]);
        let mut out = [0u32; 8];
        Draws::new(&mut rng).fill_below_each(&mut out, 100, |_| 100);
        assert_eq!(out.to_vec(), digits(r, 100, 8));
        assert_eq!(rng.next, 1, "8 draws below 100 take one output");
    }

    #[test]
    fn a_leftover_below_the_threshold_rejects_the_whole_batch() {
        // r = 0 leaves 0, below 2^64 mod 3^28 > 0: rejected, and the batch is drawn again
        // from the next output, for either method and either batch of a pair.
        let r = 0xdead_beef_1234_5678;
        assert_eq!(batch_len(3), 28);
        let mut out = [7u32; 28];
        let mut rng = Replay::new(&[0, r]);
        Draws::new(&mut rng).fill_below_each(&mut out, 3, |_| 3);
        assert_eq!(out.to_vec(), digits(r, 3, 28));
        assert_eq!(rng.next, 2);

        let mut out = [7u32; 56];
        let mut rng = Replay::new(&[r, 0, r]);
        Draws::new(&mut rng).fill_below(&mut out, 3);
        assert_eq!(out[..28].to_vec(), digits(r, 3, 28));
        assert_eq!(out[28..].to_vec(), digits(r, 3, 28));
        assert_eq!(rng.next, 3);
    }

    #[test]
    fn bounds_of_one_and_powers_of_two_need_no_rejection() {
        // A product of 2^56 divides 2^64: nothing is rejected, not even a zero leftover.
        let mut out = [9u32; 14];
        let mut rng = Replay::new(&[0]);
        Draws::new(&mut rng).fill_below_each(&mut out, 16, |_| 16);
        assert_eq!(out, [0; 14]);
        assert_eq!(rng.next, 1);
        let mut ones = [9u32; 5];
        Draws::new(&mut rng).fill_below_each(&mut ones, 1, |_| 1);
        assert_eq!(ones, [0; 5]);
    }
}
