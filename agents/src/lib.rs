//! Transformer policies on libtorch (`tch`), the [`Agent`] trait, the training algorithms,
//! the Runner, TensorBoard logging, checkpoints and configs.

#![warn(missing_docs)]

pub mod device;
