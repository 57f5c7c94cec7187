# SPDX-License-Identifier: GPL-2.0-only
"""The runner: generated Programs into the kernel. It creates the maps their MapSpecs ask for,
loads each program, attaches it, and says in one line what the kernel refused.

In: Programs, the label the user wrote (`ip_send_skb`, `dump:task`). Out: maps, loaded programs
and links entering the caller's ExitStack, or a KsnoopError: the verifier's own reason, a refusal
before verification worded for the kind of program, or the errno's meaning. The record loop, the
summary and the dump walk all run through here, so each refusal is worded once.
"""

from __future__ import annotations

import contextlib
import functools
import errno
import logging
import mmap
import os
import resource
import time
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, TextIO, Tuple

from bpf.btfobj import open_kernel_btf
from bpf.codegen import MapRole, Program, generate, generate_multi, generate_session
from bpf.errnos import errno_name
from bpf.features import check_privileges
from bpf.loader import (
    LoadedProgram,
    LoadRefused,
    VerifierError,
    attach_kprobe_event,
    attach_kprobe_multi,
    attach_tracing,
    load_program,
)
from bpf.perf import NoKprobes, PerfEvent, open_kprobe
from bpf.maps import MapCreationFailed, ProgramMaps
from bpf.maps import create_maps as create_program_maps
from bpf.plan import Plan, Probe
from bpf.uapi import AttachType
from btf.sources import loaded_modules

from ksnoop.errors import NotPermitted, NotTraceable, Refused, RuntimeFailure, VerifierRejected
from ksnoop.sanitize import sanitize
from ksnoop.run.options import RunOptions
from ksnoop.spec.resolve import ResolvedTrace

log = logging.getLogger(__name__)


def require_privileges(doing: str) -> None:
    """NotPermitted, in ksnoop's words, unless this process may load what `doing` ("tracing",
    "dumping") loads: root, or CAP_BPF with CAP_PERFMON."""
    privileges = check_privileges()
    if not privileges:
        raise NotPermitted(f"{doing} needs root, or CAP_BPF and CAP_PERFMON; {privileges.reason}")


def create_maps(stack: contextlib.ExitStack, programs: Sequence[Program]) -> ProgramMaps:
    """Every map the programs' MapSpecs ask for, entering `stack`; a refusal in ksnoop's words."""
    try:
        return create_program_maps(stack, programs)
    except MapCreationFailed as error:
        spec, why = error.spec, error.strerror or error
        if spec.role is MapRole.EVENTS:  # ENOMEM, or a memory cgroup's limit
            pages = spec.max_entries // mmap.PAGESIZE
            raise RuntimeFailure(
                f"cannot create a ring buffer of {pages} pages: {why} (try a smaller -P/--pages)"
            ) from None
        if spec.role is MapRole.PATH:  # E2BIG: a state bigger than the kernel's largest map value
            raise RuntimeFailure(
                f"cannot create the call-path state ({spec.value_size} bytes a task): {why} "
                "(capture less, or fewer functions)"
            ) from None
        raise RuntimeFailure(
            f"cannot create the {spec.role.value} map ({spec.map_type.name}, {spec.value_size}-byte values): {why}"
        ) from None


# What a user calls each kind of program the kernel may refuse as a whole.
_KIND_WORDS = {
    AttachType.UNSPEC: "kprobe",
    AttachType.TRACE_FENTRY: "fentry/fexit",
    AttachType.TRACE_FEXIT: "fentry/fexit",
    AttachType.TRACE_RAW_TP: "tp_btf",
    AttachType.TRACE_ITER: "iterator",
}


def load_generated(
    program: Program, fds: Dict[MapRole, int], label: str, btf_obj_fd: Optional[int] = None
) -> LoadedProgram:
    """BPF_PROG_LOAD `program` with its maps bound to `fds`, for the target the user calls `label`.

    Raises VerifierRejected (the verifier's reason line), Refused (the kernel said no before
    verifying: its policy, not the program), NotPermitted (EPERM after all: privileges) or
    NotTraceable (any other errno).
    """
    try:
        return load_program(
            program.bind_maps(fds),
            program.prog_type,
            program.expected_attach_type,
            program.attach_btf_id,
            attach_btf_obj_fd=btf_obj_fd,
            name=program.name,
        )
    except VerifierError as error:
        raise VerifierRejected(
            f"the kernel's verifier rejected the program for {label}: {error.reason} "
            "(-v shows the program and the verifier's whole log)",
            error.log,
        ) from None
    except LoadRefused as error:
        raise refusal(program.expected_attach_type, label, error.errno or errno.EPERM, error.log) from None
    except PermissionError:
        raise NotPermitted(f"the kernel refused to load the program for {label} (EPERM)") from None
    except OSError as error:
        raise NotTraceable(f"cannot load the program for {label}: {error.strerror or error}") from None


