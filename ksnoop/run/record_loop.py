# SPDX-License-Identifier: GPL-2.0-only
"""The record loop: records from the ring buffer, each turned into its line by the output's
compiled function for its probe, printed in batches; lost records reported as they happen."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Callable, List, Optional, Protocol, TextIO, Tuple

from bpf.codegen import MapRole, Program
from bpf.plan import Plan
from bpf.ringbuf import RecordCallback, RingBuffer

from ksnoop.errors import RuntimeFailure
from ksnoop.output.decode import build_decoder, by_probe, probe_of, record_fields
from ksnoop.output.formatter import Formatter
from ksnoop.output.writer import LineWriter
from ksnoop.run.options import RunOptions, Summary
from ksnoop.run.describe import ready_line, say_summary
from ksnoop.run.exporter import open_exporter
from ksnoop.run.runner import attach_all, create_maps, module_btf_objects, raise_open_files_limit, say_detaching
from ksnoop.run.stopping import StopFlag
from ksnoop.spec.resolve import ResolvedTrace

# How long the reader sleeps when no wake-up comes: records are submitted without waking it
# until a backlog builds, so this bounds how late a quiet trace shows a record.
POLL_INTERVAL_S = 0.05


class RecordSource(Protocol):
    """Where read_records takes records from: a bpf.ringbuf.RingBuffer here, a ring in memory in
    the unit tests (tests/support/memring.py), which hand it the records generated programs wrote."""

    def poll(self, callback: RecordCallback, timeout: Optional[float], limit: Optional[int] = None) -> int: ...

    def drain(self, callback: RecordCallback, limit: Optional[int] = None) -> int: ...


class PerCPUValues(Protocol):
    """A per-CPU map read back (bpf.maps.Map): one value per possible CPU, or None for a missing key."""

    def lookup_percpu(self, key: bytes) -> Optional[List[bytes]]: ...


def run_records(
    resolved: ResolvedTrace, programs: Tuple[Program, ...], options: RunOptions, out: TextIO, err: TextIO
) -> Summary:
    """Attach the programs and print each record as it comes, until the count, the time limit or a
    stop signal; then drain, report lost records and detach."""
    raise_open_files_limit(len(resolved.plan.probes))
    formatter = formatter_for(options, resolved, err)
    trees = None
    if resolved.plan.is_graph:
        from ksnoop.output.graph_tree import GraphTrees

        trees = GraphTrees(resolved, formatter)
        lines: List[Callable[[Any], Optional[str]]] = trees.lines()
    else:
        lines = record_lines(formatter, resolved)  # type: ignore[assignment]
    stop = StopFlag()
    # Its handlers stay till the end: a signal while detaching does not cut the summary line.
    with stop.installed(armed=False):
        summary = _attach_and_read(resolved, programs, options, out, err, formatter, lines, stop)
        open_calls = trees.unfinished() if trees is not None else 0
        if open_calls:
            err.write(f"ksnoop: {open_calls} root call{'' if open_calls == 1 else 's'} had not returned: not shown\n")
        say_summary(summary, err)
        return summary


def _attach_and_read(
    resolved: ResolvedTrace,
    programs: Tuple[Program, ...],
    options: RunOptions,
    out: TextIO,
    err: TextIO,
    formatter: Formatter,
    lines: List[Callable[[Any], Optional[str]]],
    stop: StopFlag,
) -> Summary:
    with contextlib.ExitStack() as stack:
        exporter = open_exporter(stack, options.metrics)  # first: an address it cannot have ends ksnoop here
        btf_obj_fds = module_btf_objects(stack, resolved.plan.probes)
        maps = create_maps(stack, programs)
        events, drops = maps.shared(MapRole.EVENTS), maps.shared(MapRole.DROPS)
        attached = attach_all(stack, resolved, programs, maps, btf_obj_fds, err)
        stack.callback(say_detaching, attached.links, err)  # runs first on the way out: before the links close
        try:
            ring = stack.enter_context(RingBuffer(events.fd, resolved.plan.ringbuf_size))
        except OSError as error:  # mmap or epoll: EMFILE, ENOMEM
            raise RuntimeFailure(f"cannot map the ring buffer: {error.strerror or error}") from None
        printed: Optional[List[int]] = None  # --metrics --records: records printed, per probe
        if exporter is not None:
            printed = [0] * len(resolved.plan.probes)
            exporter.serve(stack, _metrics_reader(resolved, printed, drops, len(attached.labels)))
        # Until here a signal ends ksnoop at once (stopping.exit_on_signals); from here it drains.
        stop.arm()
        if not options.quiet:
            serving = exporter.url if exporter is not None else None
            err.write(ready_line(resolved, attached.labels, options.duration_s, summary=False, serving=serving) + "\n")
            err.flush()
        header = formatter.header()
        if header:
            out.write(header + "\n")
            out.flush()
        return read_records(ring, drops, lines, options, stop, out, err, call_ends(resolved.plan), printed)
    raise AssertionError("unreachable")  # pragma: no cover


def _metrics_reader(
    resolved: ResolvedTrace, printed: List[int], drops: PerCPUValues, probes: int
) -> Callable[[], List[Any]]:
    """--metrics --records: at each scrape, the records printed so far per function (`printed`, which
    read_records counts into) and the records lost, from the kernel's drop counter."""
    from ksnoop.output.metrics import Health, health_families, record_families

    labels = [target.label for target in resolved.targets]

    def families() -> List[Any]:
        health = Health(probes, records_lost=_lost(drops))
        return record_families(labels, list(printed)) + health_families(health)

    return families


