//! N-digit multiplication with a long-multiplication scratchpad as the oracle chain.
//!
//! # Difficulty
//!
//! Difficulty `d` is the number of digits `N` of the first operand, `1..=max_digits`. The
//! second operand has `M = N` digits ([`Multiplication::new`], square problems as in Implicit
//! CoT's 4×4, 5×5, ...) or a fixed `M` ([`Multiplication::with_multiplier_digits`]: `d`×`M`).
//! Operands are drawn uniformly among the numbers with exactly that many digits (the leading
//! digit is nonzero, except for one-digit operands, which may be 0);
//! [`Multiplication::problem`] builds a problem for any given digits, leading zeros included.
//!
//! # Tokens
//!
//! - **Input** (vocab [`INPUT_VOCAB`] = 13): `a₀ … a_{N-1} * b₀ … b_{M-1} =`, digits least
//!   significant first (as Implicit CoT, Deng et al. 2023, write them), `*` = [`TIMES`],
//!   `=` = [`EQUALS`], then [`INPUT_PAD`] up to `input_len = max N + max M + 2`.
//! - **Answer** (vocab 10): the `N + M` digits of the product, least significant first,
//!   then zeros up to `answer_len = max N + max M` (a fixed width, as the input's).
//! - **Chain** (vocab 11: digits and `+` = [`PLUS`]): one row per multiplier digit `b_j`,
//!   rows separated by `+`. Row `j` adds `a·b_j` into the running sum `S_{j-1} = a·(b mod
//!   10^j)` at position `j`, writing the new digits `S_j[j..=j+N]` with their carries:
//!
//!   `d₀ c₀ d₁ c₁ … d_{N-1} c_{N-1} d_N`, where `t_k = a_k·b_j + S_{j-1}[j+k] + c_{k-1}`,
//!   `d_k = t_k mod 10`, `c_k = ⌊t_k / 10⌋ ≤ 9` (`c_{-1} = 0`), and `d_N = c_{N-1}`.
//!
//!   Digits `S_j[0..j]` are final and not repeated. So every chain token is computable from
//!   the input and at most two earlier tokens: a digit from `a_k`, `b_j`, the carry just
//!   before it (none at the start of a row) and the token `2N` positions back (the previous
//!   row's `d_{k+1}`, which is `S_{j-1}[j+k]`; nothing in row 0); a carry from the same; the
//!   top digit `d_N` copies the carry before it. Answer digit `p` is row `p`'s `d₀` for
//!   `p < M-1` and row `M-1`'s `d_{p-M+1}` otherwise.
//!
//! **Chain length**: `M·(2N+2) − 1` tokens ([`chain_len`]): `M` rows of `2N+1`, `M−1`
//! separators. 4×4: 39 tokens; 8×8: 143.
//!
//! # Example: 3719 × 3349 = 12454931 (4×4)
//!
//! As [`Multiplication::render`] prints it (`d`/`c` mark digit and carry columns):
//!
//! ```text
//! 3719 x 3349 = 12454931 (4x4), digits least significant first
//! input     9 1 7 3 * 9 4 3 3 =
//!           d c d c d c d c d
//! row 0     1 8 7 1 4 6 3 3 3   adds a x 9 at digit 0
//! row 1   + 3 4 2 1 2 3 8 1 1   adds a x 4 at digit 1
//! row 2   + 9 2 7 0 9 2 2 1 1   adds a x 3 at digit 2
//! row 3   + 4 3 5 1 4 2 2 1 1   adds a x 3 at digit 3
//! answer    1 3 9 4 5 4 2 1
//! ```
//!
//! Row 1, first pair: `t₀ = a₀·b₁ + S₀[1] + 0 = 9·4 + 7 = 43`, so `d₀ = 3`, `c₀ = 4`; the 7 is
//! row 0's `d₁`, `2N = 8` tokens back. The running sums are 33471, 182231, 1297931 and
//! 12454931: Implicit CoT's partial sums, with the carries written out.
//!
//! ```
//! use envs::tasks::multiplication::Multiplication;
//!
//! let task = Multiplication::new(4).unwrap();
//! let p = task.problem(&[9, 1, 7, 3], &[9, 4, 3, 3]).unwrap();
//! assert_eq!(p.answer, [1, 3, 9, 4, 5, 4, 2, 1]);
//! assert_eq!(p.chain.len(), 39);
//! ```

