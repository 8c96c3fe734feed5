#!/usr/bin/env bash
# Problem-generation rates of our samplers (Rust, one thread, release) and the original's JAX
# samplers (jit + vmap on CPU) in the same run, with the ratio; batch 4096, hops uniform in
# 1..L-1, for Cycle L=40, L=100 and C-VPR L=100. VecEnv token-steps/s are printed beside.
#
# Usage: scripts/bench/envs_vs_jax.sh [seconds per measurement, default 2]
# Installs jax (CPU, from PyPI) once into ${FACTOREXE_CACHE:-$HOME/.cache/factorexe}/python-bench.
set -euo pipefail

seconds="${1:-2}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
pydir="${FACTOREXE_CACHE:-$HOME/.cache/factorexe}/python-bench"
python="${PYTHON:-python3}"

if ! PYTHONPATH="$pydir" "$python" -c "import jax" 2>/dev/null; then
    echo "installing jax (CPU) into $pydir" >&2
    mkdir -p "$pydir"
    "$python" -m pip install --quiet --target "$pydir" jax
fi

rust_out="$(mktemp)"
trap 'rm -f "$rust_out"' EXIT
echo "building and running the Rust rates (release, one thread)..." >&2
(cd "$root" && cargo run --quiet --release -p factorexe-envs --example bench_rates -- 4096 "$seconds") \
    | tee "$rust_out" >&2
echo "running the JAX samplers..." >&2
PYTHONPATH="$pydir" JAX_PLATFORMS=cpu "$python" "$root/scripts/bench/envs_vs_jax.py" \
    --batch 4096 --seconds "$seconds" --rust "$rust_out"
