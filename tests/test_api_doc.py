"""The example in docs/api.md works exactly as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.integration


def test_api_example_in_docs_runs(cache_env, bookworm, tmp_path):
    text = (REPO / "docs/api.md").read_text()
    example = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    proc = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env={**os.environ, **cache_env})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["Hello, world!", "['a.txt', 'b.txt']"]
    assert (tmp_path / "artifacts/os-release").read_text().startswith("PRETTY_NAME")
