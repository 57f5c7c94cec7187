# SPDX-License-Identifier: GPL-2.0-only
"""Load instructions into the kernel and attach them: `load_program()` -> LoadedProgram -> Link.

A rejected load raises VerifierError with the verifier's reason, its log and our listing; a load
the kernel refused before the verifier judged any instruction raises LoadRefused.
Programs and links own their fds and nothing is pinned, so closing them (or the process
dying) detaches everything. Close links before programs, programs before maps.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
from collections.abc import Sequence

from . import perf, syscall
from .errnos import ENOTSUPP
from .fd import FdOwner
from .insn import Insn, decode, encode
from .listing import MAP_REF_ID, format_insns
from .uapi import AttachType, ProgType

log = logging.getLogger(__name__)

LOG_SIZE_START = 64 * 1024
LOG_SIZE_MAX = 16 * 1024 * 1024
LOG_TAIL_LINES = 20

# ENOTSUPP is the kernel-internal "not supported" that leaks out of some bpf paths.
_LINK_CREATE_UNSUPPORTED = frozenset((errno.EINVAL, errno.EOPNOTSUPP, ENOTSUPP))


class VerifierError(OSError):
    """BPF_PROG_LOAD failed and the verifier said why.

    `log` is the whole log we got (its tail if it outgrew LOG_SIZE_MAX), `log_tail` its last
    lines, `listing` our program in bpftool notation. `errno` is the load's errno
    (EACCES or EINVAL usually, ENOSPC when even the largest log was too small).
    """

    def __init__(self, errno_: int, message: str, log: str, listing: Sequence[str], reason: str = "") -> None:
        super().__init__(errno_, message)
        self.message = message
        self.reason = reason  # the verifier's own line saying why, e.g. "R2 !read_ok"
        self.log = log
        self.log_tail = log.rstrip("\n").splitlines()[-LOG_TAIL_LINES:]
        self.listing = list(listing)

    def __str__(self) -> str:
        return f"{self.message}\n" + "\n".join(self.log_tail)


class LoadRefused(OSError):
    """BPF_PROG_LOAD failed before the verifier judged a single instruction: the kernel wrote no
    log, or one of only the statistics line ("processed 0 insns ..."). `log` is what it wrote.

    With EPERM while every privilege is held, that is the kernel's policy (a security module such
    as the BPF LSM, or lockdown) refusing this kind of program or this target: no change to the
    program's instructions would make it load.
    """

    def __init__(self, errno_: int, message: str, log: str) -> None:
        super().__init__(errno_, message)
        self.message = message
        self.log = log

    def __str__(self) -> str:
        return self.message


def _log_reason(log_text: str) -> str:
    # The verifier's last words are statistics ("processed N insns ..."); the reason sits above.
    for line in reversed(log_text.splitlines()):
        line = line.strip()
        if line and not line.startswith(("processed ", "verification time", "stack depth")):
            return line
    return ""


class LoadedProgram(FdOwner):
    """A program that passed the verifier; owns its fd. Use it in a `with` block or close() it."""

    _what = "program"

    def __init__(
        self,
        fd: int,
        insns: Sequence[Insn],
        prog_type: ProgType,
        expected_attach_type: AttachType,
        attach_btf_id: int,
        attach_btf_obj_fd: int | None,
        name: str,
    ) -> None:
        self._fd = fd
        self.insns = tuple(insns)
        self.prog_type = prog_type
        self.expected_attach_type = expected_attach_type
        self.attach_btf_id = attach_btf_id
        self.attach_btf_obj_fd = attach_btf_obj_fd
        self.name = name

    def __repr__(self) -> str:
        return f"<LoadedProgram {self.name!r} {self.prog_type.name} {self._state}>"

    def listing(self) -> list[str]:
        """Our instructions in bpftool notation (map loads shown as map[fd:N])."""
        return format_insns(self.insns)

    def info(self) -> syscall.bpf_prog_info:
        """struct bpf_prog_info from the kernel (id, tag, run_cnt...)."""
        info = syscall.bpf_prog_info()
        syscall.obj_get_info_by_fd(self.fd, info)
        return info

    @property
    def prog_id(self) -> int:
        return int(self.info().id)

    def xlated_insns(self) -> list[Insn]:
        """The instructions as the kernel holds them after verification (map fds became map ids)."""
        return decode(self._image("xlated_prog_len", "xlated_prog_insns"))

    def jited_image(self) -> bytes:
        """The machine code the JIT made of the program (empty where the kernel hides it or interprets)."""
        return self._image("jited_prog_len", "jited_prog_insns")

    def _image(self, length: str, pointer: str) -> bytes:
        """One of the program's images bpf_prog_info hands out: its size asked first, then its bytes."""
        size = int(getattr(self.info(), length))
        buf = ctypes.create_string_buffer(size)
        info = syscall.bpf_prog_info()
        setattr(info, length, size)
        setattr(info, pointer, ctypes.addressof(buf))
        syscall.obj_get_info_by_fd(self.fd, info)
        return buf.raw[: int(getattr(info, length))]

    def xlated_listing(self) -> list[str]:
        """xlated_insns() in bpftool notation (map loads shown as map[id:N])."""
        return format_insns(self.xlated_insns(), map_ref=MAP_REF_ID)


