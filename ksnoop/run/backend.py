# SPDX-License-Identifier: GPL-2.0-only
"""Which probes trace functions (--backend): fentry/fexit where the kernel takes them, else
kprobes/kretprobes; or what the user chose. Found by asking the kernel (loading the smallest
program of each kind on a function the specs name), never from its version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from bpf.features import check_privileges, probe_fentry, probe_kprobes
from bpf.plan import ProbeKind

from ksnoop.errors import Refused, UnknownTarget
from ksnoop.spec.language import TraceSpec
from ksnoop.spec.targets import TRACEPOINT_PREFIX, KernelBTF, Target, TargetKind

BACKENDS = ("auto", "fentry", "kprobe")


@dataclass(frozen=True)
class Backend:
    """The probes functions get, and why (for -v, "" when no function is traced); `note` goes to
    stderr when it is not empty."""

    kind: ProbeKind  # FENTRY (with FEXIT) or KPROBE (with KRETPROBE)
    why: str
    note: str = ""


def choose_backend(name: str, specs: Sequence[TraceSpec], kernel: KernelBTF) -> Backend:
    """The backend `name` ("auto", "fentry" or "kprobe") means for these specs on this kernel.

    "auto" is fentry unless the kernel refuses fentry programs as such (before verifying them:
    its policy, not the function), and then kprobes if it has them; Refused when it has neither.
    A kernel that is not the running one (--btf FILE), or a process that may not load programs,
    is not asked: fentry, and "kprobe" is taken as asked.
    """
    if name == "fentry":
        return Backend(ProbeKind.FENTRY, "fentry/fexit: --backend fentry")
    if name == "kprobe":
        if kernel.running and check_privileges():
            kprobes = probe_kprobes()
            if not kprobes:
                raise Refused(f"--backend kprobe: this kernel has no kprobes ({kprobes.reason})")
        return Backend(ProbeKind.KPROBE, "kprobes/kretprobes: --backend kprobe")
    function = _first_function(specs, kernel)
    if function is None:
        return Backend(ProbeKind.FENTRY, "")  # no function to trace: nothing to say
    if not kernel.running or not check_privileges():
        return Backend(ProbeKind.FENTRY, "fentry/fexit: the kernel was not asked (not the running one, or not allowed)")
    fentry = probe_fentry(function.attach_btf_id, function.module)
    if fentry or not fentry.refused:
        # Refused for this function alone (not traceable, say): fentry still, and attaching says why.
        return Backend(ProbeKind.FENTRY, f"fentry/fexit: the kernel loads an fentry program on {function.label}")
    kprobes = probe_kprobes()
    if not kprobes:
        raise Refused(
            f"cannot trace {function.label}: this kernel has neither fentry/fexit (refused: {fentry.reason}) "
            f"nor kprobes ({kprobes.reason})"
        )
    why = f"kprobes/kretprobes: this kernel refuses fentry programs ({fentry.reason})"
    return Backend(ProbeKind.KPROBE, why, f"ksnoop: {why}; tracing functions with kprobes")


def _first_function(specs: Sequence[TraceSpec], kernel: KernelBTF) -> Optional[Target]:
    # The first function a spec names or its glob matches: where the kernel is asked.
    for spec in specs:
        if spec.target.startswith(TRACEPOINT_PREFIX):
            continue
        try:
            found = kernel.glob_targets(spec.target) if spec.is_glob else [kernel.find_target(spec.target)]
        except UnknownTarget:
            continue  # the resolver says what is wrong with it
        for target in found:
            if target.kind is TargetKind.FUNCTION:
                return target
    return None
