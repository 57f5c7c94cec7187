"""One trace from start to finish: load and attach the programs, read records until told to
stop, print them, report lost records, and detach everything on the way out.

The only module that holds live kernel objects; an ExitStack closes links, then programs,
then maps, whatever ends the run (a count, a time limit, Ctrl-C, SIGTERM, a closed stdout).
"""
from __future__ import annotations

import contextlib
import logging
import mmap
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple

from bpf.codegen import MapRole, Program, generate
from bpf.features import check_privileges
from bpf.listing import format_insns
from bpf.maps import Map, ProgramMaps
from bpf.plan import (
    MAX_KSTACK_DEPTH,
    Filters,
)
from bpf.ringbuf import RingBuffer

from ksnoop.output.decode import build_decoder, probe_of, record_fields
from ksnoop.errors import NotPermitted, RuntimeFailure, UsageError
from ksnoop.output.formatter import Formatter
from ksnoop.run.runner import attach, create_maps, module_btf_objects, raise_open_files_limit
from ksnoop.spec.resolve import DEFAULT_MAX_PROBES, ResolvedTrace, resolve, resolve_path
from ksnoop.sanitize import sanitize
from ksnoop.spec.language import parse_spec
from ksnoop.run.summary import count_calls, counted, sum_counters
from ksnoop.spec.targets import KernelBTF

log = logging.getLogger(__name__)

# How long the reader sleeps when no wake-up comes: records are submitted without waking it
# until a backlog builds, so this bounds how late a quiet trace shows a record.
POLL_INTERVAL_S = 0.05
_BATCH_LINES = 512
# The largest ring buffer the kernel takes: a power of two that fits BPF_MAP_CREATE's u32 max_entries.
MAX_RINGBUF_SIZE = 1 << 31


@dataclass(frozen=True)
class RunOptions:
    specs: Tuple[str, ...]
    pid: Optional[int] = None
    comm: Optional[str] = None
    count: Optional[int] = None  # stop after this many records
    duration_s: Optional[float] = None
    pages: int = 1024  # ringbuf size in pages; a power of two
    output: str = "text"  # "text" or "json"
    color: bool = False
    verbose: bool = False
    btf_path: Optional[str] = None
    kstack_depth: int = 0  # kernel stack frames in each entry and tracepoint record; 0 for none
    max_probes: int = DEFAULT_MAX_PROBES  # functions and tracepoints, a glob's matches counted each
    summary: bool = False  # count calls, errors and latency in the kernel; print totals at exit
    call_path: bool = False  # -s: the specs are a call path, outermost first
    calls_only: bool = False  # --summary counting calls alone, at entry (no fexit)
    zeros: bool = False  # text: show struct members that are all zero
    compact: bool = False  # text: one line per record


@dataclass(frozen=True)
class Summary:
    records: int
    lost: int
    calls: Optional[int] = None  # --summary: calls counted, over every function


def prepare(options: RunOptions) -> Tuple[ResolvedTrace, Tuple[Program, ...]]:
    """Parse, resolve and generate: everything short of touching the kernel. Usage errors raise here."""
    if options.pages <= 0 or options.pages & (options.pages - 1):
        raise UsageError(f"--pages {options.pages}: the ring buffer size must be a power of two pages")
    if options.pages * mmap.PAGESIZE > MAX_RINGBUF_SIZE:  # the map's max_entries is a u32
        raise UsageError(f"--pages {options.pages}: at most {MAX_RINGBUF_SIZE // mmap.PAGESIZE} pages "
                         f"({MAX_RINGBUF_SIZE >> 30} GiB)")
    if options.comm is not None and len(options.comm.encode()) >= 16:
        raise UsageError(f"--comm '{options.comm}': a task's comm has at most 15 bytes")
    if not 0 <= options.kstack_depth <= MAX_KSTACK_DEPTH:
        raise UsageError(f"--kstack-depth {options.kstack_depth}: at most {MAX_KSTACK_DEPTH} frames")
    if options.summary and options.count is not None:
        raise UsageError("--count stops after N records, and --summary prints none: use --duration or Ctrl-C")
    if options.summary and options.kstack_depth:
        raise UsageError("--kstack shows a stack per record, and --summary prints none")
    if options.call_path and options.summary:
        raise UsageError("-s shows the calls of one path, and --summary counts every call: use one")
    if options.calls_only and not options.summary:
        raise UsageError("--calls-only is a kind of --summary: add --summary")
    specs = [parse_spec(text) for text in options.specs]
    kernel = KernelBTF.load(options.btf_path)
    filters = Filters(pid=options.pid, comm=options.comm.encode() if options.comm is not None else None)
    if options.call_path:
        resolved = resolve_path(specs, kernel, filters, ringbuf_size=options.pages * mmap.PAGESIZE,
                                kstack_depth=options.kstack_depth)
    else:
        resolved = resolve(specs, kernel, filters, ringbuf_size=options.pages * mmap.PAGESIZE,
                           kstack_depth=options.kstack_depth, max_probes=options.max_probes)
    if options.summary:
        resolved = count_calls(resolved, calls_only=options.calls_only)
    programs = tuple(generate(resolved.plan, i) for i in range(len(resolved.plan.probes)))
    return resolved, programs


