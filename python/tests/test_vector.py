"""The Rust-batched VectorEnv: Gymnasium's vector conventions, checked against Gymnasium's own
SyncVectorEnv over the single envs, seeding against the Rust VecEnv, zero-copy views, errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import SMALL, TASKS
from factorexe import CycleVectorEnv, FactorExeEnv, FactorExeVectorEnv
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.utils.passive_env_checker import data_shares_objects
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.vector.utils import batch_space


def random_legal(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """One uniformly random legal action per row of `mask` (0 where none is legal)."""
    scores = rng.random(mask.shape) * (mask != 0)
    return scores.argmax(1)


def snapshot(step_result: tuple) -> tuple:
    """A step's (obs, rewards, terminated, truncated) as owned arrays."""
    obs, r, term, trunc = step_result[:4]
    return {k: np.array(v) for k, v in obs.items()}, np.array(r, dtype=np.float64), np.array(term), np.array(trunc)


def test_make_vec_builds_the_rust_vector_env() -> None:
    envs = gym.make_vec("FactorExe/Cycle-v0", num_envs=3, length=8)
    assert isinstance(envs, CycleVectorEnv)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert envs.num_envs == 3
    single = FactorExeEnv("cycle", length=8)
    assert envs.single_observation_space == single.observation_space
    assert envs.single_action_space == single.action_space
    assert envs.observation_space == batch_space(single.observation_space, 3)
    assert envs.action_space == batch_space(single.action_space, 3)
    envs.close()


@pytest.mark.parametrize(
    "task,extra",
    [("cycle", {}), ("cvpr", {}), ("multiplication", {}), ("binpack", {}), ("cycle", {"thoughts": 2})],
)
def test_matches_gymnasium_sync_vector_env(task: str, extra: dict) -> None:
    """Seeded env by env, the Rust batch plays exactly as Gymnasium's SyncVectorEnv over the
    single envs (next-step autoreset included), for random legal actions."""
    params = {**SMALL[task], **extra}
    num_envs, seeds = 4, [11, 12, 13, 14]
    ours = FactorExeVectorEnv(task, num_envs, **params)
    reference = SyncVectorEnv(
        [lambda: FactorExeEnv(task, **params) for _ in range(num_envs)], autoreset_mode=AutoresetMode.NEXT_STEP
    )
    assert ours.observation_space == reference.observation_space
    a_obs, _ = ours.reset(seed=seeds)
    b_obs, _ = reference.reset(seed=seeds)
    assert data_equivalence(snapshot((a_obs, 0, 0, 0))[0], snapshot((b_obs, 0, 0, 0))[0], exact=True)
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(60):
        actions = random_legal(rng, a_obs["action_mask"])
        a = snapshot(ours.step(actions))
        b = snapshot(reference.step(actions))
        assert data_equivalence(a, b, exact=True)
        assert a[0] in ours.observation_space
        a_obs = a[0]
        ended += int((a[2] | a[3]).sum())
    assert ended > 0, "no episode ended: the autoreset went untested"


# Printed by the Rust side: a `VecEnv` of 3 `cycle` envs (`length = 8`, hops uniform over
# 1..=7) after `reset(7)`, its `tokens()` rows.
RUST_VEC_CYCLE8_SEED7 = [
    [5, 3, 0, 4, 2, 7, 1, 6, 5, 9, 9, 9, 9, 9, 9, 9, 9, 9],
    [6, 7, 5, 2, 0, 4, 1, 3, 5, 9, 9, 9, 9, 9, 9, 9, 9, 9],
    [5, 7, 6, 2, 1, 3, 4, 0, 3, 9, 9, 9, 9, 9, 9, 9, 9, 9],
]


def test_int_seed_matches_the_rust_vec_env() -> None:
    envs = CycleVectorEnv(num_envs=3, length=8)
    obs, info = envs.reset(seed=7)
    tokens = np.concatenate([obs["input"], obs["difficulty"], obs["emitted"]], axis=1)
    assert tokens.tolist() == RUST_VEC_CYCLE8_SEED7
    assert info["difficulty"].tolist() == [r[8] + 1 for r in RUST_VEC_CYCLE8_SEED7]


def test_same_seed_same_run_other_seed_other() -> None:
    def run(seed: int) -> list:
        envs = CycleVectorEnv(num_envs=8, length=8)
        out = [snapshot((envs.reset(seed=seed)[0], 0, 0, 0))]
        rng = np.random.default_rng(1)
        for _ in range(30):
            out.append(snapshot(envs.step(random_legal(rng, out[-1][0]["action_mask"]))))
        return out

    assert data_equivalence(run(3), run(3), exact=True)
    assert not data_equivalence(run(3), run(4), exact=True)


def test_next_step_autoreset() -> None:
    envs = CycleVectorEnv(num_envs=2, length=8, difficulty=1)
    envs.reset(seed=0)
    # Hop 1: chain token, ANSWER, answer; env 0 plays the oracle, env 1 answers at once.
    for t in range(3):
        oracle = envs.oracle_actions()
        # Env 1: ANSWER, then answer token 0; its third action is ignored (it is reset).
        actions = np.array([oracle[0], 8 if t == 0 else 0])
        obs, rewards, terminated, truncated, info = envs.step(actions)
        if t == 1:
            assert terminated.tolist() == [False, True]
            assert info["_solved"].tolist() == [False, True]
            assert info["steps"][1] == 2 and info["difficulty"][1] == 1
    assert terminated.tolist() == [True, False] and rewards.tolist() == [1.0, 0.0]
    assert info["solved"][0] and info["_solved"].tolist() == [True, False]
    assert envs.autoreset.tolist() == [False, True]
    final = obs["emitted"][0].copy()
    # The next step resets env 0 whatever its action (even a negative one) and returns the
    # first observation of a new episode with reward 0.
    obs, rewards, terminated, truncated, info = envs.step(np.array([-1, 0]))
    assert envs.autoreset.tolist() == [True, False]
    assert rewards[0] == 0.0 and not terminated[0] and not truncated[0]
    assert (obs["emitted"][0] == 9).all() and not (final == 9).all()
    assert info == {}


