//! Reference policies for BinPack: a random legal policy, a greedy heuristic and the oracle,
//! with an evaluation loop over fresh instances.
//!
//! Mean final utilization on 1000 instances of the default (Jumanji BinPack-v2) config, seed 0
//! (`cargo run --release -p factorexe-envs --example binpack_baselines`):
//!
//! | policy | mean | std | min | max | perfect |
//! |---|---|---|---|---|---|
//! | random legal | 0.5825 | 0.0971 | 0.3009 | 0.8911 | 0.0% |
//! | greedy (largest item, lowest space) | 0.8675 | 0.0792 | 0.6064 | 1.0000 | 7.7% |
//! | oracle | 1.0000 | 0 | 1.0000 | 1.0000 | 100% |
//!
//! For scale: an AlphaZero-style mctx agent reaches about 0.96 and PPO about 0.90 on
//! BinPack-v2, so the greedy heuristic is a strong baseline and the oracle an upper bound.

use super::env::{BinPack, BinPackConfig, BINPACK_DIFFICULTY};
use crate::env::{Env, EnvRng};
use crate::error::EnvError;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// A hand-written BinPack policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Baseline {
    /// Uniform over the legal actions.
    Random,
    /// The largest unplaced item (by volume) that fits anywhere shown, into the lowest space
    /// it fits (smallest `z1`, then `y1`, then `x1`).
    Greedy,
    /// [`Env::oracle_action`] of [`BinPack`]: replays the known perfect packing.
    Oracle,
}

impl Baseline {
    /// Every baseline, for tables.
    pub const ALL: [Baseline; 3] = [Baseline::Random, Baseline::Greedy, Baseline::Oracle];

    /// Lower-case name, as the CLI and tables spell it.
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Random => "random",
            Baseline::Greedy => "greedy",
            Baseline::Oracle => "oracle",
        }
    }

    /// The action this policy takes in `env`'s current state; `None` when nothing is legal
    /// (or, for the oracle, when no solution step is shown).
    pub fn act(self, env: &BinPack, rng: &mut EnvRng) -> Option<usize> {
        match self {
            Baseline::Random => random_legal_action(env, rng),
            Baseline::Greedy => greedy_action(env),
            Baseline::Oracle => env.oracle_action(),
        }
    }
}

/// A uniformly drawn legal action, without allocating.
pub fn random_legal_action(env: &BinPack, rng: &mut EnvRng) -> Option<usize> {
    let n = env.spec().num_actions;
    let legal = (0..n).filter(|&a| env.is_legal(a)).count();
    if legal == 0 {
        return None;
    }
    let k = rng.random_range(0..legal);
    (0..n).filter(|&a| env.is_legal(a)).nth(k)
}

/// The greedy heuristic: largest item first, into the lowest space it fits.
pub fn greedy_action(env: &BinPack) -> Option<usize> {
    let items = &env.instance().items;
    let mut best: Option<(i64, [i32; 3], usize, usize)> = None;
    for (i, dims) in items.iter().enumerate() {
        let volume = i64::from(dims[0]) * i64::from(dims[1]) * i64::from(dims[2]);
        for (s, space) in env.observed_ems().enumerate() {
            if !env.is_legal(env.action(s, i)) {
                continue;
            }
            let low = [space.lo[2], space.lo[1], space.lo[0]];
            // Bigger volume wins, then the lower space, then the smaller index.
            let better = match best {
                None => true,
                Some((v, l, _, _)) => volume > v || (volume == v && low < l),
            };
            if better {
                best = Some((volume, low, s, i));
            }
        }
    }
    best.map(|(_, _, s, i)| env.action(s, i))
}

/// Summary of a baseline over many episodes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BaselineStats {
    /// Episodes run.
    pub episodes: usize,
    /// Mean final utilization.
    pub mean: f64,
    /// Standard deviation of the final utilization.
    pub std: f64,
    /// Worst episode.
    pub min: f64,
    /// Best episode.
    pub max: f64,
    /// Fraction of episodes packed perfectly (utilization exactly 1).
    pub perfect: f64,
    /// Mean episode return (the sum of rewards), which equals the mean utilization up to f32
    /// rounding.
    pub mean_return: f64,
}

/// Runs `policy` on `episodes` fresh instances of `config`. Instance `k` is drawn from seed
/// `seed + k` and the policy's own randomness from a separate stream, so every baseline sees
/// the same instances for the same `seed`.
pub fn evaluate(
    config: &BinPackConfig,
    policy: Baseline,
    episodes: usize,
    seed: u64,
) -> Result<BaselineStats, EnvError> {
    let mut env = BinPack::new(config.clone())?;
    let mut policy_rng = EnvRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut utils = Vec::with_capacity(episodes);
    let (mut perfect, mut returns) = (0usize, 0.0f64);
    for k in 0..episodes {
        env.reset(
            &mut EnvRng::seed_from_u64(seed.wrapping_add(k as u64)),
            BINPACK_DIFFICULTY,
        )?;
        let mut ret = 0.0f64;
        while !env.is_done() {
            let Some(action) = policy.act(&env, &mut policy_rng) else {
                break;
            };
            ret += f64::from(env.step(action)?.reward);
        }
        utils.push(env.utilization());
        perfect += usize::from(env.is_perfect());
        returns += ret;
    }
    let n = episodes.max(1) as f64;
    let mean = utils.iter().sum::<f64>() / n;
    let var = utils.iter().map(|u| (u - mean).powi(2)).sum::<f64>() / n;
    Ok(BaselineStats {
        episodes,
        mean,
        std: var.sqrt(),
        min: utils.iter().copied().fold(f64::INFINITY, f64::min),
        max: utils.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        perfect: perfect as f64 / n,
        mean_return: returns / n,
    })
}
