# SPDX-License-Identifier: GPL-2.0-only
"""Fixtures for tests that run inside the qemu guest (see harness.py).

`vm` is one VM per pytest session and kernel, booted on the first command: it is parametrized over the
kernels in KSNOOP_VM_KERNELS (default all of harness.KERNELS, "6.1,6.12"), with those names as test ids,
and `vm.kernel.name` says which a test runs on. Tests using it carry the `vm` marker. It skips only when
qemu, that kernel or busybox-static is missing; KSNOOP_REQUIRE_VM=1 fails instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.vm import harness

VM_MARKER = "vm: runs inside a qemu VM with a Debian kernel (fentry/fexit)"
KERNELS = [name.strip() for name in os.environ.get("KSNOOP_VM_KERNELS", ",".join(harness.KERNELS)).split(",")]


def pytest_configure(config: pytest.Config) -> None:
    # Until pyproject.toml registers the marker; --strict-markers would reject it otherwise.
    if not any(line.startswith("vm:") for line in config.getini("markers")):
        config.addinivalue_line("markers", VM_MARKER)
    unknown = [name for name in KERNELS if name not in harness.KERNELS]
    if unknown:
        raise pytest.UsageError(f"KSNOOP_VM_KERNELS names {unknown}; the harness boots {', '.join(harness.KERNELS)}")


# Session scope: each kernel boots once. pytest runs all tests of one parameter of a session-scoped
# fixture before the next and tears the first down before it sets the next up, so one VM is alive at a time.
@pytest.fixture(scope="session", params=KERNELS)
def vm(request: pytest.FixtureRequest) -> Iterator[harness.VM]:
    try:
        machine = harness.VM(kernel=request.param)
    except harness.VMUnavailable as error:
        if os.environ.get("KSNOOP_REQUIRE_VM") == "1":
            pytest.fail(f"KSNOOP_REQUIRE_VM=1 but the {request.param} VM cannot run: {error}", pytrace=False)
        pytest.skip(f"VM unavailable: {error}")
    with machine:
        yield machine
