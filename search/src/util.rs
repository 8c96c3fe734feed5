//! Small numeric helpers: masked softmax, argmax with seeded tie-breaking, and the random draws
//! (Gumbel, Gamma, Dirichlet, categorical) the searchers need, on [`EnvRng`].

use envs::EnvRng;
use rand::Rng;

/// Marks an edge whose child node does not exist yet.
pub(crate) const UNVISITED: u32 = u32::MAX;
/// Marks the root's parent and action.
pub(crate) const NO_PARENT: u32 = u32::MAX;

/// Writes `log_softmax(logits)` and `softmax(logits)` over the legal entries; illegal entries
/// get `-inf` and `0`. Returns false when a legal logit is not finite.
pub(crate) fn masked_log_softmax(
    logits: &[f32],
    legal: &[bool],
    log_p: &mut [f32],
    p: &mut [f32],
) -> bool {
    let mut max = f32::NEG_INFINITY;
    for (&l, &ok) in logits.iter().zip(legal) {
        if ok {
            if !l.is_finite() {
                return false;
            }
            max = max.max(l);
        }
    }
    let mut sum = 0.0f32;
    for a in 0..logits.len() {
        if legal[a] {
            let e = (logits[a] - max).exp();
            p[a] = e;
            sum += e;
        } else {
            p[a] = 0.0;
        }
    }
    let log_sum = sum.ln();
    let inv = 1.0 / sum;
    for a in 0..logits.len() {
        if legal[a] {
            log_p[a] = logits[a] - max - log_sum;
            p[a] *= inv;
        } else {
            log_p[a] = f32::NEG_INFINITY;
        }
    }
    true
}

/// Writes `softmax(logits)` over the legal entries into `p` (illegal entries: 0). Returns false
/// when a legal logit is not finite.
pub(crate) fn masked_softmax(logits: &[f32], legal: &[bool], p: &mut [f32]) -> bool {
    let mut max = f32::NEG_INFINITY;
    for (&l, &ok) in logits.iter().zip(legal) {
        if ok {
            if !l.is_finite() {
                return false;
            }
            max = max.max(l);
        }
    }
    let mut sum = 0.0f32;
    for a in 0..logits.len() {
        p[a] = if legal[a] {
            let e = (logits[a] - max).exp();
            sum += e;
            e
        } else {
            0.0
        };
    }
    let inv = 1.0 / sum;
    p.iter_mut().for_each(|x| *x *= inv);
    true
}

/// Running argmax whose exact ties are broken uniformly at random (reservoir sampling), so the
/// RNG is touched only on ties and the result is reproducible from the seed.
pub(crate) struct Argmax {
    best: f32,
    index: usize,
    ties: u32,
}

impl Argmax {
    pub(crate) fn new() -> Self {
        Argmax {
            best: f32::NEG_INFINITY,
            index: usize::MAX,
            ties: 0,
        }
    }

    #[inline]
    pub(crate) fn offer(&mut self, index: usize, score: f32, rng: &mut EnvRng) {
        if score > self.best || self.index == usize::MAX {
            self.best = score;
            self.index = index;
            self.ties = 1;
        } else if score == self.best {
            self.ties += 1;
            if rng.random_range(0..self.ties) == 0 {
                self.index = index;
            }
        }
    }

    /// The winning index; `None` when nothing was offered.
    pub(crate) fn get(&self) -> Option<usize> {
        (self.index != usize::MAX).then_some(self.index)
    }
}

