//! 3D bin packing with one container: Jumanji's `BinPack` in the empty-maximal-space (EMS)
//! formulation, with integer geometry.
//!
//! An *empty maximal space* is a box inside the container that meets no placed item and lies
//! in no larger such box. An action puts an unplaced item, unrotated, at the lower corner
//! `(x1, y1, z1)` of an observed space it fits in; the spaces are then recomputed
//! ([`ems`]). Coordinates are integers (millimetres by default), so volumes and
//! "utilization 1.0" are exact; only the observation is normalized.
//!
//! The pieces follow Jumanji's layout: [`generator`] draws instances (apart from the
//! dynamics), [`mod@env`] holds the MDP, [`baselines`] the reference policies.
//!
//! # Spec
//!
//! With `E = obs_num_ems` and `I = generator.max_num_items` (Jumanji's BinPack-v2 defaults:
//! `E = 40`, `I = 20`, twenty-foot container 5870×2330×2200 mm):
//!
//! - **Observation**: no tokens; features, in buffer order:
//!   - `"ems"` (`6E`): for observed slot `s`, `x1, x2, y1, y2, z1, z2` divided by the
//!     container's length on that axis. Slot 0 is the largest space by volume (ties broken by
//!     corners); unused slots are 0.
//!   - `"ems_mask"` (`E`): 1 for a used slot.
//!   - `"items"` (`3I`): `x_len, y_len, z_len` of item `i`, normalized per axis.
//!   - `"items_mask"` (`I`): 1 for a real item (instances may have fewer than `I`).
//!   - `"items_placed"` (`I`): 1 once item `i` is placed.
//! - **Action**: `I·E` ids, `action = slot * I + item` ([`BinPack::action`],
//!   [`BinPack::decode`]). The action mask is true exactly for the (slot, item) pairs where
//!   the slot is used, the item real and unplaced, and the item fits in the space.
//! - **Reward**: [`RewardKind::Dense`] (default) pays the placed volume over the container
//!   volume at each step; [`RewardKind::Sparse`] pays the final utilization at the end. The
//!   return is the final utilization either way.
//! - **Termination**: when no action is legal (all items placed, or nothing fits in a shown
//!   space). A masked-out action is an [`crate::EnvError::IllegalAction`] by default;
//!   [`OnIllegal::Terminate`] ends the episode instead, as Jumanji does.
//! - **Difficulty**: one level, [`BINPACK_DIFFICULTY`] = 1; hardness is set by the generator
//!   parameters. `max_episode_steps = I`.
//! - **Info**: `solved` is `Some(true)` once an episode ends with the container exactly full.
//!
//! Unlike Jumanji, which keeps a fixed buffer of `max_num_ems` spaces and drops the rest, all
//! maximal spaces are kept (so the EMS invariants hold exactly) and the `E` largest are shown.
//!
//! # Oracle
//!
//! The generator cuts the container recursively, so the items tile it and their places are
//! known ([`Solution`]). Placed in the depth-first order of the cut tree, each item sits at
//! the corner of a maximal space that holds it; [`oracle_action`](crate::Env::oracle_action) follows that
//! solution and reaches utilization 1.0 (targets for behaviour cloning).
//!
//! ```
//! use envs::binpack::{BinPack, BinPackConfig, BINPACK_DIFFICULTY};
//! use envs::{Env, EnvRng};
//! use rand::SeedableRng;
//!
//! let mut env = BinPack::new(BinPackConfig::toy(10, 6)).unwrap();
//! env.reset(&mut EnvRng::seed_from_u64(0), BINPACK_DIFFICULTY).unwrap();
//! let mut ret = 0.0;
//! while let Some(action) = env.oracle_action() {
//!     ret += env.step(action).unwrap().reward;
//! }
//! assert!(env.is_perfect() && (ret - 1.0).abs() < 1e-5);
//! ```

pub mod baselines;
pub mod ems;
pub mod env;
pub mod generator;

pub use baselines::{evaluate, Baseline, BaselineStats};
pub use ems::Cuboid;
pub use env::{BinPack, BinPackConfig, OnIllegal, RewardKind, BINPACK_DIFFICULTY};
pub use generator::{Instance, RandomGenerator, Solution, TWENTY_FOOT_DIMS};
