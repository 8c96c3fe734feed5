//! Acting on a batch of observations: [`BatchObs`] in, [`ActOutput`] out, and
//! [`choose_actions`], which turns a policy's logits into legal actions (greedy or sampled
//! from a Rust RNG the caller passes, so runs are reproducible).

use envs::{EnvRng, VecEnv};
use ndarray::ArrayView2;
use rand::Rng;
use tch::{Kind, Tensor};

use crate::error::AgentError;

/// How [`Agent::act`] chooses among the legal actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActMode {
    /// The most likely legal action.
    Greedy,
    /// A draw from the policy restricted to the legal actions.
    Sample,
}

impl ActMode {
    /// `"greedy"` or `"sampled"`, as metric tags spell it.
    pub fn tag(self) -> &'static str {
        match self {
            ActMode::Greedy => "greedy",
            ActMode::Sample => "sampled",
        }
    }
}

/// A batch of observations in the layout of [`envs::EnvSpec::obs`], row `i` = env `i`.
#[derive(Debug, Clone, Copy)]
pub struct BatchObs<'a> {
    /// Integer tokens `(B, obs.tokens)`.
    pub tokens: ArrayView2<'a, i64>,
    /// Real features `(B, obs.features)`.
    pub features: ArrayView2<'a, f32>,
    /// Legal actions `(B, num_actions)`, true = legal. A row with no legal action (an
    /// episode that just ended) may get any action: the env ignores it.
    pub action_mask: ArrayView2<'a, bool>,
}

impl<'a> BatchObs<'a> {
    /// The current observations of a [`VecEnv`].
    pub fn of<E: envs::Env>(envs: &'a VecEnv<E>) -> Self {
        BatchObs {
            tokens: envs.tokens().view(),
            features: envs.features().view(),
            action_mask: envs.action_mask().view(),
        }
    }

    /// Number of rows.
    pub fn batch_size(&self) -> usize {
        self.tokens.nrows()
    }
}

/// What [`Agent::act`] returns, one entry per row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActOutput {
    /// The chosen actions (legal under the row's mask when it has any legal action).
    pub actions: Vec<usize>,
    /// `log pi(action | obs)` under the policy restricted to the legal actions.
    pub log_probs: Vec<f32>,
    /// Entropy of that restricted policy (nats), for the chain-entropy metrics.
    pub entropies: Vec<f32>,
}

