"""The mctx half of scripts/bench/search_vs_mctx: simulations per second of
mctx.muzero_policy and mctx.gumbel_muzero_policy on JAX CPU, with the same tiny MLP
(32 bit-features -> 64 -> 64 -> 40 logits + tanh value) and the same hashed-state dynamics
as the Rust side (search::testing::BenchEnv / MlpEvaluator).

Prints one line per (algorithm, batch):
  mctx <algo> batch=<B> sims=<S> sims_per_sec=<x> ms_per_search=<t>
with sims_per_sec = B * S / seconds per search (root network call included, compile excluded).
"""

import argparse
import time

import jax
import jax.numpy as jnp
import mctx

GOLDEN = 0x9E3779B9


def fmix32(h):
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def features(state):
    bits = (state[:, None] >> jnp.arange(32, dtype=jnp.uint32)[None, :]) & jnp.uint32(1)
    return bits.astype(jnp.float32) * 2.0 - 1.0


def init_params(key, hidden, actions):
    sizes = [(32, hidden), (hidden, hidden), (hidden, actions + 1)]
    params = []
    for fan_in, fan_out in sizes:
        key, kw, kb = jax.random.split(key, 3)
        bound = 1.0 / fan_in**0.5
        params.append(
            (
                jax.random.uniform(kw, (fan_in, fan_out), minval=-bound, maxval=bound),
                jax.random.uniform(kb, (fan_out,), minval=-bound, maxval=bound),
            )
        )
    return params


def mlp(params, state):
    x = features(state)
    (w1, b1), (w2, b2), (w3, b3) = params
    x = jax.nn.relu(x @ w1 + b1)
    x = jax.nn.relu(x @ w2 + b2)
    y = x @ w3 + b3
    return y[:, :-1], jnp.tanh(y[:, -1])


def recurrent_fn(params, rng_key, action, embedding):
    del rng_key
    state = fmix32(embedding ^ ((action.astype(jnp.uint32) + jnp.uint32(1)) * jnp.uint32(GOLDEN)))
    logits, value = mlp(params, state)
    zeros = jnp.zeros_like(value)
    out = mctx.RecurrentFnOutput(reward=zeros, discount=jnp.ones_like(value), prior_logits=logits, value=value)
    return out, state


def make_search(algo, sims):
    def run(params, key, seeds):
        root_state = fmix32(seeds)
        logits, value = mlp(params, root_state)
        root = mctx.RootFnOutput(prior_logits=logits, value=value, embedding=root_state)
        if algo == "mcts":
            out = mctx.muzero_policy(params, key, root, recurrent_fn, num_simulations=sims)
        else:
            out = mctx.gumbel_muzero_policy(params, key, root, recurrent_fn, num_simulations=sims)
        return out.action, out.action_weights

    return jax.jit(run)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", default="64,1024")
    p.add_argument("--sims", type=int, default=64)
    p.add_argument("--actions", type=int, default=40)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--seconds", type=float, default=2.0)
    args = p.parse_args()
    params = init_params(jax.random.PRNGKey(0), args.hidden, args.actions)
    for batch in [int(b) for b in args.batch.split(",")]:
        seeds = jnp.arange(batch, dtype=jnp.uint32)
        for algo in ["mcts", "gumbel"]:
            fn = make_search(algo, args.sims)
            key = jax.random.PRNGKey(1)
            jax.block_until_ready(fn(params, key, seeds))  # compile
            reps = 0
            start = time.perf_counter()
            while reps < 3 or time.perf_counter() - start < args.seconds:
                key, sub = jax.random.split(key)
                jax.block_until_ready(fn(params, sub, seeds))
                reps += 1
            t = (time.perf_counter() - start) / reps
            print(
                f"mctx {algo} batch={batch} sims={args.sims} "
                f"sims_per_sec={batch * args.sims / t:.0f} ms_per_search={t * 1e3:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
