"""Throughput of FactorExe's envs and searchers from Python, against the Rust loops alone.

1. Vector env: token-steps/s of ``FactorExeVectorEnv`` stepped from Python with random legal
   actions drawn by numpy, against the Rust ``VecEnv`` stepped by a Rust loop with the same
   action distribution (``factorexe.bench_vec_env``), at each batch size.
2. Search: simulations/s of Gumbel MuZero and MCTS from Python with numpy evaluators (zero
   logits, then a tiny MLP), against the same search with the Rust uniform evaluator
   (``factorexe.bench_search``).

Prints one JSON line per measurement and a summary with the Python / Rust ratios, per second of
the measuring thread's CPU time (steady on a shared machine) and of wall time. Everything runs
on one thread.

    python scripts/bench/python_vec_env.py [--length 100] [--batches 1,64,4096] [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

# One thread everywhere (set before numpy loads its BLAS): the CPU-time rates count the
# calling thread only.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

import factorexe  # noqa: E402
from factorexe import MCTS, FactorExeVectorEnv, GumbelMuZero  # noqa: E402

#: Uniform draws before falling back to the first legal action, as the Rust loop does.
RANDOM_TRIES = 2


class RandomLegal:
    """Random legal actions from the mask with numpy, O(B) per step: draw each action uniformly
    until it is legal (at most ``RANDOM_TRIES`` draws), else take the first legal one."""

    def __init__(self, num_envs: int, num_actions: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.num_actions = num_actions
        self.base = np.arange(num_envs, dtype=np.int64) * num_actions

    def draw(self, n: int) -> np.ndarray:
        """``n`` uniform actions (floats scaled down: cheaper than ``integers`` in numpy)."""
        return np.minimum(self.rng.random(n) * self.num_actions, self.num_actions - 1).astype(np.int64)

    def __call__(self, mask: np.ndarray) -> np.ndarray:
        flat = mask.reshape(-1)
        a = self.draw(self.base.size)
        bad = np.flatnonzero(flat[self.base + a] == 0)
        for _ in range(RANDOM_TRIES - 1):
            if bad.size == 0:
                return a
            b = self.draw(bad.size)
            ok = flat[self.base[bad] + b] != 0
            a[bad[ok]] = b[ok]
            bad = bad[~ok]
        if bad.size:
            a[bad] = mask[bad].argmax(1)
        return a


def timed(seconds: float, f: Callable[[], None]) -> tuple[float, float]:
    """Calls of ``f`` per second of wall time and per second of this thread's CPU time (the
    steadier figure on a shared machine), after one warm-up call."""
    f()
    n, start, cpu = 0, time.perf_counter(), time.thread_time()
    while True:
        f()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed, n / max(time.thread_time() - cpu, 1e-9)


def python_vec_rate(
    task: str, params: dict, batch: int, seconds: float, parallel: bool, copy: bool
) -> tuple[float, float, float]:
    """Token-steps/s of the vector env stepped from Python with numpy's random legal actions:
    per second of wall time, of CPU time, and of wall time spent in ``env.step`` alone (the
    binding and the Rust step, without the numpy policy)."""
    env = FactorExeVectorEnv(task, batch, parallel=parallel, copy=copy, **params)
    obs, _ = env.reset(seed=0)
    policy = RandomLegal(batch, env.single_action_space.n, seed=0)
    state = {"obs": obs, "in_step": 0.0, "steps": 0}

    def step() -> None:
        actions = policy(state["obs"]["action_mask"])
        start = time.perf_counter()
        state["obs"] = env.step(actions)[0]
        state["in_step"] += time.perf_counter() - start
        state["steps"] += 1

    wall, cpu = timed(seconds, step)
    return wall * batch, cpu * batch, state["steps"] * batch / state["in_step"]


def rust_vec_rate(task: str, params: dict, batch: int, seconds: float, parallel: bool) -> tuple[float, float]:
    """Token-steps/s (wall, CPU) of the Rust ``VecEnv`` stepped by a Rust loop."""
    r = factorexe.bench_vec_env(task, batch, seconds=seconds, policy="random", parallel=parallel, **params)
    return r["token_steps_per_s"], r["token_steps_per_cpu_s"]


def median_rates(reps: int, *measures: Callable[[], tuple[float, ...]]) -> list[tuple[float, ...]]:
    """Runs the measures in turn ``reps`` times (interleaved, so that a change in the machine's
    load hits them alike) and returns each one's medians, figure by figure."""
    runs: list[list[tuple[float, ...]]] = [[] for _ in measures]
    for _ in range(reps):
        for out, m in zip(runs, measures, strict=True):
            out.append(m())
    return [tuple(float(x) for x in np.median(np.array(r), axis=0)) for r in runs]