/// A uniform draw in the open interval (0, 1).
pub(crate) fn open_unit(rng: &mut EnvRng) -> f64 {
    ((rng.random::<u64>() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// A standard Gumbel draw, `-ln(-ln U)`.
pub(crate) fn gumbel(rng: &mut EnvRng) -> f32 {
    (-(-open_unit(rng).ln()).ln()) as f32
}

/// A standard normal draw (Box-Muller; one of the pair is discarded to keep the code simple).
fn normal(rng: &mut EnvRng) -> f64 {
    let u1 = open_unit(rng);
    let u2 = open_unit(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A Gamma(`alpha`, 1) draw by Marsaglia and Tsang (2000); `alpha < 1` uses the boost
/// `Gamma(alpha + 1) * U^(1 / alpha)`.
pub(crate) fn gamma(alpha: f64, rng: &mut EnvRng) -> f64 {
    if alpha < 1.0 {
        let boost = open_unit(rng).powf(1.0 / alpha);
        return gamma(alpha + 1.0, rng) * boost;
    }
    let d = alpha - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = open_unit(rng);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// Fills the legal entries of `out` with a symmetric Dirichlet(`alpha`) draw over them and the
/// illegal ones with 0.
pub(crate) fn dirichlet(alpha: f64, legal: &[bool], out: &mut [f32], rng: &mut EnvRng) {
    let mut sum = 0.0f64;
    let mut draws = 0usize;
    for (o, &ok) in out.iter_mut().zip(legal) {
        if ok {
            let g = gamma(alpha, rng);
            *o = g as f32;
            sum += g;
            draws += 1;
        } else {
            *o = 0.0;
        }
    }
    if draws == 0 {
        return;
    }
    if sum > 0.0 && sum.is_finite() {
        let inv = (1.0 / sum) as f32;
        out.iter_mut().for_each(|o| *o *= inv);
    } else {
        // Every Gamma draw underflowed (tiny alpha): the limit is a uniform pick of one action.
        let pick = rng.random_range(0..draws);
        for (o, a) in out
            .iter_mut()
            .zip(legal)
            .filter(|(_, &ok)| ok)
            .map(|(o, _)| o)
            .zip(0..)
        {
            *o = if a == pick { 1.0 } else { 0.0 };
        }
    }
}

/// Samples an index with probability proportional to the non-negative `weights`; `None` when
/// they sum to zero.
pub(crate) fn categorical(weights: &[f32], rng: &mut EnvRng) -> Option<usize> {
    let total: f64 = weights.iter().map(|&w| w as f64).sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let mut r = open_unit(rng) * total;
    let mut last = None;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            last = Some(i);
            r -= w as f64;
            if r <= 0.0 {
                return Some(i);
            }
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn masked_log_softmax_normalizes_over_legal_actions() {
        let logits = [1.0, 5.0, 2.0, f32::NAN];
        let legal = [true, false, true, false];
        let (mut lp, mut p) = ([0.0; 4], [0.0; 4]);
        assert!(masked_log_softmax(&logits, &legal, &mut lp, &mut p));
        assert!((p[0] + p[2] - 1.0).abs() < 1e-6);
        assert_eq!(p[1], 0.0);
        assert!((p[2] / p[0] - 1f32.exp()).abs() < 1e-4);
        assert!((lp[0].exp() - p[0]).abs() < 1e-6);
        assert_eq!(lp[3], f32::NEG_INFINITY);
        let bad = [f32::INFINITY, 0.0, 0.0, 0.0];
        assert!(!masked_log_softmax(&bad, &legal, &mut lp, &mut p));
        let mut q = [0.0; 4];
        assert!(masked_softmax(&logits, &legal, &mut q));
        for a in 0..4 {
            assert!((q[a] - p[a]).abs() < 1e-6);
        }
        assert!(!masked_softmax(&bad, &legal, &mut q));
    }

    #[test]
    fn gamma_and_dirichlet_have_the_right_means() {
        let mut rng = EnvRng::seed_from_u64(7);
        for alpha in [0.3, 1.0, 4.5] {
            let n = 20_000;
            let mean: f64 = (0..n).map(|_| gamma(alpha, &mut rng)).sum::<f64>() / n as f64;
            assert!(
                (mean - alpha).abs() < 0.05 * alpha.max(1.0),
                "alpha {alpha}: {mean}"
            );
        }
        let legal = [true, true, false, true];
        let mut acc = [0.0f64; 4];
        let mut out = [0.0f32; 4];
        for _ in 0..5000 {
            dirichlet(0.3, &legal, &mut out, &mut rng);
            assert!((out.iter().sum::<f32>() - 1.0).abs() < 1e-4);
            assert_eq!(out[2], 0.0);
            acc.iter_mut().zip(out).for_each(|(a, o)| *a += o as f64);
        }
        for a in [0, 1, 3] {
            assert!((acc[a] / 5000.0 - 1.0 / 3.0).abs() < 0.03, "{acc:?}");
        }
    }

    #[test]
    fn gumbel_has_the_euler_mascheroni_mean() {
        let mut rng = EnvRng::seed_from_u64(3);
        let n = 50_000;
        let mean: f64 = (0..n).map(|_| gumbel(&mut rng) as f64).sum::<f64>() / n as f64;
        assert!((mean - 0.5772).abs() < 0.02, "{mean}");
    }

    #[test]
    fn argmax_breaks_exact_ties_uniformly() {
        let mut rng = EnvRng::seed_from_u64(1);
        let mut wins = [0u32; 3];
        for _ in 0..3000 {
            let mut am = Argmax::new();
            for (i, s) in [1.0, 0.5, 1.0].into_iter().enumerate() {
                am.offer(i, s, &mut rng);
            }
            wins[am.get().unwrap_or(9)] += 1;
        }
        assert_eq!(wins[1], 0);
        assert!(wins[0] > 1300 && wins[2] > 1300, "{wins:?}");
    }

    #[test]
    fn categorical_follows_weights_and_skips_zeros() {
        let mut rng = EnvRng::seed_from_u64(2);
        let w = [0.0, 3.0, 1.0, 0.0];
        let mut counts = [0u32; 4];
        for _ in 0..4000 {
            counts[categorical(&w, &mut rng).unwrap_or(0)] += 1;
        }
        assert_eq!(counts[0] + counts[3], 0);
        assert!((counts[1] as f64 / 4000.0 - 0.75).abs() < 0.03);
        assert_eq!(categorical(&[0.0, 0.0], &mut rng), None);
    }
}
