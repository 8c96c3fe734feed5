"""Gymnasium spaces from a Rust env spec, and the split of flat buffers into observation fields."""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

import numpy as np
from gymnasium import spaces

#: The observation key of the action mask (1 = legal), Gymnasium's convention for masks.
ACTION_MASK = "action_mask"


def observation_space(spec: dict[str, Any]) -> spaces.Dict:
    """The observation space of one env: a ``Dict`` with one ``MultiDiscrete`` (int64) per token
    field of the spec, one float32 ``Box`` per feature field, and ``action_mask``, a
    ``MultiBinary`` (int8, 1 = legal) over the actions."""
    fields: dict[str, spaces.Space] = {}
    for name, _offset, length, vocab in spec["token_fields"]:
        _add(fields, name, spaces.MultiDiscrete(np.full(length, vocab, dtype=np.int64), dtype=np.int64))
    for name, _offset, length in spec["feature_fields"]:
        # The spec gives no bounds for features.
        _add(fields, name, spaces.Box(-np.inf, np.inf, shape=(length,), dtype=np.float32))
    _add(fields, ACTION_MASK, spaces.MultiBinary(spec["num_actions"]))
    return spaces.Dict(fields)


def _add(fields: dict[str, spaces.Space], name: str, space: spaces.Space) -> None:
    if name in fields:
        raise ValueError(f"the env's observation has two fields called {name!r}")
    fields[name] = space


def split(spec: dict[str, Any], tokens: np.ndarray, features: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """The observation dict over flat buffers: views (no copies) of ``tokens`` and ``features``
    along their last axis, one per field, and the boolean ``mask`` viewed as int8."""
    obs: dict[str, np.ndarray] = {}
    for name, offset, length, _vocab in spec["token_fields"]:
        obs[name] = tokens[..., offset : offset + length]
    for name, offset, length in spec["feature_fields"]:
        obs[name] = features[..., offset : offset + length]
    obs[ACTION_MASK] = mask.view(np.int8)
    return obs


def levels(difficulty: int | Iterable[int] | None) -> list[int] | None:
    """``difficulty`` as a list of levels: ``None`` stays ``None`` (the env's whole range), an
    integer is one level, an iterable lists levels to draw from uniformly."""
    if difficulty is None:
        return None
    try:
        return [operator.index(difficulty)]
    except TypeError:
        pass
    try:
        return [operator.index(d) for d in difficulty]
    except TypeError:
        raise ValueError(
            f"invalid parameter `difficulty` = {difficulty!r}: an integer level or a list of levels"
        ) from None


def reset_difficulty(options: dict[str, Any] | None) -> list[int] | None:
    """The levels that ``reset(options=...)`` asks for; unknown option keys are errors."""
    if not options:
        return None
    unknown = set(options) - {"difficulty"}
    if unknown:
        raise ValueError(f"unknown reset options {sorted(unknown)}; the only option is 'difficulty'")
    return levels(options.get("difficulty"))


#: Parameters whose Gymnasium default differs from the Rust registry's. BinPack: Gymnasium's
#: tools (``check_env``, ``action_space.sample()``, random agents) draw actions without the
#: mask, so a masked-out action ends the episode as in Jumanji (``on_illegal="terminate"``)
#: instead of raising (the Rust default, ``"error"``).
GYM_DEFAULTS: dict[str, dict[str, Any]] = {"binpack": {"on_illegal": "terminate"}}


def with_defaults(task: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` over the Gymnasium defaults of ``task`` (:data:`GYM_DEFAULTS`)."""
    return {**GYM_DEFAULTS.get(task, {}), **params}
