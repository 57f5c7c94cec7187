# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.run.record_loop.read_records over records generated programs wrote: each program runs in
tests/support/bpfvm.py, its records go into a ring in memory that bpf.ringbuf's own consumer reads
(tests/support/memring.py), and drops are counted by programs that found the ring full, one VM
per CPU. Checked: the lines, the count limit, the time limit, a real SIGTERM, lost records, batching.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time

from bpf.codegen import MapRole, generate
from ksnoop.run.options import RunOptions, Summary
from ksnoop.run.record_loop import POLL_INTERVAL_S, call_ends, formatter_for, record_lines, read_records
from ksnoop.spec.language import parse_spec
from ksnoop.spec.resolve import resolve_path
from tests.support import records
from ksnoop.run.stopping import StopFlag
from tests.support.bpfvm import VM
from tests.support.memring import MemoryRing, PerCPUArray
from tests.unit.bpf.test_codegen import NET, SKB, _trace, _vm

TRACE = _trace("ip_send_skb(skb->len)", "tp:net_dev_queue(skb->dev->name)")
PROGRAMS = [generate(TRACE.plan, i) for i in range(len(TRACE.plan.probes))]
CTX = [[NET, SKB], [SKB]]  # ip_send_skb(net, skb); the tracepoint's skb
ENTRY_TEXT = "{ts:>16}    1     4242 ip_send_skb( /* curl */ skb->len = (unsigned int)242 );"
TP_TEXT = '{ts:>16}    1     4242 tp:net_dev_queue( /* curl */ skb->dev->name = (char[16])"lo" );'


class Writes(io.StringIO):
    """stdout that remembers how many lines each write carried."""

    def __init__(self) -> None:
        super().__init__()
        self.line_counts: list[int] = []
        self.flushes = 0

    def write(self, text: str) -> int:
        self.line_counts.append(text.count("\n"))
        return super().write(text)

    def flush(self) -> None:
        self.flushes += 1


def _records(probes: list[int], vm: VM | None = None) -> list[bytes]:
    """What the programs of `probes` (in that order, one call each) submitted."""
    vm = vm or _vm(TRACE)
    before = len(vm.records)
    for probe in probes:
        vm.run(PROGRAMS[probe], CTX[probe])
    return vm.records[before:]


def _read(
    ring: MemoryRing,
    drops: PerCPUArray | None = None,
    stop: StopFlag | None = None,
    out: io.StringIO | None = None,
    **options,
) -> tuple[Summary, list[str], str]:
    """read_records as run_records calls it: (its summary, the lines printed, stderr)."""
    run_options = RunOptions(specs=(), compact=True, **options)
    err = io.StringIO()
    lines = record_lines(formatter_for(run_options, TRACE, err), TRACE)
    out = out if out is not None else io.StringIO()
    drops = drops if drops is not None else PerCPUArray([_vm(TRACE)], MapRole.DROPS)
    summary = read_records(ring, drops, lines, run_options, stop if stop is not None else StopFlag(), out, err)
    return summary, out.getvalue().splitlines(), err.getvalue()


def test_each_record_is_printed_as_its_probes_line_in_order() -> None:
    ring = MemoryRing()
    ring.submit(*_records([0, 1, 0]))
    summary, lines, err = _read(ring, count=3)
    assert lines == [ENTRY_TEXT.format(ts=1001000), TP_TEXT.format(ts=1002000), ENTRY_TEXT.format(ts=1003000)]
    assert summary == Summary(3, 0) and err == ""
    assert ring.timeouts == [POLL_INTERVAL_S]  # all three in the first poll, which the count ended


