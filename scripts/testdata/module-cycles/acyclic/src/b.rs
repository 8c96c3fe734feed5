//! Mentions crate::a in a doc comment, which is not a dependency.
// use crate::a::Top;
/* a block comment: crate::c::X /* nested: crate::a */ still a comment: crate::a */

/// [`crate::Top`] in an intra-doc link.
pub struct Bee;

pub const TEXT: &str = "crate::a::Top \" crate::c";
pub const RAW: &str = r#"use crate::c::{X}; "quoted" crate::a"#;
pub const BYTES: &[u8] = b"crate::a";
pub const QUOTE: char = '"';

pub fn lifetimes<'a>(x: &'a str) -> &'a str {
    let _q = '\'';
    let _u = '\u{7b}';
    x
}

#[cfg(test)]
use crate::c::X;

#[cfg(test)]
mod tests {
    use crate::a::Top;
    use crate::{c::X, Top as T};

    #[test]
    fn t() {
        let _ = (Top, super::X, T);
    }
}

#[cfg(test)]
mod more_tests;
