# SPDX-License-Identifier: GPL-2.0-only
"""`trace --count-by` / `--hist` output: each function's counts per key, as text or JSON.

Takes the KeyTotals ksnoop.run.aggregate sums at exit and every --interval. Key values render as
records render the same values (strings quoted and sanitised, enums by name, pointers in hex);
text is a table per function, or per key a log2 histogram drawn as bpftrace's hist() draws it;
JSON is one object per report, independent of the terminal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from bpf.plan import HIST_NEGATIVE, HIST_UNREADABLE, Builtin, Capture

from ksnoop.output.decode import READ_FAILED, key_capture
from ksnoop.output.json_compiled import json_string
from ksnoop.output.json_lines import value_json
from ksnoop.output.summary_text import histogram_rows, power_label
from ksnoop.output.text import READ_FAILED_TEXT, errno_text, returns_errno, value_text
from ksnoop.run.aggregate import Dropped, KeyTotal
from ksnoop.sanitize import sanitize
from ksnoop.spec.language import RETURN
from ksnoop.spec.resolve import ResolvedTrace

Render = Callable[[Any], str]


@dataclass(frozen=True)
class Report:
    """One report: at exit, or the calls of one --interval."""

    totals: Sequence[KeyTotal]  # most counted first
    dropped: Dropped
    interval: Optional[int] = None  # 1, 2, ... with --interval; None for the one report at exit
    elapsed_s: float = 0.0  # since the probes were attached


class AggregateFormatter:
    """Reports of one aggregating trace as text or JSON lines.

    `key_labels` are the --count-by values as the user wrote them, `hist_label` the --hist value;
    `top` keeps each function's N most counted keys and counts the rest."""

    def __init__(
        self,
        resolved: ResolvedTrace,
        key_labels: Sequence[str],
        hist_label: Optional[str],
        *,
        top: Optional[int] = None,
        output: str = "text",
    ):
        self._labels = tuple(key_labels)
        self._hist_label = hist_label
        self._top = top
        self._json = output == "json"
        self._renders = key_renders(resolved, self._labels, "json" if self._json else "text")

    def format(self, report: Report) -> str:
        return self._format_json(report) if self._json else self._format_text(report)

    def _kept(self, totals: Sequence[KeyTotal]) -> List[Tuple[str, List[KeyTotal], int, int]]:
        """Per function in order of its first key: its kept totals, and the keys and calls cut by --top."""
        by_function: Dict[int, List[KeyTotal]] = {}
        for total in totals:
            by_function.setdefault(total.function, []).append(total)
        out = []
        for rows in by_function.values():
            kept = rows if self._top is None else rows[: self._top]
            rest = rows[len(kept) :]
            out.append((rows[0].label, kept, len(rest), sum(t.count for t in rest)))
        return out

    # ---- text ----

    def _format_text(self, report: Report) -> str:
        blocks = []
        if not report.totals:
            blocks.append("no calls counted")
        for label, kept, more_keys, more_calls in self._kept(report.totals):
            calls = sum(t.count for t in kept) + more_calls
            keys = len(kept) + more_keys
            head = f"{sanitize(label)}: {calls} call{'' if calls == 1 else 's'}"
            if self._labels:
                head += f", {keys} key{'' if keys == 1 else 's'}"
            lines = [head]
            if self._hist_label is not None:
                indent = "    " if self._labels else "  "
                for total in kept:
                    if self._labels:
                        lines.append(f"  {self._key_text(total)}: {total.count}")
                    lines.append(f"{indent}{sanitize(self._hist_label)}:")
                    lines.extend(indent + line for line in histogram_rows(_hist_rows(total.buckets or {})))
            elif self._labels:
                lines.extend(self._table(kept))
            if more_keys:
                lines.append(
                    f"  ... {more_keys} more key{'' if more_keys == 1 else 's'}: "
                    f"{more_calls} call{'' if more_calls == 1 else 's'}"
                )
            blocks.append("\n".join(lines))
        text = "\n\n".join(blocks)
        if report.interval is None:
            return text
        return f"--- interval {report.interval}, {report.elapsed_s:.1f} s ---\n{text}\n"

    def _key_text(self, total: KeyTotal) -> str:
        renders = self._renders[total.function]
        return " ".join(
            f"{sanitize(label)}={render(v)}" for label, render, v in zip(self._labels, renders, total.values)
        )

    def _table(self, kept: Sequence[KeyTotal]) -> List[str]:
        """COUNT then one column per key value, left-aligned, as `sort | uniq -c` reads."""
        rows = [["COUNT"] + [sanitize(label) for label in self._labels]]
        for total in kept:
            renders = self._renders[total.function]
            rows.append([str(total.count)] + [render(v) for render, v in zip(renders, total.values)])
        widths = [max(len(row[n]) for row in rows) for n in range(len(rows[0]))]
        lines = []
        for row in rows:
            cells = [row[0].rjust(widths[0])] + [cell.ljust(w) for cell, w in zip(row[1:], widths[1:])]
            lines.append(("  " + "  ".join(cells)).rstrip())
        return lines

    # ---- JSON ----

    def _format_json(self, report: Report) -> str:
        counts = []
        more = {"keys": 0, "count": 0}
        for _, kept, more_keys, more_calls in self._kept(report.totals):
            more["keys"] += more_keys
            more["count"] += more_calls
            for total in kept:
                renders = self._renders[total.function]
                key = ", ".join(
                    f"{json_string(label)}: {render(v)}"
                    for label, render, v in zip(self._labels, renders, total.values)
                )
                fields = [f'"func": {json_string(total.label)}', f'"key": {{{key}}}', f'"count": {total.count}']
                if self._hist_label is not None:
                    fields.append(f'"hist_log2": {json.dumps(_hist_json(total.buckets or {}))}')
                counts.append("{" + ", ".join(fields) + "}")
        head = {
            "interval": report.interval,
            "elapsed_s": round(report.elapsed_s, 3),
            "more": more,
            "dropped": {"keys": report.dropped.keys, "calls": report.dropped.calls},
        }
        return '{"counts": [' + ", ".join(counts) + "], " + json.dumps(head)[1:]


