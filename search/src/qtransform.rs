//! Q-value transforms (mctx's `qtransforms.py`): how a node's child Q-values are normalized and
//! completed before action selection and policy improvement.

/// The statistics of one node's outgoing edges that a q-transform reads. All slices have
/// `num_actions` entries; entries of illegal actions are ignored.
#[derive(Debug, Clone, Copy)]
pub struct NodeStats<'a> {
    /// `Q(s, a) = r(s, a) + discount * V(child)` for visited actions (anything for the others).
    pub q: &'a [f32],
    /// Visit counts of the children.
    pub visits: &'a [u32],
    /// Prior probabilities (softmax of the masked prior logits).
    pub prior: &'a [f32],
    /// Legal actions.
    pub legal: &'a [bool],
    /// The node's current (backed-up) value.
    pub node_value: f32,
    /// The evaluator's value of the node (before any backup).
    pub raw_value: f32,
}

/// Parameters of [`QTransform::CompletedByMixValue`] (Gumbel MuZero's σ, Danihelka et al. 2022,
/// Appendix D); the defaults are mctx's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixValue {
    /// `c_scale` in `σ(q) = (c_visit + max_b N(b)) * c_scale * q`.
    pub value_scale: f32,
    /// `c_visit`.
    pub maxvisit_init: f32,
    /// Rescale completed Q-values to [0, 1] by their min and max over legal actions first.
    /// Illegal actions take no part, so once every legal action is visited the completion
    /// value leaves the range (mctx keeps it there through the never-visited illegal actions).
    pub rescale_values: bool,
    /// Complete unvisited actions with the mixed value (else with the raw value).
    pub use_mixed_value: bool,
    /// Smallest denominator of the rescaling.
    pub epsilon: f32,
}

impl Default for MixValue {
    fn default() -> Self {
        MixValue {
            value_scale: 0.1,
            maxvisit_init: 50.0,
            rescale_values: true,
            use_mixed_value: true,
            epsilon: 1e-8,
        }
    }
}

/// A monotonic transform of a node's child Q-values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QTransform {
    /// Normalize to [0, 1] by the min and max over the node's value and its visited children's
    /// Q-values; unvisited children get 0 (mctx's `qtransform_by_parent_and_siblings`, the
    /// default for MCTS).
    ParentAndSiblings {
        /// Smallest denominator.
        epsilon: f32,
    },
    /// Normalize by known bounds, `(q - min) / (max - min)`; unvisited children get 0.
    MinMax {
        /// Smallest possible Q-value.
        min: f32,
        /// Largest possible Q-value.
        max: f32,
    },
    /// Complete unvisited children with the mixed value, optionally rescale, and scale by
    /// `(maxvisit_init + max visits) * value_scale` (the default for Gumbel MuZero).
    CompletedByMixValue(MixValue),
}

impl Default for QTransform {
    fn default() -> Self {
        QTransform::ParentAndSiblings { epsilon: 1e-8 }
    }
}

/// The mixed value `(v̂ + N * Σ_visited π(a) q(a) / Σ_visited π(a)) / (N + 1)` with `N` the sum
/// of visits: the raw value when nothing was visited.
pub fn mixed_value(node: &NodeStats<'_>) -> f32 {
    let mut sum_visits = 0.0f32;
    let mut sum_probs = 0.0f32;
    let mut weighted = 0.0f32;
    for a in 0..node.legal.len() {
        if node.legal[a] && node.visits[a] > 0 {
            // A visited action with zero prior still counts (mctx clamps to the smallest float).
            let p = node.prior[a].max(f32::MIN_POSITIVE);
            sum_visits += node.visits[a] as f32;
            sum_probs += p;
            weighted += p * node.q[a];
        }
    }
    if sum_visits == 0.0 {
        return node.raw_value;
    }
    (node.raw_value + sum_visits * weighted / sum_probs) / (sum_visits + 1.0)
}

