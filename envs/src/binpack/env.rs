//! The BinPack dynamics: placing items at the lower corner of empty maximal spaces.

use super::ems::{place_box, Cuboid};
use super::generator::{Instance, RandomGenerator};
use crate::env::{Difficulty, Env, EnvRng, Info, ObsMut, Step};
use crate::error::EnvError;
use crate::spec::{DifficultyRange, EnvSpec, FeatureField, ObsLayout};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::sync::Arc;

/// The only difficulty level BinPack has: instance hardness comes from the generator's
/// parameters, fixed at construction.
pub const BINPACK_DIFFICULTY: Difficulty = 1;

/// When the reward is paid. Either way the return of an episode is its final utilization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RewardKind {
    /// Each placement pays its volume over the container's volume (Jumanji's `DenseReward`).
    #[default]
    Dense,
    /// Only the last step pays, the final utilization (Jumanji's `SparseReward`).
    Sparse,
}

/// What a masked-out action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OnIllegal {
    /// `step` returns [`EnvError::IllegalAction`] and the state is unchanged.
    #[default]
    Error,
    /// The episode terminates with the state unchanged, as in Jumanji: reward 0 for the dense
    /// reward, the utilization reached for the sparse one. Action ids out of range are still
    /// errors. [`crate::check_env`]'s `mask` rule requires masked-out actions to be errors, so
    /// envs with this option do not pass the checker.
    Terminate,
}

/// Parameters of a [`BinPack`] env.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinPackConfig {
    /// How instances are drawn; its `max_num_items` is the number of item slots.
    pub generator: RandomGenerator,
    /// Spaces shown to the agent, the largest by volume first (Jumanji's `obs_num_ems`).
    pub obs_num_ems: usize,
    /// Dense or sparse reward.
    pub reward: RewardKind,
    /// Error or terminate on a masked-out action.
    pub on_illegal: OnIllegal,
}

impl Default for BinPackConfig {
    /// Jumanji's BinPack-v2: 20 item slots, 40 observed spaces, twenty-foot container, dense.
    fn default() -> Self {
        BinPackConfig {
            generator: RandomGenerator::default(),
            obs_num_ems: 40,
            reward: RewardKind::Dense,
            on_illegal: OnIllegal::Error,
        }
    }
}

