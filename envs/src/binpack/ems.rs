//! Integer geometry and the empty-maximal-space (EMS) bookkeeping.
//!
//! Coordinates are integers (millimetres for the twenty-foot container) so that volumes,
//! containment and "utilization 1.0" are exact; only the observation is normalized to floats.

use serde::{Deserialize, Serialize};

/// An axis-aligned box `[lo[a], hi[a])` on each axis `a` (0 = x, 1 = y, 2 = z).
///
/// Used for the container, for empty maximal spaces and for placed items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cuboid {
    /// Lower corner `(x1, y1, z1)`.
    pub lo: [i32; 3],
    /// Upper corner `(x2, y2, z2)`; `hi[a] > lo[a]` for a non-empty box.
    pub hi: [i32; 3],
}

impl Cuboid {
    /// The box with lower corner `lo` and side lengths `dims`.
    pub fn from_corner(lo: [i32; 3], dims: [i32; 3]) -> Self {
        Cuboid {
            lo,
            hi: [lo[0] + dims[0], lo[1] + dims[1], lo[2] + dims[2]],
        }
    }

    /// The box `[0, dims)`: a container.
    pub fn container(dims: [i32; 3]) -> Self {
        Cuboid::from_corner([0, 0, 0], dims)
    }

    /// Side lengths `(x_len, y_len, z_len)`.
    pub fn dims(&self) -> [i32; 3] {
        [
            self.hi[0] - self.lo[0],
            self.hi[1] - self.lo[1],
            self.hi[2] - self.lo[2],
        ]
    }

    /// Volume, exact (`i64`: the twenty-foot container holds 3·10¹⁰ mm³).
    pub fn volume(&self) -> i64 {
        let [x, y, z] = self.dims();
        i64::from(x.max(0)) * i64::from(y.max(0)) * i64::from(z.max(0))
    }

    /// True when the two boxes share a region of positive volume (touching faces do not count).
    pub fn intersects(&self, other: &Cuboid) -> bool {
        (0..3).all(|a| self.lo[a] < other.hi[a] && other.lo[a] < self.hi[a])
    }

    /// True when `other` lies inside `self` (equal boxes included).
    pub fn contains(&self, other: &Cuboid) -> bool {
        (0..3).all(|a| self.lo[a] <= other.lo[a] && other.hi[a] <= self.hi[a])
    }

    /// True when an item of side lengths `dims` fits in this box (no rotation).
    pub fn fits(&self, dims: [i32; 3]) -> bool {
        let own = self.dims();
        (0..3).all(|a| dims[a] <= own[a])
    }
}

/// Replaces the spaces of `ems` that `placed` cuts by their maximal remainders.
///
/// This is the difference process of Lai & Chan (1997), the one Jumanji's BinPack uses: every
/// space that intersects the new box is removed and split into up to six slabs (the parts of
/// it below and above the box on each axis); a slab contained in another space is dropped.
/// If `ems` held exactly the maximal empty boxes before, it holds exactly them afterwards:
/// a maximal empty box after the placement lies in some old maximal space, and if that
/// space was cut, the box lies on one side of `placed` on some axis, hence inside one slab.
///
/// `cut` and `slabs` are scratch buffers, reused so the step allocates nothing once warm.
pub(crate) fn place_box(
    ems: &mut Vec<Cuboid>,
    placed: &Cuboid,
    cut: &mut Vec<Cuboid>,
    slabs: &mut Vec<Cuboid>,
) {
    cut.clear();
    slabs.clear();
    ems.retain(|space| {
        if space.intersects(placed) {
            cut.push(*space);
            false
        } else {
            true
        }
    });
    for space in cut.iter() {
        for a in 0..3 {
            if placed.lo[a] > space.lo[a] {
                let mut below = *space;
                below.hi[a] = placed.lo[a];
                slabs.push(below);
            }
            if placed.hi[a] < space.hi[a] {
                let mut above = *space;
                above.lo[a] = placed.hi[a];
                slabs.push(above);
            }
        }
    }
    // An untouched old space is maximal, so it never lies strictly inside a slab (both were
    // empty before the placement); only slabs can be redundant.
    let kept = ems.len();
    for (i, slab) in slabs.iter().enumerate() {
        let redundant = ems[..kept].iter().any(|space| space.contains(slab))
            || slabs.iter().enumerate().any(|(j, other)| {
                // Of two equal slabs keep the first.
                j != i && other.contains(slab) && (other != slab || j < i)
            });
        if !redundant {
            ems.push(*slab);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_and_relations() {
        let a = Cuboid::from_corner([0, 0, 0], [4, 3, 2]);
        assert_eq!(a.volume(), 24);
        assert_eq!(a.dims(), [4, 3, 2]);
        let touching = Cuboid::from_corner([4, 0, 0], [1, 1, 1]);
        assert!(!a.intersects(&touching));
        let overlapping = Cuboid::from_corner([3, 2, 1], [5, 5, 5]);
        assert!(a.intersects(&overlapping));
        assert!(a.contains(&Cuboid::from_corner([1, 1, 1], [3, 2, 1])));
        assert!(!a.contains(&overlapping));
        assert!(a.fits([4, 3, 2]) && !a.fits([5, 1, 1]));
    }

    #[test]
    fn corner_box_leaves_three_slabs() {
        let mut ems = vec![Cuboid::container([10, 10, 10])];
        let (mut cut, mut slabs) = (Vec::new(), Vec::new());
        place_box(
            &mut ems,
            &Cuboid::from_corner([0, 0, 0], [2, 3, 4]),
            &mut cut,
            &mut slabs,
        );
        let expected = [
            Cuboid {
                lo: [2, 0, 0],
                hi: [10, 10, 10],
            },
            Cuboid {
                lo: [0, 3, 0],
                hi: [10, 10, 10],
            },
            Cuboid {
                lo: [0, 0, 4],
                hi: [10, 10, 10],
            },
        ];
        assert_eq!(ems, expected);
    }

    #[test]
    fn contained_slabs_are_dropped() {
        // A full-width floor slab leaves only the space above it.
        let mut ems = vec![Cuboid::container([10, 10, 10])];
        let (mut cut, mut slabs) = (Vec::new(), Vec::new());
        place_box(
            &mut ems,
            &Cuboid::from_corner([0, 0, 0], [10, 10, 3]),
            &mut cut,
            &mut slabs,
        );
        assert_eq!(
            ems,
            [Cuboid {
                lo: [0, 0, 3],
                hi: [10, 10, 10]
            }]
        );
    }
}
