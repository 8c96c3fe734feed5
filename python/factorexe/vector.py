"""A Gymnasium ``VectorEnv`` over the Rust ``VecEnv``: one Rust call steps the whole batch."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from factorexe import _native
from factorexe._spaces import levels, observation_space, reset_difficulty, split, with_defaults
from factorexe.envs import FactorExeEnv

ObsType = dict[str, np.ndarray]

_INT64 = np.dtype(np.int64)


class FactorExeVectorEnv(VectorEnv[ObsType, np.ndarray, np.ndarray]):
    """``num_envs`` copies of a FactorExe env, stepped together by the Rust ``envs::VecEnv``.

    - **Spaces**: ``single_observation_space`` and ``single_action_space`` are those of
      :class:`~factorexe.envs.FactorExeEnv`; the batched spaces add a leading ``num_envs`` axis.
    - **No copies**: the observation arrays, ``rewards`` (float32), ``terminated`` and
      ``truncated`` are read-only numpy views of the Rust buffers, so a step costs Python no
      copy at all. The next ``step``/``reset`` overwrites them: copy what you keep (e.g.
      ``buf[t] = obs["input"]``), or build with ``copy=True`` to get fresh arrays every call.
    - **Autoreset**: Gymnasium's next-step mode (``metadata["autoreset_mode"]``). When env ``i``
      ends on a step, that step returns its final observation, reward and flags; on the next
      step its action is ignored and it returns the first observation of a new episode with
      reward 0 (:attr:`autoreset` marks those rows).
    - **Seeding**: ``reset(seed=s)`` seeds env ``i`` with the Rust ``derive_seed(s, i)``, as the
      Rust ``VecEnv::reset(s)`` does; ``reset(seed=[s_0, ..., s_B-1])`` seeds env ``i`` with
      ``s_i``, and env ``i`` then plays exactly as a single env after ``reset(seed=s_i)``.
      Without a seed, each env goes on drawing from its own RNG.
    - **Difficulty**: each reset and autoreset draws its level uniformly from ``difficulty``
      (default: the env's whole range); ``reset(options={"difficulty": d})`` (an int or a list)
      replaces it until the next reset.
    - **Info**: after a step on which some envs ended, ``difficulty``, ``steps`` and ``solved``
      of the finished episodes, with Gymnasium's ``_key`` masks marking those envs; ``{}`` when
      none ended. After a reset, ``difficulty`` of every env.
    - ``parallel=True`` steps the envs on Rust threads (rayon); the results are the same.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["ansi"],
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }
    #: The Rust registry's name of the env this class builds (set by the task subclasses).
    task: ClassVar[str | None] = None

    def __init__(
        self,
        task: str | None = None,
        num_envs: int = 1,
        *,
        render_mode: str | None = None,
        difficulty: int | Iterable[int] | None = None,
        copy: bool = False,
        parallel: bool = False,
        **params: Any,
    ) -> None:
        """Builds ``num_envs`` copies of the env ``task`` (default: the class's) with the Rust
        parameters ``params``."""
        task = task or self.task
        if task is None:
            raise ValueError("no task given: pass one of 'cycle', 'cvpr', 'multiplication', 'binpack'")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"invalid parameter `render_mode` = {render_mode!r}: None or 'ansi'")
        self._raw = _native.RawVecEnv(
            task, num_envs, difficulty=levels(difficulty), parallel=parallel, **with_defaults(task, params)
        )
        self.task_name = task
        self._params = dict(params)
        #: The Rust spec: name, layout, number of actions, limits, difficulty range.
        self.rust_spec: dict[str, Any] = self._raw.spec()
        self.num_envs = num_envs
        self.single_observation_space = observation_space(self.rust_spec)
        self.single_action_space = spaces.Discrete(self.rust_spec["num_actions"])
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = render_mode
        self.copy = copy

        # Read-only views of the Rust buffers.
        tokens, features, mask, self._rewards, self._terminated, self._truncated, self._autoreset = self._raw.buffers()
        self._mask = mask
        self._obs = split(self.rust_spec, tokens, features, mask)
        self._seeded = False

    def reset(
        self,
        *,
        seed: int | Sequence[int] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[ObsType, dict[str, Any]]:
        """Resets every env (see the class doc for ``seed`` and ``options``)."""
        difficulty = reset_difficulty(options)
        if seed is None or isinstance(seed, (int, np.integer)):
            super().reset(seed=None if seed is None else int(seed))
            if seed is None and not self._seeded:
                # Gymnasium's convention: an env never seeded starts from a random seed.
                seed = int(self.np_random.integers(2**63 - 1))
            if seed is not None and seed < 0:
                raise ValueError(f"invalid parameter `seed` = {seed}: a non-negative integer")
            self._raw.reset(seed=seed, difficulty=difficulty)
        else:
            seeds = [int(s) for s in seed]
            if any(s < 0 for s in seeds):
                raise ValueError(f"invalid parameter `seed` = {seeds}: non-negative integers")
            super().reset(seed=seeds[0] if seeds else None)
            self._raw.reset(seeds=seeds, difficulty=difficulty)
        self._seeded = True
        info = {
            "difficulty": self._raw.difficulties(),
            "_difficulty": np.ones(self.num_envs, dtype=bool),
        }
        return self._observation(), info

    def step(self, actions: Any) -> tuple[ObsType, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Steps every env with its action (integers, one per env); returns ``(obs, rewards,
        terminated, truncated, info)``. An illegal action raises ``ValueError`` and steps
        nothing."""
        a = np.asarray(actions)
        if a.dtype != _INT64 or not a.flags.c_contiguous:
            if a.dtype.kind not in "iu":
                raise ValueError(f"actions must be integers, got an array of {a.dtype}")
            a = np.ascontiguousarray(a, dtype=np.int64)
        if a.ndim != 1:
            a = a.reshape(-1)
        ended = self._raw.step(a)
        info = self._final_info() if ended else {}
        if self.copy:
            return (
                self._observation(),
                self._rewards.copy(),
                self._terminated.copy(),
                self._truncated.copy(),
                info,
            )
        return dict(self._obs), self._rewards, self._terminated, self._truncated, info

    def render(self) -> tuple[str, ...] | None:
        """Each env's state as text when ``render_mode == "ansi"``, else ``None``."""
        if self.render_mode is None:
            return None
        return tuple(self._raw.render(i) for i in range(self.num_envs))

    @property
    def autoreset(self) -> np.ndarray:
        """``(B,)`` bool, read-only: which envs the last step reset instead of stepping (their
        actions were ignored, their rows start a new episode)."""
        return self._autoreset

    def action_masks(self) -> np.ndarray:
        """``(B, A)`` bool, read-only view: the legal actions of every env."""
        return self._mask

    def oracle_actions(self) -> np.ndarray:
        """``(B,)`` int64: the oracle's action in each env (-1 where it has none). For
        supervision and checks; a test-time policy must not read it."""
        return self._raw.oracle_actions()

    def env_state(self, index: int) -> FactorExeEnv:
        """A copy of env ``index`` in its current state, as a single env (e.g. to search from)."""
        env = type_for(self.task_name)(self.task_name, render_mode=self.render_mode, **self._params)
        env._raw = self._raw.state(index)
        env._seeded = True
        return env

    def _observation(self) -> ObsType:
        if self.copy:
            return {k: v.copy() for k, v in self._obs.items()}
        return dict(self._obs)

    def _final_info(self) -> dict[str, Any]:
        difficulty, steps, solved, ended = self._raw.final_infos()
        return {
            "difficulty": difficulty,
            "_difficulty": ended,
            "steps": steps,
            "_steps": ended,
            "solved": solved,
            "_solved": ended,
        }


def type_for(task: str) -> type[FactorExeEnv]:
    """The :class:`FactorExeEnv` subclass of ``task`` (the base class for unknown names)."""
    from factorexe import envs

    return {
        "cycle": envs.CycleEnv,
        "cvpr": envs.CVPREnv,
        "multiplication": envs.MultiplicationEnv,
        "binpack": envs.BinPackEnv,
    }.get(task, FactorExeEnv)


class CycleVectorEnv(FactorExeVectorEnv):
    """Cycle(L) in a batch (see :class:`factorexe.envs.CycleEnv` for the parameters)."""

    task = "cycle"


class CVPRVectorEnv(FactorExeVectorEnv):
    """C-VPR(L) in a batch (see :class:`factorexe.envs.CVPREnv` for the parameters)."""

    task = "cvpr"


class MultiplicationVectorEnv(FactorExeVectorEnv):
    """Multiplication in a batch (see :class:`factorexe.envs.MultiplicationEnv`)."""

    task = "multiplication"


class BinPackVectorEnv(FactorExeVectorEnv):
    """3D bin packing in a batch (see :class:`factorexe.envs.BinPackEnv`)."""

    task = "binpack"
