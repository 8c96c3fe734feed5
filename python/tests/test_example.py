"""The PyTorch example `examples/python/reinforce_cycle.py`, at a small size: it must learn
Cycle at hop 1 well above chance through the Rust vector env."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPORT, ROOT, torch_dir

SCRIPT = ROOT / "examples" / "python" / "reinforce_cycle.py"


def torch_env() -> dict[str, str]:
    """This process's environment with PyTorch's directory first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(torch_dir()), env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def test_reinforce_learns_cycle_hop_1() -> None:
    env = torch_env()
    has_torch = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True).returncode == 0
    if not has_torch:
        message = f"PyTorch not importable from {torch_dir()} (scripts/setup installs it)"
        if os.environ.get("FACTOREXE_REQUIRE_TORCH") == "1":
            pytest.fail(message)
        pytest.skip(message)
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--iterations", "200", "--num-envs", "256", "--seed", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    found = re.search(r"accuracy=([0-9.]+) chance=([0-9.]+)", run.stdout)
    assert found, run.stdout
    accuracy, chance = float(found.group(1)), float(found.group(2))
    REPORT.append(f"examples/python/reinforce_cycle.py (Cycle L=6, hop 1, 200 updates): {found.group(0)}")
    assert accuracy >= max(0.5, 3 * chance), run.stdout
