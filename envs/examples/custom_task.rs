//! A new task in one file: running sums mod 10. `CotEnv` makes it an MDP, `check_env`
//! validates it. Run: `cargo run -p factorexe-envs --example custom_task`.

use envs::{check_env, CotEnv, Difficulty, DifficultyRange, Env, EnvError, EnvRng, Problem};
use envs::{Task, TaskSpec};
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

#[allow(dead_code)] // the test that includes this file has its own entry point
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut env = CotEnv::new(prefix_sum())?;
    println!("{:?}", check_env(&mut env)?);
    env.reset(&mut EnvRng::seed_from_u64(0), 5)?;
    println!("{}", env.render());
    Ok(())
}
