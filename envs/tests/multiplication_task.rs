//! Multiplication: oracle chains give the right product and reward 1 at every size, follow
//! the documented local rule and length formula; edge cases; errors.

use envs::tasks::multiplication::{chain_len, Multiplication, EQUALS, INPUT_PAD, PLUS, TIMES};
use envs::{check_env, CotEnv, Env, EnvError, EnvRng, Problem, Task};
use rand::SeedableRng;

/// Digits of `x`, least significant first, exactly `len` of them.
fn digits(mut x: u64, len: usize) -> Vec<u32> {
    (0..len)
        .map(|_| {
            let d = (x % 10) as u32;
            x /= 10;
            d
        })
        .collect()
}

fn value(digits: &[u32]) -> u64 {
    digits
        .iter()
        .rev()
        .fold(0, |acc, &d| acc * 10 + u64::from(d))
}

/// The next chain token by the rule the module docs state, reading only the input and at
/// most two earlier tokens.
fn local_rule(a: &[u32], b: &[u32], chain: &[u32], i: usize) -> u32 {
    let n = a.len();
    let (j, o) = (i / (2 * n + 2), i % (2 * n + 2));
    if o == 2 * n + 1 {
        return PLUS;
    }
    if o == 2 * n {
        return chain[i - 1];
    }
    let (k, is_carry) = (o / 2, o % 2 == 1);
    let digit_pos = i - usize::from(is_carry);
    let carry_in = if k == 0 { 0 } else { chain[digit_pos - 1] };
    let from_above = if j == 0 { 0 } else { chain[digit_pos - 2 * n] };
    let t = a[k] * b[j] + from_above + carry_in;
    if is_carry {
        t / 10
    } else {
        t % 10
    }
}

/// Checks one problem against arithmetic, the local rule, the length formula and the
/// documented positions of the answer digits; then replays the oracle in a CotEnv.
fn check_problem(task: &Multiplication, p: &Problem, env: &mut CotEnv<Multiplication>) {
    let (n, m) = task.shape(p.difficulty);
    let a = &p.input[..n];
    let b = &p.input[n + 1..n + 1 + m];
    assert_eq!(p.input[n], TIMES);
    assert_eq!(p.input[n + 1 + m], EQUALS);
    assert!(p.input[n + m + 2..].iter().all(|&t| t == INPUT_PAD));
    let product = u128::from(value(a)) * u128::from(value(b));
    let answer = p
        .answer
        .iter()
        .rev()
        .fold(0u128, |acc, &d| acc * 10 + u128::from(d));
    assert_eq!(answer, product, "{n}x{m}: {a:?} * {b:?}");
    let spec = task.spec();
    assert_eq!(p.answer.len(), spec.answer_len);
    assert!(p.answer[n + m..].iter().all(|&d| d == 0), "zero padding");
    assert_eq!(p.chain.len(), chain_len(n, m));
    assert_eq!(p.chain.len(), m * (2 * n + 2) - 1);
    for i in 0..p.chain.len() {
        assert_eq!(
            p.chain[i],
            local_rule(a, b, &p.chain, i),
            "{n}x{m} token {i}"
        );
    }
    for (q, &d) in p.answer[..n + m].iter().enumerate() {
        let pos = if q + 1 < m {
            q * (2 * n + 2)
        } else {
            (m - 1) * (2 * n + 2) + 2 * (q + 1 - m)
        };
        assert_eq!(
            p.chain[pos], d,
            "answer digit {q} is not where the docs say"
        );
    }
    env.reset_to(p.clone()).unwrap();
    let mut ret = 0.0;
    for action in env.oracle_actions() {
        ret += env.step(action).unwrap().reward;
    }
    assert!(env.is_done());
    assert_eq!(ret, 1.0);
    assert_eq!(env.info().solved, Some(true));
}

#[test]
fn random_operands_at_every_size() {
    for m in 1..=8u32 {
        let task = Multiplication::with_multiplier_digits(8, m).unwrap();
        let mut env = CotEnv::new(task.clone()).unwrap();
        let mut rng = EnvRng::seed_from_u64(u64::from(m));
        for n in 1..=8u32 {
            for _ in 0..25 {
                let p = task.sample(n, &mut rng).unwrap();
                assert_eq!(p.difficulty, n);
                // Exactly n and m digits: no leading zero unless the operand has one digit.
                let (nu, mu) = (n as usize, m as usize);
                assert!(nu == 1 || p.input[nu - 1] != 0);
                assert!(mu == 1 || p.input[nu + mu] != 0);
                check_problem(&task, &p, &mut env);
            }
        }
    }
}

