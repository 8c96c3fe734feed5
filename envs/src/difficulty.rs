//! Difficulty samplers: which difficulty (hops, digits) each reset draws.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::env::{Difficulty, EnvRng};
use crate::error::EnvError;
use crate::spec::DifficultyRange;

/// Draws the difficulty of each reset. Every env of a [`crate::VecEnv`] draws its own with
/// its own RNG, so one batch mixes levels whenever the sampler offers several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DifficultySampler {
    /// Always this level. Draws nothing from the RNG.
    Fixed(Difficulty),
    /// Uniform over a set of levels, each reset independently (the original's
    /// `train_num_hops` list). Listing a level twice doubles its weight.
    Uniform(Vec<Difficulty>),
    /// An adaptive curriculum the Runner drives with [`DifficultySampler::report`].
    Curriculum(Curriculum),
}

impl DifficultySampler {
    /// Uniform over `levels`, which must not be empty.
    pub fn uniform(levels: Vec<Difficulty>) -> Result<Self, EnvError> {
        if levels.is_empty() {
            return Err(EnvError::invalid(
                "levels",
                "[]",
                "a non-empty set of difficulty levels (hops, digits)",
            ));
        }
        Ok(DifficultySampler::Uniform(levels))
    }

    /// Draws one difficulty.
    pub fn sample(&self, rng: &mut EnvRng) -> Difficulty {
        match self {
            DifficultySampler::Fixed(d) => *d,
            DifficultySampler::Uniform(levels) => levels[rng.random_range(0..levels.len())],
            DifficultySampler::Curriculum(c) => c.sample(rng),
        }
    }

    /// Checks that every level this sampler may draw is in `range` (and that a set is not
    /// empty), so a bad config fails at construction, not at the thousandth reset.
    pub fn validate(&self, range: &DifficultyRange) -> Result<(), EnvError> {
        let levels = self.levels();
        if levels.is_empty() {
            return Err(EnvError::invalid(
                "levels",
                "[]",
                "a non-empty set of difficulty levels (hops, digits)",
            ));
        }
        if let Some(&bad) = levels.iter().find(|&&d| !range.contains(d)) {
            return Err(EnvError::invalid(
                "levels",
                bad,
                format!(
                    "every difficulty level in {}..={} (the env's range)",
                    range.min, range.max
                ),
            ));
        }
        Ok(())
    }

    /// Every level this sampler may ever draw, ascending and without repeats (a curriculum's
    /// future levels included): the levels an evaluation should report.
    pub fn levels(&self) -> Vec<Difficulty> {
        let mut v = match self {
            DifficultySampler::Fixed(d) => vec![*d],
            DifficultySampler::Uniform(levels) => levels.clone(),
            DifficultySampler::Curriculum(c) => c.levels.clone(),
        };
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Feeds the accuracy measured at `difficulty` (in `0..=1`). A curriculum may raise its
    /// level and returns the new one; other samplers ignore it and return `None`.
    pub fn report(&mut self, difficulty: Difficulty, accuracy: f64) -> Option<Difficulty> {
        match self {
            DifficultySampler::Curriculum(c) => c.report(difficulty, accuracy),
            _ => None,
        }
    }
}

/// An adaptive curriculum over ascending levels.
///
/// It starts at the lowest level. When the Runner reports an accuracy `>= threshold` at the
/// current level, the level rises by one step (never falls). Lower levels keep being sampled:
/// with probability `revisit` a reset draws uniformly among the levels below the current one
/// (against forgetting); otherwise it draws the current level. `revisit = 0` trains on the
/// current level only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curriculum {
    levels: Vec<Difficulty>,
    threshold: f64,
    revisit: f64,
    current: usize,
}

impl Curriculum {
    /// A curriculum over `levels` (sorted and deduplicated here; not empty), raising the level
    /// at accuracy `threshold` (in `(0, 1]`), revisiting lower levels with probability
    /// `revisit` (in `[0, 1)`).
    pub fn new(levels: Vec<Difficulty>, threshold: f64, revisit: f64) -> Result<Self, EnvError> {
        let mut levels = levels;
        levels.sort_unstable();
        levels.dedup();
        if levels.is_empty() {
            return Err(EnvError::invalid(
                "levels",
                "[]",
                "a non-empty set of difficulty levels (hops, digits)",
            ));
        }
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(EnvError::invalid("threshold", threshold, "in (0, 1]"));
        }
        if !(0.0..1.0).contains(&revisit) {
            return Err(EnvError::invalid("revisit", revisit, "in [0, 1)"));
        }
        Ok(Curriculum {
            levels,
            threshold,
            revisit,
            current: 0,
        })
    }

    /// The level being learned now.
    pub fn level(&self) -> Difficulty {
        self.levels[self.current]
    }

    /// True once the hardest level is the current one.
    pub fn at_last_level(&self) -> bool {
        self.current + 1 == self.levels.len()
    }

    /// The levels, ascending.
    pub fn levels(&self) -> &[Difficulty] {
        &self.levels
    }

    /// The accuracy that raises the level.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The probability of drawing a level below the current one.
    pub fn revisit(&self) -> f64 {
        self.revisit
    }

    /// Draws a level: a lower one with probability `revisit`, else the current one.
    pub fn sample(&self, rng: &mut EnvRng) -> Difficulty {
        if self.current > 0 && self.revisit > 0.0 && rng.random::<f64>() < self.revisit {
            self.levels[rng.random_range(0..self.current)]
        } else {
            self.levels[self.current]
        }
    }

    /// Feeds the accuracy at `difficulty`; reports about other levels than the current one are
    /// ignored. Returns the new level when it rose.
    pub fn report(&mut self, difficulty: Difficulty, accuracy: f64) -> Option<Difficulty> {
        if difficulty == self.level() && accuracy >= self.threshold && !self.at_last_level() {
            self.current += 1;
            Some(self.level())
        } else {
            None
        }
    }
}
