//! A directory module; its child reaches d through a name the crate root re-exports.
mod inner;

pub struct Cee;
