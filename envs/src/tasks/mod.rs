//! The tasks: problem generators with oracle chains, each turned into an MDP by
//! [`crate::CotEnv`].

pub mod cvpr;
pub mod cycle;
pub mod multiplication;
pub mod sampling;

pub use cvpr::Cvpr;
pub use cycle::Cycle;
pub use multiplication::Multiplication;
