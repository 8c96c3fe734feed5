"""The original FactorExe samplers in JAX (jit + vmap, CPU), timed like `bench_rates`.

The problems are those of envs/src/tasks/cycle.rs and cvpr.rs, with hops drawn per problem
uniformly in 1..L-1 as the Rust benchmark does. Cycle keeps the original's dynamic-H
code (permutation, argmin, roll; the chain padded to a static L-1). The original C-VPR needs a
static H (`choice(..., replace=False)`), so mixed hops would need a `lax.switch` over every H;
this version instead takes the first H entries of a random permutation of 1..L-1 and sorts
them (the same uniform sorted subset), which is faster than the switch and so favours JAX.

Usage: python3 envs_vs_jax.py [--batch 4096] [--seconds 2] [--rust rust.jsonl]
With --rust (JSON lines from `bench_rates`), prints the Rust/JAX ratios too.
"""

import argparse
import json
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402


def cycle_sampler(L):
    def sample(key, hops):
        perm = jax.random.permutation(key, jnp.arange(L))
        z = jnp.argmin(perm)
        sequence = jnp.zeros(L, dtype=perm.dtype).at[perm].set(jnp.roll(perm, -1))
        target = perm[(z + 1 + hops) % L]
        visited = jnp.roll(perm, -z - 1)[: L - 1]
        chain = jnp.where(jnp.arange(L - 1) < hops, visited, target)
        return sequence, chain, target

    return sample


def cvpr_sampler(L):
    def sample(key, hops):
        k_ptr, k_fill, k_target = jax.random.split(key, 3)
        perm = jax.random.permutation(k_ptr, jnp.arange(1, L))
        valid = jnp.arange(L - 1) < hops
        pointers = jnp.sort(jnp.where(valid, perm, L))
        example = jax.random.randint(k_fill, (L,), 0, L)
        sources = jnp.concatenate([jnp.zeros(1, dtype=pointers.dtype), pointers[:-1]])
        example = example.at[jnp.where(valid, sources, L)].set(pointers, mode="drop")
        last = pointers[hops - 1]
        target = jax.random.randint(k_target, (), 0, last + 1)
        example = example.at[last].set(target)
        chain = jnp.where(valid, pointers, target)
        return example, chain, target

    return sample


def batched(sampler, L, batch):
    @jax.jit
    def run(key):
        k_hops, k_problems = jax.random.split(key)
        hops = jax.random.randint(k_hops, (batch,), 1, L)
        keys = jax.random.split(k_problems, batch)
        return jax.vmap(sampler)(keys, hops)

    return run


def rate(fn, seconds):
    """Batches per second of wall time and per second of process CPU time (all threads)."""
    key = jax.random.PRNGKey(0)
    jax.block_until_ready(fn(key))  # compile
    n, start, cpu0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        key, sub = jax.random.split(key)
        jax.block_until_ready(fn(sub))
        n += 1
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return n / wall, n / cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rust", help="JSON lines printed by the bench_rates example")
    args = ap.parse_args()
    rust = {}
    if args.rust:
        with open(args.rust) as f:
            for line in f:
                if line.strip().startswith("{"):
                    r = json.loads(line)
                    rust[(r["task"], r["length"])] = r
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, batch {args.batch}, "
          f"{os.cpu_count()} CPUs; rates in problems per second of wall time and per CPU-second")
    print(f"{'task':<13}{'jax wall':>12}{'rust wall':>12}{'ratio':>8}"
          f"{'jax cpu':>12}{'rust cpu':>12}{'ratio':>8}{'rust token-steps/s':>20}")
    for task, L, make in [("cycle", 40, cycle_sampler), ("cycle", 100, cycle_sampler),
                          ("cvpr", 100, cvpr_sampler)]:
        wall, cpu = (r * args.batch for r in rate(batched(make(L), L, args.batch), args.seconds))
        name = f"{task}(L={L})"
        r = rust.get((task, L))
        if r:
            rw, rc = r["problems_per_s"], r["problems_per_cpu_s"]
            print(f"{name:<13}{wall:>12,.0f}{rw:>12,.0f}{rw / wall:>7.1f}x"
                  f"{cpu:>12,.0f}{rc:>12,.0f}{rc / cpu:>7.1f}x{r['token_steps_per_s']:>20,.0f}")
        else:
            print(f"{name:<13}{wall:>12,.0f}{'':>12}{'':>8}{cpu:>12,.0f}")


if __name__ == "__main__":
    main()