def call_ends(plan: Plan) -> List[bool]:
    """Per probe, whether its record ends what -n counts: a call's return record (its entry came
    before it), an entry or tracepoint with no return traced, or a call path's outermost return
    (the outermost traced: a function that never returns has none). In a function graph what
    counts is a tree written, whichever record finished it."""
    if plan.is_graph:
        return [True for _ in plan.probes]
    path_end = min((p.path.level for p in plan.probes if p.path is not None and p.kind.is_return), default=-1)
    ends = []
    for i, probe in enumerate(plan.probes):
        if not probe.emits:
            ends.append(False)
        elif probe.path is not None:
            ends.append(probe.kind.is_return and probe.path.level == path_end)
        else:
            partner = plan.partner(i)
            ends.append(probe.kind.is_return or partner is None or not plan.probes[partner].emits)
    return ends if any(ends) else [probe.emits for probe in plan.probes]


def formatter_for(options: RunOptions, resolved: ResolvedTrace, err: TextIO) -> Formatter:
    symbolizer = None
    if options.kstack_depth:
        from ksnoop.output.kallsyms import Symbolizer

        symbolizer = Symbolizer(lambda message: err.write(f"ksnoop: warning: {message}\n"))
    if options.output == "json":
        from ksnoop.output.json_lines import JsonFormatter

        return JsonFormatter(resolved, symbolizer=symbolizer)
    from ksnoop.output.text import TextFormatter, TextLayout

    # A function graph's calls are a line each, indented in their tree.
    graph = resolved.plan.is_graph
    return TextFormatter(
        resolved,
        color=options.color,
        symbolizer=symbolizer,
        layout=TextLayout(zeros=options.zeros, compact=options.compact or graph, tree=graph),
    )


def record_lines(formatter: Formatter, resolved: ResolvedTrace) -> List[Callable[[Any], str]]:
    # One function per probe from a whole record to its line, indexed by the record's probe.
    plan = resolved.plan
    return [
        formatter.record(i, record_fields(plan, i, t.btf), build_decoder(plan, i, t.btf))
        for i, t in enumerate(resolved.targets)
    ]


def read_records(
    ring: RecordSource,
    drops: PerCPUValues,
    lines: List[Callable[[Any], Optional[str]]],
    options: RunOptions,
    stop: StopFlag,
    out: TextIO,
    err: TextIO,
    ends: Optional[List[bool]] = None,
    printed_by_probe: Optional[List[int]] = None,
) -> Summary:
    """Print each record's line (`lines`: one function per probe; None: nothing to print yet, as a
    function graph's records until their root call returns) until the count, the duration or a
    signal ends the trace. -n counts the records `ends` marks (call_ends; every record if None).
    `printed_by_probe` (--metrics), if given, counts the records printed of each probe."""
    deadline = None if options.duration_s is None else time.monotonic() + options.duration_s
    count_limit = options.count
    printed = counted = 0
    lost_reported = 0
    writer = LineWriter(out)
    line = by_probe(lines)
    every_record_counts = ends is None or all(ends)
    counts = ends or []

    def on_record(record: memoryview) -> bool:
        nonlocal printed, counted
        text = line(record)
        if text is None:
            return False
        writer.add(text)
        printed += 1
        if printed_by_probe is not None:
            printed_by_probe[probe_of(record)] += 1
        if count_limit is None:
            return False
        if every_record_counts or counts[probe_of(record)]:
            counted += 1
        return counted >= count_limit

    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        timeout = POLL_INTERVAL_S if remaining is None else max(0.0, min(POLL_INTERVAL_S, remaining))
        ring.poll(on_record, timeout)
        writer.flush()
        lost = _lost(drops)
        if lost > lost_reported:
            err.write(
                f"ksnoop: lost {lost - lost_reported} records: the ring buffer was full "
                "(try a larger -P/--pages or a narrower spec)\n"
            )
            lost_reported = lost
        if count_limit is not None and counted >= count_limit:
            break
        if stop or (deadline is not None and time.monotonic() >= deadline):
            if count_limit is None or counted < count_limit:
                ring.drain(on_record)
            writer.flush()
            break
    return Summary(printed, _lost(drops))


def _lost(drops: PerCPUValues) -> int:
    values = drops.lookup_percpu(b"\0\0\0\0") or []
    return sum(int.from_bytes(v[:8], sys.byteorder) for v in values)
