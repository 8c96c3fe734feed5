#!/usr/bin/env python3
"""Greedy accuracy per hop against env samples for expert iteration and REINFORCE runs
(search_exit_vs_reinforce.sh), from each run's metrics.jsonl: one row per evaluation, with
the played episodes (update x episodes per update) and the reward queries (the sum of
train/reward_queries where a run reports it, else the played episodes).

    python3 scripts/experiments/search_exit_summary.py RUN_DIR:EPISODES_PER_UPDATE ...
"""
import json
import sys
from pathlib import Path

print("| run | update | played episodes | reward queries | "
      "hop 1 | hop 2 | hop 3 | hop 4 | mean |")
print("|---|---|---|---|---|---|---|---|---|")
for arg in sys.argv[1:]:
    run, per_update = arg.rsplit(":", 1)
    per_update = int(per_update)
    acc, queries = {}, {}
    for line in (Path(run) / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if isinstance(r["value"], str):
            continue
        tag, step = r["tag"], r["step"]
        if tag.startswith("eval/accuracy/greedy/"):
            acc.setdefault(step, {})[tag.rsplit("/", 1)[1]] = r["value"]
        elif tag == "train/reward_queries":
            queries[step] = r["value"]
    log_every = None
    steps = sorted(queries)
    if len(steps) > 1:
        log_every = steps[1] - steps[0]
    for step in sorted(acc):
        a = acc[step]
        if queries and log_every:
            # Logged values are means over log intervals.
            q = sum(v * log_every for s, v in queries.items() if s <= step)
        else:
            q = step * per_update
        cells = " | ".join(
            f"{100 * a[k]:.1f}%" if k in a else "-" for k in ("d1", "d2", "d3", "d4", "mean"))
        print(f"| {Path(run).name} | {step} | {step * per_update} | {int(q)} | {cells} |")