/// Restricts `logits [B, A]` to the legal actions of `mask` and picks one action per row:
/// the argmax for [`ActMode::Greedy`], a draw from `rng` for [`ActMode::Sample`]. Returns
/// the actions with their log-probabilities and the entropies of the restricted policies.
/// Rows without a legal action get action 0 with log-probability 0. The work after the
/// forward pass is a copy of `B x A` floats to the CPU.
pub fn choose_actions(
    logits: &Tensor,
    mask: ArrayView2<'_, bool>,
    mode: ActMode,
    rng: &mut EnvRng,
) -> Result<ActOutput, AgentError> {
    let (b, a) = mask.dim();
    let size = logits.size();
    if size != [b as i64, a as i64] {
        return Err(AgentError::Incompatible(format!(
            "logits have shape {size:?}, the mask has ({b}, {a})"
        )));
    }
    let logp = tch::no_grad(|| {
        logits
            .to_kind(Kind::Float)
            .to_device(tch::Device::Cpu)
            .log_softmax(-1, Kind::Float)
    });
    let mut flat = vec![0f32; b * a];
    logp.f_copy_data(&mut flat, b * a)?;
    let mut out = ActOutput {
        actions: Vec::with_capacity(b),
        log_probs: Vec::with_capacity(b),
        entropies: Vec::with_capacity(b),
    };
    for (i, row) in flat.chunks_exact(a).enumerate() {
        let legal = mask.row(i);
        // Renormalize over the legal actions: log p_legal = log p - log sum_legal p.
        let mut max = f32::NEG_INFINITY;
        for (j, &l) in row.iter().enumerate() {
            if legal[j] && l > max {
                max = l;
            }
        }
        if max == f32::NEG_INFINITY {
            out.actions.push(0);
            out.log_probs.push(0.0);
            out.entropies.push(0.0);
            continue;
        }
        let mut z = 0f64;
        for (j, &l) in row.iter().enumerate() {
            if legal[j] {
                z += ((l - max) as f64).exp();
            }
        }
        let log_z = max as f64 + z.ln();
        let mut entropy = 0f64;
        for (j, &l) in row.iter().enumerate() {
            if legal[j] {
                let lp = l as f64 - log_z;
                if lp > f64::NEG_INFINITY {
                    entropy -= lp.exp() * lp;
                }
            }
        }
        let action = match mode {
            ActMode::Greedy => {
                let mut best = usize::MAX;
                for (j, &l) in row.iter().enumerate() {
                    if legal[j] && (best == usize::MAX || l > row[best]) {
                        best = j;
                    }
                }
                best
            }
            ActMode::Sample => {
                let u: f64 = rng.random::<f64>();
                let mut acc = 0f64;
                let mut chosen = usize::MAX;
                let mut last_legal = 0;
                for (j, &l) in row.iter().enumerate() {
                    if !legal[j] {
                        continue;
                    }
                    last_legal = j;
                    acc += (l as f64 - log_z).exp();
                    if u < acc {
                        chosen = j;
                        break;
                    }
                }
                // Rounding can leave `acc` a hair below 1: fall back to the last legal action.
                if chosen == usize::MAX {
                    last_legal
                } else {
                    chosen
                }
            }
        };
        out.actions.push(action);
        out.log_probs.push((row[action] as f64 - log_z) as f32);
        out.entropies.push(entropy as f32);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use ndarray::Array2;
    use rand::SeedableRng;

    #[test]
    fn greedy_picks_the_best_legal_action_and_renormalizes() {
        let logits = Tensor::from_slice(&[3.0f32, 1.0, 1.0, 0.0, 5.0, 0.0]).view([2, 3]);
        let mask = array![[false, true, true], [true, false, true]];
        let mut rng = EnvRng::seed_from_u64(0);
        let out = choose_actions(&logits, mask.view(), ActMode::Greedy, &mut rng).unwrap();
        // Row 0: two legal actions with equal logits -> the first, p = 1/2.
        assert_eq!(out.actions, vec![1, 0]);
        assert!((out.log_probs[0] - 0.5f32.ln()).abs() < 1e-6);
        assert!((out.entropies[0] - 2f32.ln()).abs() < 1e-6);
        assert!((out.log_probs[1] - 0.5f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn sampling_follows_the_restricted_distribution_and_is_seeded() {
        // Legal: actions 0 and 2 with p = 0.2 and 0.8.
        let logits = Tensor::from_slice(&[0.0f32, 9.0, 4f32.ln()])
            .view([1, 3])
            .repeat([4000, 1]);
        let mask = Array2::from_shape_fn((4000, 3), |(_, j)| j != 1);
        let mut rng = EnvRng::seed_from_u64(7);
        let out = choose_actions(&logits, mask.view(), ActMode::Sample, &mut rng).unwrap();
        assert!(out.actions.iter().all(|&a| a != 1));
        let twos = out.actions.iter().filter(|&&a| a == 2).count() as f64 / 4000.0;
        assert!((twos - 0.8).abs() < 0.03, "{twos}");
        let mut rng = EnvRng::seed_from_u64(7);
        let again = choose_actions(&logits, mask.view(), ActMode::Sample, &mut rng).unwrap();
        assert_eq!(out, again);
    }

    #[test]
    fn rows_without_legal_actions_get_a_placeholder() {
        let logits = Tensor::zeros([1, 2], (Kind::Float, tch::Device::Cpu));
        let mask = array![[false, false]];
        let mut rng = EnvRng::seed_from_u64(0);
        let out = choose_actions(&logits, mask.view(), ActMode::Sample, &mut rng).unwrap();
        assert_eq!(out.actions, vec![0]);
        assert_eq!(out.log_probs, vec![0.0]);
    }

    #[test]
    fn a_shape_mismatch_is_an_error() {
        let logits = Tensor::zeros([2, 2], (Kind::Float, tch::Device::Cpu));
        let mask = array![[true, true, true]];
        let mut rng = EnvRng::seed_from_u64(0);
        assert!(choose_actions(&logits, mask.view(), ActMode::Greedy, &mut rng).is_err());
    }
}