impl QTransform {
    /// Writes the transformed Q-value of each legal action into `out` (illegal entries: 0).
    pub fn apply(&self, node: &NodeStats<'_>, out: &mut [f32]) {
        let na = node.legal.len();
        match *self {
            QTransform::ParentAndSiblings { epsilon } => {
                let mut lo = node.node_value;
                let mut hi = node.node_value;
                for a in 0..na {
                    if node.legal[a] && node.visits[a] > 0 {
                        lo = lo.min(node.q[a]);
                        hi = hi.max(node.q[a]);
                    }
                }
                let inv = 1.0 / (hi - lo).max(epsilon);
                for a in 0..na {
                    out[a] = if node.legal[a] && node.visits[a] > 0 {
                        (node.q[a] - lo) * inv
                    } else {
                        0.0
                    };
                }
            }
            QTransform::MinMax { min, max } => {
                let inv = 1.0 / (max - min);
                for a in 0..na {
                    out[a] = if node.legal[a] && node.visits[a] > 0 {
                        (node.q[a] - min) * inv
                    } else {
                        0.0
                    };
                }
            }
            QTransform::CompletedByMixValue(cfg) => {
                let fill = if cfg.use_mixed_value {
                    mixed_value(node)
                } else {
                    node.raw_value
                };
                let mut lo = f32::INFINITY;
                let mut hi = f32::NEG_INFINITY;
                let mut max_visits = 0u32;
                for a in 0..na {
                    if node.legal[a] {
                        let c = if node.visits[a] > 0 { node.q[a] } else { fill };
                        out[a] = c;
                        lo = lo.min(c);
                        hi = hi.max(c);
                        max_visits = max_visits.max(node.visits[a]);
                    } else {
                        out[a] = 0.0;
                    }
                }
                let scale = (cfg.maxvisit_init + max_visits as f32) * cfg.value_scale;
                let (shift, mul) = if cfg.rescale_values && lo.is_finite() {
                    (lo, scale / (hi - lo).max(cfg.epsilon))
                } else {
                    (0.0, scale)
                };
                for a in 0..na {
                    if node.legal[a] {
                        out[a] = (out[a] - shift) * mul;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_value_matches_mctx_test_case() {
        // mctx's qtransforms_test.test_mix_value: the -inf logits become zero priors.
        let logits = [-1.0f32, 2.0];
        let z = logits[0].exp() + logits[1].exp();
        let probs = [0.0, logits[0].exp() / z, logits[1].exp() / z, 0.0];
        let q: Vec<f32> = [20.0, 3.0, -1.0, 10.0]
            .iter()
            .map(|x| 10.0 / 54.0 * x)
            .collect();
        let node = NodeStats {
            q: &q,
            visits: &[0, 4, 4, 0],
            prior: &probs,
            legal: &[true; 4],
            node_value: 0.0,
            raw_value: -0.8,
        };
        let expected = (-0.8 + 8.0 * (probs[1] * q[1] + probs[2] * q[2])) / 9.0;
        assert!((mixed_value(&node) - expected).abs() < 1e-6);
        let unvisited = NodeStats {
            visits: &[0; 4],
            ..node
        };
        assert_eq!(mixed_value(&unvisited), -0.8);
    }

    #[test]
    fn parent_and_siblings_normalizes_visited_and_zeroes_unvisited() {
        let node = NodeStats {
            q: &[0.5, 2.0, 9.0, -1.0],
            visits: &[1, 3, 0, 1],
            prior: &[0.25; 4],
            legal: &[true, true, true, true],
            node_value: 1.0,
            raw_value: 0.0,
        };
        let mut out = [0.0; 4];
        QTransform::default().apply(&node, &mut out);
        // min = -1 (sibling), max = 2 (sibling); the unvisited 9.0 is ignored.
        assert_eq!(out, [0.5, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn completed_by_mix_value_rescales_and_scales_by_visits() {
        let node = NodeStats {
            q: &[1.0, 0.0, 0.0],
            visits: &[2, 0, 1],
            prior: &[0.5, 0.3, 0.2],
            legal: &[true, true, true],
            node_value: 0.0,
            raw_value: 0.4,
        };
        let mut out = [0.0; 3];
        QTransform::CompletedByMixValue(MixValue::default()).apply(&node, &mut out);
        let mixed = (0.4 + 3.0 * (0.5 * 1.0 + 0.2 * 0.0) / 0.7) / 4.0;
        let scale = (50.0 + 2.0) * 0.1;
        assert!((out[0] - scale).abs() < 1e-5);
        assert!((out[1] - mixed * scale).abs() < 1e-5, "{out:?}");
        assert!(out[2].abs() < 1e-6);
    }
}
