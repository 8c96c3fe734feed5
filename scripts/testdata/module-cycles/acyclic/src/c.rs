pub struct X;

mod inner {
    // Two `super`s from an inline module of a top-level module reach the crate root.
    use super::super::b::Bee;
    use super::X;

    pub fn f(_: Bee, _: X) {}
}
