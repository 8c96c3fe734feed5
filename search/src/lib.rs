//! Batched searchers over any clonable [`envs::Env`]: greedy, sample-and-vote, beam, MCTS
//! (PUCT) and Gumbel MuZero, calling a batched [`Evaluator`]. No libtorch.

#![warn(missing_docs)]
