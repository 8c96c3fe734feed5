#!/usr/bin/env bash
# Short REINFORCE tuning runs on Cycle L=10, hops 1..4 (docs/rl.md): each run is one
# `factorexe train` of configs/cycle10_rl.toml with --set overrides, capped by a wall-time limit,
# ending with the runner's final greedy evaluation (500 fresh problems per hop).
#
#   scripts/experiments/rl_tune.sh NAME [--set key=value ...]
#
# Logs go to $OUT/NAME.log (default runs/rl_tune); the run to runs/NAME. One run at a time.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/rl_tune}
LIMIT=${LIMIT:-330}
CONFIG=${CONFIG:-configs/cycle10_rl.toml}
mkdir -p "$OUT"
name=$1; shift
echo "== $name $*" >"$OUT/$name.log"
target/release/factorexe train --config "$CONFIG" --set "name=$name" \
  --set "train.time_limit_s=$LIMIT" --overwrite --no-progress --threads 2 "$@" \
  >>"$OUT/$name.log" 2>&1
grep -A6 '^accuracy per difficulty' "$OUT/$name.log" | sed "s/^/$name  /"
