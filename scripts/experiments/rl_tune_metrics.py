#!/usr/bin/env python3
"""Print a run's RL training curves (entropy, reward, chain length, curriculum level) every N steps.

    scripts/experiments/rl_tune_metrics.py runs/<name> [every=50]
"""
import collections
import json
import sys

run = sys.argv[1]
every = int(sys.argv[2]) if len(sys.argv) > 2 else 50
rows = collections.defaultdict(dict)
with open(f"{run}/metrics.jsonl") as f:
    for line in f:
        d = json.loads(line)
        rows[d["step"]][d["tag"]] = d["value"]
keys = ["train/entropy", "train/reward_mean", "train/chain_len", "train/reward/d1",
        "train/reward/d2", "train/reward/d4", "charts/curriculum_level", "train/grad_norm"]
for s in sorted(rows):
    if s % every:
        continue
    r = rows[s]
    print(s, " ".join(f"{k.split('/', 1)[1]}={r[k]:.3f}" for k in keys if k in r))
