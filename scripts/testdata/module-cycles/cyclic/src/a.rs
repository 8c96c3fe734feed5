//! Depends on b through a plain `crate::` path.

use crate::b::Bee;

pub struct Ay(pub Bee);
