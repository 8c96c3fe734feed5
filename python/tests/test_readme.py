"""The Python examples of python/README.md run as written."""

from __future__ import annotations

import re

from conftest import ROOT


def test_readme_examples_run() -> None:
    text = (ROOT / "python" / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "python/README.md", "exec"), namespace)
    assert namespace["out"].actions.shape == (8,)