def test_views_share_the_rust_buffers_and_copy_true_does_not() -> None:
    envs = CycleVectorEnv(num_envs=4, length=8)
    obs0, _ = envs.reset(seed=0)
    step = envs.step(envs.oracle_actions())
    assert data_shares_objects(obs0, step[0])  # the same buffers, rewritten in place
    assert not step[0]["input"].flags.writeable and not step[1].flags.writeable
    with pytest.raises(ValueError):
        step[0]["emitted"][0, 0] = 1
    copying = CycleVectorEnv(num_envs=4, length=8, copy=True)
    c0, _ = copying.reset(seed=0)
    c1 = copying.step(copying.oracle_actions())
    c2 = copying.step(copying.oracle_actions())
    assert not data_shares_objects(c0, c1[0]) and not data_shares_objects(c1[:4], c2[:4])
    assert data_equivalence(step[0], c1[0], exact=True)


def test_difficulty_option_lasts_until_the_next_reset() -> None:
    envs = CycleVectorEnv(num_envs=16, length=8, difficulty=[1, 2])
    _, info = envs.reset(seed=0, options={"difficulty": 5})
    assert (info["difficulty"] == 5).all()
    seen = set()
    for _ in range(40):
        _, _, _, _, info = envs.step(np.maximum(envs.oracle_actions(), 0))
        if info:
            seen |= set(info["difficulty"][info["_difficulty"]].tolist())
    assert seen == {5}
    _, info = envs.reset()
    assert set(info["difficulty"].tolist()) <= {1, 2}


def test_record_episode_statistics() -> None:
    envs = gym.wrappers.vector.RecordEpisodeStatistics(CycleVectorEnv(num_envs=4, length=8, difficulty=2))
    envs.reset(seed=0)
    for _ in range(4):
        _, _, _, _, info = envs.step(np.maximum(envs.unwrapped.oracle_actions(), 0))
    assert info["_episode"].all()
    assert (info["episode"]["r"] == 1.0).all() and (info["episode"]["l"] == 4).all()
    listed = gym.wrappers.vector.DictInfoToList(CycleVectorEnv(num_envs=2, length=8))
    _, infos = listed.reset(seed=0)
    assert isinstance(infos, list) and len(infos) == 2 and "difficulty" in infos[0]


def test_parallel_steps_give_the_same_results() -> None:
    def run(parallel: bool) -> list:
        envs = FactorExeVectorEnv("multiplication", 32, parallel=parallel, **SMALL["multiplication"])
        out = [snapshot((envs.reset(seed=9)[0], 0, 0, 0))]
        rng = np.random.default_rng(2)
        for _ in range(20):
            out.append(snapshot(envs.step(random_legal(rng, out[-1][0]["action_mask"]))))
        return out

    assert data_equivalence(run(False), run(True), exact=True)


def test_errors() -> None:
    with pytest.raises(ValueError, match="`num_envs`"):
        CycleVectorEnv(num_envs=0)
    with pytest.raises(ValueError, match="`length`.*2..="):
        gym.make_vec("FactorExe/Cycle-v0", num_envs=2, length=1)
    envs = CycleVectorEnv(num_envs=3, length=8)
    with pytest.raises(RuntimeError, match="reset"):
        envs.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(RuntimeError, match="reset"):
        envs.env_state(0)
    obs, _ = envs.reset(seed=0)
    before = {k: v.copy() for k, v in obs.items()}
    with pytest.raises(ValueError, match="exactly one per env"):
        envs.step(np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="env 1 of the batch: illegal action 42"):
        envs.step(np.array([0, 42, 0]))
    with pytest.raises(ValueError, match="env 2 of the batch: illegal action -4"):
        envs.step(np.array([0, 0, -4]))
    with pytest.raises(ValueError, match="integers"):
        envs.step(np.array([0.5, 0, 0]))
    assert data_equivalence(before, dict(envs._obs), exact=True)  # nothing was stepped
    with pytest.raises(ValueError, match="`difficulty`.*1..=7"):
        envs.reset(options={"difficulty": 0})
    with pytest.raises(ValueError, match="one seed per env"):
        envs.reset(seed=[1, 2])
    envs.step([1, 2, 3])  # lists of ints are fine


def test_render_and_env_state() -> None:
    envs = CycleVectorEnv(num_envs=2, length=8, render_mode="ansi")
    envs.reset(seed=[0, 1], options={"difficulty": 4})
    frames = envs.render()
    assert isinstance(frames, tuple) and len(frames) == 2
    single = FactorExeEnv("cycle", length=8, render_mode="ansi")
    single.reset(seed=1, options={"difficulty": 4})
    assert frames[1] == single.render()
    state = envs.env_state(1)
    assert state.render() == single.render() and state.oracle_action() == single.oracle_action()


@pytest.mark.parametrize("env_id", list(TASKS))
def test_every_registered_id_vectorizes(env_id: str) -> None:
    envs = gym.make_vec(env_id, num_envs=2, **SMALL[TASKS[env_id]])
    obs, _ = envs.reset(seed=0)
    assert obs in envs.observation_space
    obs, *_ = envs.step(random_legal(np.random.default_rng(0), obs["action_mask"]))
    assert obs in envs.observation_space
