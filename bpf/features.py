# SPDX-License-Identifier: GPL-2.0-only
"""What this kernel and this process can do, found by trying: privileges, tp_btf, fentry, kprobes,
ringbuf, each iterator target.

Each probe loads or creates the smallest thing that answers the question, closes it, and
caches a `Feature(ok, reason)`. Nothing here looks at the kernel version.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import mmap
import os
from dataclasses import dataclass
from typing import Tuple

from .btfobj import open_kernel_btf
from .errnos import errno_name
from .insn import exit_, mov64_imm
from .loader import LoadRefused, VerifierError, attach_kprobe_multi, load_program
from .maps import Map
from .perf import NoKprobes, kprobe_pmu
from .uapi import AttachType, ProgType

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39

_RETURN_0 = (mov64_imm(0, 0), exit_())


@dataclass(frozen=True)
class Feature:
    """A probe's answer: `ok`, and the facts of a no: in `reason` what failed (an errno and when,
    a missing capability), in `missing` the capabilities this process lacks. The tool words them."""

    ok: bool
    reason: str = ""
    missing: Tuple[str, ...] = ()
    # The kernel said no before verifying anything (its policy: a security module, lockdown), so
    # it says no to every program of this kind, not to this one's target.
    refused: bool = False

    def __bool__(self) -> bool:
        return self.ok


def parse_cap_eff(status_text: str) -> int:
    """The CapEff mask from the text of /proc/<pid>/status."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    raise ValueError("no CapEff line in /proc/self/status")


def effective_capabilities() -> int:
    """This process's effective capability mask (bit n = capability n)."""
    with open("/proc/self/status") as f:
        return parse_cap_eff(f.read())


