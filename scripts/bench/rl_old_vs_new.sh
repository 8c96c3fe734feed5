#!/usr/bin/env bash
# RL episodes/s of two factorexe builds side by side, as a user runs them: the RL recipe
# (configs/cycle10_rl.toml), end to end through `factorexe train`, rounds interleaved so
# both see the same machine load.
#
#   scripts/bench/rl_old_vs_new.sh OLD_BIN OLD_CONFIG NEW_BIN NEW_CONFIG [ROUNDS] [STEPS]
#
# OLD_CONFIG is the recipe as the old build shipped it (its config keys may differ). Each
# round runs, for each build, its default thread count and --threads 1 and 2, for STEPS
# updates (default 100) without evaluation, and prints one line per run: the median of
# `perf/episodes_per_s` over the run's logging windows (training time only) and the
# process's wall and CPU seconds. Extra arguments after STEPS go to every run (e.g.
# --set model.decoder_layers=3).
set -euo pipefail
if [ $# -lt 4 ]; then
    sed -n 2,13p "$0" >&2
    exit 2
fi
old_bin=$(realpath "$1") old_cfg=$(realpath "$2") new_bin=$(realpath "$3") new_cfg=$(realpath "$4")
rounds=${5:-3} steps=${6:-100}
shift $(( $# < 6 ? $# : 6 ))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
median() { python3 -c 'import json,statistics,sys
v=[r["value"] for r in map(json.loads,open(sys.argv[1])) if r["tag"]=="perf/episodes_per_s"]
print(round(statistics.median(v)) if v else "nan")' "$1"; }
echo "round build threads episodes_per_s wall_s cpu_s"
for round in $(seq 1 "$rounds"); do
    for build in old new; do
        bin=${build}_bin cfg=${build}_cfg
        for threads in default 1 2; do
            name="${build}_${threads}_${round}"
            flag=()
            [ "$threads" != default ] && flag=(--threads "$threads")
            /usr/bin/time -f "%e %U %S" -o time.txt "${!bin}" train --config "${!cfg}" \
                "${flag[@]}" --set name="$name" --set log.dir=runs --set train.steps="$steps" \
                --set eval.every=0 --set eval.episodes=50 "$@" >/dev/null 2>&1
            read -r wall user sys < time.txt
            cpu=$(python3 -c "print(round($user + $sys, 2))")
            echo "$round $build $threads $(median "runs/$name/metrics.jsonl") $wall $cpu"
        done
    done
done
