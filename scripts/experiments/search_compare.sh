#!/usr/bin/env bash
# Test-time search at measured compute over an under-trained Cycle model (docs/search.md).
#
#   scripts/experiments/search_compare.sh                 # the experiment of docs/search.md
#   EPISODES=200 BUDGETS=1,4,16 scripts/experiments/search_compare.sh   # a quicker look
#   VALUE_HEAD=1 scripts/experiments/search_compare.sh    # also the calibrated value head
#   ALGOS=greedy,mcts,mcts_anytime,gumbel,gumbel_anytime VALUE_HEAD=1 \
#       scripts/experiments/search_compare.sh             # anytime against fixed budgets
#
# 1. CotSupervised on Cycle L=10, hops 1..4, stopped after 44 updates (greedy ~75% at 4 hops);
# 2. `factorexe search compare` over it with policy-only values (likelihood: its value head
#    was never trained), all five searchers at BUDGETS, EPISODES problems per hop count:
#    accuracy with 95% intervals against measured evaluator calls per problem, paired
#    verdicts on stdout; compare.csv, paired.csv, problems.csv, compare.png and TensorBoard
#    events in runs/cycle10_cot_short/search/;
# 3. with VALUE_HEAD=1, its value head calibrated (expert_iteration in value warm-up only:
#    the policy is anchored to the first run's and does not change; configs/cycle10_value.toml)
#    and the same comparison with values from the head, in runs/cycle10_value/search/.
# Release build, one run at a time (the CPU is shared).
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=${THREADS:-2}
EPISODES=${EPISODES:-1000}
BUDGETS=${BUDGETS:-1,2,4,8,16}
LEVELS=${LEVELS:-1,2,3,4}
VALUE_HEAD=${VALUE_HEAD:-0}
ALGOS=${ALGOS:-greedy,vote,beam,mcts,gumbel}
export OMP_WAIT_POLICY=PASSIVE
cargo build --release -q --bin factorexe
BIN=${CARGO_TARGET_DIR:-target}/release/factorexe
COMPARE=(search compare --episodes "$EPISODES" --budgets "$BUDGETS" --levels "$LEVELS"
    --algos "$ALGOS" --threads "$THREADS")
"$BIN" train --config configs/cycle10_cot_short.toml --overwrite --no-progress --threads "$THREADS"
"$BIN" "${COMPARE[@]}" --run runs/cycle10_cot_short
if [ "$VALUE_HEAD" = 1 ]; then
    "$BIN" train --config configs/cycle10_value.toml --overwrite --no-progress --threads "$THREADS"
    "$BIN" "${COMPARE[@]}" --run runs/cycle10_value
fi