def privileges_from_caps(cap_eff: int) -> Feature:
    """Enough to trace: CAP_BPF with CAP_PERFMON (v5.8+), or CAP_SYS_ADMIN, which covers both."""
    if cap_eff >> CAP_SYS_ADMIN & 1:
        return Feature(True)
    if cap_eff >> CAP_BPF & 1 and cap_eff >> CAP_PERFMON & 1:
        return Feature(True)
    missing = [name for bit, name in ((CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")) if not cap_eff >> bit & 1]
    return Feature(False, f"this process lacks {' and '.join(missing)}", tuple(missing))


@functools.cache
def check_privileges() -> Feature:
    """Are we root, or hold CAP_BPF + CAP_PERFMON (read from CapEff in /proc/self/status)?"""
    return privileges_from_caps(effective_capabilities())


@functools.cache
def check_btf() -> Feature:
    """Does the kernel expose its BTF at /sys/kernel/btf/vmlinux?"""
    if os.path.exists("/sys/kernel/btf/vmlinux"):
        return Feature(True)
    return Feature(False, "this kernel has no /sys/kernel/btf/vmlinux (built without CONFIG_DEBUG_INFO_BTF)")


def _describe(e: OSError) -> str:
    if isinstance(e, VerifierError):
        return e.message
    code = e.errno or 0
    if isinstance(e, LoadRefused):
        return f"{errno_name(code)} before verification"
    return f"{errno_name(code)}: {os.strerror(code)}"


def _probe_load(
    prog_type: ProgType, attach_type: AttachType, attach_btf_id: int, what: str, module: str = "vmlinux"
) -> tuple[Feature, int]:
    # (the answer, the load's errno or 0)
    try:
        with contextlib.ExitStack() as stack:
            btf_obj_fd = None if module == "vmlinux" else stack.enter_context(open_kernel_btf(module)).fd
            stack.enter_context(
                load_program(
                    _RETURN_0, prog_type, attach_type, attach_btf_id, attach_btf_obj_fd=btf_obj_fd, name="ksnoop_probe"
                )
            )
            return Feature(True), 0
    except OSError as e:
        if e.errno == errno.EPERM and not check_privileges():
            return check_privileges(), e.errno or 0
        if isinstance(e, LoadRefused):
            return Feature(False, _describe(e), refused=True), e.errno or 0
        return Feature(False, f"{what} programs do not load here ({_describe(e)})"), e.errno or 0


@functools.cache
def probe_tp_btf(attach_btf_id: int) -> Feature:
    """Can a tp_btf program load for the tracepoint whose `btf_trace_<tp>` typedef is `attach_btf_id`?"""
    return _probe_load(ProgType.TRACING, AttachType.TRACE_RAW_TP, attach_btf_id, "tp_btf")[0]


@functools.cache
def probe_fentry(attach_btf_id: int, module: str = "vmlinux") -> Feature:
    """Can an fentry program load on the function (BTF FUNC) `attach_btf_id` of `module`?

    Some kernels refuse every fentry/fexit load with EPERM before verifying anything (this
    machine's 6.18 does, with full privileges); the reason is then "EPERM before verification"
    and `refused` is set.
    """
    return _probe_load(ProgType.TRACING, AttachType.TRACE_FENTRY, attach_btf_id, "fentry", module)[0]


@functools.cache
def probe_kprobes() -> Feature:
    """Can this process put kprobes on functions: does the kernel have the kprobe PMU (bpf.perf),
    and does a BPF_PROG_TYPE_KPROBE program load?"""
    try:
        kprobe_pmu()
    except NoKprobes as error:
        return Feature(False, error.strerror or str(error), refused=True)
    return _probe_load(ProgType.KPROBE, AttachType.UNSPEC, 0, "kprobe")[0]


# A name no kernel function has (C names hold no space): a kernel with kprobe_multi links looks the
# names up before it registers anything, and answers ESRCH.
_NO_FUNCTION = "ksnoop probe"


@functools.cache
def probe_kprobe_multi() -> Feature:
    """Can one link put kprobes on many functions (kprobe_multi: v5.18, CONFIG_FPROBE)? Asked by
    linking the smallest program to a function that cannot exist: a kernel with the links answers
    ESRCH from its lookup of the names; one without refuses the program or answers EOPNOTSUPP. A
    real link would cost an ftrace update and its grace periods, a tenth of a second under emulation."""
    kprobes = probe_kprobes()
    if not kprobes:
        return kprobes
    try:
        with load_program(_RETURN_0, ProgType.KPROBE, AttachType.TRACE_KPROBE_MULTI, 0, name="ksnoop_probe") as prog:
            with attach_kprobe_multi(prog, [_NO_FUNCTION], retprobe=False):
                return Feature(True)  # linked to nothing: the links are there all the same
    except OSError as e:
        if e.errno == errno.ESRCH:
            return Feature(True)
        return Feature(False, f"no kprobe_multi links ({_describe(e)})")


def probe_kprobe_session() -> Feature:
    """Does this kernel run kprobe session programs (v6.10), one program at both the entry and
    the return of many functions? Asked by loading the smallest one: a kernel without them
    refuses the attach type. Linking is not asked again here (that costs an ftrace update and
    its grace periods): the caller has linked a kprobe_multi program, the same fprobe
    underneath, and a session link refused at attach time falls back to one link a side."""
    kprobes = probe_kprobes()
    if not kprobes:
        return kprobes
    try:
        with load_program(_RETURN_0, ProgType.KPROBE, AttachType.TRACE_KPROBE_SESSION, 0, name="ksnoop_probe"):
            return Feature(True)
    except OSError as e:
        return Feature(False, f"no kprobe session programs ({_describe(e)})")


@functools.cache
def probe_iter(attach_btf_id: int, module: str = "vmlinux") -> Feature:
    """Can an iterator program load for the target whose FUNC bpf_iter_<name> is `attach_btf_id`
    (an id in `module`'s BTF)? When not, `reason` says how the load failed ("EPERM before
    verification"), for the caller to word.

    Asked per target: a security module can refuse some targets and not others, and what it
    refuses can change between machines with the same kernel version (this machine's 6.18 took
    the map-element targets on 2026-11-22 and refused them, EPERM before verification, on
    2026-12-04, while task, task_file, tcp and the rest still loaded).
    """
    privileges = check_privileges()
    if not privileges:
        return privileges
    with contextlib.ExitStack() as stack:
        try:
            btf_obj_fd = None if module == "vmlinux" else stack.enter_context(open_kernel_btf(module)).fd
            stack.enter_context(
                load_program(
                    _RETURN_0,
                    ProgType.TRACING,
                    AttachType.TRACE_ITER,
                    attach_btf_id,
                    attach_btf_obj_fd=btf_obj_fd,
                    name="ksnoop_probe",
                )
            )
        except OSError as e:
            return Feature(False, _describe(e))
    return Feature(True)


@functools.cache
def probe_ringbuf() -> Feature:
    """Can we create a BPF_MAP_TYPE_RINGBUF map (v5.8+)?"""
    try:
        with Map.ringbuf(mmap.PAGESIZE, name="ksnoop_probe"):
            return Feature(True)
    except OSError as e:
        return Feature(False, f"ring buffer maps are not available ({_describe(e)})")
