# SPDX-License-Identifier: GPL-2.0-only
"""The aggregation loop (`trace --count-by`, `--hist`): the programs count calls per key in a
per-CPU hash (no ring buffer); every --interval and at the end the counts are read back in one
batch, summed over CPUs and printed. The kernel's counts only grow: an interval's are the
difference from the last read, so nothing counted between a read and a reset is lost. With
--metrics the counts are served, read at each scrape (ksnoop.run.exporter), and printed only
every --interval if one is given."""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Protocol, TextIO

from bpf.codegen import MapRole, Program

from ksnoop.output.aggregate_text import AggregateFormatter, Report
from ksnoop.run.aggregate import AggregateRequest, Dropped, dropped, key_decoders, key_totals
from ksnoop.run.describe import say_summary
from ksnoop.run.options import RunOptions, Summary
from ksnoop.run.record_loop import POLL_INTERVAL_S
from ksnoop.run.runner import attach_counting
from ksnoop.run.stopping import StopFlag
from ksnoop.spec.resolve import ResolvedTrace

if TYPE_CHECKING:  # prometheus_client, which ksnoop.output.metrics imports, is an optional extra
    from ksnoop.output.metrics import Health


class AllPerCPUValues(Protocol):
    """A per-CPU map read back whole (bpf.maps.Map): key -> one value per possible CPU, or (of a
    map of u64 counters) key -> their sum."""

    def lookup_all_percpu(self) -> Dict[bytes, List[bytes]]: ...

    def sum_all_percpu(self) -> Dict[bytes, int]: ...


class Counts:
    """The aggregation maps while the programs are attached: what they counted since the last read."""

    def __init__(self, resolved: ResolvedTrace, counts: AllPerCPUValues, drops: AllPerCPUValues, hist: bool):
        self._decoders = key_decoders(resolved)
        self._counts, self._drops, self._hist = counts, drops, hist
        self._before: Dict[bytes, int] = {}
        self._dropped_before = Dropped()

    def since_last(self, interval: Optional[int], elapsed_s: float) -> Report:
        now = self._counts.sum_all_percpu()
        before = self._before
        delta = {key: n - before.get(key, 0) for key, n in now.items()}
        self._before = now
        drops = dropped_so_far(self._drops)
        new_drops = Dropped(drops.calls - self._dropped_before.calls, drops.keys - self._dropped_before.keys)
        self._dropped_before = drops
        return Report(key_totals(self._decoders, delta, self._hist), new_drops, interval, elapsed_s)


def dropped_so_far(drops: AllPerCPUValues) -> Dropped:
    """What the full hash could not count, since the start (`drops`: the AGGREGATE_DROPS map)."""
    return dropped(drops.lookup_all_percpu().get(bytes(4), []))


class MetricsReader:
    """--metrics: the aggregation maps as metric families, at each scrape: the kernel's counts
    since the start, per key, and ksnoop's health (`health`, what the maps say filled in)."""

    def __init__(
        self,
        resolved: ResolvedTrace,
        request: AggregateRequest,
        aggregates: AllPerCPUValues,
        drops: AllPerCPUValues,
        health: "Health",
    ):
        from ksnoop.output.aggregate_text import key_renders
        from ksnoop.output.metrics import AggregateMetrics

        hist = request.hist_value()
        labels = [key.text for key in request.keys()]
        renders = key_renders(resolved, labels, "label")
        self._metrics = AggregateMetrics.of(labels, hist.text if hist is not None else None, renders)
        # Keys stay in the hash till ksnoop exits: each is decoded at its first scrape, then remembered.
        self._decoders = {
            function: (label, functools.lru_cache(maxsize=health.max_keys)(decode))
            for function, (label, decode) in key_decoders(resolved).items()
        }
        self._aggregates, self._drops, self._health = aggregates, drops, health
        self._hist = hist is not None

    def families(self) -> List[Any]:
        from ksnoop.output.metrics import health_families

        per_key = self._aggregates.sum_all_percpu()
        totals = key_totals(self._decoders, per_key, self._hist)
        health = replace(self._health, dropped=dropped_so_far(self._drops), keys=len(per_key))
        return self._metrics.families(totals) + health_families(health)


def run_aggregate(
    resolved: ResolvedTrace, programs: tuple[Program, ...], options: RunOptions, out: TextIO, err: TextIO
) -> Summary:
    """--count-by / --hist: count into the hash until the time limit or a stop signal, printing a
    report every --interval seconds (if given) and one for what is left at the end."""
    request = AggregateRequest(options.count_by, options.hist)
    hist = request.hist_value()
    formatter = AggregateFormatter(
        resolved,
        [key.text for key in request.keys()],
        hist.text if hist is not None else None,
        top=options.top,
        output=options.output,
    )
    stop = StopFlag()
    calls = 0
    dropped_keys = 0
    # With --metrics the scrapes show the counts; reports are printed only every --interval.
    printing = options.metrics is None or options.interval_s is not None
    # Its handlers stay till the end: a signal while detaching does not cut the last report.
    with stop.installed(armed=False):
        with contextlib.ExitStack() as stack:
            counting = attach_counting(stack, resolved, programs, stop, options, err)
            maps, attached, exporter = counting.maps, counting.attached, counting.exporter
            aggregates, drops = maps.shared(MapRole.AGGREGATE), maps.shared(MapRole.AGGREGATE_DROPS)
            counts = Counts(resolved, aggregates, drops, hist=bool(options.hist))
            if exporter is not None:
                from ksnoop.output.metrics import Health

                health = Health(len(attached.labels), max_keys=options.max_keys)
                reader = MetricsReader(resolved, request, aggregates, drops, health)
                exporter.serve(stack, reader.families)
            start = time.monotonic()
            deadline = None if options.duration_s is None else start + options.duration_s
            next_report = None if options.interval_s is None else start + options.interval_s
            interval = 1 if options.interval_s is not None else None
            while True:
                now = time.monotonic()
                ending = bool(stop) or (deadline is not None and now >= deadline)
                if ending or (next_report is not None and now >= next_report):
                    report = counts.since_last(interval, now - start)
                    calls += sum(t.count for t in report.totals)
                    dropped_keys += report.dropped.keys
                    if printing:
                        _write(formatter, report, out, err, options.max_keys)
                    if ending:
                        break
                    assert next_report is not None and options.interval_s is not None and interval is not None
                    interval += 1
                    while next_report <= now:
                        next_report += options.interval_s
                    continue
                wake = min(t for t in (deadline, next_report, now + POLL_INTERVAL_S) if t is not None)
                time.sleep(max(0.0, wake - now))
        summary = Summary(0, 0, calls=calls)
        say_summary(summary, err)
        return summary


def _write(formatter: AggregateFormatter, report: Report, out: TextIO, err: TextIO, max_keys: int) -> None:
    out.write(formatter.format(report) + "\n")
    out.flush()
    if report.dropped.calls:
        keys = report.dropped.keys
        # The overflow hash that tells dropped keys apart holds one more than the full one.
        least = "at least " if keys > max_keys else ""
        err.write(
            f"ksnoop: warning: {least}{keys} distinct key{'' if keys == 1 else 's'} dropped "
            f"({report.dropped.calls} calls not counted): the hash was full; --max-keys raises its size\n"
        )
        err.flush()
