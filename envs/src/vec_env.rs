//! `VecEnv<E>`: B envs stepped in lockstep, observations in contiguous batched arrays.

use ndarray::{Array1, Array2, ArrayViewMut1, Zip};
use rand::SeedableRng;

use crate::difficulty::DifficultySampler;
use crate::env::{Env, EnvRng, Info, ObsMut, Step};
use crate::error::EnvError;
use crate::spec::EnvSpec;

/// SplitMix64's output function: a bijective mix of 64 bits.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of env `index` in a run seeded with `run_seed`: distinct indices give unrelated
/// streams, and the same pair always gives the same seed.
pub fn derive_seed(run_seed: u64, index: usize) -> u64 {
    splitmix64(run_seed ^ splitmix64(index as u64))
}

/// One env of the batch with its RNG and pending state.
#[derive(Debug, Clone)]
struct Slot<E> {
    env: E,
    rng: EnvRng,
    step: Step,
    /// The episode ended on the previous step; the next step resets instead of stepping.
    needs_reset: bool,
    /// The last step reset this env (its action was ignored).
    autoreset: bool,
    error: Option<EnvError>,
}

/// `B` copies of an env stepped in lockstep by one call, with batched buffers.
///
/// Buffers (row `i` = env `i`), each one contiguous array that becomes a tensor with one copy:
/// `tokens` `(B, T)` i64, `features` `(B, F)` f32, `action_mask` `(B, A)` bool (true = legal),
/// `rewards` `(B,)` f32, `terminated` / `truncated` `(B,)` bool.
///
/// **Autoreset, Gymnasium's next-step mode.** When env `i` ends on step `t`, the buffers after
/// step `t` hold its final observation, its reward and its `terminated`/`truncated` flag, and
/// [`info`](Self::info)`(i)` still describes the finished episode (`solved` included). On step
/// `t + 1` the action given for env `i` is ignored (not even checked against the mask): env `i`
/// is reset with a difficulty from the sampler, and its buffers hold the first observation of
/// the new episode with reward 0 and both flags false; [`autoreset`](Self::autoreset)`[i]` is
/// true for exactly that step, so a learner can drop the non-transition.
///
/// **Seeds.** [`reset`](Self::reset)`(seed)` gives env `i` an [`EnvRng`] seeded with
/// [`derive_seed`]`(seed, i)`; that RNG draws both the difficulty and the problem of every
/// reset of env `i`. A run is therefore the same for the same seed and actions, with or
/// without threads.
///
/// **Threads.** [`set_parallel`](Self::set_parallel) steps the envs on rayon's pool (results
/// are identical either way). Off by default: a token env steps in tens of nanoseconds, so
/// the gain depends on free cores. Measured with the `bench_rates` example (B = 4096, oracle
/// actions, 2 shared cores): from 0.5x to 1.9x of the one-thread rate depending on the other
/// load on the machine; turn it on where cores are free or where an env's step is heavy.
#[derive(Debug, Clone)]
pub struct VecEnv<E: Env> {
    slots: Vec<Slot<E>>,
    spec: EnvSpec,
    sampler: DifficultySampler,
    tokens: Array2<i64>,
    features: Array2<f32>,
    action_mask: Array2<bool>,
    rewards: Array1<f32>,
    terminated: Array1<bool>,
    truncated: Array1<bool>,
    autoreset: Array1<bool>,
    parallel: bool,
    started: bool,
}

impl<E: Env> VecEnv<E> {
    /// `num_envs` clones of `env`, reset by [`reset`](Self::reset) with difficulties from
    /// `sampler` (checked against the env's range).
    pub fn new(env: E, num_envs: usize, sampler: DifficultySampler) -> Result<Self, EnvError> {
        if num_envs == 0 {
            return Err(EnvError::invalid("num_envs", 0, ">= 1"));
        }
        let spec = env.spec().clone();
        sampler.validate(&spec.difficulty)?;
        let slots = (0..num_envs)
            .map(|i| Slot {
                env: env.clone(),
                rng: EnvRng::seed_from_u64(derive_seed(0, i)),
                step: Step {
                    reward: 0.0,
                    terminated: false,
                    truncated: false,
                },
                needs_reset: true,
                autoreset: false,
                error: None,
            })
            .collect();
        Ok(VecEnv {
            slots,
            tokens: Array2::zeros((num_envs, spec.obs.tokens)),
            features: Array2::zeros((num_envs, spec.obs.features)),
            action_mask: Array2::from_elem((num_envs, spec.num_actions), false),
            rewards: Array1::zeros(num_envs),
            terminated: Array1::from_elem(num_envs, false),
            truncated: Array1::from_elem(num_envs, false),
            autoreset: Array1::from_elem(num_envs, false),
            spec,
            sampler,
            parallel: false,
            started: false,
        })
    }