class Link(FdOwner):
    """An attachment of a program; owns its fd, and closing it detaches the program."""

    _what = "link"

    def __init__(self, fd: int, prog: LoadedProgram, via: str) -> None:
        self._fd = fd
        self.prog = prog
        self.via = via  # "LINK_CREATE" or "RAW_TRACEPOINT_OPEN", for -v and tests

    def __repr__(self) -> str:
        return f"<Link {self.prog.name!r} via {self.via} {self._state}>"

    def info(self) -> syscall.bpf_link_info:
        """struct bpf_link_info from the kernel (type, id, prog_id)."""
        info = syscall.bpf_link_info()
        syscall.obj_get_info_by_fd(self.fd, info)
        return info


def load_program(
    insns: Sequence[Insn],
    prog_type: ProgType,
    expected_attach_type: AttachType = AttachType.UNSPEC,
    attach_btf_id: int = 0,
    attach_btf_obj_fd: int | None = None,
    license: str = "GPL",
    name: str = "ksnoop",
    log_size_max: int = LOG_SIZE_MAX,
) -> LoadedProgram:
    """BPF_PROG_LOAD `insns`; returns the program, which owns its fd.

    The first try runs without a log. If it fails, the load is repeated with log level 1
    and a buffer that doubles on ENOSPC up to `log_size_max` bytes. Raises VerifierError
    when the verifier said why, else LoadRefused (no log, or only its statistics) naming the
    program. `name` is cut to 15 characters of [A-Za-z0-9_.].
    """
    code = encode(insns)

    def attempt(vlog: syscall.VerifierLog | None) -> int:
        return syscall.prog_load(
            prog_type,
            code,
            license=license,
            name=name,
            expected_attach_type=int(expected_attach_type),
            attach_btf_id=attach_btf_id,
            attach_btf_obj_fd=attach_btf_obj_fd or 0,
            log=vlog,
        )

    def made(fd: int) -> LoadedProgram:
        return LoadedProgram(fd, insns, prog_type, expected_attach_type, attach_btf_id, attach_btf_obj_fd, name)

    try:
        return made(attempt(None))
    except OSError as e:
        first = e

    size = min(LOG_SIZE_START, log_size_max)
    while True:
        vlog = syscall.VerifierLog(size)
        try:
            fd = attempt(vlog)
        except OSError as e:
            if e.errno == errno.ENOSPC and size < log_size_max:
                size = min(max(size * 2, vlog.true_size), log_size_max)
                continue
            err = e
            break
        # Loaded the second time round: the first failure was transient (EAGAIN when a
        # signal interrupted verification, which libbpf retries too); keep the program.
        log.debug("program %r loaded on the retry after %s", name, first)
        return made(fd)

    target = f"{prog_type.name}/{AttachType(expected_attach_type).name}"
    if attach_btf_id:
        target += f" attach_btf_id {attach_btf_id}"
    text = vlog.text()
    errno_ = err.errno if err.errno is not None else errno.EINVAL
    reason = _log_reason(text)
    if not reason:
        said = "the kernel wrote no verifier log" if not text.strip() else "its log holds only the statistics"
        raise LoadRefused(
            errno_,
            f"{os.strerror(errno_)}: BPF_PROG_LOAD of {name!r} ({target}) refused before verification; {said}",
            text,
        ) from first
    if err.errno == errno.ENOSPC:
        reason = f"log outgrew {log_size_max} bytes; its tail: {reason}"
    raise VerifierError(
        errno_,
        f"verifier rejected {name!r} ({target}, {os.strerror(errno_)}): {reason}",
        text,
        format_insns(insns),
        reason,
    ) from first


def attach_tracing(prog: LoadedProgram) -> Link:
    """Attach a BPF_PROG_TYPE_TRACING program (tp_btf, fentry, fexit) to the target it was loaded for.

    Uses BPF_LINK_CREATE with the program's expected attach type. Where LINK_CREATE does not
    take that attach type (EINVAL / EOPNOTSUPP: older kernels take fentry/fexit there but not
    tp_btf), BPF_RAW_TRACEPOINT_OPEN with no name does the same. Returns a Link owning its fd.
    """
    if prog.prog_type != ProgType.TRACING:
        raise ValueError(f"attach_tracing() of a {prog.prog_type.name} program; use attach_raw_tracepoint()")
    try:
        fd = syscall.link_create(prog.fd, int(prog.expected_attach_type))
        return Link(fd, prog, "LINK_CREATE")
    except OSError as e:
        if e.errno not in _LINK_CREATE_UNSUPPORTED:
            raise
        log.debug("BPF_LINK_CREATE refused (%s); trying BPF_RAW_TRACEPOINT_OPEN", e)
    fd = syscall.raw_tracepoint_open(prog.fd)
    return Link(fd, prog, "RAW_TRACEPOINT_OPEN")


def attach_kprobe(prog: LoadedProgram, function: str, retprobe: bool) -> Link:
    """Attach a BPF_PROG_TYPE_KPROBE program to a kprobe (or kretprobe) on `function`: opens the
    kprobe as a perf event (bpf.perf) and attaches to it (attach_kprobe_event). Raises
    bpf.perf.NoKprobes, or OSError from perf_event_open (see bpf.perf.open_kprobe) or the attach.
    """
    if prog.prog_type != ProgType.KPROBE:
        raise ValueError(f"attach_kprobe() of a {prog.prog_type.name} program")
    return attach_kprobe_event(prog, perf.open_kprobe(function, retprobe))


def attach_kprobe_event(prog: LoadedProgram, event: perf.PerfEvent) -> Link:
    """Attach a BPF_PROG_TYPE_KPROBE program to a kprobe's perf event, which this takes over (and
    closes, whatever happens): opened first, a probe the kernel refuses costs no program load.

    Links the program to it with BPF_LINK_CREATE (BPF_PERF_EVENT, v5.15); the link holds the
    event, so the event's own fd is closed. Where LINK_CREATE does not take it,
    PERF_EVENT_IOC_SET_BPF attaches the program to the event, whose fd is then the attachment.
    Raises OSError from the attach.
    """
    with event:
        if prog.prog_type != ProgType.KPROBE:
            raise ValueError(f"attach_kprobe_event() of a {prog.prog_type.name} program")
        try:
            fd = syscall.link_create(prog.fd, int(AttachType.PERF_EVENT), target_fd=event.fd)
            return Link(fd, prog, "LINK_CREATE")
        except OSError as e:
            if e.errno not in _LINK_CREATE_UNSUPPORTED:
                raise
            log.debug("BPF_LINK_CREATE of a perf event refused (%s); trying PERF_EVENT_IOC_SET_BPF", e)
        event.set_bpf(prog.fd)
        event.enable()
        return Link(event.detach_fd(), prog, "PERF_EVENT_IOC_SET_BPF")
    raise AssertionError("unreachable")  # pragma: no cover


def attach_kprobe_multi(
    prog: LoadedProgram, functions: Sequence[str], retprobe: bool, cookies: "Sequence[int] | None" = None
) -> Link:
    """Attach a kprobe_multi program (loaded with TRACE_KPROBE_MULTI) to every one of `functions`
    with one link (v5.18, and a kernel built with CONFIG_FPROBE), the cookie of function k being
    cookies[k] (k itself by default).
    OSError as the kernel says: EOPNOTSUPP without fprobe, ESRCH for a name not in kallsyms,
    EINVAL for a function ftrace cannot hook; nothing is attached then."""
    multi_types = (AttachType.TRACE_KPROBE_MULTI, AttachType.TRACE_KPROBE_SESSION)
    if prog.prog_type != ProgType.KPROBE or prog.expected_attach_type not in multi_types:
        raise ValueError("attach_kprobe_multi() of a program not loaded for kprobe_multi or a kprobe session")
    cookies = range(len(functions)) if cookies is None else cookies
    # A session program (loaded with TRACE_KPROBE_SESSION, v6.10) runs at each entry and return.
    fd = syscall.link_create_kprobe_multi(prog.fd, int(prog.expected_attach_type), functions, retprobe, cookies)
    return Link(fd, prog, "LINK_CREATE")


def attach_raw_tracepoint(prog: LoadedProgram, tracepoint: str) -> Link:
    """Attach a BPF_PROG_TYPE_RAW_TRACEPOINT program to `tracepoint` (e.g. "sys_enter")."""
    if prog.prog_type not in (ProgType.RAW_TRACEPOINT, ProgType.RAW_TRACEPOINT_WRITABLE):
        raise ValueError(f"attach_raw_tracepoint() of a {prog.prog_type.name} program")
    fd = syscall.raw_tracepoint_open(prog.fd, tracepoint)
    return Link(fd, prog, "RAW_TRACEPOINT_OPEN")