use rand::Rng;

use crate::env::{Difficulty, EnvRng};
use crate::error::EnvError;
use crate::spec::DifficultyRange;
use crate::task::{Problem, Task, TaskSpec};
use std::fmt::Write as _;

/// Largest operand length accepted: products of up to 40 digits, chains of up to 839 tokens.
pub const MAX_DIGITS: u32 = 20;
/// Input token for `*`, between the operands.
pub const TIMES: u32 = 10;
/// Input token for `=`, after the second operand.
pub const EQUALS: u32 = 11;
/// Input padding after `=`.
pub const INPUT_PAD: u32 = 12;
/// Input vocabulary: digits, `*`, `=`, padding.
pub const INPUT_VOCAB: usize = 13;
/// Chain token separating scratchpad rows.
pub const PLUS: u32 = 10;
/// Chain vocabulary: digits and `+`.
pub const CHAIN_VOCAB: usize = 11;

/// Length of the oracle chain for an `n`×`m` problem: `m·(2n+2) − 1`.
pub fn chain_len(n: usize, m: usize) -> usize {
    m * (2 * n + 2) - 1
}

/// N-digit multiplication, least significant digit first, with the long-multiplication
/// scratchpad as the oracle chain. See the [module docs](self) for the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multiplication {
    spec: TaskSpec,
    max_digits: u32,
    multiplier_digits: Option<u32>,
}

impl Multiplication {
    /// Square problems: difficulty `N` in `1..=max_digits` gives `N`×`N` digits.
    /// `max_digits` must be in `1..=`[`MAX_DIGITS`].
    pub fn new(max_digits: u32) -> Result<Self, EnvError> {
        Self::build(max_digits, None)
    }

    /// Problems with a fixed-length multiplier: difficulty `N` in `1..=max_digits` gives
    /// `N`×`multiplier_digits`. Both must be in `1..=`[`MAX_DIGITS`].
    pub fn with_multiplier_digits(
        max_digits: u32,
        multiplier_digits: u32,
    ) -> Result<Self, EnvError> {
        Self::build(max_digits, Some(multiplier_digits))
    }

    fn build(max_digits: u32, multiplier_digits: Option<u32>) -> Result<Self, EnvError> {
        let allowed = format!("1..={MAX_DIGITS}");
        if !(1..=MAX_DIGITS).contains(&max_digits) {
            return Err(EnvError::invalid("max_digits", max_digits, allowed));
        }
        if let Some(m) = multiplier_digits {
            if !(1..=MAX_DIGITS).contains(&m) {
                return Err(EnvError::invalid("multiplier_digits", m, allowed));
            }
        }
        let n = max_digits as usize;
        let m = multiplier_digits.map_or(n, |m| m as usize);
        let name = match multiplier_digits {
            None => format!("multiplication(max_digits={max_digits})"),
            Some(m) => format!("multiplication(max_digits={max_digits}, multiplier_digits={m})"),
        };
        Ok(Multiplication {
            spec: TaskSpec {
                name,
                input_len: n + m + 2,
                input_vocab: INPUT_VOCAB,
                vocab: CHAIN_VOCAB,
                answer_len: n + m,
                answer_vocab: 10,
                max_chain_len: chain_len(n, m),
                difficulty: DifficultyRange {
                    min: 1,
                    max: max_digits,
                },
            },
            max_digits,
            multiplier_digits,
        })
    }