    /// The number of envs `B`.
    pub fn num_envs(&self) -> usize {
        self.slots.len()
    }

    /// The spec shared by all the envs.
    pub fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    /// Steps envs on rayon's thread pool when `on` (see the type's doc).
    pub fn set_parallel(&mut self, on: bool) {
        self.parallel = on;
    }

    /// Whether stepping uses threads.
    pub fn parallel(&self) -> bool {
        self.parallel
    }

    /// The difficulty sampler.
    pub fn sampler(&self) -> &DifficultySampler {
        &self.sampler
    }

    /// The difficulty sampler, to [`report`](DifficultySampler::report) accuracy to it.
    pub fn sampler_mut(&mut self) -> &mut DifficultySampler {
        &mut self.sampler
    }

    /// Replaces the sampler (checked against the env's range); it applies from the next reset.
    pub fn set_sampler(&mut self, sampler: DifficultySampler) -> Result<(), EnvError> {
        sampler.validate(&self.spec.difficulty)?;
        self.sampler = sampler;
        Ok(())
    }

    /// Reseeds every env from `seed` (see the type's doc) and resets them all.
    pub fn reset(&mut self, seed: u64) -> Result<(), EnvError> {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            slot.rng = EnvRng::seed_from_u64(derive_seed(seed, i));
        }
        self.reset_each(|_, env, rng, sampler| {
            let d = sampler.sample(rng);
            env.reset(rng, d)
        })
    }

    /// Resets env `i` by calling `f(i, env, rng)` for each env (e.g. `CotEnv::reset_to` on a
    /// fixed evaluation set), then rewrites all the buffers. The RNGs are the envs' own.
    pub fn reset_with<F>(&mut self, f: F) -> Result<(), EnvError>
    where
        F: FnMut(usize, &mut E, &mut EnvRng) -> Result<(), EnvError>,
    {
        let mut f = f;
        self.reset_each(|i, env, rng, _| f(i, env, rng))
    }

    fn reset_each<F>(&mut self, mut f: F) -> Result<(), EnvError>
    where
        F: FnMut(usize, &mut E, &mut EnvRng, &DifficultySampler) -> Result<(), EnvError>,
    {
        self.started = false;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            f(i, &mut slot.env, &mut slot.rng, &self.sampler).map_err(|e| EnvError::InBatch {
                index: i,
                source: Box::new(e),
            })?;
            slot.needs_reset = slot.env.is_done();
            slot.autoreset = false;
            slot.step = Step {
                reward: 0.0,
                terminated: false,
                truncated: false,
            };
        }
        Zip::from(ArrayViewMut1::from(&mut self.slots[..]))
            .and(self.tokens.rows_mut())
            .and(self.features.rows_mut())
            .and(self.action_mask.rows_mut())
            .for_each(|slot, mut t, mut f, mut m| {
                slot.env.observe(obs_mut(&mut t, &mut f, &mut m));
            });
        self.copy_flags();
        self.started = true;
        Ok(())
    }

    /// Steps every env with its action (`actions.len() == B`), autoresetting the envs that
    /// ended on the previous step (their actions are ignored). Actions of the other envs must
    /// be legal under the current mask; otherwise nothing is stepped and the error names the
    /// env.
    pub fn step(&mut self, actions: &[usize]) -> Result<(), EnvError> {
        if !self.started {
            return Err(EnvError::NotReset);
        }
        if actions.len() != self.slots.len() {
            return Err(EnvError::invalid(
                "actions",
                format!("{} actions", actions.len()),
                format!("exactly one per env ({})", self.slots.len()),
            ));
        }
        for (i, (slot, &a)) in self.slots.iter().zip(actions).enumerate() {
            if slot.needs_reset {
                continue;
            }
            let legal = self.action_mask.get((i, a)).copied();
            if legal != Some(true) {
                let reason = if legal.is_none() {
                    format!("out of range 0..{}", self.spec.num_actions)
                } else {
                    "masked out".to_string()
                };
                return Err(EnvError::InBatch {
                    index: i,
                    source: Box::new(EnvError::IllegalAction { action: a, reason }),
                });
            }
        }
        let sampler = &self.sampler;
        let work = |slot: &mut Slot<E>,
                    &a: &usize,
                    mut t: ArrayViewMut1<i64>,
                    mut f: ArrayViewMut1<f32>,
                    mut m: ArrayViewMut1<bool>| {
            slot.autoreset = slot.needs_reset;
            if slot.needs_reset {
                let d = sampler.sample(&mut slot.rng);
                if let Err(e) = slot.env.reset(&mut slot.rng, d) {
                    slot.error = Some(e);
                    return;
                }
                slot.env.observe(obs_mut(&mut t, &mut f, &mut m));
                slot.step = Step {
                    reward: 0.0,
                    terminated: false,
                    truncated: false,
                };
                slot.needs_reset = slot.env.is_done();
            } else {
                match slot.env.step(a) {
                    Ok(s) => {
                        slot.env.observe_update(obs_mut(&mut t, &mut f, &mut m));
                        slot.step = s;
                        slot.needs_reset = s.done();
                    }
                    Err(e) => slot.error = Some(e),
                }
            }
        };
        let zip = Zip::from(ArrayViewMut1::from(&mut self.slots[..]))
            .and(ndarray::ArrayView1::from(actions))
            .and(self.tokens.rows_mut())
            .and(self.features.rows_mut())
            .and(self.action_mask.rows_mut());
        if self.parallel {
            zip.par_for_each(work);
        } else {
            zip.for_each(work);
        }
        self.copy_flags();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(e) = slot.error.take() {
                return Err(EnvError::InBatch {
                    index: i,
                    source: Box::new(e),
                });
            }
        }
        Ok(())
    }

    fn copy_flags(&mut self) {
        for (i, slot) in self.slots.iter().enumerate() {
            self.rewards[i] = slot.step.reward;
            self.terminated[i] = slot.step.terminated;
            self.truncated[i] = slot.step.truncated;
            self.autoreset[i] = slot.autoreset;
        }
    }

    /// Observation tokens, `(B, T)`.
    pub fn tokens(&self) -> &Array2<i64> {
        &self.tokens
    }

    /// Observation features, `(B, F)`.
    pub fn features(&self) -> &Array2<f32> {
        &self.features
    }

    /// Action masks, `(B, A)`, true = legal.
    pub fn action_mask(&self) -> &Array2<bool> {
        &self.action_mask
    }

    /// Rewards of the last step, `(B,)`.
    pub fn rewards(&self) -> &Array1<f32> {
        &self.rewards
    }

    /// Which envs terminated on the last step, `(B,)`.
    pub fn terminated(&self) -> &Array1<bool> {
        &self.terminated
    }

    /// Which envs were truncated on the last step, `(B,)`.
    pub fn truncated(&self) -> &Array1<bool> {
        &self.truncated
    }

    /// Which envs were reset by the last step instead of stepped (their actions were ignored
    /// and their rows start a new episode), `(B,)`.
    pub fn autoreset(&self) -> &Array1<bool> {
        &self.autoreset
    }

    /// True when env `i` ended (terminated or truncated) on the last step.
    pub fn done(&self, i: usize) -> bool {
        self.terminated[i] || self.truncated[i]
    }

    /// Facts about env `i`'s current episode; right after it ends, the finished episode's
    /// (difficulty, steps, solved).
    pub fn info(&self, i: usize) -> Info {
        self.slots[i].env.info()
    }

    /// Env `i` (clone it to search from its state).
    pub fn env(&self, i: usize) -> &E {
        &self.slots[i].env
    }

    /// All the envs, in batch order.
    pub fn envs(&self) -> impl ExactSizeIterator<Item = &E> + '_ {
        self.slots.iter().map(|s| &s.env)
    }
}

fn obs_mut<'a>(
    t: &'a mut ArrayViewMut1<'_, i64>,
    f: &'a mut ArrayViewMut1<'_, f32>,
    m: &'a mut ArrayViewMut1<'_, bool>,
) -> ObsMut<'a> {
    const CONTIGUOUS: &str = "rows of a standard-layout array are contiguous";
    ObsMut {
        tokens: t.as_slice_mut().expect(CONTIGUOUS),
        features: f.as_slice_mut().expect(CONTIGUOUS),
        action_mask: m.as_slice_mut().expect(CONTIGUOUS),
    }
}