impl BinPackConfig {
    /// A small config for tests and quick runs: a `side`³ container, `items` slots and enough
    /// observed spaces that none is hidden in practice.
    pub fn toy(side: i32, items: usize) -> Self {
        BinPackConfig {
            generator: RandomGenerator::toy(side, items),
            obs_num_ems: 8 * items,
            ..BinPackConfig::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    NotReset,
    Running,
    Done,
}

/// 3D bin packing with one container, in the empty-maximal-space (EMS) formulation of
/// Jumanji's `BinPack`. See the [module docs](crate::binpack) for the observation and actions.
#[derive(Debug, Clone)]
pub struct BinPack {
    config: BinPackConfig,
    spec: Arc<EnvSpec>,
    /// Shared so that snapshots (one per search node) copy only the packing state.
    instance: Arc<Instance>,
    container_volume: i64,
    /// Lower corner of each placed item, `None` while unplaced.
    location: Vec<Option<[i32; 3]>>,
    /// Every maximal empty space (not only the observed ones), in no particular order.
    ems: Vec<Cuboid>,
    /// Indices into `ems`, largest volume first: observation slot `s` shows `ems[order[s]]`.
    order: Vec<usize>,
    placed_volume: i64,
    steps: usize,
    phase: Phase,
    cut: Vec<Cuboid>,
    slabs: Vec<Cuboid>,
}

/// Number of features per observed space: `x1, x2, y1, y2, z1, z2`.
const EMS_FEATURES: usize = 6;

impl BinPack {
    /// Builds the env; the parameters are checked here.
    pub fn new(config: BinPackConfig) -> Result<Self, EnvError> {
        config.generator.validate()?;
        if config.obs_num_ems == 0 || config.obs_num_ems > 4096 {
            return Err(EnvError::invalid(
                "obs_num_ems",
                config.obs_num_ems,
                "1..=4096",
            ));
        }
        let (e, i) = (config.obs_num_ems, config.generator.max_num_items);
        let mut feature_fields = Vec::new();
        let mut offset = 0;
        for (name, len) in [
            ("ems", e * EMS_FEATURES),
            ("ems_mask", e),
            ("items", i * 3),
            ("items_mask", i),
            ("items_placed", i),
        ] {
            feature_fields.push(FeatureField {
                name: name.to_string(),
                offset,
                len,
            });
            offset += len;
        }
        let sparse = match config.reward {
            RewardKind::Dense => "",
            RewardKind::Sparse => ", sparse",
        };
        let spec = EnvSpec {
            name: format!("binpack(items={i}, ems={e}{sparse})"),
            obs: ObsLayout {
                tokens: 0,
                features: offset,
                token_fields: Vec::new(),
                feature_fields,
            },
            num_actions: e * i,
            max_episode_steps: i,
            difficulty: DifficultyRange {
                min: BINPACK_DIFFICULTY,
                max: BINPACK_DIFFICULTY,
            },
            reward_range: (0.0, 1.0),
        };
        Ok(BinPack {
            spec: Arc::new(spec),
            instance: Arc::new(Instance {
                container: config.generator.container,
                items: Vec::new(),
                solution: None,
            }),
            container_volume: Cuboid::container(config.generator.container).volume(),
            location: Vec::with_capacity(i),
            ems: Vec::new(),
            order: Vec::new(),
            placed_volume: 0,
            steps: 0,
            phase: Phase::NotReset,
            cut: Vec::new(),
            slabs: Vec::new(),
            config,
        })
    }

    /// The parameters.
    pub fn config(&self) -> &BinPackConfig {
        &self.config
    }

    /// Starts an episode on a given instance (a fixed benchmark, active search, a replay).
    /// Its container may differ from the generator's; observations normalize by it.
    pub fn reset_to(&mut self, instance: Instance) -> Result<(), EnvError> {
        instance.validate(self.config.generator.max_num_items)?;
        self.instance = Arc::new(instance);
        self.start();
        Ok(())
    }

    fn start(&mut self) {
        let container = Cuboid::container(self.instance.container);
        self.container_volume = container.volume();
        self.location.clear();
        self.location.resize(self.instance.items.len(), None);
        self.ems.clear();
        self.ems.push(container);
        self.placed_volume = 0;
        self.steps = 0;
        self.sort_ems();
        self.phase = if self.any_legal() {
            Phase::Running
        } else {
            Phase::Done
        };
    }

    fn sort_ems(&mut self) {
        self.order.clear();
        self.order.extend(0..self.ems.len());
        let ems = &self.ems;
        // Ties broken by the corners so the order, hence the observation, is a function of
        // the set of spaces alone.
        self.order
            .sort_unstable_by_key(|&k| (std::cmp::Reverse(ems[k].volume()), ems[k].lo, ems[k].hi));
    }

    fn num_items(&self) -> usize {
        self.config.generator.max_num_items
    }

    /// The action that puts `item` at the lower corner of observed space `slot`:
    /// `slot * max_num_items + item`.
    pub fn action(&self, slot: usize, item: usize) -> usize {
        slot * self.num_items() + item
    }

    /// The `(slot, item)` pair of `action`, the inverse of [`BinPack::action`].
    pub fn decode(&self, action: usize) -> (usize, usize) {
        (action / self.num_items(), action % self.num_items())
    }

    /// True when `action` is in range and placing its item in its space is allowed now.
    pub fn is_legal(&self, action: usize) -> bool {
        if self.phase != Phase::Running || action >= self.spec.num_actions {
            return false;
        }
        let (slot, item) = self.decode(action);
        self.pair_fits(slot, item)
    }

    fn pair_fits(&self, slot: usize, item: usize) -> bool {
        slot < self.order.len()
            && item < self.instance.items.len()
            && self.location[item].is_none()
            && self.ems[self.order[slot]].fits(self.instance.items[item])
    }

    fn any_legal(&self) -> bool {
        let shown = self.order.len().min(self.config.obs_num_ems);
        (0..self.instance.items.len())
            .filter(|&i| self.location[i].is_none())
            .any(|i| (0..shown).any(|s| self.ems[self.order[s]].fits(self.instance.items[i])))
    }

    /// The current instance (empty before the first reset).
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// Every empty maximal space, observed or not, in no particular order.
    pub fn ems(&self) -> &[Cuboid] {
        &self.ems
    }

    /// The observed spaces, slot 0 first (the largest by volume).
    pub fn observed_ems(&self) -> impl Iterator<Item = &Cuboid> + '_ {
        self.order
            .iter()
            .take(self.config.obs_num_ems)
            .map(|&k| &self.ems[k])
    }

    /// The placed items as `(item index, box)`.
    pub fn placed(&self) -> impl Iterator<Item = (usize, Cuboid)> + '_ {
        self.location.iter().enumerate().filter_map(|(i, loc)| {
            loc.map(|lo| (i, Cuboid::from_corner(lo, self.instance.items[i])))
        })
    }

