"""MCTS and Gumbel MuZero (the Rust ``search`` crate) over a Python evaluator.

The evaluator is a batched function from observations to prior logits and values::

    def evaluator(obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        # obs: the env's observation dict with a leading batch axis N (every state one search
        # step needs, across all roots): token fields (N, len) int64, feature fields
        # (N, len) float32, "action_mask" (N, A) int8.
        return logits, values  # (N, A) and (N,), any real dtype; illegal logits are ignored

Each search step makes one call for all roots, and each state in a call costs its root one
unit of the budget (``budget`` evaluator calls per root, the root's own included, so
``budget - 1`` simulations). Values are in the units of the env's reward; the search never
reads the env's rewards (the answer's correctness), only its dynamics and legal actions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from factorexe import _native
from factorexe._spaces import split
from factorexe.envs import FactorExeEnv
from factorexe.vector import FactorExeVectorEnv

Evaluator = Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray]]
Roots = FactorExeVectorEnv | FactorExeEnv | Sequence[FactorExeEnv]


@dataclass
class SearchResult:
    """What a search returns, one row per root."""

    #: ``(B,)`` int64: the action to take at each root.
    actions: np.ndarray
    #: ``(B, A)`` float32: the improved policy (action weights; 0 on illegal actions): visit
    #: distribution (MCTS), ``softmax(logits + sigma(completed Q))`` (Gumbel MuZero).
    policy: np.ndarray
    #: ``(B,)`` float32: the root's backed-up value.
    value: np.ndarray
    #: ``(B,)`` int64: states evaluated for each root (never above the budget).
    evals: np.ndarray
    #: ``(B, A)`` int64: visit counts of the root's children.
    visit_counts: np.ndarray
    #: ``(B,)`` bool: taking the action ends the episode.
    done: np.ndarray
    #: Number of evaluator calls the search made.
    calls: int


class _Searcher:
    """A Rust tree searcher; keeps its tree storage between searches."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    @property
    def name(self) -> str:
        """A short name with the main parameters, e.g. ``"gumbel(m=16)"``."""
        return self._raw.name

    def search(
        self,
        roots: Roots,
        evaluator: Evaluator,
        budget: int,
        seed: int = 0,
        indices: Sequence[int] | None = None,
    ) -> SearchResult:
        """Searches from ``roots`` with at most ``budget`` evaluator calls per root.

        ``roots``: a vector env (all its envs, or those at ``indices``), one env or a list of
        envs, all live (not ended) and of the same env. Randomness (noise, Gumbel draws, ties)
        comes from ``seed``: the same seed and evaluator give the same result. Errors the
        evaluator raises propagate unchanged; bad settings or shapes raise ``ValueError``.
        """
        if isinstance(roots, FactorExeVectorEnv):
            spec = roots.rust_spec
            raw_roots: Any = roots._raw
            idx = None if indices is None else [int(i) for i in indices]
        else:
            envs = [roots] if isinstance(roots, FactorExeEnv) else list(roots)
            for e in envs:
                if not isinstance(getattr(e, "unwrapped", None), FactorExeEnv):
                    raise ValueError(f"roots must be factorexe envs or a factorexe vector env; got {type(e).__name__}")
            if not envs:
                raise ValueError("no root states given")
            spec = envs[0].unwrapped.rust_spec
            raw_roots = [e.unwrapped._raw for e in envs]
            if indices is not None:
                raise ValueError("`indices` applies to a vector env's roots; pass the envs themselves instead")
            idx = None
        num_actions = spec["num_actions"]

        def call(tokens: np.ndarray, features: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            n = mask.shape[0]
            logits, values = evaluator(split(spec, tokens, features, mask))
            logits = np.ascontiguousarray(logits, dtype=np.float32)
            values = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
            if logits.shape != (n, num_actions) or values.shape != (n,):
                raise ValueError(
                    f"the evaluator returned logits of shape {logits.shape} and values of shape "
                    f"{values.shape}; expected ({n}, {num_actions}) and ({n},)"
                )
            return logits, values

        out = self._raw.search(raw_roots, call, int(budget), seed=int(seed), indices=idx)
        return SearchResult(**out)


class MCTS(_Searcher):
    """AlphaZero/MuZero MCTS with PUCT (mctx's ``muzero_policy``), batched over roots.

    The defaults are mctx's training-time settings (Dirichlet noise at the root, the action
    sampled from the visit counts); :meth:`evaluation` gives the test-time ones. ``qtransform``:
    ``"parent_and_siblings"`` (default), ``"min_max"`` (by ``value_min..value_max``) or
    ``"mix_value"``.
    """

    def __init__(
        self,
        *,
        pb_c_init: float = 1.25,
        pb_c_base: float = 19652.0,
        dirichlet_alpha: float = 0.3,
        dirichlet_fraction: float = 0.25,
        temperature: float = 1.0,
        discount: float = 1.0,
        qtransform: str = "parent_and_siblings",
        value_min: float = 0.0,
        value_max: float = 1.0,
    ) -> None:
        super().__init__(
            _native.RawSearcher.mcts(
                pb_c_init=pb_c_init,
                pb_c_base=pb_c_base,
                dirichlet_alpha=dirichlet_alpha,
                dirichlet_fraction=dirichlet_fraction,
                temperature=temperature,
                discount=discount,
                qtransform=qtransform,
                value_min=value_min,
                value_max=value_max,
            )
        )

    @classmethod
    def evaluation(cls, **kwargs: Any) -> MCTS:
        """Test-time MCTS: no root noise, the most visited action."""
        return cls(**{"dirichlet_fraction": 0.0, "temperature": 0.0, **kwargs})


class GumbelMuZero(_Searcher):
    """Gumbel MuZero (mctx's ``gumbel_muzero_policy``), batched over roots: Gumbel-top-k root
    actions with Sequential Halving; the improved policy is the completed-Q training target.
    ``gumbel_scale=0`` makes it deterministic. The defaults are mctx's."""

    def __init__(
        self,
        *,
        max_num_considered_actions: int = 16,
        gumbel_scale: float = 1.0,
        discount: float = 1.0,
        value_scale: float = 0.1,
        maxvisit_init: float = 50.0,
        rescale_values: bool = True,
        use_mixed_value: bool = True,
    ) -> None:
        super().__init__(
            _native.RawSearcher.gumbel(
                max_num_considered_actions=max_num_considered_actions,
                gumbel_scale=gumbel_scale,
                discount=discount,
                value_scale=value_scale,
                maxvisit_init=maxvisit_init,
                rescale_values=rescale_values,
                use_mixed_value=use_mixed_value,
            )
        )
