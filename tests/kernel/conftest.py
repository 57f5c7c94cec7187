# SPDX-License-Identifier: GPL-2.0-only
"""Setup for tests that run against the live kernel.

Tests that load BPF use the `bpf_kernel` fixture: it skips them, with the reason, when this
process can't trace (not root, no CAP_BPF+CAP_PERFMON) or the kernel has no BTF
(KSNOOP_REQUIRE_KERNEL=1 fails them instead, see tests/conftest.py), and it fails a test
that leaves an fd open.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import pytest

from bpf import features
from bpf.insn import exit_, mov64_imm
from bpf.loader import LoadRefused, VerifierError, load_program
from bpf.uapi import AttachType, ProgType
from ksnoop.spec.targets import KernelBTF


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


def _refusal_of_return_0(attach_type: AttachType, attach_btf_id: int) -> str:
    # "" where the kernel loads `return 0` for this attach type and id, else how it refused.
    try:
        with load_program([mov64_imm(0, 0), exit_()], ProgType.TRACING, attach_type, attach_btf_id, name="ksnoop_test"):
            return ""
    except LoadRefused as e:
        return f"{errno.errorcode[e.errno or 0]} before verification"
    except VerifierError as e:  # not expected of `return 0`: a test will say so
        return e.message


@pytest.fixture(scope="session")
def fentry_refusal() -> str:
    """ "" where this kernel loads an fentry program on ip_send_skb, else how it refused: asked once
    per run (this machine's kernel refuses fentry; the VM's kernels take it)."""
    for check in (features.check_privileges(), features.check_btf()):
        if not check.ok:
            pytest.skip(check.reason)
    func_id = KernelBTF.load().find_target("ip_send_skb").attach_btf_id
    return _refusal_of_return_0(AttachType.TRACE_FENTRY, func_id)


@pytest.fixture(scope="session")
def kprobe_refusal() -> str:
    """ "" where this kernel has kprobes (a kprobe PMU, and a kprobe program loads), else why not:
    this machine's kernel is built without them; the VM's kernels have them."""
    check = features.check_privileges()
    if not check.ok:
        pytest.skip(check.reason)
    if not os.path.isdir("/sys/bus/event_source/devices/kprobe"):
        return "no kprobe PMU"
    try:
        with load_program([mov64_imm(0, 0), exit_()], ProgType.KPROBE, AttachType.UNSPEC, 0, name="ksnoop_test"):
            return ""
    except OSError as e:
        return f"{errno.errorcode[e.errno or 0]} loading a kprobe program"


@pytest.fixture(scope="session")
def iterator_refusals() -> dict[str, str]:
    """Iterator target name -> "" where this kernel loads an iterator program for it, else how it
    refused ("EPERM before verification"). Asked once per run by loading the smallest program
    (return 0) for each target: what a kernel permits can change between machines with no version
    change (a BPF LSM policy), so the tests never assume it from a list."""
    from ksnoop.spec.iter_targets import IterTargets

    for check in (features.check_privileges(), features.check_btf()):
        if not check.ok:
            pytest.skip(check.reason)
    refusals = {}
    for name, target in IterTargets(KernelBTF.load()).all().items():
        assert target.target.module == "vmlinux", f"{name}: a module's target; this fixture asks vmlinux's only"
        refusals[name] = _refusal_of_return_0(AttachType.TRACE_ITER, target.target.attach_btf_id)
    return refusals
