"""The single Gymnasium envs: Gymnasium's checker, spaces, seeding against the Rust side, errors."""

from __future__ import annotations

import subprocess
import warnings

import factorexe
import gymnasium as gym
import numpy as np
import pytest
from conftest import SMALL, TASKS
from factorexe import CycleEnv, FactorExeEnv
from gymnasium.utils.env_checker import check_env

# The spec gives feature fields (BinPack's) no bounds, so their Box is unbounded; Gymnasium's
# checker warns about that and nothing else is expected.
UNBOUNDED = r".*A Box observation space (minimum|maximum) value is .*infinity"


def play(env: gym.Env, actions_from, max_steps: int = 10_000) -> list:
    """Steps `env` with `actions_from(env)` until the episode ends; returns the transitions."""
    out = []
    for _ in range(max_steps):
        a = actions_from(env)
        obs, r, term, trunc, info = env.step(a)
        out.append((a, {k: v.copy() for k, v in obs.items()}, r, term, trunc, info))
        if term or trunc:
            break
    return out


def first_legal(env: gym.Env) -> int:
    return int(np.flatnonzero(env.unwrapped.action_masks())[0])


@pytest.mark.parametrize("env_id", list(TASKS))
@pytest.mark.parametrize("extra", [{}, {"thoughts": 2}], ids=["plain", "thoughts"])
def test_check_env_passes(env_id: str, extra: dict) -> None:
    """Gymnasium's own checker, on every env, with and without thought tokens."""
    env = gym.make(env_id, render_mode="ansi", **SMALL[TASKS[env_id]], **extra)
    with warnings.catch_warnings():
        warnings.filterwarnings("error")
        warnings.filterwarnings("ignore", message=UNBOUNDED)
        check_env(env.unwrapped)
    env.close()


@pytest.mark.parametrize("env_id", list(TASKS))
def test_check_env_passes_with_defaults(env_id: str) -> None:
    """The registered envs with no parameter at all."""
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=UNBOUNDED)
        check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("task", list(SMALL))
def test_spaces_describe_the_observation(task: str) -> None:
    env = FactorExeEnv(task, **SMALL[task], thoughts=1)
    spec = env.rust_spec
    obs, info = env.reset(seed=3)
    names = [f[0] for f in spec["token_fields"]] + [f[0] for f in spec["feature_fields"]]
    assert set(obs) == set(names) | {"action_mask"}
    assert env.action_space == gym.spaces.Discrete(spec["num_actions"])
    for name, _, length, vocab in spec["token_fields"]:
        assert env.observation_space[name] == gym.spaces.MultiDiscrete([vocab] * length)
        assert obs[name].dtype == np.int64 and obs[name].shape == (length,)
    for name, _, length in spec["feature_fields"]:
        assert obs[name].dtype == np.float32 and obs[name].shape == (length,)
    assert env.observation_space["action_mask"] == gym.spaces.MultiBinary(spec["num_actions"])
    assert obs["action_mask"].dtype == np.int8
    np.testing.assert_array_equal(obs["action_mask"], env.action_masks())
    # An episode of legal actions stays in the space.
    for _, o, r, *_ in play(env, first_legal):
        assert o in env.observation_space
        assert spec["reward_range"][0] <= r <= spec["reward_range"][1]
    assert info["difficulty"] in range(spec["difficulty"][0], spec["difficulty"][1] + 1)


def test_render_is_text() -> None:
    env = gym.make("FactorExe/Cycle-v0", length=8, render_mode="ansi")
    env.reset(seed=0, options={"difficulty": 4})
    text = env.render()
    assert isinstance(text, str) and "cycle(L=8)" in text and "difficulty 4" in text


