# SPDX-License-Identifier: GPL-2.0-only
"""The summary loop: the programs count calls, errors and latency into per-CPU counters (no ring
buffer); at the time limit, a stop signal the counters are summed over CPUs and printed. With
--metrics they are served instead, read at each scrape (ksnoop.run.exporter), and nothing is
printed."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Dict, List, Protocol, TextIO, Tuple

from bpf.codegen import MapRole, Program

from ksnoop.run.describe import say_summary
from ksnoop.run.options import RunOptions, Summary
from ksnoop.run.record_loop import POLL_INTERVAL_S
from ksnoop.run.runner import attach_counting
from ksnoop.run.stopping import StopFlag
from ksnoop.run.summary import FunctionCounts, counted, sum_counters
from ksnoop.spec.resolve import ResolvedTrace


class AllPerCPUValues(Protocol):
    """A per-CPU map read back whole (bpf.maps.Map): key -> one value per possible CPU."""

    def lookup_all_percpu(self) -> Dict[bytes, List[bytes]]: ...


def run_summary(
    resolved: ResolvedTrace, programs: Tuple[Program, ...], options: RunOptions, out: TextIO, err: TextIO
) -> Summary:
    """--summary: the programs count into a PERCPU_ARRAY (no ring buffer); at the time limit,
    a stop signal the counters are summed over CPUs and printed."""
    stop = StopFlag()
    # Its handlers stay till the end: a signal while detaching does not cut the summary.
    with stop.installed(armed=False):
        with contextlib.ExitStack() as stack:
            counting = attach_counting(stack, resolved, programs, stop, options, err)
            maps, attached, exporter = counting.maps, counting.attached, counting.exporter
            counts = maps.shared(MapRole.COUNTS)
            if exporter is not None:
                probes = len(attached.labels)
                exporter.serve(stack, lambda: metric_families(resolved, counts, probes))
            totals = count_until_stopped(resolved, counts, options, stop)
        if options.metrics is not None:
            summary = Summary(0, 0, calls=sum(c.calls for c in totals))
        else:
            summary = report(totals, options, out)
        say_summary(summary, err)
        return summary


def read_totals(resolved: ResolvedTrace, counts: AllPerCPUValues) -> List[FunctionCounts]:
    """Each counted function's counters, summed over CPUs, as they are now."""
    every = counts.lookup_all_percpu()  # one system call for a glob's hundreds of keys
    keys = len(counted(resolved))
    return sum_counters(resolved, {key: every.get(key.to_bytes(4, sys.byteorder), []) for key in range(keys)})


def metric_families(resolved: ResolvedTrace, counts: AllPerCPUValues, probes: int) -> List[Any]:
    """--metrics: the counters as they are now, and ksnoop's health."""
    from ksnoop.output.metrics import Health, health_families, summary_families

    return summary_families(read_totals(resolved, counts)) + health_families(Health(probes))


def count_until_stopped(
    resolved: ResolvedTrace, counts: AllPerCPUValues, options: RunOptions, stop: StopFlag
) -> List[FunctionCounts]:
    """Wait for the time limit or `stop`, then sum each key's per-CPU counters (`counts`: the
    COUNTS map while the programs are attached)."""
    deadline = None if options.duration_s is None else time.monotonic() + options.duration_s
    while not stop and (deadline is None or time.monotonic() < deadline):
        remaining = POLL_INTERVAL_S if deadline is None else deadline - time.monotonic()
        time.sleep(max(0.0, min(POLL_INTERVAL_S, remaining)))
    return read_totals(resolved, counts)


def report(totals: List[FunctionCounts], options: RunOptions, out: TextIO) -> Summary:
    """The totals as text or JSON on `out`; run_summary prints them once everything is detached."""
    from ksnoop.output.summary_text import format_json, format_text

    out.write((format_json(totals) if options.output == "json" else format_text(totals)) + "\n")
    out.flush()
    return Summary(0, 0, calls=sum(c.calls for c in totals))