def refusal(attach_type: AttachType, label: str, code: int, log: str = "") -> Refused:
    """The error for a load the kernel refused before verification with errno `code`.

    EPERM there, with the privileges checked before loading, is the kernel's policy (a security
    module such as the BPF LSM, or lockdown) refusing this kind of program or this target.
    """
    kind = _KIND_WORDS.get(attach_type, "these")
    how = f"{errno_name(code)} before verification"
    if attach_type in (AttachType.TRACE_FENTRY, AttachType.TRACE_FEXIT):
        return Refused(
            f"cannot trace {label}: this kernel refuses {kind} programs ({how}, even with full "
            "privileges); tp: tracepoints still work; see ksnoop list 'tp:*'",
            log,
        )
    if code != errno.EPERM:
        return Refused(f"cannot load the {kind} program for {label}: {os.strerror(code)} ({how})", log)
    return Refused(f"this kernel refuses {kind} programs for {label} ({how})", log)


def module_btf_objects(stack: contextlib.ExitStack, probes: Sequence[Probe]) -> Dict[str, int]:
    """module -> an fd of its kernel BTF object, opened once per module some probe's attach_btf_id is in.

    For a module's id the kernel wants that module's BTF object as attach_btf_obj_fd (Linux kernel
    commit 290248a5b7d8 ("bpf: Allow to specify kernel module BTFs when attaching BPF programs")
    (in v5.11)); vmlinux's ids need none. Entered before the programs, so closed after them.
    """
    fds: Dict[str, int] = {}
    for probe in probes:
        if probe.module == "vmlinux" or probe.module in fds:
            continue
        try:
            fds[probe.module] = stack.enter_context(open_kernel_btf(probe.module)).fd
        except FileNotFoundError:
            raise RuntimeFailure(_module_gone(probe.module, probe.target)) from None
        except PermissionError:
            raise NotPermitted(
                f"cannot trace {probe.target}: opening the BTF object of module {probe.module} needs CAP_SYS_ADMIN"
            ) from None
        except OSError as err:
            raise RuntimeFailure(
                f"cannot open the BTF object of module {probe.module}: {err.strerror or err}"
            ) from None
    return fds


def _module_gone(module: str, target: str) -> str:
    return f"module {module} is not loaded anymore: cannot trace {target}"


def check_module_loaded(module: str, target: str) -> None:
    # Unloaded after its BTF object was opened: the verifier finds no address for the function.
    if module != "vmlinux" and module not in loaded_modules():
        raise RuntimeFailure(_module_gone(module, target))


@contextlib.contextmanager
def attach(
    target: str, program: Program, fds: Dict[MapRole, int], module: str = "vmlinux", btf_obj_fd: Optional[int] = None
) -> Any:
    with contextlib.ExitStack() as stack:
        # A kprobe's perf event is opened before its program is loaded: a function kprobes may not
        # probe (inlined, blacklisted) then costs no verifier run, and a glob has a few of those.
        event = stack.enter_context(_open_kprobe(target, program, module)) if program.kprobe_function else None
        try:
            loaded = stack.enter_context(load_generated(program, fds, target, btf_obj_fd))
        except (VerifierRejected, NotTraceable):
            check_module_loaded(module, target)
            raise
        try:
            if event is not None:
                link = attach_kprobe_event(loaded, event)
            else:
                link = attach_tracing(loaded)
        except OSError as err:
            check_module_loaded(module, target)
            raise NotTraceable(_attach_failure(target, program, err)) from None
        with link:
            yield link


def _open_kprobe(target: str, program: Program, module: str) -> PerfEvent:
    try:
        return open_kprobe(program.kprobe_function, program.retprobe)
    except NoKprobes as err:
        raise Refused(f"cannot trace {target}: {err.strerror}") from None
    except OSError as err:
        check_module_loaded(module, target)
        raise NotTraceable(_attach_failure(target, program, err)) from None


