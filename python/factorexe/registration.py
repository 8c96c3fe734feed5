"""Registers the FactorExe envs with Gymnasium (done on ``import factorexe``)."""

from __future__ import annotations

import gymnasium as gym

#: Gymnasium id -> (``factorexe.envs`` class, ``factorexe.vector`` class).
ENV_IDS: dict[str, tuple[str, str]] = {
    "FactorExe/Cycle-v0": ("CycleEnv", "CycleVectorEnv"),
    "FactorExe/CVPR-v0": ("CVPREnv", "CVPRVectorEnv"),
    "FactorExe/Multiplication-v0": ("MultiplicationEnv", "MultiplicationVectorEnv"),
    "FactorExe/BinPack-v0": ("BinPackEnv", "BinPackVectorEnv"),
}


def register_envs() -> None:
    """Registers every id of :data:`ENV_IDS` (again is a no-op): ``gym.make(id, **params)``
    builds the single env, ``gym.make_vec(id, num_envs, **params)`` the Rust-batched vector
    env. Thought tokens are the ``thoughts=K`` parameter of any of them."""
    for env_id, (single, vector) in ENV_IDS.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point=f"factorexe.envs:{single}",
            vector_entry_point=f"factorexe.vector:{vector}",
            # Every episode is bounded by the env itself (`rust_spec["max_episode_steps"]`).
            max_episode_steps=None,
            nondeterministic=False,
        )
