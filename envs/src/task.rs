//! The `Task` trait: problem generators with known solution chains.

use crate::env::{Difficulty, EnvRng};
use crate::error::EnvError;
use crate::spec::DifficultyRange;
use serde::{Deserialize, Serialize};

/// One problem instance: its input, its answer and the oracle chain that computes it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Problem {
    /// Input tokens, `TaskSpec::input_len` of them, each in `0..input_vocab`.
    pub input: Vec<u32>,
    /// The oracle chain of thought (without the answer), each token in `0..vocab`.
    pub chain: Vec<u32>,
    /// The answer tokens, `TaskSpec::answer_len` of them, each in `0..answer_vocab`.
    pub answer: Vec<u32>,
    /// The difficulty this problem was drawn at.
    pub difficulty: Difficulty,
}

/// Static facts about a task's problems.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Short name with parameters, e.g. `"cycle(L=8)"`.
    pub name: String,
    /// Number of input tokens.
    pub input_len: usize,
    /// Input tokens are in `0..input_vocab`.
    pub input_vocab: usize,
    /// Chain and answer tokens are in `0..vocab`.
    pub vocab: usize,
    /// Number of answer tokens.
    pub answer_len: usize,
    /// Answer tokens are in `0..answer_vocab` (`answer_vocab <= vocab`).
    pub answer_vocab: usize,
    /// Longest oracle chain over the difficulty range.
    pub max_chain_len: usize,
    /// Difficulty levels `sample` accepts.
    pub difficulty: DifficultyRange,
}

/// A generator of problems with oracle chains. [`crate::CotEnv`] turns any task into the
/// token MDP; implementing this trait is all a new task needs.
pub trait Task: Clone + Send + Sync {
    /// Static facts about the problems.
    fn spec(&self) -> &TaskSpec;

    /// Draws a problem at `difficulty` into `out`, reusing its buffers.
    fn sample_into(
        &self,
        difficulty: Difficulty,
        rng: &mut EnvRng,
        out: &mut Problem,
    ) -> Result<(), EnvError>;

    /// Draws a problem at `difficulty`.
    fn sample(&self, difficulty: Difficulty, rng: &mut EnvRng) -> Result<Problem, EnvError> {
        let mut problem = Problem::default();
        self.sample_into(difficulty, rng, &mut problem)?;
        Ok(problem)
    }

    /// Checks that `difficulty` is in the task's range, naming both when it is not.
    fn check_difficulty(&self, difficulty: Difficulty) -> Result<(), EnvError> {
        let spec = self.spec();
        if spec.difficulty.contains(difficulty) {
            Ok(())
        } else {
            Err(EnvError::DifficultyOutOfRange {
                env: spec.name.clone(),
                difficulty,
                min: spec.difficulty.min,
                max: spec.difficulty.max,
            })
        }
    }
}
