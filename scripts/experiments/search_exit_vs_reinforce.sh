#!/usr/bin/env bash
# Expert iteration against REINFORCE at equal env samples on the RL task of docs/rl.md
# (Cycle L=10, hops 1..4 mixed, chain cap 4). Both play 256 episodes per update and read,
# per played episode, its reward and its correct answer (REINFORCE's recipe in
# configs/cycle10_rl.toml: answer supervision and the answer_ce return; expert iteration's
# search values states with the network only and reads no reward).
#
#   scripts/experiments/search_exit_vs_reinforce.sh [scratch|finetune|summary|all]
#
# scratch:  from random weights, STEPS updates (default 2000) each: expert iteration
#           (configs/cycle10_exit.toml), REINFORCE (configs/cycle10_rl.toml), and expert
#           iteration from the 0/1 reward alone (PURE_STEPS updates, default 300), which
#           collapses to a constant answer, and expert iteration without its chain
#           target (algo.policy_weight = 0, ABL_STEPS updates, default 1000);
# finetune: FT_STEPS updates (default 100) from the value-calibrated under-trained chain
#           model runs/cycle10_value (scripts/experiments/search_compare.sh makes it):
#           expert iteration (configs/cycle10_exit_finetune.toml) and REINFORCE with
#           algo.init on the same checkpoint (its model and optimizer settings), each also
#           with the other's information (REINFORCE from the 0/1 reward; ExIt with the
#           answer supervision);
# summary:  greedy accuracy per hop against played episodes and reward queries.
# Release build, one run at a time, THREADS libtorch threads (default 1: the CPU is shared).
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=${STEPS:-2000}
PURE_STEPS=${PURE_STEPS:-300}
ABL_STEPS=${ABL_STEPS:-1000}
FT_STEPS=${FT_STEPS:-100}
THREADS=${THREADS:-1}
OUT=${OUT:-runs/search_exit}
mkdir -p "$OUT"
cargo build --release -q
BIN=target/release/factorexe
what=${1:-all}

train() {
  local name=$1
  shift
  "$BIN" train --set "name=$name" --overwrite --no-progress --threads "$THREADS" "$@" \
    >"$OUT/$name.train.log" 2>&1
  tail -n 7 "$OUT/$name.train.log"
}

if [[ $what == scratch || $what == all ]]; then
  train cycle10_exit --config configs/cycle10_exit.toml --set "train.steps=$STEPS"
  train cycle10_rl_scratch --config configs/cycle10_rl.toml --set "train.steps=$STEPS" \
    --set eval.every=250
  train cycle10_exit_reward --config configs/cycle10_exit.toml \
    --set "train.steps=$PURE_STEPS" --set eval.every=50 \
    --set algo.answer_supervision=0 --set algo.value_target=outcome
  # Ablation: no chain target (the answer supervision and the value only).
  train cycle10_exit_nochain --config configs/cycle10_exit.toml \
    --set "train.steps=$ABL_STEPS" --set algo.policy_weight=0
fi
if [[ $what == finetune || $what == all ]]; then
  train cycle10_exit_finetune --config configs/cycle10_exit_finetune.toml \
    --set "train.steps=$FT_STEPS"
  # The init's model (one decoder layer) and the fine-tuning optimizer of the ExIt run.
  ft_rl=(--config configs/cycle10_rl.toml --set "train.steps=$FT_STEPS"
    --set algo.init=runs/cycle10_value --set model.decoder_layers=1
    --set optim.warmup_steps=5 --set optim.weight_decay=0.0 --set eval.every=20)
  train cycle10_rl_finetune "${ft_rl[@]}"
  # Equal information the other way round: REINFORCE from the 0/1 reward alone (what the
  # expert-iteration fine-tuning reads), and expert iteration with REINFORCE's answer.
  train cycle10_rl_finetune_reward "${ft_rl[@]}" --set algo.reward=answer \
    --set algo.answer_supervision=0
  train cycle10_exit_finetune_answer --config configs/cycle10_exit_finetune.toml \
    --set "train.steps=$FT_STEPS" --set algo.answer_supervision=1.0
fi
if [[ $what == summary || $what == all ]]; then
  runs=()
  for r in cycle10_exit cycle10_rl_scratch cycle10_exit_reward cycle10_exit_nochain \
    cycle10_exit_finetune \
    cycle10_rl_finetune cycle10_rl_finetune_reward cycle10_exit_finetune_answer; do
    [[ -f runs/$r/metrics.jsonl ]] && runs+=("runs/$r:256")
  done
  python3 scripts/experiments/search_exit_summary.py "${runs[@]}"
fi
