#!/usr/bin/env bash
# Training throughput of our CoT transformer (Rust, tch) against a PyTorch-eager twin on the
# same libtorch, same model config and same synthetic Cycle batches, plus chain sampling with
# and without the KV cache.
#
#   scripts/bench/train_vs_pytorch.sh [--batch 512] [--heads 4] [--head-dim 32]
#       [--decoder-layers 2] [--mlp-factor 4] [--repeat 1] [--input-len 40] [--max-hops 5]
#       [--steps 20] [--threads 2]
#   ROUNDS=3 (alternating runs; the best of each side is kept, since other processes on a
#   shared machine only ever slow a run down)
#
# Prints examples/s of each, the ratio, and our model-FLOPs utilisation against the CPU's
# fp32 peak (derived from lscpu, see peak_flops below).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
# Both sides use libtorch's OpenMP pool. With the default wait policy, idle workers spin; on a
# machine shared with other jobs a spinning or descheduled worker stalls every parallel op
# (measured 2.5-3x slower steps at 2 threads under load). PASSIVE makes them sleep; it applies
# to both sides equally. Override with OMP_WAIT_POLICY=ACTIVE on an idle machine.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
PYDIR=${FACTOREXE_CACHE:-$HOME/.cache/factorexe}/python-torch-2.13.0
if [ ! -d "$PYDIR/torch" ]; then
    echo "no PyTorch at $PYDIR (run scripts/setup)" >&2
    exit 1
fi
cargo build --release -q -p factorexe-agents --example bench_train_step
BIN=target/release/examples/bench_train_step
PY=scripts/bench/train_vs_pytorch.py
# The flags both sides understand (the Rust bench takes a few more).
PY_ARGS=()
RS_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --sample-len|--sample-batch|--encoder-layers) RS_ARGS+=("$1" "$2") ;;
        *) RS_ARGS+=("$1" "$2"); PY_ARGS+=("$1" "$2") ;;
    esac
    shift 2
done

OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); OMP_WAIT_POLICY=$OMP_WAIT_POLICY"
for r in $(seq "$ROUNDS"); do
    "$BIN" --mode train "${RS_ARGS[@]}" | tee -a "$OUT"
    PYTHONPATH="$PYDIR" python3 "$PY" "${PY_ARGS[@]}" 2>/dev/null | grep RESULT | tee -a "$OUT"
    PYTHONPATH="$PYDIR" python3 "$PY" --factored "${PY_ARGS[@]}" 2>/dev/null | grep RESULT | tee -a "$OUT"
done
"$BIN" --mode sample "${RS_ARGS[@]}" | tee -a "$OUT"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$OUT" <<'PYEOF'
import re, subprocess, sys

rows = []
for line in open(sys.argv[1]):
    if line.startswith("RESULT"):
        rows.append(dict(kv.split("=", 1) for kv in line.split()[1:]))
best, best_cpu = {}, {}
for r in rows:
    if r["kind"] == "train":
        v = float(r["examples_per_s"])
        if v > best.get(r["impl"], (0,))[0]:
            best[r["impl"]] = (v, r)
        best_cpu[r["impl"]] = max(best_cpu.get(r["impl"], 0.0), float(r["examples_per_cpu_s"]))
sample = next(r for r in rows if r["kind"] == "sample")

def peak_flops(threads):
    """fp32 FLOP/s of the cores the run used = min(threads, CPUs) x FLOP/cycle/core x clock.
    FLOP/cycle/core = FMA pipes x fp32 lanes x 2. Zen 4 (AMD with avx512f) executes
    AVX-512 on two 256-bit FMA pipes: 2 x 8 x 2 = 32; Zen 2/3 and Intel AVX2 cores: two
    256-bit FMA pipes, 32; Intel server AVX-512 cores: two 512-bit pipes, 64 (an upper
    bound for one-pipe parts). Clock: lscpu's max MHz, else BogoMIPS/2 (the TSC rate, which
    is the nominal clock under KVM, where lscpu shows no MHz)."""
    info = dict(l.split(":", 1) for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines() if ":" in l)
    info = {k.strip(): v.strip() for k, v in info.items()}
    flags = info.get("Flags", "").split()
    cores = min(int(info.get("CPU(s)", "1")), threads)
    amd = "AMD" in info.get("Vendor ID", "")
    if "avx512f" in flags and not amd:
        per_cycle, why = 64, "2 x 512-bit FMA"
    elif "fma" in flags:
        per_cycle, why = 32, "2 x 256-bit FMA" + (" (Zen 4 double-pumps AVX-512)" if "avx512f" in flags else "")
    else:
        per_cycle, why = 16, "no FMA: 1 mul + 1 add x 8 lanes"
    if info.get("CPU max MHz"):
        ghz, src = float(info["CPU max MHz"]) / 1e3, "lscpu max MHz"
    else:
        ghz, src = float(info["BogoMIPS"]) / 2e3, "BogoMIPS/2"
    return cores * per_cycle * ghz * 1e9, f"{cores} cores x {per_cycle} FLOP/cycle ({why}) x {ghz:.3f} GHz ({src})"

ours, r = best["rust"]
peak, how = peak_flops(int(r["threads"]))
print()
print(f"config: params={r['params']} forward FLOPs/example={float(r['fwd_flops_per_example']):.3e}")
for impl in ("rust", "pytorch", "pytorch_factored"):
    if impl in best:
        print(f"  {impl:17s} {best[impl][0]:9.1f} examples/s  ({best[impl][1]['step_ms']} ms/step)"
              f"  {best_cpu[impl]:9.1f} examples/CPU-s  (best of runs)")
print(f"ratio rust / pytorch-eager          = {ours / best['pytorch'][0]:.2f}x wall, "
      f"{best_cpu['rust'] / best_cpu['pytorch']:.2f}x per CPU-second")
if "pytorch_factored" in best:
    print(f"ratio rust / pytorch-eager+factored = {ours / best['pytorch_factored'][0]:.2f}x wall, "
          f"{best_cpu['rust'] / best_cpu['pytorch_factored']:.2f}x per CPU-second "
          f"(the Rust model's table trick written in Python too)")
print("(per CPU-second is the steadier figure on a shared machine with 1 thread; with several "
      "threads, OpenMP spin-waits count as CPU time)")
mfu = float(r["train_flops_per_s"]) / peak
print(f"MFU (3 x forward model FLOPs x examples/s over peak) = {float(r['train_flops_per_s']) / 1e9:.1f} / {peak / 1e9:.1f} GFLOP/s = {100 * mfu:.1f}%")
print("  (FLOPs as the Rust model runs them: without encoder layers its memory's keys and values "
      "are projected once per table row, not per problem and position)")
print(f"  peak = {how}")
print(f"sampling {sample['chain_len']} tokens x {sample['batch']} chains: KV cache {sample['cached_chains_per_s']} chains/s, "
      f"no cache {sample['uncached_chains_per_s']} chains/s, speedup {sample['speedup']}x")
PYEOF