def bench_vec(args: argparse.Namespace) -> list[dict]:
    params = {"length": args.length}
    rows = []
    for batch in args.batches:
        rust, py, py_copy = median_rates(
            args.reps,
            lambda b=batch: rust_vec_rate(args.task, params, b, args.seconds, args.parallel),
            lambda b=batch: python_vec_rate(args.task, params, b, args.seconds, args.parallel, copy=False),
            lambda b=batch: python_vec_rate(args.task, params, b, args.seconds, args.parallel, copy=True),
        )
        row = {
            "bench": "vec_env",
            "task": f"{args.task}(L={args.length})",
            "batch": batch,
            "rust_token_steps_per_s": round(rust[0]),
            "python_token_steps_per_s": round(py[0]),
            "python_copy_token_steps_per_s": round(py_copy[0]),
            "rust_token_steps_per_cpu_s": round(rust[1]),
            "python_token_steps_per_cpu_s": round(py[1]),
            "python_copy_token_steps_per_cpu_s": round(py_copy[1]),
            "python_step_only_token_steps_per_s": round(py[2]),
            "ratio_wall": round(py[0] / rust[0], 3),
            "ratio_cpu": round(py[1] / rust[1], 3),
            "ratio_copy_cpu": round(py_copy[1] / rust[1], 3),
            "ratio_step_only_wall": round(py[2] / rust[0], 3),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def zero_evaluator(obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Zero logits and values: the Python callback's own cost."""
    n, a = obs["action_mask"].shape
    return np.zeros((n, a), np.float32), np.zeros(n, np.float32)


def mlp_evaluator(spec: dict, hidden: int, seed: int = 0) -> Callable:
    """A random two-layer MLP over the raw tokens, in numpy (float32)."""
    rng = np.random.default_rng(seed)
    t, a = spec["tokens"], spec["num_actions"]
    w1 = rng.standard_normal((t, hidden), dtype=np.float32) / np.sqrt(t)
    w2 = rng.standard_normal((hidden, a + 1), dtype=np.float32) / np.sqrt(hidden)
    fields = [name for name, *_ in spec["token_fields"]]

    def evaluate(obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([obs[f] for f in fields], axis=1).astype(np.float32)
        y = np.maximum(x @ w1, 0.0) @ w2
        return y[:, :a], np.tanh(y[:, a])

    return evaluate


def bench_search(args: argparse.Namespace) -> list[dict]:
    params = {"length": args.search_length}
    rows = []
    env = FactorExeVectorEnv(args.task, args.search_batch, **params)
    env.reset(seed=0)
    budget = args.sims + 1
    sims = args.search_batch * args.sims
    mlp = mlp_evaluator(env.rust_spec, args.hidden)
    for algo, searcher in (("gumbel", GumbelMuZero()), ("mcts", MCTS())):

        def rust(algo: str = algo) -> tuple[float, float]:
            r = factorexe.bench_search(
                args.task, args.search_batch, args.sims, algo=algo, seconds=args.seconds, **params
            )
            return r["sims_per_s"], r["sims_per_cpu_s"]

        def python(evaluator: Callable, searcher=searcher) -> tuple[float, float]:
            wall, cpu = timed(args.seconds, lambda: searcher.search(env, evaluator, budget, seed=0))
            return wall * sims, cpu * sims

        r, zeros, net = median_rates(args.reps, rust, lambda: python(zero_evaluator), lambda: python(mlp))
        row = {
            "bench": "search",
            "algo": algo,
            "task": f"{args.task}(L={args.search_length})",
            "batch": args.search_batch,
            "sims": args.sims,
            "rust_uniform_sims_per_s": round(r[0]),
            "python_zeros_sims_per_s": round(zeros[0]),
            f"python_mlp{args.hidden}_sims_per_s": round(net[0]),
            "rust_uniform_sims_per_cpu_s": round(r[1]),
            "python_zeros_sims_per_cpu_s": round(zeros[1]),
            f"python_mlp{args.hidden}_sims_per_cpu_s": round(net[1]),
            "ratio_zeros_cpu": round(zeros[1] / r[1], 3),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="cycle", choices=["cycle", "cvpr"])
    parser.add_argument("--length", type=int, default=100, help="L of the vector-env benchmark")
    parser.add_argument("--batches", default="1,64,4096", help="batch sizes, comma-separated")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument(
        "--parallel", action="store_true", help="step the Rust envs on rayon's pool (then only wall time means much)"
    )
    parser.add_argument("--search-length", type=int, default=40, help="L of the search benchmark")
    parser.add_argument("--search-batch", type=int, default=64, help="roots per search")
    parser.add_argument("--sims", type=int, default=64, help="simulations per root")
    parser.add_argument("--hidden", type=int, default=64, help="width of the numpy MLP evaluator")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions (medians)")
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]

    vec_rows = bench_vec(args)
    search_rows = [] if args.skip_search else bench_search(args)

    print("\nvector env, token-steps/s per CPU-second of the stepping thread (wall-clock in brackets);")
    print("random legal actions; Python = numpy policy + FactorExeVectorEnv.step; step only = wall time in")
    print("env.step alone (binding + Rust step, no policy):")
    print(
        f"{'batch':>6} {'Rust VecEnv':>24} {'Python':>24} {'ratio':>6} {'copy=True':>11} {'ratio':>6} "
        f"{'step only':>11} {'ratio':>6}"
    )
    for r in vec_rows:
        rust = f"{r['rust_token_steps_per_cpu_s']:,} ({r['rust_token_steps_per_s']:,})"
        py = f"{r['python_token_steps_per_cpu_s']:,} ({r['python_token_steps_per_s']:,})"
        print(
            f"{r['batch']:>6} {rust:>24} {py:>24} {r['ratio_cpu']:>6.2f} "
            f"{r['python_copy_token_steps_per_cpu_s']:>11,} {r['ratio_copy_cpu']:>6.2f} "
            f"{r['python_step_only_token_steps_per_s']:>11,} {r['ratio_step_only_wall']:>6.2f}"
        )
    if search_rows:
        print(
            f"\nsearch, simulations per CPU-second ({search_rows[0]['task']}, {args.search_batch} roots, "
            f"{args.sims} simulations each):"
        )
        for r in search_rows:
            net = r[f"python_mlp{args.hidden}_sims_per_cpu_s"]
            print(
                f"{r['algo']:>6}: Rust uniform evaluator {r['rust_uniform_sims_per_cpu_s']:>10,}   Python zeros "
                f"{r['python_zeros_sims_per_cpu_s']:>10,} ({r['ratio_zeros_cpu']:.2f})   "
                f"Python numpy MLP({args.hidden}) {net:>10,}"
            )


if __name__ == "__main__":
    main()
