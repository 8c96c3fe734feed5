//! Statistical tests: sampling is uniform where it should be.
//!
//! Each test counts outcomes over a fixed seed and compares Pearson's chi-square statistic
//! with the critical value at p = 1e-6 (Wilson–Hilferty approximation), so a correct sampler
//! fails with probability about one in a million per seed, and the fixed seed makes the
//! result reproducible. `threshold_has_power` shows the same threshold rejects a small bias.

use std::collections::HashMap;

use envs::tasks::sampling::Draws;
use envs::{Curriculum, Cvpr, Cycle, DifficultySampler, EnvRng, Task};
use rand::SeedableRng;

/// Upper critical value of chi-square with `df` degrees of freedom at p = 1e-6.
fn chi2_critical(df: usize) -> f64 {
    let z = 4.753_424; // standard normal quantile at 1 - 1e-6
    let k = df as f64;
    let a = 2.0 / (9.0 * k);
    k * (1.0 - a + z * a.sqrt()).powi(3)
}

/// Pearson's statistic of `counts` against equal expected counts.
fn chi2_uniform(counts: &[u64]) -> f64 {
    let n: u64 = counts.iter().sum();
    let e = n as f64 / counts.len() as f64;
    counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum()
}

fn assert_uniform(what: &str, counts: &[u64]) {
    let stat = chi2_uniform(counts);
    let crit = chi2_critical(counts.len() - 1);
    assert!(
        stat < crit,
        "{what}: chi-square {stat:.1} >= critical {crit:.1} (df {}), counts {counts:?}",
        counts.len() - 1
    );
}

#[test]
fn threshold_has_power() {
    // 10 categories, 100k draws, one category 5% too likely: must be rejected.
    let mut counts = vec![10_000u64; 10];
    counts[0] = 10_500;
    counts[1] = 9_500;
    assert!(chi2_uniform(&counts) > chi2_critical(9));
    // Exactly uniform counts pass.
    assert!(chi2_uniform(&[100; 10]) < chi2_critical(9));
}

#[test]
fn cycle_draws_every_single_cycle_equally() {
    // L = 5 has 4! = 24 single cycles; each must be equally likely (Sattolo).
    let task = Cycle::new(5).unwrap();
    let mut rng = EnvRng::seed_from_u64(1);
    let mut seen: HashMap<Vec<u32>, u64> = HashMap::new();
    for _ in 0..48_000 {
        let p = task.sample(2, &mut rng).unwrap();
        *seen.entry(p.input).or_default() += 1;
    }
    assert_eq!(seen.len(), 24, "every single cycle appears, nothing else");
    let counts: Vec<u64> = seen.into_values().collect();
    assert_uniform("cycle(L=5) permutations", &counts);
}

#[test]
fn cycle_successors_and_answers_are_uniform() {
    let l = 12;
    let task = Cycle::new(l).unwrap();
    let mut rng = EnvRng::seed_from_u64(2);
    let mut succ = vec![0u64; l];
    let mut answer = vec![0u64; l];
    for _ in 0..60_000 {
        let p = task.sample(3, &mut rng).unwrap();
        succ[p.input[5] as usize] += 1;
        answer[p.answer[0] as usize] += 1;
    }
    // f(5) is uniform over the other nodes; f^4(0) is uniform over the nodes other than 0.
    assert_eq!(succ[5], 0);
    succ.remove(5);
    assert_uniform("cycle f(5)", &succ);
    assert_eq!(answer[0], 0);
    answer.remove(0);
    assert_uniform("cycle f^4(0)", &answer);
}

#[test]
fn cvpr_pointer_sets_targets_and_filler_are_uniform() {
    let (l, h) = (10usize, 3u32);
    let task = Cvpr::new(l).unwrap();
    let mut rng = EnvRng::seed_from_u64(3);
    // C(9, 3) = 84 pointer sets.
    let mut sets: HashMap<Vec<u32>, u64> = HashMap::new();
    let mut target_at_9 = vec![0u64; l];
    let mut filler = vec![0u64; l];
    let mut filler_n = 0;
    for _ in 0..84 * 400 {
        let p = task.sample(h, &mut rng).unwrap();
        *sets.entry(p.chain.clone()).or_default() += 1;
        if p.chain[2] == 9 {
            target_at_9[p.answer[0] as usize] += 1;
        }
        if !p.chain.contains(&4) && filler_n < 30_000 {
            filler[p.input[4] as usize] += 1;
            filler_n += 1;
        }
    }
    assert_eq!(sets.len(), 84);
    assert_uniform("cvpr pointer sets", &sets.into_values().collect::<Vec<_>>());
    assert_uniform("cvpr target given pH = 9", &target_at_9);
    assert_uniform("cvpr filler at position 4", &filler);
}

