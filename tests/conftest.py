# SPDX-License-Identifier: GPL-2.0-only
"""Shared pytest setup: the `kernel` marker, and KSNOOP_REQUIRE_KERNEL=1 turning its skips into failures."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

KERNEL_MARKER = "kernel: needs the running kernel"


def pytest_configure(config: pytest.Config) -> None:
    # pyproject.toml declares it too; registering twice is harmless, missing once breaks --strict-markers.
    if not any(line.startswith("kernel:") for line in config.getini("markers")):
        config.addinivalue_line("markers", KERNEL_MARKER)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and os.environ.get("KSNOOP_REQUIRE_KERNEL") == "1"
        and item.get_closest_marker("kernel") is not None
        and not hasattr(report, "wasxfail")
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"KSNOOP_REQUIRE_KERNEL=1, but the test was skipped: {reason}"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite the files under tests/golden/ from what the code produces now, instead of comparing",
    )
