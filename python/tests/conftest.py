"""Shared fixtures of the Python tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

#: The repository's root (python/tests/ -> the root).
ROOT = Path(__file__).resolve().parents[2]

#: Gymnasium ids and the Rust names of the built-in envs.
TASKS = {
    "FactorExe/Cycle-v0": "cycle",
    "FactorExe/CVPR-v0": "cvpr",
    "FactorExe/Multiplication-v0": "multiplication",
    "FactorExe/BinPack-v0": "binpack",
}

#: Small parameters per task, to keep the tests fast.
SMALL = {
    "cycle": {"length": 8},
    "cvpr": {"length": 8},
    "multiplication": {"max_digits": 3},
    "binpack": {"items": 6, "ems": 8},
}


def factorexe_cli() -> Path | None:
    """The `factorexe` binary when one is built (or named by `FACTOREXE_BIN`), else None."""
    named = os.environ.get("FACTOREXE_BIN")
    if named:
        return Path(named)
    for profile in ("release", "debug"):
        path = ROOT / "target" / profile / "factorexe"
        if path.is_file() and os.access(path, os.X_OK):
            return path
    found = shutil.which("factorexe")
    return Path(found) if found else None


@pytest.fixture
def cli() -> Path:
    """The `factorexe` CLI; skips the test when none is built."""
    path = factorexe_cli()
    if path is None:
        pytest.skip("no factorexe binary built (cargo build) and FACTOREXE_BIN unset")
    return path


#: Lines the tests want shown after the run (e.g. the example's reached accuracy).
REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:
    """Prints the lines of :data:`REPORT` in pytest's summary."""
    if REPORT:
        terminalreporter.section("factorexe")
        for line in REPORT:
            terminalreporter.write_line(line)


def torch_dir() -> Path:
    """Where `scripts/setup` installs PyTorch (`FACTOREXE_TORCH_DIR` overrides it)."""
    named = os.environ.get("FACTOREXE_TORCH_DIR")
    if named:
        return Path(named)
    cache = os.environ.get("FACTOREXE_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "factorexe"
    )
    return Path(cache) / "python-torch-2.13.0"