#[test]
fn square_problems_through_the_env() {
    let task = Multiplication::new(8).unwrap();
    let mut env = CotEnv::new(task.clone()).unwrap();
    let mut rng = EnvRng::seed_from_u64(5);
    for d in 1..=8 {
        env.reset(&mut rng, d).unwrap();
        let p = env.problem().clone();
        assert_eq!(task.shape(d), (d as usize, d as usize));
        check_problem(&task, &p, &mut env);
    }
    assert_eq!(task.spec().max_chain_len, chain_len(8, 8));
}

#[test]
fn edge_cases_at_every_size() {
    for m in 1..=8usize {
        let task = Multiplication::with_multiplier_digits(8, m as u32).unwrap();
        let mut env = CotEnv::new(task.clone()).unwrap();
        for n in 1..=8usize {
            let nines = |len: usize| 10u64.pow(len as u32) - 1;
            let ones = |len: usize| nines(len) / 9;
            let cases = [
                (0, 0),
                (0, nines(m)),
                (nines(n), 0),
                (1, 1),
                (ones(n), ones(m)),
                (1, nines(m)),
                (nines(n), 1),
                // All nines: the largest carries (9·9 + 9 + 8 = 98 per digit).
                (nines(n), nines(m)),
                (10u64.pow(n as u32 - 1), 10u64.pow(m as u32 - 1)),
                (nines(n), 10u64.pow(m as u32 - 1) + 1),
            ];
            for (x, y) in cases {
                let p = task.problem(&digits(x, n), &digits(y, m)).unwrap();
                check_problem(&task, &p, &mut env);
            }
        }
    }
}

#[test]
fn sizes_out_of_range_are_clear_errors() {
    for bad in [0, 21] {
        let err = Multiplication::new(bad).unwrap_err();
        assert!(matches!(
            err,
            EnvError::InvalidParameter {
                name: "max_digits",
                ..
            }
        ));
        assert!(err.to_string().contains("1..=20"), "{err}");
    }
    assert!(matches!(
        Multiplication::with_multiplier_digits(4, 0),
        Err(EnvError::InvalidParameter {
            name: "multiplier_digits",
            ..
        })
    ));
    let task = Multiplication::new(8).unwrap();
    let mut rng = EnvRng::seed_from_u64(0);
    for d in [0, 9] {
        let err = task.sample(d, &mut rng).unwrap_err();
        assert!(matches!(
            err,
            EnvError::DifficultyOutOfRange { min: 1, max: 8, .. }
        ));
    }
    let mut env = CotEnv::new(task.clone()).unwrap();
    assert!(env.reset(&mut rng, 9).is_err());
    assert!(task.problem(&[1; 9], &[1; 9]).is_err());
    assert!(task.problem(&[], &[]).is_err());
    assert!(task.problem(&[1, 2], &[3]).is_err(), "square task, 2x1");
    assert!(task.problem(&[10], &[1]).is_err(), "digit 10");
}

#[test]
fn same_seed_same_problem() {
    let task = Multiplication::new(6).unwrap();
    let a = task.sample(6, &mut EnvRng::seed_from_u64(9)).unwrap();
    let b = task.sample(6, &mut EnvRng::seed_from_u64(9)).unwrap();
    let c = task.sample(6, &mut EnvRng::seed_from_u64(10)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn checker_passes() {
    for task in [
        Multiplication::new(8).unwrap(),
        Multiplication::with_multiplier_digits(5, 2).unwrap(),
    ] {
        let mut env = CotEnv::new(task).unwrap();
        let report = check_env(&mut env).unwrap();
        assert_eq!(report.difficulties.first(), Some(&1));
    }
}

#[test]
fn registry_builds_it() {
    use envs::registry::{self, ParamValue};
    let mut p = envs::EnvParams::new();
    p.set_text("max-digits", "4");
    let env = registry::make("multiplication", &p).unwrap();
    assert_eq!(env.spec().name, "multiplication(max_digits=4)");
    assert_eq!(
        (env.spec().difficulty.min, env.spec().difficulty.max),
        (1, 4)
    );
    let p = p.with("multiplier_digits", ParamValue::Int(2));
    let mut env = registry::make("multiplication", &p).unwrap();
    assert_eq!(
        env.spec().name,
        "multiplication(max_digits=4, multiplier_digits=2)"
    );
    check_env(&mut env).unwrap();
    let bad = envs::EnvParams::new().with("max_digits", ParamValue::Int(0));
    let err = registry::make("multiplication", &bad).unwrap_err();
    assert!(err.to_string().contains("max_digits"), "{err}");
}
