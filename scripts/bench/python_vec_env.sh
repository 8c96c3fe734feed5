#!/usr/bin/env bash
# Builds the Python package (python/setup.sh) and runs scripts/bench/python_vec_env.py: the
# vector env's token-steps/s from Python against the Rust VecEnv alone (batch 1, 64, 4096), and
# search simulations/s with numpy evaluators. Arguments go to the Python script (--help).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${FACTOREXE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/factorexe}
"$root/python/setup.sh"
exec "$cache/pyenv/bin/python" "$root/scripts/bench/python_vec_env.py" "$@"
