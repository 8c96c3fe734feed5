//! Two cycles: a -> b -> a and c -> d -> c.
pub mod a;
pub mod b;
pub mod c;
pub mod d;

pub use d::{Dee as DeeAlias, Other};