def describe_plan(resolved: ResolvedTrace, programs: Tuple[Program, ...]) -> List[str]:
    """`-v`: one line per probe and per capture, then each program's listing."""
    lines = []
    for probe, program in zip(resolved.plan.probes, programs):
        lines.append(f"probe {probe.kind.value}:{probe.target} attach_btf_id {probe.attach_btf_id} "
                     f"({probe.module}), record {program.layout.size} bytes")
        for test in probe.tests:
            c = test.value
            lines.append(f"  test {c.label} {test.predicate.op.value} {test.predicate.constant!r}: slot {c.slot} "
                         f"hops {list(c.hops)} offset {c.offset} size {c.size}")
        for c, offset in zip(probe.captures, program.layout.capture_offsets):
            lines.append(f"  capture {c.label}: slot {c.slot} hops {list(c.hops)} "
                         f"{'offset ' + str(c.offset) if c.in_memory else 'register'} size {c.size}"
                         f"{' (of ' + str(c.full_size) + ')' if c.truncated else ''} -> record +{offset}")
        if program.layout.kstack_depth:
            lines.append(f"  kstack: {program.layout.kstack_depth} frames -> record +{program.layout.kstack_offset}")
        if probe.path is not None:
            lines.append(f"  call path: level {probe.path.level} of {probe.path.length}"
                         f"{', the innermost' if probe.path.level == probe.path.length - 1 else ''}")
        if probe.forgets_path:
            lines.append("  forgets the call-path state of each exiting task")
        if probe.count is not None:  # --summary: counters, no record
            errors = f"errors of a {probe.count.errors.size}-byte return" if probe.count.errors else "no errors"
            lines.append(f"  count: key {probe.count.key}, calls, {errors}"
                         f"{', latency' if probe.count.latency else ''}")
        lines.append(f"  program {program.name}: {len(program.insns)} instructions")
        lines.extend("    " + line for line in format_insns(program.insns))
    return lines


def write_notes(resolved: ResolvedTrace, programs: Tuple[Program, ...], verbose: bool, err: TextIO) -> None:
    """The resolver's notes, and with `verbose` the plan and listings, on stderr, sanitised."""
    for note in resolved.notes:
        err.write(sanitize(note) + "\n")
    if verbose:
        for line in describe_plan(resolved, programs):
            err.write(sanitize(line) + "\n")


def run(options: RunOptions, out: TextIO, err: TextIO) -> Summary:
    """Trace until the count, the time limit, SIGINT or SIGTERM; RuntimeFailure on kernel trouble."""
    resolved, programs = prepare(options)
    write_notes(resolved, programs, options.verbose, err)
    privileges = check_privileges()
    if not privileges:
        raise NotPermitted(privileges.reason)
    if options.summary:
        return _run_summary(resolved, programs, options, out, err)
    raise_open_files_limit(len(resolved.plan.probes))
    formatter = _formatter(options, resolved, err)
    plan = resolved.plan
    lines = [formatter.record(i, record_fields(plan, i, t.btf), build_decoder(plan, i, t.btf))
             for i, t in enumerate(resolved.targets)]
    stop = _StopFlag()
    with contextlib.ExitStack() as stack:
        stack.enter_context(stop.installed())
        btf_obj_fds = module_btf_objects(stack, resolved.plan.probes)
        maps = create_maps(stack, programs)
        events, drops = maps.shared(MapRole.EVENTS), maps.shared(MapRole.DROPS)
        links = _attach_all(stack, resolved, programs, maps, btf_obj_fds, err)
        stack.callback(_say_detaching, links, err)  # runs first on the way out: before the links close
        try:
            ring = stack.enter_context(RingBuffer(events.fd, resolved.plan.ringbuf_size))
        except OSError as error:  # mmap or epoll: EMFILE, ENOMEM
            raise RuntimeFailure(f"cannot map the ring buffer: {error.strerror or error}") from None
        header = formatter.header()
        if header:
            out.write(header + "\n")
            out.flush()
        return _read(ring, drops, lines, options, stop, out, err)
    raise AssertionError("unreachable")  # pragma: no cover


