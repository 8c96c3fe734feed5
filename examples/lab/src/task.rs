//! A task: running parity. Difficulty `d` asks for the parity of the first `d` bits of the
//! input; the chain is the parities of the shorter prefixes, one bit added at a time.

use factorexe::envs::registry::{EnvParams, ParamSpec};
use factorexe::envs::{
    Difficulty, DifficultyRange, EnvError, EnvRng, NamedTask, Problem, Task, TaskSpec,
};
use rand::Rng;

/// Running parity over `bits` bits, difficulty 2..=bits.
#[derive(Debug, Clone)]
pub struct PrefixParity {
    spec: TaskSpec,
    bits: usize,
}

impl PrefixParity {
    /// The task over `bits` bits (2..=32).
    pub fn new(bits: usize) -> Result<Self, EnvError> {
        if !(2..=32).contains(&bits) {
            return Err(EnvError::InvalidParameter {
                name: "bits",
                value: bits.to_string(),
                allowed: "an integer in 2..=32".into(),
            });
        }
        Ok(PrefixParity {
            spec: TaskSpec {
                name: format!("prefix_parity(N={bits})"),
                input_len: bits,
                input_vocab: 2,
                vocab: 2,
                answer_len: 1,
                answer_vocab: 2,
                max_chain_len: bits - 1,
                difficulty: DifficultyRange {
                    min: 2,
                    max: bits as u32,
                },
            },
            bits,
        })
    }
}

impl Task for PrefixParity {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn sample_into(
        &self,
        d: Difficulty,
        rng: &mut EnvRng,
        p: &mut Problem,
    ) -> Result<(), EnvError> {
        self.check_difficulty(d)?;
        p.input.clear();
        p.input
            .extend((0..self.bits).map(|_| rng.random_range(0..2u32)));
        p.chain.clear();
        let mut parity = 0;
        for &x in &p.input[..d as usize] {
            parity ^= x;
            p.chain.push(parity);
        }
        p.answer = p.chain.split_off(d as usize - 1);
        p.difficulty = d;
        Ok(())
    }
}

impl NamedTask for PrefixParity {
    const NAME: &'static str = "prefix_parity";
    const SUMMARY: &'static str = "running parity; answer = the parity of the first d bits";
    const DIFFICULTY: &'static str = "bits read";
    const PARAMS: &'static [ParamSpec] = &[ParamSpec {
        name: "bits",
        default: "8",
        help: "bits in the input, 2..=32",
    }];

    fn from_params(params: &EnvParams) -> Result<Self, EnvError> {
        PrefixParity::new(params.usize("bits", 8)?)
    }
}
