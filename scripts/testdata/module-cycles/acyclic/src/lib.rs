//! Dependencies a -> b, a -> c, c -> b; every mention of a or c inside b is ignored.
pub mod a;
pub mod b;
pub mod c;

pub use a::Top;
