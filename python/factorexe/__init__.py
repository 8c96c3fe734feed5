"""FactorExe's token-MDP envs and tree searchers, from Rust, for Python.

- :mod:`factorexe.envs`: a Gymnasium ``Env`` per task (Cycle, C-VPR, multiplication, BinPack;
  thought tokens through ``thoughts=K``), registered as ``FactorExe/Cycle-v0``,
  ``FactorExe/CVPR-v0``, ``FactorExe/Multiplication-v0`` and ``FactorExe/BinPack-v0``;
- :mod:`factorexe.vector`: a Gymnasium ``VectorEnv`` stepped in Rust (``gym.make_vec``);
- :mod:`factorexe.search`: MCTS and Gumbel MuZero over a batched Python evaluator.

Example::

    import gymnasium as gym
    import factorexe  # registers the envs

    env = gym.make("FactorExe/Cycle-v0", length=8, render_mode="ansi")
    obs, info = env.reset(seed=0, options={"difficulty": 4})
"""

from importlib.metadata import PackageNotFoundError, version

from factorexe import _native
from factorexe.envs import BinPackEnv, CVPREnv, CycleEnv, FactorExeEnv, MultiplicationEnv
from factorexe.registration import ENV_IDS, register_envs
from factorexe.search import MCTS, GumbelMuZero, SearchResult
from factorexe.vector import (
    BinPackVectorEnv,
    CVPRVectorEnv,
    CycleVectorEnv,
    FactorExeVectorEnv,
    MultiplicationVectorEnv,
)

env_spec = _native.env_spec
bench_vec_env = _native.bench_vec_env
bench_search = _native.bench_search

try:
    __version__ = version("factorexe")
except PackageNotFoundError:  # imported from a source tree without installing
    __version__ = "0+unknown"

register_envs()

__all__ = [
    "ENV_IDS",
    "MCTS",
    "BinPackEnv",
    "BinPackVectorEnv",
    "CVPREnv",
    "CVPRVectorEnv",
    "CycleEnv",
    "CycleVectorEnv",
    "FactorExeEnv",
    "FactorExeVectorEnv",
    "GumbelMuZero",
    "MultiplicationEnv",
    "MultiplicationVectorEnv",
    "SearchResult",
    "bench_search",
    "bench_vec_env",
    "env_spec",
    "register_envs",
]