#[test]
fn samplers_are_uniform_over_their_levels() {
    let s = DifficultySampler::uniform(vec![2, 4, 6, 8]).unwrap();
    let mut rng = EnvRng::seed_from_u64(4);
    let mut counts = [0u64; 4];
    for _ in 0..40_000 {
        counts[(s.sample(&mut rng) / 2 - 1) as usize] += 1;
    }
    assert_uniform("uniform sampler", &counts);

    // A curriculum at level 4 of [1, 2, 3, 4] with revisit 0.3: 70% level 4, the rest
    // uniform over 1..=3.
    let mut c = Curriculum::new(vec![1, 2, 3, 4], 0.9, 0.3).unwrap();
    for d in 1..4 {
        assert_eq!(c.report(d, 0.95), Some(d + 1));
    }
    let s = DifficultySampler::Curriculum(c);
    let mut counts = [0u64; 4];
    let n = 100_000;
    for _ in 0..n {
        counts[(s.sample(&mut rng) - 1) as usize] += 1;
    }
    let top = counts[3] as f64 / n as f64;
    assert!((top - 0.7).abs() < 0.01, "current level share {top}");
    assert_uniform("curriculum revisits", &counts[..3]);
}

#[test]
fn cvpr_positions_are_equally_likely_pointers_for_long_inputs() {
    // L = 200 spans several bitset words; H = 20 draws the subset, H = 150 its complement.
    let l = 200;
    let task = Cvpr::new(l).unwrap();
    let mut rng = EnvRng::seed_from_u64(5);
    for h in [20u32, 150] {
        let mut counts = vec![0u64; l - 1];
        for _ in 0..3_000 {
            let p = task.sample(h, &mut rng).unwrap();
            for &k in &p.chain {
                counts[k as usize - 1] += 1;
            }
        }
        assert_eq!(counts.iter().sum::<u64>(), 3_000 * h as u64);
        assert_uniform(&format!("cvpr(L=200) pointer positions, H = {h}"), &counts);
    }
}

#[test]
fn draws_are_uniform() {
    let mut rng = EnvRng::seed_from_u64(6);
    let mut draws = Draws::new(&mut rng);
    let mut counts = [0u64; 7];
    for _ in 0..70_000 {
        counts[draws.below(7) as usize] += 1;
    }
    assert_uniform("below(7)", &counts);

    let mut counts = [0u64; 5];
    let mut out = [0u32; 9];
    let at = [0u32, 2, 3, 5, 8];
    for _ in 0..10_000 {
        out.fill(99);
        draws.fill_below_at(&mut out, &at, 5);
        for (k, &x) in out.iter().enumerate() {
            assert_eq!(
                x == 99,
                !at.contains(&(k as u32)),
                "only the listed slots are written"
            );
        }
        for &k in &at {
            counts[out[k as usize] as usize] += 1;
        }
    }
    assert_uniform("fill_below_at(5)", &counts);

    let mut seen: HashMap<Vec<u32>, u64> = HashMap::new();
    for _ in 0..24_000 {
        let mut a = vec![0, 1, 2, 3];
        draws.shuffle(&mut a);
        *seen.entry(a).or_default() += 1;
    }
    assert_eq!(seen.len(), 24);
    assert_uniform("shuffle of 4", &seen.into_values().collect::<Vec<_>>());
    let mut one = [7u32];
    draws.shuffle(&mut one);
    draws.shuffle(&mut []);
    assert_eq!(one, [7]);
}

#[test]
fn cvpr_complement_pointer_sets_are_uniform() {
    // H = 6 of 9 positions is drawn as the complement 3-subset: C(9, 6) = 84 sets.
    let task = Cvpr::new(10).unwrap();
    let mut rng = EnvRng::seed_from_u64(7);
    let mut sets: HashMap<Vec<u32>, u64> = HashMap::new();
    for _ in 0..84 * 400 {
        let p = task.sample(6, &mut rng).unwrap();
        *sets.entry(p.chain).or_default() += 1;
    }
    assert_eq!(sets.len(), 84);
    assert_uniform(
        "cvpr(L=10) H=6 pointer sets",
        &sets.into_values().collect::<Vec<_>>(),
    );
}