    /// Largest first-operand length.
    pub fn max_digits(&self) -> u32 {
        self.max_digits
    }

    /// `(N, M)`: the operand lengths at difficulty `d`.
    pub fn shape(&self, difficulty: Difficulty) -> (usize, usize) {
        let n = difficulty as usize;
        (n, self.multiplier_digits.map_or(n, |m| m as usize))
    }

    /// The problem `a × b` for digit lists given least significant first (leading zeros
    /// allowed). `a.len()` is the difficulty; `b.len()` must match the task's shape.
    pub fn problem(&self, a: &[u32], b: &[u32]) -> Result<Problem, EnvError> {
        let difficulty = Difficulty::try_from(a.len()).unwrap_or(Difficulty::MAX);
        self.check_difficulty(difficulty)?;
        let (_, m) = self.shape(difficulty);
        if b.len() != m {
            return Err(EnvError::invalid(
                "b",
                format!("{} digits", b.len()),
                format!("{m} digits for a {}-digit a in {}", a.len(), self.spec.name),
            ));
        }
        if let Some(&d) = a.iter().chain(b).find(|&&d| d > 9) {
            return Err(EnvError::invalid("digit", d, "0..=9"));
        }
        let mut out = Problem::default();
        self.fill(a.iter().copied(), b.iter().copied(), difficulty, &mut out);
        Ok(out)
    }

    /// Writes input, chain and answer for operands `a` (`N` digits) and `b` (`M` digits).
    fn fill(
        &self,
        a: impl Iterator<Item = u32>,
        b: impl Iterator<Item = u32>,
        difficulty: Difficulty,
        out: &mut Problem,
    ) {
        let (n, m) = self.shape(difficulty);
        out.difficulty = difficulty;
        out.input.clear();
        out.input.extend(a);
        out.input.push(TIMES);
        out.input.extend(b);
        out.input.push(EQUALS);
        out.input.resize(self.spec.input_len, INPUT_PAD);
        let (a, b) = (&out.input[..n], &out.input[n + 1..n + 1 + m]);
        // The running sum S_j, least significant first; fixed size so sampling never allocates.
        let mut sum = [0u32; 2 * MAX_DIGITS as usize];
        out.chain.clear();
        for (j, &bj) in b.iter().enumerate() {
            if j > 0 {
                out.chain.push(PLUS);
            }
            let mut carry = 0;
            for (k, &ak) in a.iter().enumerate() {
                let t = ak * bj + sum[j + k] + carry;
                sum[j + k] = t % 10;
                carry = t / 10;
                out.chain.push(t % 10);
                out.chain.push(carry);
            }
            sum[j + n] = carry;
            out.chain.push(carry);
        }
        out.answer.clear();
        out.answer.extend_from_slice(&sum[..n + m]);
        out.answer.resize(self.spec.answer_len, 0);
    }