# Printed by the Rust side: `factorexe envs show cycle --length 8 --hops 4 --seed 0` (the input,
# oracle and action lines), i.e. `env.reset(&mut EnvRng::seed_from_u64(0), 4)` on the registry's
# `cycle` env with `length = 8`. Regenerate with that command if the Cycle generator changes.
RUST_CYCLE8_SEED0_HOPS4 = {
    "tokens": [5, 3, 0, 6, 7, 1, 4, 2, 3, 9, 9, 9, 9, 9, 9, 9, 9, 9],
    "oracle": [5, 1, 3, 6, 8, 4],
}


def test_seeding_matches_the_rust_side() -> None:
    env = CycleEnv(length=8)
    obs, info = env.reset(seed=0, options={"difficulty": 4})
    tokens = np.concatenate([obs["input"], obs["difficulty"], obs["emitted"]])
    assert tokens.tolist() == RUST_CYCLE8_SEED0_HOPS4["tokens"]
    assert info == {"difficulty": 4, "steps": 0}
    oracle = []
    while (a := env.oracle_action()) is not None:
        oracle.append(a)
        _, reward, terminated, _, info = env.step(a)
    assert oracle == RUST_CYCLE8_SEED0_HOPS4["oracle"]
    assert (reward, terminated, info["solved"]) == (1.0, True, True)


@pytest.mark.parametrize(
    "task,flags",
    [("cycle", ["--length", "8", "--hops", "4"]), ("multiplication", ["--max-digits", "3", "--digits", "2"])],
)
@pytest.mark.parametrize("seed", [0, 11])
def test_seeding_matches_the_cli(cli, task: str, flags: list, seed: int) -> None:
    """`factorexe envs show` prints the problem, the oracle's actions and the final state that
    the Python env gives for the same seed and difficulty."""
    shown = subprocess.run(
        [str(cli), "envs", "show", task, *flags, "--seed", str(seed)], capture_output=True, text=True, check=True
    ).stdout
    params = dict(zip(flags[0:-2:2], flags[1:-2:2], strict=True))
    params = {k.lstrip("-").replace("-", "_"): int(v) for k, v in params.items()}
    env = FactorExeEnv(task, render_mode="ansi", **params)
    env.reset(seed=seed, options={"difficulty": int(flags[-1])})
    assert env.render() in shown
    oracle = []
    while (a := env.oracle_action()) is not None:
        oracle.append(str(a))
        env.step(a)
    assert f"oracle actions: {' '.join(oracle)}" in shown
    assert env.render() in shown


@pytest.mark.parametrize("task", list(SMALL))
def test_same_seed_same_trajectory_other_seed_other(task: str) -> None:
    def trajectory(seed: int) -> list:
        env = FactorExeEnv(task, **SMALL[task])
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        steps = [obs]
        for _ in range(3):  # episodes, continuing the seeded stream
            for _, o, r, term, trunc, info in play(env, lambda e: int(rng.choice(np.flatnonzero(e.action_masks())))):
                steps.append((o, r, term, trunc, info))
            steps.append(env.reset()[0])
        return steps

    def same(a, b) -> bool:
        return gym.utils.env_checker.data_equivalence(a, b, exact=True)

    assert same(trajectory(5), trajectory(5))
    assert not same(trajectory(5), trajectory(6))


def test_difficulty_option_and_levels() -> None:
    env = CycleEnv(length=8, difficulty=[2, 3])
    seen = {env.reset(seed=s)[1]["difficulty"] for s in range(40)}
    assert seen == {2, 3}
    assert env.reset(options={"difficulty": 7})[1]["difficulty"] == 7
    assert env.reset()[1]["difficulty"] in (2, 3)
    # One level draws nothing from the RNG: the same problem as the Rust side's reset at d.
    a = CycleEnv(length=8, difficulty=4).reset(seed=0)[0]
    b = CycleEnv(length=8).reset(seed=0, options={"difficulty": 4})[0]
    assert gym.utils.env_checker.data_equivalence(a, b, exact=True)