def test_json_lines() -> None:
    ring = MemoryRing()
    ring.submit(*_records([1, 0]))
    _, lines, _ = _read(ring, count=2, output="json")
    assert [json.loads(line) for line in lines] == [
        {
            "ts": 1001000,
            "cpu": 1,
            "pid": 4242,
            "tid": 4243,
            "comm": "curl",
            "func": "tp:net_dev_queue",
            "probe": "tracepoint",
            "args": {"skb->dev->name": "lo"},
        },
        {
            "ts": 1002000,
            "cpu": 1,
            "pid": 4242,
            "tid": 4243,
            "comm": "curl",
            "func": "ip_send_skb",
            "probe": "entry",
            "args": {"skb->len": 242},
        },
    ]


def test_the_count_ends_the_trace_leaving_later_records_in_the_ring() -> None:
    ring = MemoryRing()
    records = _records([0, 0, 1, 1, 0])
    ring.submit(*records)
    summary, lines, _ = _read(ring, count=3)
    assert lines == [ENTRY_TEXT.format(ts=1001000), ENTRY_TEXT.format(ts=1002000), TP_TEXT.format(ts=1003000)]
    assert summary == Summary(3, 0)
    # The last two not consumed (the kernel may reuse only what was read): each with its 8-byte header.
    assert [len(r) for r in records[3:]] == [72, 64] and ring.available() == 80 + 72


def test_records_that_come_while_waiting_count_towards_the_limit() -> None:
    vm = _vm(TRACE)
    ring = MemoryRing(
        waits=[lambda: ring.submit(*_records([0], vm)), lambda: None, lambda: ring.submit(*_records([1, 0], vm))]
    )
    summary, lines, _ = _read(ring, count=3)
    assert lines == [ENTRY_TEXT.format(ts=1001000), TP_TEXT.format(ts=1002000), ENTRY_TEXT.format(ts=1003000)]
    assert summary == Summary(3, 0)
    assert ring.timeouts == [POLL_INTERVAL_S] * 3 and ring.waits == []


def test_the_time_limit_ends_the_trace() -> None:
    ring = MemoryRing(waits=[lambda: ring.submit(*_records([1]))])
    start = time.monotonic()
    summary, lines, _ = _read(ring, duration_s=0.12)
    elapsed = time.monotonic() - start
    assert lines == [TP_TEXT.format(ts=1001000)] and summary == Summary(1, 0)
    assert 0.12 <= elapsed < 0.6
    # Polls wait at most POLL_INTERVAL_S, and never past the deadline.
    assert all(0 <= t <= POLL_INTERVAL_S for t in ring.timeouts) and len(ring.timeouts) >= 3
    assert sum(ring.timeouts[1:]) <= 0.12


def test_sigterm_stops_the_trace_after_what_was_buffered() -> None:
    vm = _vm(TRACE)

    def terminated() -> None:
        ring.submit(*_records([0], vm))
        os.kill(os.getpid(), signal.SIGTERM)
        ring.submit(*_records([1], vm))  # after the signal, before the loop sees it: still printed

    ring = MemoryRing(waits=[lambda: None, terminated])
    stop = StopFlag()
    start = time.monotonic()
    with stop.installed():
        summary, lines, _ = _read(ring, stop=stop, duration_s=10.0)
    assert time.monotonic() - start < 2.0  # the signal ended it, not the 10 s
    assert stop.signal == signal.SIGTERM
    assert lines == [ENTRY_TEXT.format(ts=1001000), TP_TEXT.format(ts=1002000)]
    assert summary == Summary(2, 0) and len(ring.timeouts) == 2 and ring.available() == 0


def test_lost_records_are_reported_as_they_happen_summed_over_cpus() -> None:
    full = [_vm(TRACE, ringbuf_room=0, cpu=cpu) for cpu in (0, 1)]  # the ring full on both CPUs
    good = _vm(TRACE)

    def first() -> None:
        _records([0], full[0])

    def second() -> None:
        _records([1, 0], full[1])
        ring.submit(*_records([0, 1], good))

    ring = MemoryRing(waits=[first, second])
    summary, lines, err = _read(ring, PerCPUArray(full, MapRole.DROPS), count=2)
    assert lines == [ENTRY_TEXT.format(ts=1001000), TP_TEXT.format(ts=1002000)]
    assert err == (
        "ksnoop: lost 1 records: the ring buffer was full (try a larger -P/--pages or a narrower spec)\n"
        "ksnoop: lost 2 records: the ring buffer was full (try a larger -P/--pages or a narrower spec)\n"
    )
    assert summary == Summary(2, 3)


