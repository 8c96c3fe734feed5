#!/usr/bin/env python3
"""Summarizes the runs of rl_table.sh (the RL tables of docs/rl.md): greedy accuracy per hop
(from each run's eval log) and the training signals from metrics.jsonl (reward, advantage std,
gradient variance).

    python3 scripts/experiments/rl_summary.py RUNS_DIR LOG_DIR
"""
import json
import re
import sys
from pathlib import Path

runs, logs = Path(sys.argv[1]), Path(sys.argv[2])
rows = []
for log in sorted(logs.glob("*.eval.log")):
    name = log.name[: -len(".eval.log")]
    acc = {}
    for line in log.read_text().splitlines():
        m = re.match(r"\s+(\d+)\s+(\d+)\s+([\d.]+)%", line)
        if m and int(m.group(1)) not in acc:
            acc[int(m.group(1))] = float(m.group(3))
    metrics = runs / name / "metrics.jsonl"
    tags = {}
    if metrics.exists():
        for line in metrics.read_text().splitlines():
            r = json.loads(line)
            v = r["value"]
            if isinstance(v, str):
                continue
            tags.setdefault(r["tag"], []).append(v)
    def mean(tag):
        v = tags.get(tag, [])
        return sum(v) / len(v) if v else float("nan")
    rows.append((name, acc, mean("train/grad_var"), mean("train/grad_var_rel"),
                 mean("train/advantage_std"), tags.get("train/reward_mean", [float("nan")])[-1]))
hops = sorted({h for _, a, *_ in rows for h in a})
print("| run | " + " | ".join(f"hop {h}" for h in hops)
      + " | mean grad var | mean grad var / norm^2 | mean adv std | final train reward |")
print("|---" * (len(hops) + 5) + "|")
for name, acc, gv, gvr, adv, rew in rows:
    cells = " | ".join(f"{acc[h]:.1f}%" if h in acc else "-" for h in hops)
    print(f"| {name} | {cells} | {gv:.3g} | {gvr:.3g} | {adv:.3f} | {rew:.3f} |")
