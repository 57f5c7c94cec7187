# SPDX-License-Identifier: GPL-2.0-only
"""Fixtures for the btf/ unit tests: the mini kernel parsed in either byte order, and its split module."""

from __future__ import annotations

import signal

import pytest

from btf import BTF
from tests.support import minikernel


@pytest.fixture(scope="module", params=["little", "big"])
def byteorder(request):
    return request.param


@pytest.fixture(scope="module")
def kernel(byteorder):
    """(BTF of the mini kernel, its name -> id map), in each byte order."""
    blob, ids = minikernel.build(byteorder)
    return BTF.from_bytes(blob), ids


@pytest.fixture(scope="module")
def mini():
    """The little-endian mini kernel only, for tests where byte order cannot matter."""
    blob, ids = minikernel.build("little")
    return BTF.from_bytes(blob), ids


@pytest.fixture(scope="module")
def split():
    """(base BTF, module BTF, base ids, module ids) for nf_minimod on the mini kernel."""
    base_builder, base_ids = minikernel.make_builder()
    module_blob, module_ids = minikernel.build_module(base_builder, base_ids)
    base = BTF.from_bytes(base_builder.to_bytes())
    module = BTF.from_bytes(module_blob, base=base, name=minikernel.MODULE_NAME)
    return base, module, base_ids, module_ids


@pytest.fixture
def time_limit():
    """Fail the test, rather than hang or fill memory, if it runs for more than 3 seconds."""

    def on_alarm(signum, frame):
        raise TimeoutError("still running after 3 s: a loop that corrupt BTF should not allow")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 3)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)
