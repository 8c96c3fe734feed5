#!/usr/bin/env bash
# A 12-point local sweep that loses nothing: run it once uninterrupted; run it again, kill one
# of its runs with SIGKILL midway and the driver with SIGTERM, rerun the driver; then check
# that all 12 points are done and that every run's (step, tag, value) records, wall-clock
# `perf/*` aside, equal the uninterrupted sweep's.
#
#   scripts/experiments/sweep_kill_check.sh [WORK_DIR]     # default: a fresh temp dir
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cargo build --release -q --bin factorexe
BIN=${CARGO_TARGET_DIR:-$root/target}/release/factorexe
work=${1:-$(mktemp -d)}
mkdir -p "$work"
cd "$work"
export OMP_WAIT_POLICY=PASSIVE

cat > tiny.toml <<'EOF'
seed = 2
[env]
name = "cycle"
length = 5
[train]
steps = 300
batch_size = 32
levels = [1, 2]
[algo]
name = "cot_supervised"
[model]
heads = 2
head_dim = 8
mlp_factor = 2
decoder_layers = 1
[optim]
lr = 3e-3
warmup_steps = 2
[eval]
every = 50
episodes = 50
[log]
every = 10
checkpoint_every = 25
EOF
cat > sweep.toml <<'EOF'
seeds = [0, 1, 2]
[base]
config = "tiny.toml"
[[axis]]
key = "model.heads"
values = [1, 2]
[[axis]]
key = "optim.lr"
values = [0.003, 0.01]
EOF

echo "== uninterrupted sweep"
"$BIN" sweep run sweep.toml --out straight --jobs 2 --no-progress >/dev/null

echo "== interrupted sweep"
"$BIN" sweep run sweep.toml --out broken --jobs 2 --no-progress >broken.log 2>&1 &
driver=$!
# Wait for the third point to start, so that finished, running and pending points all exist.
while [ "$(ls broken/runs 2>/dev/null | wc -l)" -lt 3 ]; do sleep 0.2; done
sleep 1
victim=$(pgrep -f "factorexe train .*broken/runs" | head -1 || true)
if [ -n "$victim" ]; then
    echo "SIGKILL to the run process $victim"
    kill -KILL "$victim"
fi
sleep 1
echo "SIGTERM to the driver (pid $driver)"
kill -TERM "$driver"
wait "$driver" || echo "driver exited with $?"
"$BIN" sweep status broken | tail -3
echo "== rerun"
"$BIN" sweep run sweep.toml --out broken --jobs 2 --no-progress | tail -2
"$BIN" sweep status broken | tail -2

python3 - <<'PY'
import json, pathlib, sys
def records(run):
    out = set()
    for line in (run / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if not r["tag"].startswith("perf/"):
            out.add((r["step"], r["tag"], json.dumps(r["value"])))
    return out
straight = sorted(p for p in pathlib.Path("straight/runs").iterdir() if p.is_dir())
same = 0
for run in straight:
    other = pathlib.Path("broken/runs") / run.name
    a, b = records(run), records(other)
    if a == b:
        same += 1
    else:
        print(f"{run.name}: {len(a ^ b)} records differ")
resumed = [
    f"{p.parent.name} (at step {json.loads(l)['step']})"
    for p in pathlib.Path("broken/runs").glob("*/history.jsonl")
    for l in p.read_text().splitlines()
    if json.loads(l)["event"] == "resume"
]
print("resumed from a checkpoint: " + (", ".join(resumed) or "none"))
print(f"{same} of {len(straight)} runs have identical records")
sys.exit(0 if same == len(straight) == 12 else 1)
PY
