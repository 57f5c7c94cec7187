# SPDX-License-Identifier: GPL-2.0-only
"""`trace --summary` output: each function's calls, errors and latency histogram, as text or JSON.

Takes the FunctionCounts that ksnoop.run.summary sums at exit. Text draws log2 histograms the way
bpftrace's hist() does; JSON is one object, `{"summary": [...]}`, independent of the terminal.
"""

from __future__ import annotations

import json
from typing import Dict, List, Optional, Sequence, Tuple

from ksnoop.sanitize import sanitize
from ksnoop.run.summary import FunctionCounts

BAR_WIDTH = 52  # as bpftrace's hist()
_SUFFIXES = ("", "K", "M", "G", "T", "P", "E")


def bucket_bounds(k: int) -> Tuple[int, int]:
    """Bucket k's durations in ns, [low, high): [0, 2) for bucket 0, else [2**k, 2**(k+1))."""
    return (0 if k == 0 else 1 << k), 1 << (k + 1)


def power_label(value: int) -> str:
    """A power of two as bpftrace prints it: 512, 1K, 2K ... 1M; 0 stays 0."""
    for n, suffix in reversed(list(enumerate(_SUFFIXES))):
        if value >= 1 << (10 * n) and value % (1 << (10 * n)) == 0:
            return f"{value >> (10 * n)}{suffix}"
    return str(value)


def histogram_lines(buckets: Sequence[int]) -> List[str]:
    """`[1K, 2K)   12 |@@@@   |` per bucket from the first to the last one holding anything."""
    used = [k for k, n in enumerate(buckets) if n]
    if not used:
        return []
    rows = []
    for k in range(used[0], used[-1] + 1):
        low, high = bucket_bounds(k)
        rows.append((f"[{power_label(low)}, {power_label(high)})", buckets[k]))
    return histogram_rows(rows)


def histogram_rows(rows: Sequence[Tuple[str, int]]) -> List[str]:
    """`label  count |@@@@   |` per (label, count), the bars scaled to the largest count."""
    if not rows:
        return []
    top = max(1, max(n for _, n in rows))
    label_width = max(len(label) for label, _ in rows)
    count_width = max(len(str(n)) for _, n in rows)
    lines = []
    for label, n in rows:
        bar = "@" * (n * BAR_WIDTH // top)
        lines.append(f"{label:<{label_width}} {n:>{count_width}} |{bar:<{BAR_WIDTH}}|")
    return lines


def format_text(counts: Sequence[FunctionCounts]) -> str:
    """Per function a line of totals, then its latency histogram in ns (functions only)."""
    blocks = []
    for c in counts:
        errors = "" if c.errors is None else f", {c.errors} error{'' if c.errors == 1 else 's'}"
        lines = [f"{sanitize(c.label)}: {c.calls} call{'' if c.calls == 1 else 's'}{errors}"]
        if c.buckets is not None and any(c.buckets):
            lines.append("  latency (ns):")
            lines.extend("  " + line for line in histogram_lines(c.buckets))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _latency(buckets: Optional[Sequence[int]]) -> Optional[Dict[str, int]]:
    if buckets is None:
        return None
    return {str(bucket_bounds(k)[0]): n for k, n in enumerate(buckets) if n}


def format_json(counts: Sequence[FunctionCounts]) -> str:
    """One JSON object; `errors`, `latency_ns_log2` (bucket low bound -> count) and `total_ns` (the
    durations summed) are null where they do not apply (a tracepoint, or a return value that is not
    a signed integer for errors)."""
    return json.dumps(
        {
            "summary": [
                {
                    "func": c.label,
                    "calls": c.calls,
                    "errors": c.errors,
                    "latency_ns_log2": _latency(c.buckets),
                    "total_ns": c.duration_ns,
                }
                for c in counts
            ]
        }
    )
