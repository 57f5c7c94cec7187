# SPDX-License-Identifier: GPL-2.0-only
"""ruff check, ruff format --check and mypy --strict, as part of the suite (they come with the `test` extra)."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, timeout=300)


PATHS = ("btf", "bpf", "ksnoop", "benchmarks", "tests")


@pytest.mark.parametrize("tool", ["ruff", "ruff format", "mypy"])
def test_static_checks_pass(tool):
    pytest.importorskip(tool.split()[0], reason=f"{tool} is not installed (pip install '.[test]')")
    if tool == "ruff":
        result = _run("ruff", "check", *PATHS)
    elif tool == "ruff format":  # pyproject pins ruff's minor version: its style changes between them
        result = _run("ruff", "format", "--check", *PATHS)
    else:
        result = _run("mypy")  # files and --strict come from pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr
