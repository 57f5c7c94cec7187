# SPDX-License-Identifier: GPL-2.0-only
"""Which probes trace functions (--backend): fentry/fexit where the kernel takes them, else
kprobes/kretprobes; or what the user chose. Found by asking the kernel (loading the smallest
program of each kind on a function the specs name), never from its version.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

from bpf.features import check_privileges, probe_fentry, probe_kprobe_multi, probe_kprobe_session, probe_kprobes
from bpf.plan import ProbeKind
from btf import Kind

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
    multi: bool = False  # kprobes: a glob's functions can share one kprobe_multi link
    no_multi: str = ""  # kprobes without kprobe_multi: why not
    # kprobe sessions (a glob's entries and returns by one link): bpf_session_is_return's BTF id, or 0
    session_is_return: int = 0


def choose_backend(name: str, specs: Sequence[TraceSpec], kernel: KernelBTF) -> Backend:
    """As _choose_kind, and for kprobes of a glob whether the kernel takes kprobe_multi links."""
    backend = _choose_kind(name, specs, kernel)
    if backend.kind is not ProbeKind.KPROBE or not kernel.running or not check_privileges():
        return backend
    if not any(spec.is_glob for spec in specs):
        return backend  # functions named one by one get a kprobe each: no link to ask about
    if _first_function(specs, kernel, vmlinux_only=True) is None:
        return backend  # a kprobe_multi link holds vmlinux's functions: none to hold
    return _with_multi(backend, kernel, "a glob's functions")


def choose_graph_backend(name: str, root: TraceSpec, kernel: KernelBTF) -> Backend:
    """-g: the graph's functions by one kprobe_multi link (or kprobe session) where the kernel takes
    them, since attaching and detaching a trampoline per function is slow, and fentry/fexit a
    function each where it does not (--backend fentry, or no kprobe_multi), with a note saying so;
    kprobes a function each where fentry is refused too."""
    # A graph asks BTF of hundreds of functions by name, through one index: made first, it answers
    # the lookups here too (each a scan of the strings otherwise, a twentieth of a second under TCG).
    kernel.vmlinux.named_index(Kind.FUNC)
    backend = _choose_kind(name, [root], kernel)
    if name == "fentry" or not kernel.running or not check_privileges():
        return backend
    if _first_function([root], kernel, vmlinux_only=True) is None:
        return backend  # a module's root: its graph is not grouped
    if backend.kind is ProbeKind.FENTRY:
        kprobes = probe_kprobes()
        if not kprobes:
            return backend
        multi = probe_kprobe_multi()
        if not multi:
            note = (
                f"ksnoop: one fentry/fexit per graph function (this kernel has no kprobe_multi: {multi.reason}); "
                "attaching and detaching take longer"
            )
            why = f"{backend.why}; one per graph function: no kprobe_multi ({multi.reason})"
            return replace(backend, why=why, note=note, no_multi=multi.reason)
        backend = Backend(ProbeKind.KPROBE, "kprobes/kretprobes: the graph's functions by kprobe_multi")
    chosen = _with_multi(backend, kernel, "the graph's functions")
    if not chosen.multi:
        said = f"one kprobe per graph function (this kernel has no kprobe_multi: {chosen.no_multi})"
        return replace(chosen, note=f"{chosen.note}; {said}" if chosen.note else f"ksnoop: {said}")
    return chosen


def _with_multi(backend: Backend, kernel: KernelBTF, what: str) -> Backend:
    """Kprobes `backend`, with whether the kernel takes kprobe_multi links and kprobe sessions for
    `what` (a glob's functions, a graph's)."""
    multi = probe_kprobe_multi()
    if not multi:
        return replace(backend, why=f"{backend.why}; one kprobe per function: {multi.reason}", no_multi=multi.reason)
    why = f"{backend.why}; {what} by one kprobe_multi link"
    # The kfunc a session program asks which side it runs for: in the BTF of kernels from v6.10.
    is_return = kernel.vmlinux.find("bpf_session_is_return", Kind.FUNC)
    session = probe_kprobe_session() if is_return is not None else None
    if is_return is None or not session:
        reason = session.reason if session is not None else "no kfunc bpf_session_is_return in its BTF"
        return replace(backend, why=f"{why}, a side each ({reason})", multi=True)
    why = f"{why}, entries and returns together (a kprobe session)"
    return replace(backend, why=why, multi=True, session_is_return=is_return.id)


def _choose_kind(name: str, specs: Sequence[TraceSpec], kernel: KernelBTF) -> Backend:
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
            f"nor kprobes ({kprobes.reason}); tp: tracepoints still work; see ksnoop list 'tp:*'"
        )
    why = f"kprobes/kretprobes: this kernel refuses fentry programs ({fentry.reason})"
    return Backend(ProbeKind.KPROBE, why, f"ksnoop: {why}; tracing functions with kprobes")


def _first_function(specs: Sequence[TraceSpec], kernel: KernelBTF, vmlinux_only: bool = False) -> Optional[Target]:
    # The first function a spec names or its glob matches: where the kernel is asked.
    for spec in specs:
        if spec.target.startswith(TRACEPOINT_PREFIX):
            continue
        try:
            found = kernel.glob_targets(spec.target) if spec.is_glob else [kernel.find_target(spec.target)]
        except UnknownTarget:
            continue  # the resolver says what is wrong with it
        for target in found:
            if target.kind is TargetKind.FUNCTION and (target.module == "vmlinux" or not vmlinux_only):
                return target
    return None
