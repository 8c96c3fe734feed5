//! A new task in one file: running sums mod 10. `CotEnv` makes it an MDP, `check_env`
//! validates it, and `NamedTask` + `registry::register_task` make it buildable by name
//! (configs, every CLI command). Run: `cargo run -p factorexe-envs --example custom_task`.

use envs::registry::{EnvParams, ParamSpec};
use envs::{check_env, Difficulty, DifficultyRange, Env, EnvError, EnvRng, Problem};
use envs::{NamedTask, Task, TaskSpec};
use rand::{Rng, SeedableRng};

/// Input: 8 digits. Difficulty d: answer = (x1 + ... + xd) mod 10; chain = the partial sums.
#[derive(Debug, Clone)]
pub struct PrefixSum(TaskSpec);

/// The task over 8 digits, difficulty 1..=8.
pub fn prefix_sum() -> PrefixSum {
    let (input_len, vocab, difficulty) = (8, 10, DifficultyRange { min: 1, max: 8 });
    PrefixSum(TaskSpec {
        name: "prefix_sum(N=8)".into(),
        input_len,
        input_vocab: vocab,
        vocab,
        answer_len: 1,
        answer_vocab: vocab,
        max_chain_len: 7,
        difficulty,
    })
}

impl Task for PrefixSum {
    fn spec(&self) -> &TaskSpec {
        &self.0
    }

    fn sample_into(
        &self,
        d: Difficulty,
        rng: &mut EnvRng,
        p: &mut Problem,
    ) -> Result<(), EnvError> {
        self.check_difficulty(d)?;
        p.input = (0..8).map(|_| rng.random_range(0..10)).collect();
        let digits = &p.input[..d as usize];
        p.chain = (1..=digits.len())
            .map(|k| digits[..k].iter().sum::<u32>() % 10)
            .collect();
        p.answer = p.chain.split_off(d as usize - 1);
        p.difficulty = d;
        Ok(())
    }
}

impl NamedTask for PrefixSum {
    const NAME: &'static str = "prefix_sum";
    const SUMMARY: &'static str = "running sums mod 10 of 8 digits; answer = sum of the first d";
    const DIFFICULTY: &'static str = "digits summed";
    const PARAMS: &'static [ParamSpec] = &[];
    fn from_params(_: &EnvParams) -> Result<Self, EnvError> {
        Ok(prefix_sum())
    }
}

#[allow(dead_code)] // the test that includes this file has its own entry point
fn main() -> Result<(), Box<dyn std::error::Error>> {
    envs::registry::register_task::<PrefixSum>()?;
    let mut env = envs::registry::make("prefix_sum", &EnvParams::new())?;
    println!("{:?}", check_env(&mut env)?);
    env.reset(&mut EnvRng::seed_from_u64(0), 5)?;
    println!("{}", env.render());
    Ok(())
}
