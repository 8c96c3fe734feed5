//! Statistics over replicate runs: mean, spread, a bootstrap interval, and power-law fits.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Mean, spread and a 95% bootstrap interval of the mean of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// How many values.
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// Their sample standard deviation (0 for one value).
    pub std: f64,
    /// 2.5th percentile of the bootstrapped mean.
    pub ci_low: f64,
    /// 97.5th percentile of the bootstrapped mean.
    pub ci_high: f64,
}

/// Resamples of the bootstrap interval.
const BOOTSTRAP_RESAMPLES: usize = 2000;

/// Summarises `values` (`None` when empty). The bootstrap draws from a fixed seed, so a
/// report is the same every time it is made.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let std = if n > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (means.len() - 1) as f64).round() as usize).min(means.len() - 1)];
    Some(Summary {
        n,
        mean,
        std,
        ci_low: at(0.025),
        ci_high: at(0.975),
    })
}

/// A least-squares fit of `log y = log a + b log x`: `y = a x^b`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerLaw {
    /// The prefactor `a`.
    pub a: f64,
    /// The exponent `b`.
    pub exponent: f64,
    /// Half-width of the exponent's 95% confidence interval (Student's t with n - 2 degrees
    /// of freedom); `None` with fewer than 3 points.
    pub exponent_ci: Option<f64>,
    /// Points used (those with x > 0 and y > 0).
    pub n: usize,
}

/// Fits a power law to the points with positive coordinates; `None` when fewer than two
/// remain or the x values are all equal.
pub fn fit_power_law(points: &[(f64, f64)]) -> Option<PowerLaw> {
    let logs: Vec<(f64, f64)> = points
        .iter()
        .filter(|(x, y)| *x > 0.0 && *y > 0.0 && x.is_finite() && y.is_finite())
        .map(|(x, y)| (x.ln(), y.ln()))
        .collect();
    let n = logs.len();
    // Equal x values are compared exactly: their mean can differ from them in the last bit,
    // which would leave a spread of 1e-31 and a meaningless slope.
    if n < 2 || logs.iter().all(|p| p.0 == logs[0].0) {
        return None;
    }
    let mx = logs.iter().map(|p| p.0).sum::<f64>() / n as f64;
    let my = logs.iter().map(|p| p.1).sum::<f64>() / n as f64;
    let sxx: f64 = logs.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = logs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let b = sxy / sxx;
    let intercept = my - b * mx;
    let exponent_ci = (n > 2).then(|| {
        let sse: f64 = logs
            .iter()
            .map(|p| (p.1 - intercept - b * p.0).powi(2))
            .sum();
        let se = (sse / (n - 2) as f64 / sxx).sqrt();
        t_975(n - 2) * se
    });
    Some(PowerLaw {
        a: intercept.exp(),
        exponent: b,
        exponent_ci,
        n,
    })
}

/// The 97.5th percentile of Student's t with `df` degrees of freedom.
pub fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df - 1],
        // Beyond the table: the normal quantile with the first correction term.
        _ => 1.959964 + (1.959964f64.powi(3) + 1.959964) / (4.0 * df as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_values() {
        let s = summarize(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(s.n, 4);
        assert!((s.mean - 2.5).abs() < 1e-12);
        assert!((s.std - 1.2909944487358056).abs() < 1e-12);
        assert!(s.ci_low < s.mean && s.mean < s.ci_high);
        assert!(s.ci_low >= 1.0 && s.ci_high <= 4.0);
        assert_eq!(summarize(&[1.0, 2.0, 3.0, 4.0]), Some(s), "deterministic");
        let one = summarize(&[0.5]).unwrap();
        assert_eq!((one.std, one.ci_low, one.ci_high), (0.0, 0.5, 0.5));
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn power_law_recovers_exponent() {
        let exact: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 8.0, 16.0]
            .iter()
            .map(|&x: &f64| (x, 3.0 * x.powf(-0.5)))
            .collect();
        let f = fit_power_law(&exact).unwrap();
        assert!((f.exponent + 0.5).abs() < 1e-12);
        assert!((f.a - 3.0).abs() < 1e-9);
        assert!(f.exponent_ci.unwrap() < 1e-6);
        // Noisy: the interval covers the truth and is wider.
        let noisy: Vec<(f64, f64)> = exact
            .iter()
            .zip([1.1, 0.9, 1.05, 0.95, 1.0])
            .map(|(&(x, y), k)| (x, y * k))
            .collect();
        let g = fit_power_law(&noisy).unwrap();
        let ci = g.exponent_ci.unwrap();
        assert!(ci > 0.01 && (g.exponent + 0.5).abs() < ci, "{g:?}");
        assert!(fit_power_law(&[(1.0, 1.0)]).is_none());
        assert!(fit_power_law(&[(2.0, 1.0), (2.0, 3.0)]).is_none());
        // Three runs at one x whose logs' mean is off by a rounding error: still no fit.
        let x = 65088.0;
        assert!(fit_power_law(&[(x, 25600.0), (x, 51200.0), (x, 76800.0)]).is_none());
        assert_eq!(
            fit_power_law(&[(1.0, 1.0), (2.0, 2.0)])
                .unwrap()
                .exponent_ci,
            None
        );
    }

    #[test]
    fn t_quantiles() {
        assert_eq!(t_975(1), 12.706);
        assert_eq!(t_975(30), 2.042);
        assert!((t_975(120) - 1.980).abs() < 0.002);
    }
}
