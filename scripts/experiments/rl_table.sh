#!/usr/bin/env bash
# The RL tables of docs/rl.md: RL from the answer alone on Cycle L=10, hops 1..4 mixed.
#
#   scripts/experiments/rl_table.sh [baselines|refs|poppy|probe|summary|all]   (default: all)
#
# Every run gets the same env samples per update (256 episodes: 32 problems x K=8 for
# REINFORCE, 256 oracle episodes for the supervised references, 64 problems x 4 members for
# POPPY and its single-policy control) and the same number of updates (STEPS, default 600).
# Runs go to runs/<name>; logs to $OUT (default runs/rl_table). Release build, one run at a
# time per shell (BASELINES="group value" runs a subset, so two shells can split the table).
# Evaluation: 1000 fresh problems per hop, greedy, with the chain probe on the
# chain-supervised reference and the best RL run (PROBE_RUNS).
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=${STEPS:-600}
OUT=${OUT:-runs/rl_table}
EPISODES=${EPISODES:-1000}
THREADS=${THREADS:-2}
mkdir -p "$OUT"
cargo build --release -q
BIN=target/release/factorexe
what=${1:-all}

train() { # name config [--set ...]
  local name=$1 cfg=$2; shift 2
  echo "== train $name ($cfg $*)"
  /usr/bin/time -f "wall %e s" "$BIN" train --config "$cfg" --set "name=$name" \
    --set "train.steps=$STEPS" --overwrite --no-progress --threads "$THREADS" "$@" \
    >"$OUT/$name.train.log" 2>&1
  tail -n 8 "$OUT/$name.train.log"
}

evaluate() { # name [extra eval flags]
  local name=$1; shift
  "$BIN" eval --run "runs/$name" --episodes "$EPISODES" --greedy-only --threads "$THREADS" "$@" \
    >"$OUT/$name.eval.log" 2>&1
  cat "$OUT/$name.eval.log"
}

if [[ $what == baselines || $what == all ]]; then
  for b in ${BASELINES:-none batch_mean group value}; do
    train "cycle10_rl_$b" configs/cycle10_rl.toml --set "algo.baseline=$b"
    evaluate "cycle10_rl_$b"
  done
fi
if [[ $what == refs || $what == all ]]; then
  train cycle10_cot_ref configs/cycle10_cot_ref.toml
  evaluate cycle10_cot_ref
  train cycle10_answer_only_ref configs/cycle10_answer_only_ref.toml
  evaluate cycle10_answer_only_ref
fi
if [[ $what == poppy || $what == all ]]; then
  train cycle10_poppy configs/cycle10_poppy.toml
  evaluate cycle10_poppy
  train cycle10_rl_single_k4 configs/cycle10_rl.toml --set algo.samples_per_problem=4 \
    --set train.batch_size=64
  evaluate cycle10_rl_single_k4
fi
if [[ $what == probe || $what == all ]]; then
  for name in cycle10_cot_ref ${PROBE_RUNS:-cycle10_rl_group}; do
    echo "== probe $name"
    evaluate "$name" --probe chain --episodes 500
    cp "$OUT/$name.eval.log" "$OUT/$name.probe.log"
  done
fi
if [[ $what == summary || $what == all ]]; then
  python3 scripts/experiments/rl_summary.py runs "$OUT"
fi
