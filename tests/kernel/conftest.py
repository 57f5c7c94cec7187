"""Setup for tests that run against the live kernel.

Tests that load BPF use the `bpf_kernel` fixture: it skips them, with the reason, when this
process can't trace (not root, no CAP_BPF+CAP_PERFMON) or the kernel has no BTF
(KSNOOP_REQUIRE_KERNEL=1 fails them instead, see tests/conftest.py), and it fails a test
that leaves an fd open.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bpf import features
from ksnoop.targets import KernelBTF


def _open_fds() -> dict[int, str]:
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the fd listdir itself used, closed by now
    return fds


@pytest.fixture
def bpf_kernel() -> Iterator[None]:
    for check in (features.check_privileges(), features.check_btf()):
        if not check.ok:
            pytest.skip(check.reason)
    before = _open_fds()
    yield
    leaked = {fd: target for fd, target in _open_fds().items() if before.get(fd) != target}
    assert not leaked, f"test left fds open: {leaked}"


@pytest.fixture(scope="module")
def kernel() -> KernelBTF:
    """The running kernel's BTF, read once per module."""
    # Module-scoped fixtures run before bpf_kernel's checks: skip here too when there is no BTF.
    btf = features.check_btf()
    if not btf.ok:
        pytest.skip(btf.reason)
    return KernelBTF.load()
