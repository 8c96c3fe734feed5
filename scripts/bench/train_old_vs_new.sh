#!/usr/bin/env bash
# The training step of two factorexe builds side by side: `factorexe bench train` on the
# chain-supervised workloads of scripts/bench/threads.sh (cot-orig: the original's size,
# d 144 with one decoder layer; cot-big: d 256, 4 layers, MLP 4), batch 512, at one thread
# and at two (data-parallel), rounds interleaved so both builds see the same machine load.
#
#   scripts/bench/train_old_vs_new.sh OLD_BIN NEW_BIN [ROUNDS, default 3]
#
# Prints one line per run: round, workload, threads, build, then the bench's `train` line
# (examples/s, update ms, CPU ms, GFLOP per update and MFU as that build counts them).
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n 2,10p "$0" >&2
    exit 2
fi
old_bin=$(realpath "$1")
new_bin=$(realpath "$2")
rounds=${3:-3}
for bin in "$old_bin" "$new_bin"; do
    [ -x "$bin" ] || { echo "train_old_vs_new: $bin is not an executable" >&2; exit 2; }
done
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
cot="--config configs/cycle40_cot.toml --set train.batch_size=512"
orig="$cot --set model.heads=9 --set model.head_dim=16 --set model.mlp_factor=1
      --set model.decoder_layers=1 --steps 10 --warmup 2"
big="$cot --set model.heads=4 --set model.head_dim=64 --set model.mlp_factor=4
     --set model.decoder_layers=4 --steps 4 --warmup 2"
for round in $(seq "$rounds"); do
    for workload in orig big; do
        for threads in 1 2; do
            for build in old new; do
                bin=${build}_bin
                # shellcheck disable=SC2086
                line=$("${!bin}" bench train ${!workload} --threads "$threads" 2>/dev/null \
                    | grep '^train ') || line="FAILED"
                echo "$round cot-$workload $threads $build $line"
            done
        done
    done
done
