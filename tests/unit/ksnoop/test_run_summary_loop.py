# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.run.summary_loop over counters generated programs kept: the counting programs run in
tests/support/bpfvm.py, one VM per CPU, and their COUNTS values are read back per CPU as the kernel
lays them out (bpf.plan.COUNTERS); the loop waits for its time limit or a real SIGINT, then sums
them and prints the totals as text or JSON."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
import time

from bpf.codegen import MapRole, generate
from ksnoop.run.options import RunOptions, Summary
from ksnoop.run.record_loop import POLL_INTERVAL_S
from ksnoop.run.stopping import StopFlag
from ksnoop.run.summary import FunctionCounts, count_calls
from ksnoop.run.describe import ready_line
from ksnoop.run.summary_loop import count_until_stopped, report
from tests.support.bpfvm import VM
from tests.support.memring import PerCPUArray
from tests.unit.bpf.test_codegen import NET, SKB, _trace
from tests.unit.bpf.test_codegen_summary import _call, _vm

TRACE = count_calls(_trace("ip_send_skb", "tp:net_dev_queue", "noargs"))
IP_SEND_SKB, TP, NOARGS = 0, 2, 3  # each function's (first) probe


def _cpus() -> list[VM]:
    """Two CPUs' calls: ip_send_skb 3 + 1 times (2 errors), the tracepoint twice, noargs once."""
    cpu0, cpu1 = _vm(cpu=0), _vm(cpu=1)
    for ret, elapsed_ns in ((0, 5000), (-1, 1000), (0, 3000)):
        _call(cpu0, TRACE, IP_SEND_SKB, [NET, SKB], ret, elapsed_ns)
    _tracepoint(cpu0)
    _tracepoint(cpu0)
    _call(cpu1, TRACE, IP_SEND_SKB, [NET, SKB], -12, 5000)
    _call(cpu1, TRACE, NOARGS, [], 0, 100)
    return [cpu0, cpu1]


def _tracepoint(vm: VM) -> None:
    vm.run(generate(TRACE.plan, TP), [SKB])


def _count(cpus: list[VM], stop: StopFlag | None = None, **options) -> tuple[list[FunctionCounts], str]:
    run_options = RunOptions(specs=(), summary=True, **options)
    totals = count_until_stopped(
        TRACE, PerCPUArray(cpus, MapRole.COUNTS), run_options, stop if stop is not None else StopFlag()
    )
    # The line run_summary writes once everything is attached (here, all of TRACE's targets).
    attached = {t.label for t in TRACE.targets}
    return totals, ready_line(TRACE, attached, run_options.duration_s, summary=True) + "\n"


def test_the_counters_of_every_cpu_are_summed() -> None:
    totals, err = _count(_cpus(), duration_s=0.01)
    assert totals == [
        # 5000 and 5000 ns in [4K, 8K), 3000 in [2K, 4K), 1000 in [512, 1K)
        FunctionCounts("ip_send_skb", 4, 2, tuple({9: 1, 11: 1, 12: 2}.get(k, 0) for k in range(64)), 14000),
        FunctionCounts("tp:net_dev_queue", 2, None, None),
        FunctionCounts("noargs", 1, None, tuple(int(k == 6) for k in range(64)), 100),  # 100 ns: [64, 128)
    ]
    assert err == (
        "ksnoop: counting calls of 2 functions (fentry/fexit), 1 tracepoint; the summary comes at the time limit "
        "or Ctrl-C\n"
    )


def test_the_totals_as_text() -> None:
    totals, _ = _count(_cpus(), duration_s=0.01)
    out = io.StringIO()
    assert report(totals, RunOptions(specs=(), summary=True), out) == Summary(0, 0, calls=7)
    bar = "@" * 26
    assert out.getvalue() == (
        "ip_send_skb: 4 calls, 2 errors\n"
        "  latency (ns):\n"
        f"  [512, 1K) 1 |{bar:<52}|\n"
        f"  [1K, 2K)  0 |{'':<52}|\n"
        f"  [2K, 4K)  1 |{bar:<52}|\n"
        f"  [4K, 8K)  2 |{bar * 2}|\n"
        "\n"
        "tp:net_dev_queue: 2 calls\n"
        "\n"
        "noargs: 1 call\n"
        "  latency (ns):\n"
        f"  [64, 128) 1 |{'@' * 52}|\n"
    )


