#!/usr/bin/env bash
# Builds the `factorexe` Python package into a virtual environment, for the tests
# (python/test.sh) and the benchmark (scripts/bench/python_vec_env.sh).
#
# Creates once, then reuses, $FACTOREXE_CACHE/pyenv (default ~/.cache/factorexe/pyenv) with
# maturin, gymnasium, numpy and pytest from PyPI (already-satisfied requirements are not
# downloaded again); builds the Rust extension in release mode into python/target and installs
# the package there (editable). Prints nothing else on success; source it or run it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${FACTOREXE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/factorexe}
venv="$cache/pyenv"
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
    echo "python/setup.sh: creating the virtual environment $venv"
    mkdir -p "$cache"
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet \
    "maturin>=1.9.4,<2" "gymnasium>=1.0" "numpy>=1.21" "pytest>=7"

echo "python/setup.sh: building the extension (release) and installing the package into $venv"
VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" \
    "$venv/bin/maturin" develop --release --quiet --manifest-path "$here/Cargo.toml"
