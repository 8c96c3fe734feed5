#!/usr/bin/env bash
# Issue 7: expert iteration against REINFORCE at equal env samples on the RL task of issue 6
# (Cycle L=10, hops 1..4 mixed, chain cap 4): both play 256 episodes per update and read
# only their played episodes' rewards (the expert-iteration search values states with the
# network), for STEPS updates (default 300).
#
#   scripts/experiments/search_exit_vs_reinforce.sh [scratch|finetune|summary|all]
#
# scratch:  expert iteration from random weights (configs/cycle10_exit.toml) and REINFORCE
#           with the group baseline (configs/cycle10_rl.toml; reuses runs/cycle10_rl_group
#           when it exists, as issue 6's scripts/experiments/rl_table.sh leaves it);
# finetune: expert iteration from the value-calibrated under-trained chain model
#           (configs/cycle10_exit_finetune.toml; needs scripts/experiments/search_compare.sh
#           to have made runs/cycle10_value);
# summary:  greedy accuracy per hop against played episodes and reward queries.
# Release build, one run at a time (the CPU is shared).
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=${STEPS:-300}
THREADS=${THREADS:-2}
OUT=${OUT:-runs/search_exit}
mkdir -p "$OUT"
cargo build --release -q
BIN=target/release/factorexe
what=${1:-all}

if [[ $what == scratch || $what == all ]]; then
  "$BIN" train --config configs/cycle10_exit.toml --set "train.steps=$STEPS" --overwrite \
    --no-progress --threads "$THREADS" >"$OUT/cycle10_exit.train.log" 2>&1
  tail -n 8 "$OUT/cycle10_exit.train.log"
  if [[ ! -f runs/cycle10_rl_group/metrics.jsonl ]]; then
    "$BIN" train --config configs/cycle10_rl.toml --set name=cycle10_rl_group \
      --set algo.baseline=group --set "train.steps=$STEPS" --overwrite --no-progress \
      --threads "$THREADS" >"$OUT/cycle10_rl_group.train.log" 2>&1
    tail -n 8 "$OUT/cycle10_rl_group.train.log"
  fi
fi
if [[ $what == finetune || $what == all ]]; then
  "$BIN" train --config configs/cycle10_exit_finetune.toml --overwrite --no-progress \
    --threads "$THREADS" >"$OUT/cycle10_exit_finetune.train.log" 2>&1
  tail -n 8 "$OUT/cycle10_exit_finetune.train.log"
fi
if [[ $what == summary || $what == all ]]; then
  runs=()
  for r in runs/cycle10_exit:256 runs/cycle10_rl_group:256 runs/cycle10_exit_finetune:256; do
    [[ -f ${r%:*}/metrics.jsonl ]] && runs+=("$r")
  done
  python3 scripts/experiments/search_exit_summary.py "${runs[@]}"
fi
