# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.run.trace.prepare over the mini kernel: every usage error with its message, and the plan
and programs each kind of trace gets (records, filters, summary, calls only, call path)."""

from __future__ import annotations

import mmap

import pytest

from bpf.codegen import generate
from bpf.plan import Filters, ProbeKind
from ksnoop.errors import UsageError
from ksnoop.run.trace import MAX_RINGBUF_SIZE, RunOptions, prepare
from tests.support import minikernel

TOO_MANY_PAGES = 2 * MAX_RINGBUF_SIZE // mmap.PAGESIZE


@pytest.fixture(scope="module")
def btf_path(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("btf") / "mini.btf"
    path.write_bytes(minikernel.build(task_exit=True)[0])  # with sched_process_exit, for call paths
    return str(path)


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(pages=3), "--pages 3: the ring buffer size must be a power of two pages"),
        (dict(pages=0), "--pages 0: the ring buffer size must be a power of two pages"),
        (
            dict(pages=TOO_MANY_PAGES),
            f"--pages {TOO_MANY_PAGES}: at most {MAX_RINGBUF_SIZE // mmap.PAGESIZE} pages (2 GiB)",
        ),
        (dict(comm="a-sixteen-byte-c"), "--comm 'a-sixteen-byte-c': a task's comm has at most 15 bytes"),
        (dict(kstack_depth=-1), "--kstack-depth -1: at most 127 frames"),
        (
            dict(summary=True, count=5),
            "--count stops after N calls printed, and --summary prints none: use --duration or Ctrl-C",
        ),
        (dict(summary=True, kstack_depth=4), "--kstack shows a stack per record, and --summary prints none"),
        (
            dict(summary=True, call_path=True),
            "-s shows the calls of one path, and --summary counts every call: use one",
        ),
        (dict(calls_only=True), "--calls-only is a kind of --summary: add --summary"),
        (dict(graph_depth=2), "--graph-depth, --graph-include and --graph-exclude go with -g"),
        (dict(graph_exclude=("ip_*",)), "--graph-depth, --graph-include and --graph-exclude go with -g"),
        (dict(graph_args="full"), "--graph-args goes with -g"),
        (
            dict(graph=True, specs=("noargs", "ip_send_skb")),
            "-g traces the graph of one root function, and 2 specs were given",
        ),
        (dict(graph=True, call_path=True), "-g shows each root call's tree of calls, and -s does not go with it"),
        (dict(graph=True, summary=True), "-g shows each root call's tree of calls, and --summary does not go with it"),
        (
            dict(graph=True, count_by="comm"),
            "-g shows each root call's tree of calls, and --count-by/--hist does not go with it",
        ),
        (dict(graph=True, kstack_depth=4), "-g shows each root call's tree of calls, and --kstack does not go with it"),
    ],
)
def test_usage_errors(changes: dict, message: str) -> None:
    with pytest.raises(UsageError) as failure:
        options = {"specs": ("noargs",), **changes}
        prepare(RunOptions(btf_path="/nonexistent: checked before any BTF is read", **options))
    assert str(failure.value) == message


def test_a_fifteen_byte_comm_is_a_filter(btf_path: str) -> None:
    resolved, programs = prepare(RunOptions(specs=("noargs",), btf_path=btf_path, comm="fifteen-bytes-c", pid=7))
    assert resolved.plan.filters == Filters(pid=7, comm=b"fifteen-bytes-c")
    assert len(programs) == 1


def test_records(btf_path: str) -> None:
    resolved, programs = prepare(
        RunOptions(
            specs=("ip_send_skb(skb->len, return)", "tp:net_dev_queue"), btf_path=btf_path, pages=16, kstack_depth=3
        )
    )
    assert [(p.kind, p.target) for p in resolved.plan.probes] == [
        (ProbeKind.FENTRY, "ip_send_skb"),
        (ProbeKind.FEXIT, "ip_send_skb"),
        (ProbeKind.TP_BTF, "net_dev_queue"),
    ]
    assert resolved.plan.ringbuf_size == 16 * mmap.PAGESIZE
    assert [p.kstack_depth for p in resolved.plan.probes] == [3, 0, 3]  # entries and tracepoints
    assert programs == tuple(generate(resolved.plan, i) for i in range(3))


def test_summary_counts(btf_path: str) -> None:
    resolved, programs = prepare(
        RunOptions(specs=("ip_send_skb(skb->len)", "tp:net_dev_queue"), btf_path=btf_path, summary=True)
    )
    assert [(p.kind, p.count and p.count.key) for p in resolved.plan.probes] == [
        (ProbeKind.FENTRY, None),
        (ProbeKind.FEXIT, 0),
        (ProbeKind.TP_BTF, 1),
    ]
    assert all(p.captures == () for p in resolved.plan.probes) and len(programs) == 3


def test_calls_only_counts_at_entry(btf_path: str) -> None:
    resolved, _ = prepare(RunOptions(specs=("ip_send_skb",), btf_path=btf_path, summary=True, calls_only=True))
    assert [(p.kind, p.count and p.count.key) for p in resolved.plan.probes] == [(ProbeKind.FENTRY, 0)]


def test_a_call_path(btf_path: str) -> None:
    resolved, programs = prepare(
        RunOptions(specs=("ip_send_skb(skb->len)", "noargs"), btf_path=btf_path, call_path=True)
    )
    assert [(p.kind, p.target, p.path and p.path.level) for p in resolved.plan.probes] == [
        (ProbeKind.TP_BTF, "sched_process_exit", None),
        (ProbeKind.FEXIT, "noargs", 1),
        (ProbeKind.FENTRY, "noargs", 1),
        (ProbeKind.FEXIT, "ip_send_skb", 0),
        (ProbeKind.FENTRY, "ip_send_skb", 0),
    ]
    assert len(programs) == 5