# Detaching takes the kernel a wait for each function (its ftrace hook is unregistered and the
# trampoline drained, one at a time): say so when there are enough for the wait to show.
_SAY_DETACHING_FROM = 32


def _say_detaching(links: List[Any], err: TextIO) -> None:
    if len(links) >= _SAY_DETACHING_FROM:
        err.write(f"ksnoop: detaching {len(links)} programs; the kernel takes a while for each\n")
        err.flush()


def _attach_all(stack: contextlib.ExitStack, resolved: ResolvedTrace, programs: Tuple[Program, ...],
                maps: ProgramMaps, btf_obj_fds: Dict[str, int], err: TextIO) -> List[Any]:
    """Load and attach every probe, the links entering `stack`; returns the links.

    A function a glob matched that the kernel refuses (EINVAL, ENOTSUPP, EPERM for that function,
    a verifier rejection) is left out, its fentry and fexit together, with one warning line per
    glob naming them all. When the kernel refuses every function of a glob, that is no single
    function's fault (fentry refused machine-wide, say): the first error is raised, as for one
    function named alone. NotPermitted always ends the run.
    """
    probes = resolved.plan.probes
    links: List[Any] = []
    tried: Dict[int, int] = {}
    refused: Dict[int, List[Tuple[str, RuntimeFailure]]] = {}
    start = time.monotonic()
    i = 0
    while i < len(probes):
        # One function's probes (fentry, fexit) are adjacent and share one Target object.
        end = i + 1
        while end < len(probes) and resolved.targets[end] is resolved.targets[i]:
            end += 1
        source = resolved.sources[i] if resolved.sources else -1
        is_glob = source >= 0 and resolved.globs[source] is not None
        with contextlib.ExitStack() as function:
            try:
                attached = [function.enter_context(attach(probe.target, programs[n], maps.fds(n), probe.module,
                                                          btf_obj_fds.get(probe.module)))
                            for n, probe in enumerate(probes[i:end], start=i)]
            except NotPermitted:
                raise
            except RuntimeFailure as error:
                if not is_glob:
                    raise
                refused.setdefault(source, []).append((resolved.targets[i].label, error))
            else:
                links.extend(attached)
                stack.enter_context(function.pop_all())
        if is_glob:
            tried[source] = tried.get(source, 0) + 1
        i = end
    for source, failures in refused.items():
        if len(failures) == tried[source]:
            raise failures[0][1]
    for source, failures in refused.items():
        noun = "tracepoint" if failures[0][0].startswith("tp:") else "function"
        err.write(sanitize(f"ksnoop: warning: the kernel refused {len(failures)} of {tried[source]} {noun}s "
                           f"matching '{resolved.globs[source]}', left out ({failures[0][1]}): "
                           f"{', '.join(label for label, _ in failures)}") + "\n")
    log.debug("%d programs attached in %.3f s", len(links), time.monotonic() - start)
    return links


