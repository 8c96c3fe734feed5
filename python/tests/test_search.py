"""MCTS and Gumbel MuZero over Python evaluators."""

from __future__ import annotations

import numpy as np
import pytest
from factorexe import MCTS, CycleEnv, CycleVectorEnv, FactorExeEnv, GumbelMuZero

L = 8
ANSWER, PAD = L, L + 1


def oracle_next(obs: dict[str, np.ndarray]) -> np.ndarray:
    """Cycle's correct next action, computed from the observation alone (a perfect policy)."""
    n = obs["input"].shape[0]
    out = np.zeros(n, dtype=np.int64)
    for i in range(n):
        f = obs["input"][i]
        hops = int(obs["difficulty"][i, 0]) + 1
        emitted = [int(t) for t in obs["emitted"][i] if t != PAD]
        node = 0
        for _ in range(min(len(emitted), hops) + 1):
            node = int(f[node])
        if len(emitted) < hops:
            out[i] = node  # the next chain token
        elif len(emitted) == hops:
            out[i] = ANSWER
        else:
            out[i] = node  # the answer f^(hops+1)(0)
    return out


def on_path(obs: dict[str, np.ndarray]) -> np.ndarray:
    """1 where the chain so far is the oracle's prefix, else 0 (a perfect value, up to the end)."""
    values = np.zeros(obs["input"].shape[0], dtype=np.float32)
    for i in range(len(values)):
        f = obs["input"][i]
        hops = int(obs["difficulty"][i, 0]) + 1
        node, want = 0, []
        for _ in range(hops + 1):
            node = int(f[node])
            want.append(node)
        want = want[:hops] + [ANSWER] + want[hops:]
        emitted = [int(t) for t in obs["emitted"][i] if t != PAD]
        values[i] = float(emitted == want[: len(emitted)])
    return values


def perfect_prior(obs):
    n, a = obs["action_mask"].shape
    logits = np.zeros((n, a), dtype=np.float32)
    logits[np.arange(n), oracle_next(obs)] = 10.0
    return logits, np.ones(n, dtype=np.float32)


def uniform_prior_perfect_value(obs):
    n, a = obs["action_mask"].shape
    return np.zeros((n, a)), on_path(obs)


def roots(n: int = 6, seed: int = 0) -> CycleVectorEnv:
    envs = CycleVectorEnv(num_envs=n, length=L, difficulty=[2, 3])
    envs.reset(seed=seed)
    return envs


@pytest.mark.parametrize("searcher", [GumbelMuZero(), MCTS()], ids=["gumbel", "mcts"])
def test_outputs(searcher) -> None:
    envs = roots()
    calls = []

    def counted(obs):
        calls.append(obs["action_mask"].shape[0])
        assert set(obs) == {"input", "difficulty", "emitted", "action_mask"}
        assert obs["action_mask"].dtype == np.int8 and obs["input"].dtype == np.int64
        return np.zeros(obs["action_mask"].shape, np.float32), np.zeros(len(obs["input"]), np.float32)

    out = searcher.search(envs, counted, budget=10, seed=0)
    b, a = envs.num_envs, envs.single_action_space.n
    assert out.actions.shape == (b,) and out.actions.dtype == np.int64
    assert out.policy.shape == (b, a) and out.policy.dtype == np.float32
    assert out.visit_counts.shape == (b, a) and out.value.shape == (b,) and out.done.shape == (b,)
    mask = envs.action_masks()
    np.testing.assert_allclose(out.policy.sum(1), 1.0, rtol=1e-5)
    assert (out.policy[mask == 0] == 0).all()
    assert mask[np.arange(b), out.actions].all()
    assert (out.evals <= 10).all() and (out.evals >= 1).all()
    assert out.calls == len(calls) and sum(calls) == out.evals.sum()
    assert out.visit_counts.sum(1).tolist() == [9] * b


@pytest.mark.parametrize(
    "searcher",
    [GumbelMuZero(gumbel_scale=0.0), MCTS.evaluation()],
    ids=["gumbel", "mcts"],
)
@pytest.mark.parametrize("evaluator", [perfect_prior, uniform_prior_perfect_value], ids=["prior", "value"])
def test_a_good_evaluator_leads_the_search_to_the_oracle(searcher, evaluator) -> None:
    envs = roots(n=8)
    out = searcher.search(envs, evaluator, budget=40, seed=0)
    assert out.actions.tolist() == envs.oracle_actions().tolist()


