#!/usr/bin/env bash
# How a second thread is best used by supervised training: one thread; two threads sharing
# each op (libtorch's intra-op threads, `train.data_parallel = false`); two threads each
# computing half the batch on its own copy of the model (`train.data_parallel = true`, the
# default). Three workloads at batch 512, as in docs/performance.md:
#   answer-only  the original's answer-only model (d 144, 9 heads x 16, MLP 1, one encoder
#                layer, answer head), Cycle [1..5]-40;
#   cot-orig     chain supervision at the original's size (d 144, one decoder layer), Cycle 40;
#   cot-big      chain supervision at a compute-bound size (d 256, 4 x 64, MLP 4, 4 layers).
# The modes run interleaved, ROUNDS times, so that the machine's drift hits them alike; the
# table gives the median examples/s and MFU of each, and the ratios of the medians.
#
# Usage: scripts/bench/threads.sh [ROUNDS, default 3]
set -euo pipefail

rounds="${1:-3}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
cargo build --release -q --bin factorexe
bin="$root/target/release/factorexe"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT

workload() {
    case "$1" in
    answer-only)
        echo "--config configs/cycle40_answer_only.toml --set model.heads=9 --set model.head_dim=16
              --set model.mlp_factor=1 --set algo.readout=\"answer_head\"
              --set model.encoder_layers=1 --set optim.lr=1e-4 --steps 15 --warmup 3" ;;
    cot-orig)
        echo "--config configs/cycle40_cot.toml --set model.heads=9 --set model.head_dim=16
              --set model.mlp_factor=1 --set model.decoder_layers=1 --steps 10 --warmup 2" ;;
    cot-big)
        echo "--config configs/cycle40_cot.toml --set model.heads=4 --set model.head_dim=64
              --set model.mlp_factor=4 --set model.decoder_layers=4 --steps 4 --warmup 2" ;;
    esac
}

for r in $(seq "$rounds"); do
    for w in answer-only cot-orig cot-big; do
        for mode in "1 true" "2 false" "2 true"; do
            set -- $mode
            # shellcheck disable=SC2046
            line=$("$bin" bench train $(workload "$w") --set train.batch_size=512 \
                --set train.data_parallel="$2" --threads "$1" 2>/dev/null | grep '^train ')
            echo "$w $1 $2 $line" | tee -a "$out" >&2
        done
    done
done

python3 - "$out" <<'EOF'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    w, t, dp = line.split()[:3]
    eps = float(re.search(r"examples_per_s=([0-9.]+)", line).group(1))
    mfu = float(re.search(r"mfu=([0-9.]+)%", line).group(1))
    rows.setdefault((w, t, dp), []).append((eps, mfu))
med = lambda xs: statistics.median(xs)
print("| workload | 1 thread ex/s (MFU) | 2 threads, ops shared | 2 threads, data-parallel "
      "| data-parallel / ops shared | data-parallel / 1 thread |")
print("|---|---|---|---|---|---|")
for w in ["answer-only", "cot-orig", "cot-big"]:
    cells, speed = [], {}
    for key in [("1", "true"), ("2", "false"), ("2", "true")]:
        v = rows.get((w,) + key, [])
        if not v:
            cells.append("-")
            continue
        speed[key] = med([e for e, _ in v])
        cells.append(f"{speed[key]:,.0f} ({med([m for _, m in v]):.1f}%)")
    ratio = lambda a, b: f"{speed[a] / speed[b]:.2f}x" if a in speed and b in speed else "-"
    print(f"| {w} | " + " | ".join(cells)
          + f" | {ratio(('2', 'true'), ('2', 'false'))} | {ratio(('2', 'true'), ('1', 'true'))} |")
if ("answer-only", "2", "true") in rows:
    best = med([e for e, _ in rows[("answer-only", "2", "true")]])
    print(f"\nanswer-only, 2 threads, data-parallel: {best / 1131:.2f}x the original JAX code's "
          "1,131 examples/s (median of three rounds on this machine kind)")
print(f"(medians of {sys.argv[1] and len(next(iter(rows.values())))} rounds; MFU against the "
      "peak each bench measures in its own run)")
EOF
