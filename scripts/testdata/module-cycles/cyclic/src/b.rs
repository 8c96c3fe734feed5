//! Depends on a and c through a `super::{..}` group in a top-level module.
use super::{a::Ay, c};

pub struct Bee;

pub fn f(_: Option<Box<Ay>>) -> Option<c::Cee> {
    None
}
