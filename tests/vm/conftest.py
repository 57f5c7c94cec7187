# SPDX-License-Identifier: GPL-2.0-only
"""Fixtures for tests that run inside the qemu guest (see harness.py).

`vm` is one VM per pytest session, booted on the first command; tests using it carry the `vm` marker.
It skips only when qemu, the Debian kernel or busybox-static is missing; KSNOOP_REQUIRE_VM=1 fails instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.vm import harness

VM_MARKER = "vm: runs inside a qemu VM with a Debian kernel (fentry/fexit)"


def pytest_configure(config: pytest.Config) -> None:
    # Until pyproject.toml registers the marker; --strict-markers would reject it otherwise.
    if not any(line.startswith("vm:") for line in config.getini("markers")):
        config.addinivalue_line("markers", VM_MARKER)


@pytest.fixture(scope="session")
def vm() -> Iterator[harness.VM]:
    try:
        machine = harness.VM()
    except harness.VMUnavailable as error:
        if os.environ.get("KSNOOP_REQUIRE_VM") == "1":
            pytest.fail(f"KSNOOP_REQUIRE_VM=1 but the VM cannot run: {error}", pytrace=False)
        pytest.skip(f"VM unavailable: {error}")
    with machine:
        yield machine
