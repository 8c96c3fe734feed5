#!/usr/bin/env bash
# Builds the `factorexe` Python package (python/setup.sh: a venv in
# $FACTOREXE_CACHE/pyenv, default ~/.cache/factorexe/pyenv) and runs its tests, python/tests/.
#
# The example test (examples/python/reinforce_cycle.py) runs with PyTorch from
# $FACTOREXE_CACHE/python-torch-2.13.0 on PYTHONPATH, the copy `scripts/setup` installs; when
# that copy is complete the test is required, otherwise it is skipped. The tests that compare
# with `factorexe envs show` use target/{release,debug}/factorexe (or $FACTOREXE_BIN) when built.
#
#   python/test.sh [pytest arguments...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${FACTOREXE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/factorexe}
"$here/setup.sh"

export FACTOREXE_TORCH_DIR="$cache/python-torch-2.13.0"
if [ -f "$FACTOREXE_TORCH_DIR/.factorexe-complete" ]; then
    export FACTOREXE_REQUIRE_TORCH=1
fi
cd "$here"
"$cache/pyenv/bin/python" -m pytest tests "$@"