    /// Packed volume over container volume, in `[0, 1]`.
    pub fn utilization(&self) -> f64 {
        self.placed_volume as f64 / self.container_volume as f64
    }

    /// True when the placed items fill the container exactly (integer volumes, no rounding).
    pub fn is_perfect(&self) -> bool {
        self.placed_volume == self.container_volume
    }

    fn final_reward(&self) -> f32 {
        match self.config.reward {
            RewardKind::Dense => 0.0,
            RewardKind::Sparse => self.utilization() as f32,
        }
    }
}

impl Env for BinPack {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, rng: &mut EnvRng, difficulty: Difficulty) -> Result<(), EnvError> {
        if !self.spec.difficulty.contains(difficulty) {
            return Err(EnvError::DifficultyOutOfRange {
                env: self.spec.name.clone(),
                difficulty,
                min: self.spec.difficulty.min,
                max: self.spec.difficulty.max,
            });
        }
        self.instance = Arc::new(self.config.generator.generate(rng));
        self.start();
        Ok(())
    }

    fn step(&mut self, action: usize) -> Result<Step, EnvError> {
        match self.phase {
            Phase::NotReset => return Err(EnvError::NotReset),
            Phase::Done => return Err(EnvError::EpisodeOver),
            Phase::Running => {}
        }
        if action >= self.spec.num_actions {
            return Err(EnvError::IllegalAction {
                action,
                reason: format!("out of range 0..{}", self.spec.num_actions),
            });
        }
        let (slot, item) = self.decode(action);
        if !self.pair_fits(slot, item) {
            return match self.config.on_illegal {
                OnIllegal::Error => Err(EnvError::IllegalAction {
                    action,
                    reason: format!(
                        "item {item} is padding, already placed or does not fit in space {slot}"
                    ),
                }),
                OnIllegal::Terminate => {
                    self.steps += 1;
                    self.phase = Phase::Done;
                    Ok(Step {
                        reward: self.final_reward(),
                        terminated: true,
                        truncated: false,
                    })
                }
            };
        }
        let corner = self.ems[self.order[slot]].lo;
        let placed = Cuboid::from_corner(corner, self.instance.items[item]);
        self.location[item] = Some(corner);
        place_box(&mut self.ems, &placed, &mut self.cut, &mut self.slabs);
        // Empty scratch keeps clones of the env small.
        self.cut.clear();
        self.slabs.clear();
        self.sort_ems();
        self.placed_volume += placed.volume();
        self.steps += 1;
        let terminated = !self.any_legal();
        if terminated {
            self.phase = Phase::Done;
        }
        let reward = match self.config.reward {
            RewardKind::Dense => (placed.volume() as f64 / self.container_volume as f64) as f32,
            RewardKind::Sparse if terminated => self.utilization() as f32,
            RewardKind::Sparse => 0.0,
        };
        Ok(Step {
            reward,
            terminated,
            truncated: false,
        })
    }

    fn observe(&self, obs: ObsMut<'_>) {
        let (e_max, i_max) = (self.config.obs_num_ems, self.num_items());
        let features = obs.features;
        features.fill(0.0);
        obs.action_mask.fill(false);
        if self.phase == Phase::NotReset {
            return;
        }
        let c = self.instance.container.map(|d| d as f32);
        let (ems, rest) = features.split_at_mut(e_max * EMS_FEATURES);
        let (ems_mask, rest) = rest.split_at_mut(e_max);
        let (items, rest) = rest.split_at_mut(i_max * 3);
        let (items_mask, items_placed) = rest.split_at_mut(i_max);
        for (s, space) in self.observed_ems().enumerate() {
            let row = &mut ems[s * EMS_FEATURES..(s + 1) * EMS_FEATURES];
            for a in 0..3 {
                row[2 * a] = space.lo[a] as f32 / c[a];
                row[2 * a + 1] = space.hi[a] as f32 / c[a];
            }
            ems_mask[s] = 1.0;
        }
        for (i, dims) in self.instance.items.iter().enumerate() {
            for a in 0..3 {
                items[3 * i + a] = dims[a] as f32 / c[a];
            }
            items_mask[i] = 1.0;
            if self.location[i].is_some() {
                items_placed[i] = 1.0;
            }
        }
        if self.phase == Phase::Running {
            let shown = self.order.len().min(e_max);
            for s in 0..shown {
                for i in 0..self.instance.items.len() {
                    obs.action_mask[s * i_max + i] = self.pair_fits(s, i);
                }
            }
        }
    }

    fn info(&self) -> Info {
        Info {
            difficulty: BINPACK_DIFFICULTY,
            steps: self.steps,
            solved: (self.phase == Phase::Done).then(|| self.is_perfect()),
        }
    }

    fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// A legal action that puts an unplaced item where the known perfect packing has it: the
    /// first item in [`super::Solution::order`] whose solution corner is the corner of an
    /// observed space that holds it. Following it from the start places every item, unless a
    /// needed space is beyond the `obs_num_ems` shown. `None` without a known solution, once
    /// the episode is over, or when no such action is shown.
    fn oracle_action(&self) -> Option<usize> {
        if self.phase != Phase::Running {
            return None;
        }
        let solution = self.instance.solution.as_ref()?;
        let shown = self.order.len().min(self.config.obs_num_ems);
        solution
            .order
            .iter()
            .filter(|&&i| self.location[i].is_none())
            .find_map(|&i| {
                (0..shown)
                    .find(|&s| {
                        let space = &self.ems[self.order[s]];
                        space.lo == solution.locations[i] && space.fits(self.instance.items[i])
                    })
                    .map(|s| self.action(s, i))
            })
    }

    fn render(&self) -> String {
        if self.phase == Phase::NotReset {
            return format!("{}: not reset", self.spec.name);
        }
        let mut out = String::new();
        let placed = self.location.iter().filter(|l| l.is_some()).count();
        let _ = writeln!(
            out,
            "{}: container {:?}, {placed}/{} items placed, utilization {:.4}, {} spaces ({} shown){}",
            self.spec.name,
            self.instance.container,
            self.instance.items.len(),
            self.utilization(),
            self.ems.len(),
            self.ems.len().min(self.config.obs_num_ems),
            if self.phase == Phase::Done { ", done" } else { "" },
        );
        for (i, dims) in self.instance.items.iter().enumerate() {
            match self.location[i] {
                Some(lo) => {
                    let _ = writeln!(out, "  item {i:>2} {dims:?} at {lo:?}");
                }
                None => {
                    let _ = writeln!(out, "  item {i:>2} {dims:?} unplaced");
                }
            }
        }
        for (s, space) in self.observed_ems().enumerate() {
            let _ = writeln!(out, "  space {s:>2} {:?}..{:?}", space.lo, space.hi);
        }
        out
    }
}
