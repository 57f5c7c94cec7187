# SPDX-License-Identifier: GPL-2.0-only
"""ruff and mypy --strict over the package, as part of the suite (both come with the `test` extra)."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("tool", ["ruff", "mypy"])
def test_static_checks_pass(tool):
    pytest.importorskip(tool, reason=f"{tool} is not installed (pip install '.[test]')")
    if tool == "ruff":
        result = _run("ruff", "check", "btf", "bpf", "ksnoop", "benchmarks", "tests")
    else:
        result = _run("mypy")  # files and --strict come from pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr
