"""Gymnasium ``Env``s over FactorExe's Rust token MDPs.

Each task is a :class:`FactorExeEnv` subclass (:class:`CycleEnv`, :class:`CVPREnv`,
:class:`MultiplicationEnv`, :class:`BinPackEnv`) whose keyword arguments are the task's
parameters, as ``factorexe envs list`` prints them (``length=8``, ``max_chain_len=4``,
``on_cap="truncate"``, ...); ``thoughts=K`` (with ``thought_vocab``, ``thought_penalty``) wraps
any of them in thought tokens. A bad parameter raises ``ValueError`` naming it and its range.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Iterable
from typing import Any, ClassVar, SupportsInt

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from factorexe import _native
from factorexe._spaces import levels, observation_space, reset_difficulty, split, with_defaults

ObsType = dict[str, np.ndarray]


class FactorExeEnv(gym.Env[ObsType, np.int64]):
    """One FactorExe env (a Rust ``envs::registry`` env) as a Gymnasium ``Env``.

    - **Observation**: a dict with one int64 array per token field of the Rust spec (e.g.
      ``input``, ``difficulty``, ``emitted``, and ``thoughts`` with thought tokens), one float32
      array per feature field (BinPack's ``ems``, ``items``...), and ``action_mask`` (int8,
      1 = legal). Every call returns new arrays.
    - **Action**: ``Discrete(num_actions)``; an action the mask forbids raises ``ValueError``.
    - **Seeding**: ``reset(seed=s)`` seeds the Rust RNG with ``s`` exactly as the Rust side does
      (``factorexe envs show TASK --seed s --hops d`` shows the problem that
      ``reset(seed=s, options={"difficulty": d})`` gives); later resets without a seed go on
      drawing from that stream.
    - **Difficulty** (hops, digits): drawn uniformly from ``difficulty`` (an int or a list of
      levels; default: the env's whole range) at each reset, or fixed for one reset by
      ``options={"difficulty": d}``.
    - **Info**: ``difficulty``, ``steps`` and, once an episode has ended with an answer,
      ``solved``.
    - **Rendering**: ``render_mode="ansi"`` renders the state as text.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 4}
    #: The Rust registry's name of the env this class builds (set by the task subclasses).
    task: ClassVar[str | None] = None

    def __init__(
        self,
        task: str | None = None,
        *,
        render_mode: str | None = None,
        difficulty: int | Iterable[int] | None = None,
        **params: Any,
    ) -> None:
        """Builds the env ``task`` (default: the class's) with the Rust parameters ``params``."""
        task = task or self.task
        if task is None:
            raise ValueError("no task given: pass one of 'cycle', 'cvpr', 'multiplication', 'binpack'")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"invalid parameter `render_mode` = {render_mode!r}: None or 'ansi'")
        self._raw = _native.RawEnv(task, difficulty=levels(difficulty), **with_defaults(task, params))
        #: The Rust spec: name, layout, number of actions, limits, difficulty range.
        self.rust_spec: dict[str, Any] = self._raw.spec()
        self.observation_space = observation_space(self.rust_spec)
        self.action_space = spaces.Discrete(self.rust_spec["num_actions"])
        self.render_mode = render_mode
        self._seeded = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsType, dict[str, Any]]:
        """Starts an episode (see the class doc for ``seed`` and ``options``)."""
        difficulty = reset_difficulty(options)
        super().reset(seed=seed)
        if seed is None and not self._seeded:
            # Gymnasium's convention: an env never seeded starts from a random seed.
            seed = int(self.np_random.integers(2**63 - 1))
        if seed is not None and seed < 0:
            raise ValueError(f"invalid parameter `seed` = {seed}: a non-negative integer")
        self._raw.reset(seed=seed, difficulty=difficulty)
        self._seeded = True
        return self._observation(), self._info()

    def step(self, action: SupportsInt) -> tuple[ObsType, float, bool, bool, dict[str, Any]]:
        """Applies ``action``; returns ``(obs, reward, terminated, truncated, info)``."""
        reward, terminated, truncated = self._raw.step(operator.index(action))
        return self._observation(), float(reward), terminated, truncated, self._info()

    def render(self) -> str | None:  # type: ignore[override]
        """The state as text when ``render_mode == "ansi"``, else ``None``."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render mode; build the env with render_mode='ansi'")
            return None
        return self._raw.render()

    def action_masks(self) -> np.ndarray:
        """The legal actions as a bool array (the convention of maskable agents)."""
        return self._raw.observe()[2]

    def oracle_action(self) -> int | None:
        """The action of the task's known solution, or ``None`` off its path. For supervision
        and checks; a test-time policy must not read it."""
        return self._raw.oracle_action()

    def clone(self) -> FactorExeEnv:
        """A copy in the same state (e.g. a search root), with its own RNG and Rust env."""
        new = copy.copy(self)
        new._raw = self._raw.copy()
        new._np_random = copy.deepcopy(self._np_random)
        return new

    def _observation(self) -> ObsType:
        return split(self.rust_spec, *self._raw.observe())

    def _info(self) -> dict[str, Any]:
        difficulty, steps, solved = self._raw.info()
        info: dict[str, Any] = {"difficulty": difficulty, "steps": steps}
        if solved is not None:
            info["solved"] = solved
        return info


class CycleEnv(FactorExeEnv):
    """Cycle(L): follow pointers around a random single L-cycle; difficulty = hops
    (``length=8``, plus the chain parameters ``max_chain_len``, ``fixed_chain_len``,
    ``on_cap``, ``token_cost``, ``shaping``)."""

    task = "cycle"


class CVPREnv(FactorExeEnv):
    """C-VPR(L): conditional pointer value retrieval; difficulty = hops (``length=8``, plus the
    chain parameters)."""

    task = "cvpr"


class MultiplicationEnv(FactorExeEnv):
    """N x N multiplication with a long-multiplication scratchpad; difficulty = digits
    (``max_digits=8``, ``multiplier_digits``, plus the chain parameters)."""

    task = "multiplication"


class BinPackEnv(FactorExeEnv):
    """3D bin packing (Jumanji's BinPack, EMS formulation); one difficulty level
    (``items=20``, ``ems=40``, ``container="5870x2330x2200"``, ``split_num_same_items``,
    ``reward="dense"``, ``on_illegal="terminate"``). A masked-out action ends the episode (as
    in Jumanji) unless ``on_illegal="error"`` (the Rust default) makes it raise ``ValueError``."""

    task = "binpack"