def test_search_plays_episodes_to_the_right_answer() -> None:
    """Search picks every action of a batch of episodes; envs that ended are left out of the
    search on the next step, which resets them (next-step autoreset)."""
    envs = roots(n=4)
    searcher = GumbelMuZero(gumbel_scale=0.0)
    done = np.zeros(4, dtype=bool)
    first = {}
    for _ in range(3 + 2):  # chains of at most 3 tokens, ANSWER, the answer
        live = np.flatnonzero(~done)
        actions = np.zeros(4, dtype=np.int64)  # ignored for the envs being reset
        actions[live] = searcher.search(envs, uniform_prior_perfect_value, budget=24, indices=live).actions
        _, _, terminated, truncated, info = envs.step(actions)
        done = terminated | truncated
        for i in np.flatnonzero(done):
            first.setdefault(int(i), bool(info["solved"][i]))
    assert first == {0: True, 1: True, 2: True, 3: True}


def test_roots_as_envs_lists_and_indices() -> None:
    envs = roots(n=4)
    g = GumbelMuZero(gumbel_scale=0.0)
    all_roots = g.search(envs, perfect_prior, budget=8)
    some = g.search(envs, perfect_prior, budget=8, indices=[3, 1])
    assert some.actions.tolist() == all_roots.actions[[3, 1]].tolist()
    singles = [envs.env_state(i) for i in range(4)]
    listed = g.search(singles, perfect_prior, budget=8)
    assert listed.actions.tolist() == all_roots.actions.tolist()
    one = CycleEnv(length=L)
    one.reset(seed=0)
    assert g.search(one, perfect_prior, budget=8).actions.shape == (1,)


def test_seeded_determinism() -> None:
    envs = roots(n=8)

    def run(seed: int):
        return MCTS().search(envs, uniform_prior_perfect_value, budget=16, seed=seed)

    a, b, c = run(1), run(1), run(2)
    assert (a.policy == b.policy).all() and (a.actions == b.actions).all()
    assert not ((a.policy == c.policy).all() and (a.actions == c.actions).all())


def test_errors() -> None:
    envs = roots(n=2)

    class Boom(Exception):
        pass

    def boom(obs):
        raise Boom("from the evaluator")

    with pytest.raises(Boom, match="from the evaluator"):
        GumbelMuZero().search(envs, boom, budget=4)
    with pytest.raises(ValueError, match=r"logits of shape \(2, 3\)"):
        GumbelMuZero().search(envs, lambda o: (np.zeros((2, 3)), np.zeros(2)), budget=4)
    with pytest.raises(ValueError, match="non-finite"):
        GumbelMuZero().search(
            envs, lambda o: (np.full(o["action_mask"].shape, np.nan), np.zeros(len(o["input"]))), budget=4
        )
    with pytest.raises(ValueError, match="`budget`"):
        GumbelMuZero().search(envs, perfect_prior, budget=0)
    with pytest.raises(ValueError, match="`dirichlet_fraction`.*in \\[0, 1\\]"):
        MCTS(dirichlet_fraction=2.0)
    with pytest.raises(ValueError, match="`max_num_considered_actions`"):
        GumbelMuZero(max_num_considered_actions=0)
    with pytest.raises(ValueError, match="`qtransform`"):
        MCTS(qtransform="median")
    with pytest.raises(ValueError, match="`index`"):
        GumbelMuZero().search(envs, perfect_prior, budget=4, indices=[5])
    fresh = FactorExeEnv("cycle", length=L)
    with pytest.raises(ValueError, match="not been reset"):
        GumbelMuZero().search([fresh], perfect_prior, budget=4)
    other = FactorExeEnv("cycle", length=5)
    other.reset(seed=0)
    with pytest.raises(ValueError, match="root 1 has another observation layout"):
        GumbelMuZero().search([envs.env_state(0), other], perfect_prior, budget=4)
    shorter = FactorExeEnv("cycle", length=L, max_chain_len=2)  # same actions, fewer tokens
    shorter.reset(seed=0)
    with pytest.raises(ValueError, match="root 1 has another observation layout"):
        GumbelMuZero().search([envs.env_state(0), shorter], perfect_prior, budget=4)
    with pytest.raises(ValueError, match="roots must be"):
        GumbelMuZero().search(["cycle"], perfect_prior, budget=4)
