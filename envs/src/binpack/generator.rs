//! Instance generation, apart from the dynamics: Jumanji's `RandomGenerator`, which splits the
//! container recursively into items, so a perfect packing exists and is known.

use super::ems::Cuboid;
use crate::env::EnvRng;
use crate::error::EnvError;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Inner dimensions of a twenty-foot container in millimetres (Jumanji's `TWENTY_FOOT_DIMS`).
pub const TWENTY_FOOT_DIMS: [i32; 3] = [5870, 2330, 2200];

/// A known perfect packing of an [`Instance`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Solution {
    /// Lower corner of each item (indexed like [`Instance::items`]) in the perfect packing.
    pub locations: Vec<[i32; 3]>,
    /// Item indices in an order in which each item, when its turn comes, sits at the lower
    /// corner of an empty maximal space that holds it: the depth-first order of the split tree,
    /// lower part first. Everything below, behind or left of an item is then already packed
    /// (or is a container wall), so the item's own corner cannot be pushed back on any axis.
    pub order: Vec<usize>,
}

/// One problem: a container and the items to pack into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Container side lengths `(x, y, z)`.
    pub container: [i32; 3],
    /// Item side lengths `(x_len, y_len, z_len)`; items are not rotated.
    pub items: Vec<[i32; 3]>,
    /// A perfect packing, when one is known (always, for generated instances).
    pub solution: Option<Solution>,
}

impl Instance {
    /// Checks sizes and, when a solution is given, that it is a packing: every item inside
    /// the container, no two overlapping, the order a permutation.
    pub fn validate(&self, max_num_items: usize) -> Result<(), EnvError> {
        if self.container.iter().any(|&d| d <= 0) {
            return Err(EnvError::invalid(
                "container",
                format!("{:?}", self.container),
                "positive side lengths",
            ));
        }
        if self.items.is_empty() || self.items.len() > max_num_items {
            return Err(EnvError::invalid(
                "items",
                self.items.len(),
                format!("1..={max_num_items} items"),
            ));
        }
        if let Some(bad) = self.items.iter().find(|d| d.iter().any(|&l| l <= 0)) {
            return Err(EnvError::invalid(
                "items",
                format!("{bad:?}"),
                "positive side lengths",
            ));
        }
        let Some(solution) = &self.solution else {
            return Ok(());
        };
        let n = self.items.len();
        let mut seen = vec![false; n];
        let order_ok = solution.order.len() == n
            && solution
                .order
                .iter()
                .all(|&i| i < n && !std::mem::replace(&mut seen[i], true));
        if solution.locations.len() != n || !order_ok {
            return Err(EnvError::invalid(
                "solution",
                format!(
                    "{} locations, order {:?}",
                    solution.locations.len(),
                    solution.order
                ),
                format!("{n} locations and a permutation of 0..{n}"),
            ));
        }
        let container = Cuboid::container(self.container);
        let boxes: Vec<Cuboid> = (0..n)
            .map(|i| Cuboid::from_corner(solution.locations[i], self.items[i]))
            .collect();
        for (i, b) in boxes.iter().enumerate() {
            if !container.contains(b) || boxes[..i].iter().any(|o| o.intersects(b)) {
                return Err(EnvError::invalid(
                    "solution",
                    format!("item {i} at {:?}", solution.locations[i]),
                    "items inside the container and pairwise disjoint",
                ));
            }
        }
        Ok(())
    }
}