def key_renders(resolved: ResolvedTrace, key_labels: Sequence[str], style: str) -> Dict[int, Tuple[Render, ...]]:
    """Per function number (Aggregate.key), how each of its key values renders: `style` "text"
    (as records show it), "json" (a JSON value), or "label" (a metric's label value: text, with
    strings sanitised and unquoted)."""
    renders = {}
    for probe, target in zip(resolved.plan.probes, resolved.targets):
        if probe.aggregate is not None:
            renders[probe.aggregate.key] = tuple(
                _part_render(part, target.btf, style, label == RETURN)
                for part, label in zip(probe.aggregate.parts, key_labels)
            )
    return renders


def _part_render(part: object, btf: Any, style: str, is_return: bool) -> Render:
    """How one key value renders; READ_FAILED as records show it."""
    if style == "label":
        text = _part_render(part, btf, "text", is_return)
        if is_return and isinstance(part, Capture) and returns_errno(btf, part):
            # A label is a name to select by: `-EBADF`, not text's `-9 /* -EBADF */`.
            return lambda v: (errno_text(v) or text(v)) if type(v) is int else text(v)
        return lambda v: sanitize(v) if type(v) is str else text(v)
    if isinstance(part, Capture):
        capture = key_capture(part)
        return value_json(btf, capture) if style == "json" else value_text(btf, capture, is_return)
    if part is Builtin.COMM:
        if style == "json":
            return lambda v: "null" if v is READ_FAILED else json_string(v)
        return lambda v: READ_FAILED_TEXT if v is READ_FAILED else '"' + sanitize(v).replace('"', '\\"') + '"'
    return str


def _hist_label(bucket: int) -> str:
    if bucket == HIST_NEGATIVE:
        return "(..., 0)"
    if bucket == HIST_UNREADABLE:
        return "<read failed>"
    if bucket == 0:
        return "[0]"
    low, high = 1 << (bucket - 1), 1 << bucket
    return f"[{power_label(low)}]" if high - low == 1 else f"[{power_label(low)}, {power_label(high)})"


def _hist_rows(buckets: Dict[int, int]) -> List[Tuple[str, int]]:
    """The histogram's rows: negative values, then every bucket from the first to the last that
    holds anything (the empty ones between too), then values that could not be read."""
    rows = []
    if buckets.get(HIST_NEGATIVE):
        rows.append((_hist_label(HIST_NEGATIVE), buckets[HIST_NEGATIVE]))
    used = sorted(b for b, n in buckets.items() if n and b not in (HIST_NEGATIVE, HIST_UNREADABLE))
    if used:
        rows.extend((_hist_label(b), buckets.get(b, 0)) for b in range(used[0], used[-1] + 1))
    if buckets.get(HIST_UNREADABLE):
        rows.append((_hist_label(HIST_UNREADABLE), buckets[HIST_UNREADABLE]))
    return rows


def _hist_json(buckets: Dict[int, int]) -> Dict[str, int]:
    """Bucket -> count, keyed by the bucket's low bound ("0", "1", "2", "4", ...), "negative" and
    "unreadable"; only buckets that hold anything."""
    out = {}
    for bucket, n in sorted(buckets.items()):
        if not n:
            continue
        if bucket == HIST_NEGATIVE:
            out["negative"] = n
        elif bucket == HIST_UNREADABLE:
            out["unreadable"] = n
        else:
            out[str(0 if bucket == 0 else 1 << (bucket - 1))] = n
    return out