    /// The scratchpad of `problem` laid out in rows, as in the module docs.
    pub fn render(&self, problem: &Problem) -> String {
        let (n, m) = self.shape(problem.difficulty);
        let mut out = String::new();
        if problem.input.len() < n + m + 2 || problem.chain.len() != chain_len(n, m) {
            let _ = write!(out, "not a {n}x{m} multiplication problem: {problem:?}");
            return out;
        }
        let number = |digits: &[u32]| -> String {
            let s: String = digits
                .iter()
                .rev()
                .map(|&d| char::from_digit(d, 10).unwrap_or('?'))
                .collect();
            let trimmed = s.trim_start_matches('0');
            if trimmed.is_empty() { "0" } else { trimmed }.to_string()
        };
        let spaced = |tokens: &[u32]| -> String {
            tokens
                .iter()
                .map(|&t| match t {
                    0..=9 => char::from_digit(t, 10).unwrap_or('?'),
                    _ => '?',
                })
                .map(String::from)
                .collect::<Vec<_>>()
                .join(" ")
        };
        let (a, b) = (&problem.input[..n], &problem.input[n + 1..n + 1 + m]);
        let _ = writeln!(
            out,
            "{} x {} = {} ({n}x{m}), digits least significant first",
            number(a),
            number(b),
            number(&problem.answer[..(n + m).min(problem.answer.len())])
        );
        let _ = writeln!(out, "input     {} * {} =", spaced(a), spaced(b));
        let columns: Vec<&str> = (0..2 * n + 1)
            .map(|i| if i % 2 == 0 { "d" } else { "c" })
            .collect();
        let _ = writeln!(out, "          {}", columns.join(" "));
        for (j, (row, bj)) in problem.chain.chunks(2 * n + 2).zip(b).enumerate() {
            let _ = writeln!(
                out,
                "row {j:<3} {} {}   adds a x {bj} at digit {j}",
                if j == 0 { ' ' } else { '+' },
                spaced(&row[..2 * n + 1]),
            );
        }
        let digits = (n + m).min(problem.answer.len());
        let _ = write!(out, "answer    {}", spaced(&problem.answer[..digits]));
        if problem.answer.len() > digits {
            let _ = write!(
                out,
                " (then {} padding zeros)",
                problem.answer.len() - digits
            );
        }
        out
    }
}

impl Task for Multiplication {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn sample_into(
        &self,
        difficulty: Difficulty,
        rng: &mut EnvRng,
        out: &mut Problem,
    ) -> Result<(), EnvError> {
        self.check_difficulty(difficulty)?;
        let (n, m) = self.shape(difficulty);
        // Exactly `len` digits: the most significant one is nonzero unless the number has one.
        let mut digits = |len: usize| {
            let mut buf = [0u32; MAX_DIGITS as usize];
            for (i, d) in buf[..len].iter_mut().enumerate() {
                let low = u32::from(len > 1 && i == len - 1);
                *d = rng.random_range(low..10);
            }
            buf
        };
        let (a, b) = (digits(n), digits(m));
        self.fill(
            a[..n].iter().copied(),
            b[..m].iter().copied(),
            difficulty,
            out,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_EXAMPLE: &str = "\
3719 x 3349 = 12454931 (4x4), digits least significant first
input     9 1 7 3 * 9 4 3 3 =
          d c d c d c d c d
row 0     1 8 7 1 4 6 3 3 3   adds a x 9 at digit 0
row 1   + 3 4 2 1 2 3 8 1 1   adds a x 4 at digit 1
row 2   + 9 2 7 0 9 2 2 1 1   adds a x 3 at digit 2
row 3   + 4 3 5 1 4 2 2 1 1   adds a x 3 at digit 3
answer    1 3 9 4 5 4 2 1";

    #[test]
    fn render_matches_the_module_docs() {
        let task = Multiplication::new(4).unwrap();
        let p = task.problem(&[9, 1, 7, 3], &[9, 4, 3, 3]).unwrap();
        assert_eq!(task.render(&p), DOC_EXAMPLE);
        let doc = include_str!("multiplication.rs");
        let in_doc: String = DOC_EXAMPLE
            .lines()
            .map(|l| format!("//! {l}\n").replace("//! \n", "//!\n"))
            .collect();
        assert!(doc.contains(&in_doc), "module docs drifted from render()");
    }

    #[test]
    fn spec_and_shapes() {
        let t = Multiplication::new(8).unwrap();
        let s = t.spec();
        assert_eq!(
            (s.input_len, s.answer_len, s.vocab, s.answer_vocab),
            (18, 16, 11, 10)
        );
        assert_eq!(s.max_chain_len, 143);
        let r = Multiplication::with_multiplier_digits(6, 3).unwrap();
        assert_eq!(r.shape(4), (4, 3));
        assert_eq!(r.spec().max_chain_len, chain_len(6, 3));
        assert_eq!(r.spec().input_len, 11);
    }
}
