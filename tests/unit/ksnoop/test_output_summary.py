# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.summary.sum_counters and ksnoop.output.summary_text: per-CPU counters to text and JSON."""

from __future__ import annotations

import json

from bpf.plan import COUNTERS, LATENCY_BUCKETS
from ksnoop.output.summary_text import BAR_WIDTH, bucket_bounds, format_json, format_text, histogram_lines
from ksnoop.spec.resolve import resolve
from ksnoop.spec.language import parse_spec
from ksnoop.run.summary import FunctionCounts, count_calls, sum_counters
from tests.support import records


def _counters(calls: int, errors: int, buckets: dict[int, int], duration_ns: int = 0) -> bytes:
    return COUNTERS.pack(calls, errors, *[buckets.get(k, 0) for k in range(LATENCY_BUCKETS)], duration_ns)


def test_sum_counters_adds_every_cpu_and_knows_what_applies() -> None:
    resolved = count_calls(
        resolve([parse_spec(s) for s in ("ip_send_skb", "tp:net_dev_queue", "noargs")], records.kernel())
    )
    per_cpu = {
        0: [_counters(2, 1, {10: 2}, 2100), _counters(3, 0, {10: 1, 12: 2}, 9000)],
        1: [_counters(4, 0, {}), _counters(1, 0, {})],
        # key 2 absent: nothing counted
    }
    assert sum_counters(resolved, per_cpu) == [
        FunctionCounts("ip_send_skb", 5, 1, tuple({10: 3, 12: 2}.get(k, 0) for k in range(LATENCY_BUCKETS)), 11100),
        FunctionCounts("tp:net_dev_queue", 5, None, None),
        FunctionCounts("noargs", 0, None, (0,) * LATENCY_BUCKETS, 0),
    ]


def test_bucket_bounds() -> None:
    assert [bucket_bounds(k) for k in (0, 1, 2, 10)] == [(0, 2), (2, 4), (4, 8), (1024, 2048)]
    assert bucket_bounds(63) == (1 << 63, 1 << 64)


def _buckets(**by_index: int) -> tuple[int, ...]:
    return tuple(by_index.get(f"b{k}", 0) for k in range(LATENCY_BUCKETS))


def test_histogram_lines_like_bpftrace_hist() -> None:
    lines = histogram_lines(_buckets(b10=12, b12=3, b20=24))
    # labels padded to the widest, "[256K, 512K)"; counts right-aligned
    assert lines[0] == "[1K, 2K)     12 |" + "@" * 26 + " " * 26 + "|"
    assert lines[1] == "[2K, 4K)      0 |" + " " * BAR_WIDTH + "|"
    assert lines[2] == "[4K, 8K)      3 |" + "@" * 6 + " " * 46 + "|"
    assert lines[-1] == "[1M, 2M)     24 |" + "@" * BAR_WIDTH + "|"
    assert len(lines) == 11  # every bucket between the first and the last used


def test_histogram_edges() -> None:
    assert histogram_lines((0,) * LATENCY_BUCKETS) == []
    assert histogram_lines(_buckets(b0=1, b1=1)) == [f"[0, 2) 1 |{'@' * BAR_WIDTH}|", f"[2, 4) 1 |{'@' * BAR_WIDTH}|"]
    assert histogram_lines(_buckets(b63=1)) == [f"[8E, 16E) 1 |{'@' * BAR_WIDTH}|"]


def test_format_text() -> None:
    text = format_text(
        [
            FunctionCounts("ip_send_skb", 3, 1, _buckets(b10=3)),
            FunctionCounts("tp:net_dev_queue", 1, None, None),
            FunctionCounts("noargs", 0, None, (0,) * LATENCY_BUCKETS),
        ]
    )
    assert text.split("\n") == [
        "ip_send_skb: 3 calls, 1 error",
        "  latency (ns):",
        f"  [1K, 2K) 3 |{'@' * BAR_WIDTH}|",
        "",
        "tp:net_dev_queue: 1 call",
        "",
        "noargs: 0 calls",
    ]


def test_format_json_is_one_object() -> None:
    text = format_json(
        [
            FunctionCounts("ip_send_skb", 3, 1, _buckets(b0=1, b10=2), 2100),
            FunctionCounts("tp:net_dev_queue", 7, None, None),
        ]
    )
    assert "\n" not in text
    assert json.loads(text) == {
        "summary": [
            {"func": "ip_send_skb", "calls": 3, "errors": 1, "latency_ns_log2": {"0": 1, "1024": 2}, "total_ns": 2100},
            {"func": "tp:net_dev_queue", "calls": 7, "errors": None, "latency_ns_log2": None, "total_ns": None},
        ]
    }


def test_summary_refuses_count_and_kstack(cli, mini_btf) -> None:
    result = cli("trace", "--btf", mini_btf, "--summary", "-n", "3", "ip_send_skb")
    assert result.exit_code == 2 and "--count" in result.stderr and "--summary" in result.stderr
    result = cli("trace", "--btf", mini_btf, "--summary", "--kstack", "tp:net_dev_queue")
    assert result.exit_code == 2 and "--kstack" in result.stderr