@pytest.mark.parametrize(
    "make,words",
    [
        (lambda: CycleEnv(length=1), ["`length`", "2..="]),
        (lambda: CycleEnv(length=-3), ["`length`", "non-negative"]),
        (lambda: CycleEnv(length="eight"), ["`length`", "non-negative integer"]),
        (lambda: CycleEnv(max_chain_len=1 << 30), ["`max_chain_len`", "0..="]),
        (lambda: CycleEnv(on_cap="never"), ["`on_cap`", "force_answer or truncate"]),
        (lambda: CycleEnv(token_cost=-1.0), ["token_cost", ">= 0"]),
        (lambda: CycleEnv(lenght=8), ["lenght", "length"]),
        (lambda: CycleEnv(length=[8]), ["`length`", "a bool, an integer"]),
        (lambda: CycleEnv(length=8, difficulty=8), ["`difficulty`", "1..=7"]),
        (lambda: FactorExeEnv("nosuch"), ["`env`", "cycle"]),
        (lambda: FactorExeEnv("multiplication", max_digits=21), ["`max_digits`", "1..=20"]),
        (lambda: FactorExeEnv("binpack", container="10x10"), ["`container`", "LxWxH"]),
        (lambda: FactorExeEnv("binpack", reward="dense!"), ["`reward`", "dense or sparse"]),
        (lambda: CycleEnv(thought_vocab=4), ["`thought_vocab`", "thoughts"]),
        (lambda: CycleEnv(thoughts=2, thought_penalty=-1.0), ["`thought_penalty`", ">= 0"]),
        (lambda: gym.make("FactorExe/Cycle-v0", length=0), ["`length`", "2..="]),
    ],
)
def test_bad_parameters_raise_value_error_naming_them(make, words: list) -> None:
    with pytest.raises(ValueError) as err:
        make()
    for w in words:
        assert w in str(err.value)


def test_bad_calls_raise() -> None:
    env = CycleEnv(length=8)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0, options={"difficulty": 1})
    with pytest.raises(ValueError, match="difficulty"):
        env.reset(options={"difficulty": 9})
    with pytest.raises(ValueError, match="only option"):
        env.reset(options={"hops": 2})
    with pytest.raises(ValueError, match="illegal action 99"):
        env.step(99)
    with pytest.raises(ValueError, match="non-negative"):
        env.step(-1)
    with pytest.raises(TypeError):
        env.step(1.5)
    env.step(8)  # ANSWER
    with pytest.raises(ValueError, match="illegal action 8"):
        env.step(8)  # after ANSWER only answer tokens are legal
    env.step(0)
    with pytest.raises(RuntimeError, match="ended"):
        env.step(0)


def test_binpack_masked_out_actions() -> None:
    """Gymnasium's default for BinPack ends the episode on a masked-out action (Jumanji);
    `on_illegal="error"` restores the Rust default, an error."""
    env = factorexe.BinPackEnv(**SMALL["binpack"])
    obs, _ = env.reset(seed=0)
    illegal = int(np.flatnonzero(obs["action_mask"] == 0)[0])
    _, _, terminated, _, _ = env.step(illegal)
    assert terminated
    strict = factorexe.BinPackEnv(**SMALL["binpack"], on_illegal="error")
    strict.reset(seed=0)
    with pytest.raises(ValueError, match="illegal action"):
        strict.step(illegal)


def test_clone_is_independent() -> None:
    env = CycleEnv(length=8)
    env.reset(seed=1, options={"difficulty": 3})
    env.step(env.oracle_action())
    twin = env.clone()
    a = env.oracle_action()
    o1 = env.step(a)[0]
    o2 = twin.step(a)[0]
    assert gym.utils.env_checker.data_equivalence(o1, o2, exact=True)
    env.step(env.oracle_action())
    assert twin.unwrapped._raw.info()[1] == 2 and env.unwrapped._raw.info()[1] == 3


def test_env_spec_function() -> None:
    spec = factorexe.env_spec("cycle", length=8, thoughts=2)
    assert spec["num_actions"] == 9 + 16
    assert [f[0] for f in spec["token_fields"]] == ["input", "difficulty", "emitted", "thoughts"]
    assert spec["difficulty"] == (1, 7)