def test_lines_go_out_in_batches_of_512() -> None:
    record = _records([0])[0]
    ring = MemoryRing(size=1 << 17)
    ring.submit(*[record] * 1100)
    out = Writes()
    summary, lines, _ = _read(ring, out=out, count=1100)
    assert out.line_counts == [512, 512, 76] and out.flushes == 3
    assert lines == [ENTRY_TEXT.format(ts=1001000)] * 1100 and summary == Summary(1100, 0)


def test_a_kernel_stack_the_program_could_not_take() -> None:
    """With --kstack the formatter gets a symbolizer; a stack bpf_get_stack refused (EFAULT here)
    shows as missing, with no warning."""
    resolved = _trace("tp:net_dev_queue(skb->len)", kstack_depth=4)
    vm = _vm(resolved, kstack_error=14)
    vm.run(generate(resolved.plan, 0), [SKB])
    err = io.StringIO()
    for output, expected in (
        (
            "text",
            "         1001000    1     4242 tp:net_dev_queue( /* curl */ skb->len = (unsigned int)242 ); "
            "<no kernel stack>",
        ),
        (
            "json",
            '{"ts": 1001000, "cpu": 1, "pid": 4242, "tid": 4243, "comm": "curl", "func": "tp:net_dev_queue", '
            '"probe": "tracepoint", "args": {"skb->len": 242}, "kstack": []}',
        ),
    ):
        options = RunOptions(specs=(), compact=True, kstack_depth=4, output=output, count=1)
        lines = record_lines(formatter_for(options, resolved, err), resolved)
        out = io.StringIO()
        ring = MemoryRing()
        ring.submit(*vm.records)
        read_records(ring, PerCPUArray([vm], MapRole.DROPS), lines, options, StopFlag(), out, err)
        assert out.getvalue() == expected + "\n"
    assert err.getvalue() == ""


def test_with_returns_traced_the_count_is_of_calls_each_ended_by_its_return() -> None:
    calls = _trace("ip_send_skb(skb->len, return)")
    assert call_ends(calls.plan) == [False, True]  # the entry probe, then its return
    programs = [generate(calls.plan, i) for i in range(2)]
    vm = _vm(calls)
    for _ in range(3):
        vm.run(programs[0], [NET, SKB])
        vm.run(programs[1], [NET, SKB, 0])
    ring = MemoryRing()
    ring.submit(*vm.records)
    run_options = RunOptions(specs=(), compact=True, count=2, output="json")
    err = io.StringIO()
    out = io.StringIO()
    lines = record_lines(formatter_for(run_options, calls, err), calls)
    drops = PerCPUArray([_vm(calls)], MapRole.DROPS)
    summary = read_records(ring, drops, lines, run_options, StopFlag(), out, err, call_ends(calls.plan))
    # -n 2: two calls, each an entry and its return; the third call stays in the ring.
    assert [json.loads(line)["probe"] for line in out.getvalue().splitlines()] == ["entry", "return"] * 2
    assert summary == Summary(4, 0)


def test_what_ends_a_call_for_the_count() -> None:
    # No return traced: every record is a call (entries, tracepoints).
    assert call_ends(TRACE.plan) == [True, True]
    # A call path ends with its outermost function's return; the innermost's return record, which
    # brings the entries with it, does not end it.
    path = resolve_path([parse_spec("ip_send_skb(skb->len, return)"), parse_spec("noargs")], records.path_kernel())
    ends = {(p.target, p.kind.value): end for p, end in zip(path.plan.probes, call_ends(path.plan))}
    assert ends.pop(("ip_send_skb", "fexit")) is True
    assert not any(ends.values()), ends
