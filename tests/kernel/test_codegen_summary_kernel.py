# SPDX-License-Identifier: GPL-2.0-only
"""Summary-mode (counting) programs on this machine's kernel: the verifier takes them, and they
count what we make happen.

As in test_codegen_kernel.py, fentry/fexit programs load nowhere here, so fentry/fexit-shaped
counting programs are verified, and run, as tp_btf programs on kfree_skb (slot 2, an enum,
stands in for the return value).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Iterator

import pytest

from bpf.codegen import MapRole, generate
from bpf.loader import LoadedProgram, attach_tracing, load_program
from bpf.maps import Map, create_maps
from bpf.plan import COUNTERS, COUNTERS_SIZE, Filters, Plan, ProbeKind
from bpf.uapi import AttachType
from ksnoop.spec.resolve import ResolvedTrace, resolve
from ksnoop.spec.language import parse_spec
from ksnoop.run.summary import count_calls, counted
from ksnoop.spec.targets import KernelBTF
from tests.kernel.test_codegen_kernel import udp_pair

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_kernel")]


def _summary(kernel: KernelBTF, *specs: str, **filters) -> ResolvedTrace:  # noqa: F811
    return count_calls(resolve([parse_spec(s) for s in specs], kernel, Filters(**filters)))


@contextlib.contextmanager
def _counting(plan: Plan, on_tracepoint: int | None = None) -> Iterator[tuple[Map, list[LoadedProgram]]]:
    """Every probe loaded with its counts and stash maps, as ksnoop/run/trace.py makes them."""
    with contextlib.ExitStack() as stack:
        programs = [generate(plan, i) for i in range(len(plan.probes))]
        maps = create_maps(stack, programs)
        counts = maps.shared(MapRole.COUNTS)
        loaded = []
        for i, program in enumerate(programs):
            attach_type = program.expected_attach_type if on_tracepoint is None else AttachType.TRACE_RAW_TP
            btf_id = program.attach_btf_id if on_tracepoint is None else on_tracepoint
            loaded.append(
                stack.enter_context(
                    load_program(
                        program.bind_maps(maps.fds(i)), program.prog_type, attach_type, btf_id, name=program.name
                    )
                )
            )
        yield counts, loaded


def _totals(counts: Map, key: int) -> tuple[int, ...]:
    totals = [0] * len(COUNTERS.unpack(bytes(COUNTERS_SIZE)))
    for value in counts.lookup_percpu(key.to_bytes(4, sys.byteorder)) or []:
        for k, n in enumerate(COUNTERS.unpack(value)):
            totals[k] += n
    return tuple(totals)


TP_SPECS = [
    "tp:net_dev_queue",
    "tp:net_dev_queue(skb->len > 100)",
    'tp:net_dev_queue(skb->dev->name == "lo")',
    "tp:sys_exit(ret < 0)",
]
FUNC_SPECS = [
    "ip_send_skb",
    "ip_send_skb(skb->len > 5, return != 0)",
    "getname_flags",
    "ip_send_skb(net)",
    "kfree_skb_partial",
]  # int, int with tests, a pointer return (no errors), void
FILTERS = [{}, {"pid": 1}, {"comm": b"ksnoop"}, {"pid": 1, "comm": b"fifteen_chars_x"}]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f) or "nofilter")
@pytest.mark.parametrize("spec", TP_SPECS)
def test_verifier_takes_counting_tracepoint_programs(kernel: KernelBTF, spec: str, filters: dict) -> None:  # noqa: F811
    with _counting(_summary(kernel, spec, **filters).plan) as (_, loaded):
        assert all(p.xlated_insns() for p in loaded)


@pytest.mark.parametrize("filters", FILTERS[:2], ids=lambda f: ",".join(f) or "nofilter")
@pytest.mark.parametrize("spec", FUNC_SPECS)
def test_verifier_takes_counting_fentry_fexit_shaped_programs(
    kernel: KernelBTF,
    spec: str,
    filters: dict,  # noqa: F811
) -> None:
    plan = _summary(kernel, spec, **filters).plan
    assert [p.kind for p in plan.probes] == [ProbeKind.FENTRY, ProbeKind.FEXIT]
    with _counting(plan, kernel.find_tracepoint("kfree_skb").attach_btf_id) as (_, loaded):
        assert len(loaded) == 2 and all(p.xlated_insns() for p in loaded)


def test_net_dev_queue_counts_exactly_our_datagrams(kernel: KernelBTF) -> None:  # noqa: F811
    r = _summary(kernel, "tp:net_dev_queue", "tp:net_dev_queue(skb->len > 1000)", pid=os.getpid())
    with _counting(r.plan) as (counts, loaded), udp_pair() as (rx, tx), contextlib.ExitStack() as links:
        for program in loaded:
            links.enter_context(attach_tracing(program))
        for size in [10] * 5 + [2000] * 3:
            tx.send(b"k" * size)
            rx.recv(65536)
        links.close()
        assert [key for key, _, _ in counted(r)] == [0, 1]
        assert _totals(counts, 0)[:2] == (8, 0) and _totals(counts, 1)[:2] == (3, 0)
        assert not any(_totals(counts, 0)[2:])  # tracepoints: no latency


def test_a_fentry_fexit_shaped_pair_counts_calls_and_latency(kernel: KernelBTF) -> None:  # noqa: F811
    """The pair on kfree_skb, entry first: every call the entry stashed is counted at 'return', its
    latency (the time between the two programs) in one bucket, and reason, never negative, no error."""
    r = _summary(kernel, "ip_send_skb")
    target = kernel.find_tracepoint("kfree_skb").attach_btf_id
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        dead_end = closed.getsockname()
    with _counting(r.plan, target) as (counts, loaded), contextlib.ExitStack() as links:
        for program in loaded:
            links.enter_context(attach_tracing(program))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for _ in range(3):
                tx.sendto(b"d" * 100, dead_end)
        time.sleep(0.05)  # the drop happens in softirq, maybe on another CPU
        links.close()
        calls, errors, *buckets, duration_sum = _totals(counts, 0)
    assert calls >= 3 and errors == 0 and sum(buckets) == calls
    assert not any(buckets[30:])  # under a second between two programs on one tracepoint
    assert duration_sum > 0 and duration_sum < (1 << 30) * calls  # the durations summed, each under a second
