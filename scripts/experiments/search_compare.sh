#!/usr/bin/env bash
# Test-time search at equal budgets over an under-trained Cycle model.
#
#   scripts/experiments/search_compare.sh
#
# 1. CotSupervised on Cycle L=10, hops 1..4, stopped after 44 updates (greedy ~75% at 4 hops);
# 2. its value head calibrated (expert_iteration in value warm-up only: sampled chains, value
#    target = does greedy decoding from the state answer right; the policy is anchored to the
#    init network and does not change);
# 3. `factorexe search compare` over both: policy-only values (likelihood) on the first,
#    the value head on the second. Tables on stdout; CSV, PNG and TensorBoard events in
#    runs/<name>/search/.
# Release build, one run at a time (the CPU is shared). EPISODES problems per hop count.
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=${THREADS:-2}
EPISODES=${EPISODES:-500}
cargo build --release -q
BIN=target/release/factorexe
"$BIN" train --config configs/cycle10_cot_short.toml --overwrite --no-progress --threads "$THREADS"
"$BIN" train --config configs/cycle10_value.toml --overwrite --no-progress --threads "$THREADS"
"$BIN" search compare --run runs/cycle10_cot_short --episodes "$EPISODES" --threads "$THREADS"
"$BIN" search compare --run runs/cycle10_value --episodes "$EPISODES" --threads "$THREADS"
