# SPDX-License-Identifier: GPL-2.0-only
"""`ksnoop trace --summary` end to end on this machine's kernel, in a subprocess: a tracepoint
counted in the kernel, with a pid filter, must count exactly the datagrams this test sends.

Synchronisation: ksnoop writes "counting calls of ..." to stderr once every program is attached;
the datagrams go out after that line and before the time limit.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.kernel.test_trace_cli import Loopback, Trace, nothing_left_loaded, send_from_another_process
from tests.kernel.test_trace_cli import udp  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_kernel", "nothing_left_loaded")]
nothing_left_loaded = nothing_left_loaded  # a fixture, used by pytestmark above

COUNTING = "ksnoop: counting calls of 1 tracepoint; the summary comes "


def _attached(t: Trace) -> None:
    assert t.ready().startswith(COUNTING)


def test_summary_json_counts_exactly_what_was_sent(udp: Loopback) -> None:  # noqa: F811
    sent = 37
    with Trace("--summary", "--duration", "2", "-o", "json", "-p", str(os.getpid()), "tp:net_dev_queue") as t:
        _attached(t)
        started = time.monotonic()
        send_from_another_process(udp, 100, 5)  # another process: filtered out before counting
        udp.send(200, sent)
        assert time.monotonic() - started < 1.5, "the datagrams took too long to be sure they beat the limit"
        assert t.wait() == 0, t.stderr
    lines = t.stdout.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == {
        "summary": [
            {"func": "tp:net_dev_queue", "calls": sent, "errors": None, "latency_ns_log2": None, "total_ns": None}
        ]
    }
    assert t.stderr.endswith(f"ksnoop: {sent} calls counted\n")
    assert "Traceback" not in t.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_summary_text_at_a_signal(udp: Loopback, sig: int) -> None:  # noqa: F811
    sent = 12
    with Trace("--summary", "-p", str(os.getpid()), "tp:net_dev_queue(skb->len > 1000)") as t:
        _attached(t)
        udp.send(2000, sent)
        udp.send(10, 4)  # skb->len <= 1000: not counted
        assert t.stop(sig) == 0, t.stderr
    assert t.stdout == f"tp:net_dev_queue: {sent} calls\n"
    assert t.ready_lines == ["ksnoop: counting calls of 1 tracepoint; the summary comes at Ctrl-C"]
    assert t.stderr == f"ksnoop: {sent} calls counted\n"


def test_summary_with_count_is_a_usage_error() -> None:
    with Trace("--summary", "-n", "2", "tp:net_dev_queue") as t:
        assert t.wait() == 2
    assert "--count" in t.stderr and t.stdout == ""