def _run_summary(resolved: ResolvedTrace, programs: Tuple[Program, ...], options: RunOptions, out: TextIO,
                 err: TextIO) -> Summary:
    """--summary: the programs count into a PERCPU_ARRAY (no ring buffer); at the time limit,
    SIGINT or SIGTERM the counters are summed over CPUs and printed."""
    stop = _StopFlag()
    keys = len(counted(resolved))
    with contextlib.ExitStack() as stack:
        stack.enter_context(stop.installed())
        btf_obj_fds = module_btf_objects(stack, resolved.plan.probes)
        maps = create_maps(stack, programs)
        counts = maps.shared(MapRole.COUNTS)
        links = _attach_all(stack, resolved, programs, maps, btf_obj_fds, err)
        stack.callback(_say_detaching, links, err)
        noun = "function" if keys == 1 else "functions"
        when = "at the time limit or Ctrl-C" if options.duration_s is not None else "at Ctrl-C"
        err.write(f"ksnoop: counting calls of {keys} {noun}; the summary comes {when}\n")
        err.flush()
        deadline = None if options.duration_s is None else time.monotonic() + options.duration_s
        while not stop and (deadline is None or time.monotonic() < deadline):
            remaining = POLL_INTERVAL_S if deadline is None else deadline - time.monotonic()
            time.sleep(max(0.0, min(POLL_INTERVAL_S, remaining)))
        totals = sum_counters(resolved, {key: counts.lookup_percpu(key.to_bytes(4, sys.byteorder)) or []
                                         for key in range(keys)})
    from ksnoop.output.summary_text import format_json, format_text

    out.write((format_json(totals) if options.output == "json" else format_text(totals)) + "\n")
    out.flush()
    return Summary(0, 0, calls=sum(c.calls for c in totals))


def _formatter(options: RunOptions, resolved: ResolvedTrace, err: TextIO) -> Formatter:
    symbolizer = None
    if options.kstack_depth:
        from ksnoop.output.kallsyms import Symbolizer

        symbolizer = Symbolizer(lambda message: err.write(f"ksnoop: warning: {message}\n"))
    if options.output == "json":
        from ksnoop.output.json_lines import JsonFormatter

        return JsonFormatter(resolved, symbolizer=symbolizer)
    from ksnoop.output.text import TextFormatter, TextLayout

    return TextFormatter(resolved, color=options.color, symbolizer=symbolizer,
                         layout=TextLayout(zeros=options.zeros, compact=options.compact))


class _StopFlag:
    """Set by SIGINT or SIGTERM, so the reader can drain what is buffered before it stops."""

    def __init__(self) -> None:
        self.signal: Optional[int] = None

    def __bool__(self) -> bool:
        return self.signal is not None

    @contextlib.contextmanager
    def installed(self) -> Any:
        def handler(signum: int, _frame: Any) -> None:
            self.signal = signum

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def _read(ring: RingBuffer, drops: Map, lines: List[Callable[[Any], str]], options: RunOptions, stop: _StopFlag,
          out: TextIO, err: TextIO) -> Summary:
    """Print each record's line (`lines`: one function per probe) until the count, the duration or a
    signal ends the trace."""
    deadline = None if options.duration_s is None else time.monotonic() + options.duration_s
    count_limit = options.count
    printed = 0
    lost_reported = 0
    # Lines go out in batches: with PYTHONUNBUFFERED, or a tty, a write per record is a syscall each.
    pending: List[str] = []

    def flush() -> None:
        if pending:
            out.write("\n".join(pending) + "\n")
            pending.clear()
        out.flush()

    def on_record(record: memoryview) -> bool:
        nonlocal printed
        pending.append(lines[probe_of(record)](record))
        if len(pending) >= _BATCH_LINES:
            flush()
        printed += 1
        return count_limit is not None and printed >= count_limit

    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        timeout = POLL_INTERVAL_S if remaining is None else max(0.0, min(POLL_INTERVAL_S, remaining))
        limit = None if count_limit is None else count_limit - printed
        ring.poll(on_record, timeout, limit)
        flush()
        lost = _lost(drops)
        if lost > lost_reported:
            err.write(f"ksnoop: lost {lost - lost_reported} records: the ring buffer was full "
                      "(try a larger -P/--pages or a narrower spec)\n")
            lost_reported = lost
        if count_limit is not None and printed >= count_limit:
            break
        if stop or (deadline is not None and time.monotonic() >= deadline):
            ring.drain(on_record, None if count_limit is None else count_limit - printed)
            flush()
            break
    return Summary(printed, _lost(drops))


def _lost(drops: Map) -> int:
    values = drops.lookup_percpu(b"\0\0\0\0") or []
    return sum(int.from_bytes(v[:8], sys.byteorder) for v in values)