#[test]
fn cvpr_filler_and_pointers_follow_their_laws_at_length_100() {
    // L = 100 takes the batched filler's paired path; H = 30 draws the pointer subset, H = 80
    // its complement. Every position is equally likely a pointer; the first pointer follows
    // its law.
    let l = 100;
    let task = Cvpr::new(l).unwrap();
    let mut rng = EnvRng::seed_from_u64(8);
    for h in [30u32, 80] {
        let mut filler = vec![0u64; l];
        let mut first_pointer = vec![0u64; l];
        let mut positions = vec![0u64; l - 1];
        let mut n = 0;
        while n < 30_000 {
            let p = task.sample(h, &mut rng).unwrap();
            first_pointer[p.chain[0] as usize] += 1;
            for &k in &p.chain {
                positions[k as usize - 1] += 1;
            }
            for pos in [1usize, 50, 99] {
                if !p.chain.contains(&(pos as u32)) {
                    filler[p.input[pos] as usize] += 1;
                    n += 1;
                }
            }
        }
        assert_uniform(&format!("cvpr(L=100) H={h} filler"), &filler);
        assert_uniform(&format!("cvpr(L=100) H={h} pointer positions"), &positions);
        // p1 = the smallest of H uniform positions in 1..L: P(p1 = k) = C(L-1-k, H-1) / C(L-1, H).
        let choose = |a: u64, b: u64| -> f64 {
            if a < b {
                return 0.0;
            }
            (0..b).map(|i| (a - i) as f64 / (b - i) as f64).product()
        };
        let total: u64 = first_pointer.iter().sum();
        let (mut stat, mut cells) = (0.0, 0);
        for k in 1..l as u64 {
            let e = total as f64 * choose(l as u64 - 1 - k, h as u64 - 1)
                / choose(l as u64 - 1, h as u64);
            if e >= 5.0 {
                stat += (first_pointer[k as usize] as f64 - e).powi(2) / e;
                cells += 1;
            }
        }
        assert!(
            stat < chi2_critical(cells - 1),
            "cvpr(L=100) H={h} first pointer: chi-square {stat:.1} over {cells} cells"
        );
    }
}

#[test]
fn batched_draws_are_jointly_uniform() {
    let mut rng = EnvRng::seed_from_u64(9);
    let mut draws = Draws::new(&mut rng);
    // n = 7: 18 draws per output; 40 = one pair of batches (36) and a remainder of 4. Pairs
    // of neighbours inside a batch, across the two batches of a pair and in the remainder.
    let mut out = [0u32; 40];
    let mut joint = [[0u64; 49]; 3];
    let mut marginal = [0u64; 7];
    for _ in 0..49 * 300 {
        draws.fill_below(&mut out, 7);
        for (c, k) in [0usize, 17, 36].into_iter().enumerate() {
            joint[c][(out[k] * 7 + out[k + 1]) as usize] += 1;
        }
        for &x in &out {
            marginal[x as usize] += 1;
        }
    }
    for (c, counts) in joint.iter().enumerate() {
        assert_uniform(&format!("fill_below(7) pair {c}"), counts);
    }
    assert_uniform("fill_below(7) values", &marginal);

    // Rising bounds 2..=12, as a partial shuffle uses them (falling): every value of each
    // slot equally likely, and the first two slots jointly.
    let mut out = [0u32; 11];
    let mut slot_counts: Vec<Vec<u64>> = (0..11).map(|i| vec![0; i + 2]).collect();
    let mut joint = [0u64; 6];
    for _ in 0..12_000 {
        draws.fill_below_each(&mut out, 12, |i| i as u32 + 2);
        for (i, &x) in out.iter().enumerate() {
            slot_counts[i][x as usize] += 1;
        }
        joint[(out[0] * 3 + out[1]) as usize] += 1;
    }
    for (i, counts) in slot_counts.iter().enumerate() {
        assert_uniform(&format!("fill_below_each slot {i}"), counts);
    }
    assert_uniform("fill_below_each slots 0 and 1", &joint);
}
