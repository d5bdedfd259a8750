"""The README's Python examples (sections Python and Validating your own export) run, as
written, from the repository's root (a block whose first line is `# needs torch` is skipped
where torch is not installed)."""

import importlib.util
import os
import re

import pytest

from conftest import REPO


def python_blocks():
    text = (REPO / "README.md").read_text()
    blocks = []
    for title in ("Validating your own export", "Python"):
        start = text.index(f"\n## {title}\n")
        end = text.find("\n## ", start + 1)
        section = text[start : end if end != -1 else len(text)]
        blocks += re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return blocks


BLOCKS = python_blocks()


def test_the_section_has_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("k", range(len(BLOCKS)))
def test_example_runs(k, monkeypatch):
    code = BLOCKS[k]
    if code.startswith("# needs torch") and importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed (pip install torch --index-url https://download.pytorch.org/whl/cpu)")
    monkeypatch.chdir(REPO)
    exec(compile(code, f"README.md python block {k}", "exec"), {"__name__": f"readme_{k}"})
