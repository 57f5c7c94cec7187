# SPDX-License-Identifier: GPL-2.0-only
"""The record loop: records from the ring buffer, each turned into its line by the output's
compiled function for its probe, printed in batches; lost records reported as they happen."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Callable, List, Optional, Protocol, TextIO, Tuple

from bpf.codegen import MapRole, Program
from bpf.ringbuf import RecordCallback, RingBuffer

from ksnoop.errors import RuntimeFailure
from ksnoop.output.decode import build_decoder, by_probe, record_fields
from ksnoop.output.formatter import Formatter
from ksnoop.run.options import RunOptions, Summary
from ksnoop.run.runner import attach_all, create_maps, module_btf_objects, raise_open_files_limit, say_detaching
from ksnoop.run.stopping import StopFlag
from ksnoop.spec.resolve import ResolvedTrace

# How long the reader sleeps when no wake-up comes: records are submitted without waking it
# until a backlog builds, so this bounds how late a quiet trace shows a record.
POLL_INTERVAL_S = 0.05
_BATCH_LINES = 512


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
    """Attach the programs and print each record as it comes, until the count, the time limit,
    SIGINT or SIGTERM; then drain, report lost records and detach."""
    raise_open_files_limit(len(resolved.plan.probes))
    formatter = formatter_for(options, resolved, err)
    lines = record_lines(formatter, resolved)
    stop = StopFlag()
    with contextlib.ExitStack() as stack:
        stack.enter_context(stop.installed())
        btf_obj_fds = module_btf_objects(stack, resolved.plan.probes)
        maps = create_maps(stack, programs)
        events, drops = maps.shared(MapRole.EVENTS), maps.shared(MapRole.DROPS)
        links = attach_all(stack, resolved, programs, maps, btf_obj_fds, err)
        stack.callback(say_detaching, links, err)  # runs first on the way out: before the links close
        try:
            ring = stack.enter_context(RingBuffer(events.fd, resolved.plan.ringbuf_size))
        except OSError as error:  # mmap or epoll: EMFILE, ENOMEM
            raise RuntimeFailure(f"cannot map the ring buffer: {error.strerror or error}") from None
        header = formatter.header()
        if header:
            out.write(header + "\n")
            out.flush()
        return read_records(ring, drops, lines, options, stop, out, err)
    raise AssertionError("unreachable")  # pragma: no cover


def formatter_for(options: RunOptions, resolved: ResolvedTrace, err: TextIO) -> Formatter:
    symbolizer = None
    if options.kstack_depth:
        from ksnoop.output.kallsyms import Symbolizer

        symbolizer = Symbolizer(lambda message: err.write(f"ksnoop: warning: {message}\n"))
    if options.output == "json":
        from ksnoop.output.json_lines import JsonFormatter

        return JsonFormatter(resolved, symbolizer=symbolizer)
    from ksnoop.output.text import TextFormatter, TextLayout

    return TextFormatter(
        resolved,
        color=options.color,
        symbolizer=symbolizer,
        layout=TextLayout(zeros=options.zeros, compact=options.compact),
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
    lines: List[Callable[[Any], str]],
    options: RunOptions,
    stop: StopFlag,
    out: TextIO,
    err: TextIO,
) -> Summary:
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

    line = by_probe(lines)

    def on_record(record: memoryview) -> bool:
        nonlocal printed
        pending.append(line(record))
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
            err.write(
                f"ksnoop: lost {lost - lost_reported} records: the ring buffer was full "
                "(try a larger -P/--pages or a narrower spec)\n"
            )
            lost_reported = lost
        if count_limit is not None and printed >= count_limit:
            break
        if stop or (deadline is not None and time.monotonic() >= deadline):
            ring.drain(on_record, None if count_limit is None else count_limit - printed)
            flush()
            break
    return Summary(printed, _lost(drops))


def _lost(drops: PerCPUValues) -> int:
    values = drops.lookup_percpu(b"\0\0\0\0") or []
    return sum(int.from_bytes(v[:8], sys.byteorder) for v in values)