/// Jumanji's `RandomGenerator`: start from the container as one box; repeatedly pick an axis
/// uniformly, a box with probability proportional to its length on that axis, and either cut
/// it once at a uniform point away from its ends (probability `prob_split_one_item`) or into
/// `k ~ U{1..=split_num_same_items}` equal slices; stop at
/// `max_num_items - split_num_same_items + 1` boxes or more. The boxes are the items, in a
/// random order, and their places form the known perfect packing.
///
/// With Jumanji's BinPack-v2 values (20 items, `split_num_same_items = 2`) every instance has
/// 19 items in 20 slots, as in Jumanji. On small containers a cut that would make an empty
/// box is skipped, and after `100 · max_num_items` tries the generator stops with fewer items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomGenerator {
    /// Container side lengths.
    pub container: [i32; 3],
    /// Item slots; instances have at most this many items.
    pub max_num_items: usize,
    /// Fraction of a box's length at each end where a single cut may not fall.
    pub split_eps: f64,
    /// Probability of one cut into two unequal boxes (else equal slices).
    pub prob_split_one_item: f64,
    /// Largest number of equal slices.
    pub split_num_same_items: usize,
}

impl Default for RandomGenerator {
    /// Jumanji's BinPack-v2 generator: 20 items, twenty-foot container.
    fn default() -> Self {
        RandomGenerator {
            container: TWENTY_FOOT_DIMS,
            max_num_items: 20,
            split_eps: 0.3,
            prob_split_one_item: 0.7,
            split_num_same_items: 2,
        }
    }
}

/// A node of the split tree: a box and, once cut, its children (contiguous, in axis order).
#[derive(Debug, Clone, Copy)]
struct Node {
    space: Cuboid,
    first_child: usize,
    num_children: usize,
}

impl RandomGenerator {
    /// A small generator for tests and quick runs: a `side`³ container and `max_num_items`.
    pub fn toy(side: i32, max_num_items: usize) -> Self {
        RandomGenerator {
            container: [side; 3],
            max_num_items,
            split_num_same_items: 2,
            ..RandomGenerator::default()
        }
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), EnvError> {
        if self.container.iter().any(|&d| d <= 0) {
            return Err(EnvError::invalid(
                "container",
                format!("{:?}", self.container),
                "positive side lengths",
            ));
        }
        if self.max_num_items == 0 || self.max_num_items > 1024 {
            return Err(EnvError::invalid(
                "max_num_items",
                self.max_num_items,
                "1..=1024",
            ));
        }
        if !(0.0..0.5).contains(&self.split_eps) {
            return Err(EnvError::invalid(
                "split_eps",
                self.split_eps,
                "0 <= eps < 0.5",
            ));
        }
        if !(0.0..=1.0).contains(&self.prob_split_one_item) {
            return Err(EnvError::invalid(
                "prob_split_one_item",
                self.prob_split_one_item,
                "a probability in [0, 1]",
            ));
        }
        if self.split_num_same_items == 0 || self.split_num_same_items > self.max_num_items {
            return Err(EnvError::invalid(
                "split_num_same_items",
                self.split_num_same_items,
                format!("1..=max_num_items ({})", self.max_num_items),
            ));
        }
        Ok(())
    }