def _attach_failure(target: str, program: Program, err: OSError) -> str:
    """Why attaching to `target` failed, in a user's words."""
    why = err.strerror or str(err)
    if not program.kprobe_function:
        return f"cannot attach to {target}: {why} (it may be inlined or marked notrace)"
    kind = "kretprobe" if program.retprobe else "kprobe"
    if err.errno == errno.ENOENT:
        return f"cannot put a {kind} on {target}: no such symbol in /proc/kallsyms (it may be inlined)"
    if err.errno in (errno.EINVAL, errno.EILSEQ):
        return f"cannot put a {kind} on {target}: {why} (kprobes may not probe it: notrace, or on the kprobe blacklist)"
    return f"cannot put a {kind} on {target}: {why}"


def _alone(plan: Plan, programs: Tuple[Program, ...], index: int) -> Program:
    """The program probe `index` is attached with alone: programs[index], or where that is a branch
    of a kprobe_multi program (whose link the kernel refused, or ftrace cannot hook the function)
    the program generate() writes for it alone."""
    program = programs[index]
    return generate(plan, index) if program.branch else program


def _attach_multi(
    stack: contextlib.ExitStack,
    resolved: ResolvedTrace,
    programs: Tuple[Program, ...],
    multi_indices: Sequence[int],
    maps: ProgramMaps,
    err: TextIO,
    hookable: Optional["frozenset[bytes]"],
) -> Optional[Tuple[Any, List[int]]]:
    """Load the program of plan.multi[i] (one index), or the kprobe session program of a glob's
    entries and returns (two: the entries' multi, then the returns'), and link it to its
    functions with one link, entering `stack`: (the link, the probes it holds). None where the
    kernel refuses: one warning for a kprobe_multi link, whose functions then get one kprobe
    each; a refused session is logged and its sides go by a kprobe_multi link each. Functions
    ftrace cannot hook (not in `hookable`, when tracefs shows it) would fail the whole link:
    left to kprobes."""
    plan = resolved.plan
    multi = plan.multi[multi_indices[0]]
    glob = resolved.globs[multi.share] if 0 <= multi.share < len(resolved.globs) else None
    entries = [i for i in multi.probes if hookable is None or plan.probes[i].target.encode() in hookable]
    if not entries:
        return None
    session = len(multi_indices) == 2
    if session:
        held = [*entries, *(plan.partner_of(i) for i in entries)]
        program = generate_session(plan, entries, plan.session_is_return, programs=programs)
        what = f"the entries and returns of {len(multi.probes)} functions matching '{glob}'"
    else:
        held = entries
        program = generate_multi(plan, multi_indices[0], only=entries, programs=programs)
        side = "returns" if plan.probes[multi.probes[0]].kind.is_return else "entries"
        what = f"the {side} of {len(multi.probes)} functions matching '{glob}'"
    fds = maps.fds_of(held)
    with contextlib.ExitStack() as multi_stack:
        try:
            loaded = multi_stack.enter_context(load_generated(program, fds, f"'{glob}'"))
            link = multi_stack.enter_context(
                attach_kprobe_multi(loaded, program.multi_functions, program.retprobe, program.multi_cookies)
            )
        except NotPermitted:
            raise
        except (RuntimeFailure, OSError) as error:
            why = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            if session:
                log.debug("a kprobe session link for %s was refused (%s): a kprobe_multi link a side", what, why)
                return None
            err.write(
                sanitize(f"ksnoop: warning: one kprobe_multi link for {what} was refused ({why}): one kprobe each")
                + "\n"
            )
            return None
        stack.enter_context(multi_stack.pop_all())
    log.debug("%s: one %s link on %d functions", what, "kprobe session" if session else "kprobe_multi", len(entries))
    return link, held


def _links_to_make(plan: Plan) -> List[Tuple[int, ...]]:
    """The kprobe_multi links to make, as indices of plan.multi: (entries, returns) for a glob's
    two sides going by one kprobe session link where the plan says the kernel takes them, then
    (i,) for every side that goes alone."""
    sessions: List[Tuple[int, ...]] = []
    if plan.session_is_return:
        returns_of = {multi.probes: index for index, multi in enumerate(plan.multi)}
        for index, multi in enumerate(plan.multi):
            partners = tuple(plan.partner(i) for i in multi.probes)
            if not plan.probes[multi.probes[0]].kind.is_return and partners in returns_of:
                sessions.append((index, returns_of[partners]))  # type: ignore[index]
    paired = {index for pair in sessions for index in pair}
    return sessions + [(index,) for index in range(len(plan.multi)) if index not in paired]


