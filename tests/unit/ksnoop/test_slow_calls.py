# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.run.slow_calls (--min-duration) over the generated programs, run in tests/support/bpfvm.py:
a call's entry is held back and shown with its return only when the return comes at least the
minimum after it (the VM's clock moved between the two by the test)."""

from __future__ import annotations

import pytest

from bpf.codegen import generate
from bpf.plan import Stash
from ksnoop.errors import UsageError
from ksnoop.run.slow_calls import only_slow_calls
from ksnoop.run.summary import count_calls
from tests.unit.bpf.test_codegen import NET, SKB, _decode, _trace, _vm

MS = 1_000_000


def _call(resolved, vm, took_ns: int) -> list:
    """One call of ip_send_skb: its entry, `took_ns` of the VM's clock, its return; what was emitted."""
    before = len(vm.records)
    vm.run(generate(resolved.plan, 0), [NET, SKB])
    vm.ktime += took_ns
    vm.run(generate(resolved.plan, 1), [NET, SKB, 0])
    return _decode(resolved, vm.records[before:])


@pytest.mark.parametrize("spec", ["ip_send_skb(skb->len)", "ip_send_skb(skb->len, return)", "ip_send_skb"])
def test_only_calls_at_least_that_slow_are_shown_entry_and_return_together(spec: str) -> None:
    slow = only_slow_calls(_trace(spec), 10 * MS)
    entry, exit_ = slow.plan.probes
    assert (entry.stash, exit_.stash, exit_.requires_entry, exit_.min_duration_ns) == (
        Stash.RECORD,
        Stash.RECORD,
        True,
        10 * MS,
    )
    vm = _vm(slow)
    assert _call(slow, vm, 2 * MS) == []  # quick: neither the entry nor the return
    shown = _call(slow, vm, 12 * MS)
    assert [e.probe for e in shown] == [0, 1]  # the entry held back, then its return
    assert shown[1].duration_ns >= 12 * MS
    assert _call(slow, vm, 1 * MS) == []


def test_with_summary_only_slow_calls_are_counted() -> None:
    slow = only_slow_calls(count_calls(_trace("ip_send_skb")), 10 * MS)
    assert slow.plan.probes[1].min_duration_ns == 10 * MS and slow.plan.probes[1].count is not None


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda: _trace("tp:net_dev_queue(skb->len)"), "tp:net_dev_queue is a tracepoint, which has no duration"),
        (lambda: count_calls(_trace("ip_send_skb"), calls_only=True), "drop --calls-only"),
    ],
)
def test_what_has_no_duration_is_a_usage_error(make, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        only_slow_calls(make(), MS)