    /// Draws an instance with its perfect packing.
    pub fn generate(&self, rng: &mut EnvRng) -> Instance {
        let target = self.max_num_items + 1 - self.split_num_same_items;
        let mut nodes = vec![Node {
            space: Cuboid::container(self.container),
            first_child: 0,
            num_children: 0,
        }];
        let mut leaves = vec![0usize];
        let mut tries = 0;
        while leaves.len() < target && tries < 100 * self.max_num_items {
            tries += 1;
            let axis = rng.random_range(0..3);
            let total: i64 = leaves
                .iter()
                .map(|&l| i64::from(nodes[l].space.dims()[axis]))
                .sum();
            let mut pick = rng.random_range(0..total);
            let mut slot = 0;
            for (k, &l) in leaves.iter().enumerate() {
                let len = i64::from(nodes[l].space.dims()[axis]);
                if pick < len {
                    slot = k;
                    break;
                }
                pick -= len;
            }
            let leaf = leaves[slot];
            let space = nodes[leaf].space;
            let (lo, hi) = (space.lo[axis], space.hi[axis]);
            let len = hi - lo;
            // Boundaries of the pieces along `axis`: one cut at `at`, or `k` equal slices.
            let (at, k) = if rng.random_bool(self.prob_split_one_item) {
                // Jumanji truncates eps·len to an integer margin; a cut at an end would make
                // an empty box, so the margin is at least 1.
                let margin = (self.split_eps * f64::from(len)) as i32;
                let (from, to) = ((lo + margin).max(lo + 1), hi - margin);
                if from >= to {
                    continue;
                }
                (Some(rng.random_range(from..to)), 2)
            } else {
                let k = rng.random_range(1..=self.split_num_same_items) as i32;
                if k == 1 || len < k {
                    continue;
                }
                (None, k)
            };
            let bound = |c: i32| match at {
                Some(p) => [lo, p, hi][c as usize],
                None => lo + (i64::from(c) * i64::from(len) / i64::from(k)) as i32,
            };
            let first_child = nodes.len();
            let num_children = k as usize;
            for c in 0..k {
                let mut child = space;
                child.lo[axis] = bound(c);
                child.hi[axis] = bound(c + 1);
                nodes.push(Node {
                    space: child,
                    first_child: 0,
                    num_children: 0,
                });
            }
            nodes[leaf].first_child = first_child;
            nodes[leaf].num_children = num_children;
            leaves.swap_remove(slot);
            leaves.extend(first_child..first_child + num_children);
        }

        // Depth-first, lower part first: the order the corner-placement oracle follows.
        let mut dfs = Vec::with_capacity(leaves.len());
        let mut stack = vec![0usize];
        while let Some(n) = stack.pop() {
            let node = nodes[n];
            if node.num_children == 0 {
                dfs.push(node.space);
            } else {
                stack.extend((node.first_child..node.first_child + node.num_children).rev());
            }
        }
        // Shuffle item slots so an item's index says nothing about where it goes.
        let mut slot_of: Vec<usize> = (0..dfs.len()).collect();
        slot_of.shuffle(rng);
        let n = dfs.len();
        let mut items = vec![[0; 3]; n];
        let mut locations = vec![[0; 3]; n];
        for (k, space) in dfs.iter().enumerate() {
            items[slot_of[k]] = space.dims();
            locations[slot_of[k]] = space.lo;
        }
        Instance {
            container: self.container,
            items,
            solution: Some(Solution {
                locations,
                order: slot_of,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn generated_instances_are_perfect_packings() {
        let generators = [
            RandomGenerator::default(),
            RandomGenerator::toy(10, 6),
            RandomGenerator::toy(3, 30),
        ];
        for g in &generators {
            g.validate().unwrap();
            for seed in 0..50 {
                let inst = g.generate(&mut EnvRng::seed_from_u64(seed));
                inst.validate(g.max_num_items).unwrap();
                let volume: i64 = inst
                    .items
                    .iter()
                    .map(|&d| Cuboid::from_corner([0; 3], d).volume())
                    .sum();
                assert_eq!(volume, Cuboid::container(g.container).volume());
            }
        }
    }

    #[test]
    fn default_config_gives_jumanji_item_count() {
        let g = RandomGenerator::default();
        for seed in 0..100 {
            let inst = g.generate(&mut EnvRng::seed_from_u64(seed));
            assert_eq!(inst.items.len(), 19, "seed {seed}");
        }
    }

    #[test]
    fn same_seed_same_instance() {
        let g = RandomGenerator::default();
        let a = g.generate(&mut EnvRng::seed_from_u64(7));
        let b = g.generate(&mut EnvRng::seed_from_u64(7));
        let c = g.generate(&mut EnvRng::seed_from_u64(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn bad_parameters_are_errors() {
        let mut g = RandomGenerator::toy(10, 5);
        g.split_num_same_items = 6;
        assert!(g.validate().is_err());
        let mut g = RandomGenerator::toy(10, 5);
        g.container = [10, 0, 10];
        assert!(g.validate().is_err());
        let mut g = RandomGenerator::toy(10, 5);
        g.split_eps = 0.5;
        assert!(g.validate().is_err());
    }
}