def test_the_totals_as_json() -> None:
    totals, _ = _count(_cpus(), duration_s=0.01)
    out = io.StringIO()
    assert report(totals, RunOptions(specs=(), summary=True, output="json"), out) == Summary(0, 0, calls=7)
    assert out.getvalue().endswith("}\n") and out.getvalue().count("\n") == 1
    assert json.loads(out.getvalue()) == {
        "summary": [
            {
                "func": "ip_send_skb",
                "calls": 4,
                "errors": 2,
                "latency_ns_log2": {"512": 1, "2048": 1, "4096": 2},
                "total_ns": 14000,
            },
            {"func": "tp:net_dev_queue", "calls": 2, "errors": None, "latency_ns_log2": None, "total_ns": None},
            {"func": "noargs", "calls": 1, "errors": None, "latency_ns_log2": {"64": 1}, "total_ns": 100},
        ]
    }


def test_a_function_no_cpu_saw_counts_zero() -> None:
    totals, _ = _count([_vm(cpu=0), _vm(cpu=1)], duration_s=0.01)
    zeros = (0,) * 64
    assert [(t.calls, t.errors, t.buckets) for t in totals] == [(0, 0, zeros), (0, None, None), (0, None, zeros)]
    out = io.StringIO()
    report(totals, RunOptions(specs=()), out)
    assert out.getvalue() == "ip_send_skb: 0 calls, 0 errors\n\ntp:net_dev_queue: 0 calls\n\nnoargs: 0 calls\n"


def test_the_time_limit_ends_the_count() -> None:
    cpus = _cpus()
    start = time.monotonic()
    _count(cpus, duration_s=0.15)
    assert 0.15 <= time.monotonic() - start < 0.6


def test_sigint_ends_the_count_and_calls_made_meanwhile_are_in_it() -> None:
    """A real SIGINT while the loop waits ends it long before its time limit (a guard: without a
    limit only Ctrl-C ends it). The calls the programs count meanwhile are read after it, so they
    are in the totals."""
    cpus = [_vm(cpu=0), _vm(cpu=1)]

    def meanwhile() -> None:
        _call(cpus[1], TRACE, IP_SEND_SKB, [NET, SKB], -1, 1 << 20)
        _tracepoint(cpus[0])
        os.kill(os.getpid(), signal.SIGINT)

    stop = StopFlag()
    timer = threading.Timer(0.1, meanwhile)
    start = time.monotonic()
    with stop.installed():
        timer.start()
        try:
            totals, _ = _count(cpus, stop, duration_s=10.0)
        finally:
            timer.join()
    assert 0.1 <= time.monotonic() - start < 2.0
    assert stop.signal == signal.SIGINT
    assert [(t.calls, t.errors) for t in totals] == [(1, 1), (1, None), (0, None)]
    assert totals[0].buckets is not None and totals[0].buckets[20] == 1


def test_without_a_time_limit_only_ctrl_c_ends_the_count() -> None:
    cpus = _cpus()
    stop = StopFlag()
    stop.signal = signal.SIGINT  # as the handler sets it: the loop ends without sleeping
    with _watchdog(5.0):  # a loop that ignored the flag would never end
        start = time.monotonic()
        totals, err = _count(cpus, stop)
        assert time.monotonic() - start < POLL_INTERVAL_S
    assert [t.calls for t in totals] == [4, 2, 1]
    assert err == "ksnoop: counting calls of 2 functions (fentry/fexit), 1 tracepoint; the summary comes at Ctrl-C\n"


@contextlib.contextmanager
def _watchdog(seconds: float):
    """A failure instead of a hang: SIGALRM after `seconds` raises in the main thread."""

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_one_function_is_one_function() -> None:
    one = count_calls(_trace("noargs"))
    count_until_stopped(
        one, PerCPUArray([_vm()], MapRole.COUNTS), RunOptions(specs=(), summary=True, duration_s=0.0), StopFlag()
    )
    assert ready_line(one, ["noargs"], 0.0, summary=True) == (
        "ksnoop: counting calls of 1 function (fentry/fexit); the summary comes at the time limit or Ctrl-C"
    )
