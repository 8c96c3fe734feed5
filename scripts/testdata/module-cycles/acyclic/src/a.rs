use crate::{b::Bee, c::X};

pub struct Top;

pub(crate) fn f(_: Bee, _: X) -> char {
    '{'
}
