"""REINFORCE on Cycle at hop 1 through FactorExe's Rust vector env, in CleanRL's one-file style.

The agent writes a one-token chain, then ANSWER (forced), then the answer; the reward is 1
for a right answer. With the chain the task splits into two one-hop lookups: the chain
token is the successor of node 0 and the answer the successor of the chain token. A tiny
MLP over one-hot tokens learns both from the answer's reward alone.

    PYTHONPATH=~/.cache/factorexe/python-torch-2.13.0 \\
        python examples/python/reinforce_cycle.py --iterations 300

It prints the greedy accuracy on fresh problems (``accuracy=...``) next to chance (1/L).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import factorexe  # noqa: F401  (registers the FactorExe envs)
import gymnasium as gym
import numpy as np
import torch
from torch import nn


@dataclass
class Args:
    """The run's settings (each one is a command-line flag)."""

    length: int = 6
    """nodes L of the cycle"""
    num_envs: int = 256
    """envs stepped together by the Rust vector env"""
    num_steps: int = 8
    """steps per env per rollout (an episode is 3 steps, plus one autoreset step)"""
    iterations: int = 300
    """policy updates"""
    learning_rate: float = 3e-3
    """Adam's learning rate"""
    hidden: int = 128
    """MLP width"""
    ent_coef: float = 0.01
    """entropy bonus"""
    eval_episodes: int = 1000
    """fresh problems for the final greedy evaluation"""
    seed: int = 1
    """seed of torch and of the envs"""
    threads: int = 1
    """torch threads"""


def parse_args() -> Args:
    defaults = Args()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, value in vars(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    return Args(**vars(parser.parse_args()))


def make_env(args: Args, num_envs: int) -> gym.vector.VectorEnv:
    """Cycle(L) at hop 1 with a one-token chain: chain, ANSWER, answer."""
    return gym.make_vec(
        "FactorExe/Cycle-v0",
        num_envs=num_envs,
        length=args.length,
        difficulty=1,
        max_chain_len=1,
        fixed_chain_len=True,
    )


class Encoder:
    """One-hot encoding of the observation's token fields, concatenated."""

    def __init__(self, space: gym.spaces.Dict) -> None:
        self.fields = [(k, int(s.nvec.max())) for k, s in space.items() if k != "action_mask"]
        self.size = sum(int(space[k].shape[0]) * vocab for k, vocab in self.fields)

    def __call__(self, obs: dict[str, np.ndarray]) -> torch.Tensor:
        parts = [nn.functional.one_hot(torch.tensor(obs[k]), vocab).flatten(1) for k, vocab in self.fields]
        return torch.cat(parts, dim=1).float()


class Policy(nn.Module):
    """A two-layer MLP over the encoded observation; masked logits."""

    def __init__(self, inputs: int, hidden: int, actions: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(inputs, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, actions),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.distributions.Categorical:
        logits = self.net(x).masked_fill(~mask, -1e9)
        return torch.distributions.Categorical(logits=logits)


def evaluate(args: Args, encode: Encoder, policy: Policy) -> float:
    """Greedy accuracy on ``eval_episodes`` fresh problems (another seed)."""
    envs = make_env(args, args.eval_episodes)
    obs, _ = envs.reset(seed=args.seed + 1_000_003)
    solved = np.zeros(args.eval_episodes, dtype=bool)
    ended = np.zeros(args.eval_episodes, dtype=bool)
    with torch.no_grad():
        while not ended.all():
            mask = torch.tensor(obs["action_mask"], dtype=torch.bool)
            actions = policy(encode(obs), mask).probs.argmax(1).numpy()
            obs, _, _, _, info = envs.step(actions)
            if "solved" in info:
                new = info["_solved"] & ~ended
                solved[new] = info["solved"][new]
                ended |= info["_solved"]
    envs.close()
    return float(solved.mean())


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    envs = make_env(args, args.num_envs)
    encode = Encoder(envs.single_observation_space)
    policy = Policy(encode.size, args.hidden, envs.single_action_space.n)
    optimizer = torch.optim.Adam(policy.parameters(), lr=args.learning_rate)

    T, B = args.num_steps, args.num_envs
    logps = torch.zeros(T, B)
    entropies = torch.zeros(T, B)
    rewards = np.zeros((T, B), dtype=np.float32)
    dones = np.zeros((T, B), dtype=bool)
    real = np.zeros((T, B), dtype=bool)

    start = time.time()
    obs, _ = envs.reset(seed=args.seed)
    prev_done = np.zeros(B, dtype=bool)
    for iteration in range(1, args.iterations + 1):
        for t in range(T):
            mask = torch.tensor(obs["action_mask"], dtype=torch.bool)
            dist = policy(encode(obs), mask)
            action = dist.sample()
            logps[t] = dist.log_prob(action)
            entropies[t] = dist.entropy()
            # Next-step autoreset: an env that ended on the previous step is reset by this one
            # and ignores its action, so this row is no transition.
            real[t] = ~prev_done
            obs, reward, terminated, truncated, _ = envs.step(action.numpy())
            rewards[t] = reward
            dones[t] = terminated | truncated
            prev_done = dones[t].copy()

        # Returns of the episodes that ended within the rollout (undiscounted, no bootstrap);
        # steps of episodes still running at the end are left out.
        returns = np.zeros((T, B), dtype=np.float32)
        complete = np.zeros((T, B), dtype=bool)
        future = np.zeros(B, dtype=np.float32)
        ends = np.zeros(B, dtype=bool)
        for t in reversed(range(T)):
            future = rewards[t] + np.where(dones[t], 0.0, future)
            ends = dones[t] | ends
            returns[t] = future
            complete[t] = ends
            # A reset row starts nothing: what precedes it is another episode.
            future = np.where(real[t], future, 0.0)
            ends = np.where(real[t], ends, False)
        use = torch.as_tensor(real & complete)
        g = torch.as_tensor(returns)
        advantage = (g - g[use].mean()) * use
        loss = -(logps * advantage).sum() / use.sum() - args.ent_coef * (entropies * use).sum() / use.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        logps, entropies = logps.detach(), entropies.detach()

        if iteration % 50 == 0 or iteration == args.iterations:
            ended = dones & real
            rate = rewards[ended].mean() if ended.any() else 0.0
            print(
                f"iteration={iteration} sampled_accuracy={rate:.3f} seconds={time.time() - start:.1f}",
                flush=True,
            )
    envs.close()
    accuracy = evaluate(args, encode, policy)
    print(f"accuracy={accuracy:.3f} chance={1 / args.length:.3f} seconds={time.time() - start:.1f}")


if __name__ == "__main__":
    main()
