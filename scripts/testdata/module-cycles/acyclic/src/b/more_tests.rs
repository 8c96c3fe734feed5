//! Test-only file (declared under `#[cfg(test)]` in b.rs).
use crate::a::Top;
