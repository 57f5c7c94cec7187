# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop's in-kernel counts as Prometheus metric families (`trace --metrics`).

Takes what the counting loops read back (ksnoop.run.summary's FunctionCounts, ksnoop.run.aggregate's
KeyTotals) and makes prometheus_client metric families of them; prometheus_client writes the
exposition (text or OpenMetrics). Label values render through the records' value model (enums by
name, pointers in hex, errno names on returns) with strings sanitised.

The kernel's log2 buckets become a histogram's cumulative `le` buckets. A bucket's `le` is the
largest integer it holds (Prometheus's `le` is "less or equal": a 1024-byte packet is in le="1024"'s
bucket [1024, 2047], not le="1023"'s), in seconds for durations; every series of a family has the
same buckets, from the lowest to the highest any of them has used (they only widen over time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from bpf.plan import HIST_NEGATIVE, HIST_UNREADABLE

from ksnoop.output.aggregate_text import Render
from ksnoop.run.aggregate import Dropped, KeyTotal
from ksnoop.run.summary import FunctionCounts

PREFIX = "ksnoop_"
FUNC_LABEL = "func"  # every family's label naming the function or tracepoint (`tp:NAME`)
CALLS_HELP = "Calls counted, per function or tracepoint."
_NS_PER_S = 1e9
_NOT_IN_NAME = re.compile(r"[^a-zA-Z0-9_]+")


def metric_word(text: str) -> str:
    """An expression as a metric or label name's word: `skb->dev->name` -> `skb_dev_name`."""
    word = _NOT_IN_NAME.sub("_", text).strip("_")
    if not word or word[0].isdigit():
        word = "v_" + word
    return word


def label_names(expressions: Sequence[str]) -> Tuple[str, ...]:
    """One label name per --count-by expression: its metric_word, numbered apart where two are the
    same or one is `func` or `le` (the names every family or a histogram already has)."""
    taken = {FUNC_LABEL, "le"}
    out = []
    for text in expressions:
        base = metric_word(text)
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        out.append(name)
    return tuple(out)


@dataclass(frozen=True)
class Health:
    """ksnoop's own state beside the counts."""

    probes: int  # functions and tracepoints attached
    dropped: Optional[Dropped] = None  # --count-by/--hist: what a full hash could not count
    keys: Optional[int] = None  # --count-by/--hist: the distinct keys the hash holds
    max_keys: Optional[int] = None  # --count-by/--hist: how many it can hold
    records_lost: Optional[int] = None  # --records: records a full ring buffer could not take


def health_families(health: Health) -> List[Metric]:
    out: List[Metric] = [
        GaugeMetricFamily(
            PREFIX + "probes_attached", "Functions and tracepoints ksnoop has attached to.", value=health.probes
        )
    ]
    if health.dropped is not None:
        out.append(
            CounterMetricFamily(
                PREFIX + "keys_dropped",
                "Distinct keys not counted because the kernel's hash was full (--max-keys raises its size).",
                value=health.dropped.keys,
            )
        )
        out.append(
            CounterMetricFamily(
                PREFIX + "calls_dropped",
                "Calls not counted because the kernel's hash was full.",
                value=health.dropped.calls,
            )
        )
    if health.records_lost is not None:
        out.append(
            CounterMetricFamily(
                PREFIX + "records_lost",
                "Records lost because the ring buffer was full (-P/--pages raises its size).",
                value=health.records_lost,
            )
        )
    if health.keys is not None:
        out.append(GaugeMetricFamily(PREFIX + "keys", "Distinct keys in the kernel's hash.", value=health.keys))
    if health.max_keys is not None:
        out.append(
            GaugeMetricFamily(PREFIX + "keys_max", "Distinct keys the kernel's hash holds.", value=health.max_keys)
        )
    return out


def summary_families(totals: Sequence[FunctionCounts]) -> List[Metric]:
    """--summary: calls, errors (negative returns) and the latency histogram per function."""
    calls = CounterMetricFamily(PREFIX + "calls", CALLS_HELP, labels=[FUNC_LABEL])
    errors = CounterMetricFamily(
        PREFIX + "errors", "Calls that returned a negative value, per function.", labels=[FUNC_LABEL]
    )
    durations = HistogramMetricFamily(
        PREFIX + "call_duration_seconds", "Time from a function's entry to its return.", labels=[FUNC_LABEL]
    )
    # Summary bucket k holds [2**k, 2**(k+1)) ns (0 ns in bucket 0): as --hist's bucket k + 1.
    used = [{k + 1: n for k, n in enumerate(c.buckets) if n} for c in totals if c.buckets is not None]
    bounds = _bounds(used, seconds=True)
    for c in totals:
        calls.add_metric([c.label], c.calls)
        if c.errors is not None:
            errors.add_metric([c.label], c.errors)
        if c.buckets is not None:
            buckets = {k + 1: n for k, n in enumerate(c.buckets) if n}
            durations.add_metric([c.label], _cumulative(buckets, bounds), (c.duration_ns or 0) / _NS_PER_S)
    return [family for family in (calls, errors, durations) if family.samples]


def record_families(labels: Sequence[str], printed: Sequence[int]) -> List[Metric]:
    """--records: the records printed per function or tracepoint (`labels` and `printed` per
    probe: a call traced at entry and return has two records)."""
    return [_per_function("records", "Records printed, per function or tracepoint.", zip(labels, printed))]


def _per_function(name: str, documentation: str, counts: Iterable[Tuple[str, int]]) -> Metric:
    """A counter labelled by function, of `counts` (function, n) summed by function."""
    per_function: Dict[str, int] = {}
    for label, n in counts:
        per_function[label] = per_function.get(label, 0) + n
    family = CounterMetricFamily(PREFIX + name, documentation, labels=[FUNC_LABEL])
    for label, n in per_function.items():
        family.add_metric([label], n)
    return family


@dataclass(frozen=True)
class AggregateMetrics:
    """How --count-by / --hist counts become families: the label of each key value, the name of
    the histogram's value (None without --hist), and how each function's key values render."""

    labels: Tuple[str, ...]
    hist: Optional[str]  # the --hist expression as given ("skb->len", "duration")
    renders: Mapping[int, Tuple[Render, ...]]  # per function number: aggregate_text.key_renders(..., "label")
    # Each series' label values, rendered at its first scrape: a key stays in the hash (so in every
    # scrape) until ksnoop exits, and rendering 10,000 of them again would be most of a scrape.
    _rendered: Dict[Tuple[int, Tuple[object, ...]], List[str]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @classmethod
    def of(
        cls, expressions: Sequence[str], hist: Optional[str], renders: Mapping[int, Tuple[Render, ...]]
    ) -> "AggregateMetrics":
        return cls(label_names(expressions), hist, renders)

    def counter_name(self) -> str:
        return PREFIX + "calls_by_" + "_".join(self.labels)

    def histogram_name(self) -> str:
        assert self.hist is not None
        return PREFIX + ("call_duration_seconds" if self.hist == "duration" else metric_word(self.hist))

    def families(self, totals: Iterable[KeyTotal]) -> List[Metric]:
        """Calls per function; per function and key with --count-by; a histogram per function (and
        key) with --hist."""
        totals = list(totals)
        labels = [FUNC_LABEL, *self.labels]
        out: List[Metric] = [_per_function("calls", CALLS_HELP, ((t.label, t.count) for t in totals))]
        rows = [(t, self._label_values(t)) for t in totals]
        if self.labels:
            by_key = CounterMetricFamily(
                self.counter_name(), f"Calls counted per {', '.join(self.labels)}.", labels=labels
            )
            for t, values in rows:
                by_key.add_metric(values, t.count)
            out.append(by_key)
        if self.hist is not None:
            seconds = self.hist == "duration"
            what = "Time from a function's entry to its return" if seconds else f"Values of {self.hist}"
            histogram = HistogramMetricFamily(self.histogram_name(), what + ", in log2 buckets.", labels=labels)
            bounds = _bounds([t.buckets or {} for t in totals], seconds)
            for t, values in rows:
                histogram.add_metric(values, _cumulative(t.buckets or {}, bounds, count=t.count), None)
            out.append(histogram)
        return out

    def _label_values(self, total: KeyTotal) -> List[str]:
        """`func`'s value, then the key's."""
        series = (total.function, total.values)
        values = self._rendered.get(series)
        if values is None:
            renders = self.renders[total.function]
            values = self._rendered[series] = [total.label, *(r(v) for r, v in zip(renders, total.values))]
        return values


# ---- buckets: --hist's numbering (bpf.plan): 0 holds 0, k >= 1 holds [2**(k-1), 2**k), HIST_NEGATIVE
# and HIST_UNREADABLE their own ----


def _bounds(used: Iterable[Mapping[int, int]], seconds: bool) -> List[Tuple[int, str]]:
    """(bucket, le) of every bucket from the lowest to the highest any series used; negative
    values as le="-1" (they are integers); "+Inf" last, which holds unreadable values too."""
    numbered = set()
    negative = False
    for buckets in used:
        for k, n in buckets.items():
            if not n:
                continue
            if k == HIST_NEGATIVE:
                negative = True
            elif k != HIST_UNREADABLE:
                numbered.add(k)
    out: List[Tuple[int, str]] = []
    if negative:
        out.append((HIST_NEGATIVE, _le(-1)))
    if numbered:
        for k in range(min(numbered), max(numbered) + 1):
            top = (1 << k) - 1  # the largest integer bucket k holds
            out.append((k, _le(top / _NS_PER_S if seconds else top)))
    return out


def _le(value: float) -> str:
    """A float as Prometheus reads an `le` (integers with ".0", as prometheus_client's own)."""
    return repr(float(value))


def _cumulative(
    buckets: Mapping[int, int], bounds: Sequence[Tuple[int, str]], count: Optional[int] = None
) -> List[Tuple[str, float]]:
    """A series' cumulative buckets at `bounds`, then +Inf: `count` (every call, unreadable values
    too) or the buckets' sum."""
    out: List[Tuple[str, float]] = []
    running = 0
    for k, le in bounds:
        running += buckets.get(k, 0)
        out.append((le, running))
    total = sum(buckets.values()) if count is None else count
    out.append(("+Inf", total))
    return out