_FTRACE_FUNCTIONS = (
    "/sys/kernel/tracing/available_filter_functions",
    "/sys/kernel/debug/tracing/available_filter_functions",
)


@functools.lru_cache(maxsize=1)
def ftrace_functions() -> Optional["frozenset[bytes]"]:
    """The functions ftrace can hook (so kprobe_multi can), from tracefs; None where it is not
    mounted or not readable (lockdown). Read once a process: a function graph asks before it
    attaches, and the attaching asks again (the kernel writes tens of thousands of lines)."""
    for path in _FTRACE_FUNCTIONS:
        try:
            with open(path, "rb") as f:
                text = f.read()
        except OSError:
            continue
        # Lines are `name` or `name [module]`: split() takes every word in one C-level pass, and a
        # `[module]` word names no function. Tens of thousands of lines, read before each glob's
        # link: split as bytes, not decoded (a glob asks about a few hundred names, encoded).
        return frozenset(text.split())
    return None


# How the verifier (v6.10 on) refuses a return probe on a function that never returns (do_exit...).
_NEVER_RETURNS = "__noreturn functions is rejected"


# fds a trace holds besides two per probe (its program and link): maps, BTF objects, stdio, Python's own.
_SPARE_FDS = 256


def raise_open_files_limit(probes: int) -> None:
    """Each probe holds two fds (program, link): a glob's hundreds of probes pass the usual soft
    RLIMIT_NOFILE of 1024. Raise the soft limit towards the hard one; RuntimeFailure if that is short."""
    needed = 2 * probes + _SPARE_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise RuntimeFailure(
            f"{probes} probes need about {needed} open files, but RLIMIT_NOFILE allows "
            f"{hard} (raise it with ulimit -n, or trace fewer functions)"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


# Detaching takes the kernel a wait for each function (its ftrace hook is unregistered and the
# trampoline drained, one at a time): say so when there are enough for the wait to show.
_SAY_DETACHING_FROM = 32


def say_detaching(links: List[Any], err: TextIO) -> None:
    if len(links) >= _SAY_DETACHING_FROM:
        err.write(f"ksnoop: detaching {len(links)} programs; the kernel takes a while for each\n")
        err.flush()


@dataclass(frozen=True)
class Attached:
    """What attach_all attached: the links, and the labels of the targets they trace (a glob's
    functions the kernel refused are not among them)."""

    links: List[Any]
    labels: FrozenSet[str]


def attach_all(
    stack: contextlib.ExitStack,
    resolved: ResolvedTrace,
    programs: Tuple[Program, ...],
    maps: ProgramMaps,
    btf_obj_fds: Dict[str, int],
    err: TextIO,
) -> Attached:
    """Load and attach every probe, the links entering `stack`.

    A function a glob matched that the kernel refuses (EINVAL, ENOTSUPP, EPERM for that function,
    a verifier rejection) is left out, its fentry and fexit together, with one warning line per
    glob naming them all. When the kernel refuses every function of a glob, that is no single
    function's fault (fentry refused machine-wide, say): the first error is raised, as for one
    function named alone. NotPermitted always ends the run.
    """
    probes = resolved.plan.probes
    links: List[Any] = []
    in_multi: "set[int]" = set()
    hookable = ftrace_functions() if resolved.plan.multi else None  # read once: tens of thousands of lines
    linked: "set[int]" = set()  # of plan.multi: the sides a link holds
    for indices in _links_to_make(resolved.plan):
        # A session refused: a kprobe_multi link a side.
        for attempt in [indices] if len(indices) == 1 else [indices, *((i,) for i in indices)]:
            if linked.intersection(attempt):
                continue
            multi_link = _attach_multi(stack, resolved, programs, attempt, maps, err, hookable)
            if multi_link is not None:
                link, branches = multi_link
                links.append(link)
                in_multi.update(branches)
                linked.update(attempt)
    tried: Dict[int, int] = {}
    # The functions of a glob that a kprobe_multi link holds count as tried and attached.
    for held in {(resolved.sources[i], probes[i].target, probes[i].module) for i in in_multi}:
        tried[held[0]] = tried.get(held[0], 0) + 1
    refused: Dict[int, List[Tuple[str, RuntimeFailure]]] = {}
    start = time.monotonic()
    plan = resolved.plan
    done: "set[int]" = set()
    for i in range(len(probes)):
        if i in done:
            continue
        # A function's fentry and fexit (the plan's pair) are attached together, in plan order;
        # those a kprobe_multi link holds already are not attached again.
        partner = plan.partner(i)
        function_probes = [n for n in ([i] if partner is None else [i, partner]) if n not in in_multi]
        done.update([i] if partner is None else [i, partner])
        if not function_probes:
            continue
        counted = len(function_probes) < (1 if partner is None else 2)  # its other side is in a multi link
        source = resolved.sources[i] if resolved.sources else -1
        is_glob = source >= 0 and resolved.globs[source] is not None
        with contextlib.ExitStack() as function:
            try:
                attached = []
                for n in function_probes:
                    try:
                        attached.append(
                            function.enter_context(
                                attach(
                                    probes[n].target,
                                    _alone(plan, programs, n),
                                    maps.fds(n),
                                    probes[n].module,
                                    btf_obj_fds.get(probes[n].module),
                                )
                            )
                        )
                    except VerifierRejected as error:
                        if not (probes[n].kind.is_return and _NEVER_RETURNS in str(error)):
                            raise
                        # Nothing to wait for: its entry is traced alone (a call path's state is
                        # forgotten when the task exits, as for any task dying inside a path).
                        err.write(
                            sanitize(f"ksnoop: {probes[n].target} never returns: its entry is traced alone") + "\n"
                        )
            except NotPermitted:
                raise
            except RuntimeFailure as error:
                if not is_glob:
                    raise
                refused.setdefault(source, []).append((resolved.targets[i].label, error))
            else:
                links.extend(attached)
                stack.enter_context(function.pop_all())
        if is_glob and not counted:
            tried[source] = tried.get(source, 0) + 1
    for source, failures in refused.items():
        if len(failures) == tried[source]:
            raise failures[0][1]
    for source, failures in refused.items():
        noun = "tracepoint" if failures[0][0].startswith("tp:") else "function"
        err.write(
            sanitize(
                f"ksnoop: warning: the kernel refused {len(failures)} of {tried[source]} {noun}s "
                f"matching '{resolved.globs[source]}', left out ({failures[0][1]}): "
                f"{', '.join(label for label, _ in failures)}"
            )
            + "\n"
        )
    log.debug("%d programs attached in %.3f s", len(links), time.monotonic() - start)
    left_out = {label for failures in refused.values() for label, _ in failures}
    # The call path's helper on sched_process_exit is no target of the user's.
    labels = frozenset(t.label for t, p in zip(resolved.targets, probes) if not p.forgets_path)
    return Attached(links, labels - left_out)


@dataclass(frozen=True)
class Counting:
    """What attach_counting set up: the maps, what was attached, and the metrics server if any."""

    maps: ProgramMaps
    attached: Attached
    exporter: Optional[Any]  # ksnoop.run.exporter.Exporter with --metrics


def attach_counting(
    stack: contextlib.ExitStack,
    resolved: ResolvedTrace,
    programs: Tuple[Program, ...],
    stop: Any,
    options: RunOptions,
    err: TextIO,
) -> Counting:
    """For the loops that count in the kernel (--summary, --count-by): with --metrics the server
    listening first (an address it cannot have ends ksnoop with nothing attached), the maps made,
    every probe attached and detached by `stack` (saying so), `stop` (a StopFlag) armed, and the
    ready line said unless --quiet (with where metrics are served). Until `stop` is armed a signal
    ends ksnoop at once (stopping.exit_on_signals); from then on the loop drains and reports."""
    from ksnoop.run.describe import ready_line
    from ksnoop.run.exporter import open_exporter

    exporter = open_exporter(stack, options.metrics)
    btf_obj_fds = module_btf_objects(stack, resolved.plan.probes)
    maps = create_maps(stack, programs)
    attached = attach_all(stack, resolved, programs, maps, btf_obj_fds, err)
    stack.callback(say_detaching, attached.links, err)
    stop.arm()
    if not options.quiet:
        serving = exporter.url if exporter is not None else None
        err.write(ready_line(resolved, attached.labels, options.duration_s, summary=True, serving=serving) + "\n")
        err.flush()
    return Counting(maps, attached, exporter)
