# SPDX-License-Identifier: GPL-2.0-only
"""bpf.codegen in summary mode (bpf.plan.Count): counting programs run in tests/support/bpfvm.py.

The plans come from ksnoop.run.summary.count_calls over the mini kernel. Each test reads the
counters the programs leave in the `counts` map: calls, errors, and the log2 latency bucket.
"""

from __future__ import annotations

import pytest

from bpf import templates as tpl
from bpf.codegen import CodegenError, MapRole, generate
from bpf.plan import LATENCY_BUCKETS, Count, ProbeKind, Stash
from bpf.uapi import Helper
from ksnoop.spec.resolve import ResolvedTrace
from ksnoop.run.summary import count_calls
from tests.support.bpfvm import MASK64, VM
from tests.unit.bpf.test_codegen import NET, PID, SKB, TID, _memory, _trace

RINGBUF_HELPERS = {Helper.ringbuf_reserve, Helper.ringbuf_submit, Helper.ringbuf_output, Helper.ringbuf_query}


def _summary(*specs: str, **filters) -> ResolvedTrace:
    return count_calls(_trace(*specs, **filters))


def _vm(**kwargs) -> VM:
    kwargs.setdefault("memory", _memory())
    kwargs.setdefault("pid_tgid", PID << 32 | TID)
    return VM(**kwargs)


def _call(vm: VM, resolved: ResolvedTrace, entry: int, ctx: list[int], ret: int, elapsed_ns: int = 5000) -> None:
    """One call of the function whose fentry is probe `entry` (its fexit the next), lasting `elapsed_ns`."""
    vm.run(generate(resolved.plan, entry), ctx)
    entry_ts = vm.ktime  # what the fentry stashed
    vm.ktime = (entry_ts + elapsed_ns - 1000) % (1 << 64)  # ktime_get_ns adds 1000 before answering
    vm.run(generate(resolved.plan, entry + 1), [*ctx, ret & MASK64])


def _buckets(vm: VM, key: int = 0) -> dict[int, int]:
    return {k: n for k, n in enumerate(vm.counters(key)[2 : 2 + LATENCY_BUCKETS]) if n}


def _duration_sum(vm: VM, key: int = 0) -> int:
    return vm.counters(key)[2 + LATENCY_BUCKETS]


def test_count_calls_pairs_each_function_and_keys_them_in_order() -> None:
    r = _summary("ip_send_skb(skb->len > 5, net)", "tp:net_dev_queue(skb->len)", "noargs", "strncpy_from_user")
    kinds = [(p.kind, p.count and p.count.key) for p in r.plan.probes]
    assert kinds == [
        (ProbeKind.FENTRY, None),
        (ProbeKind.FEXIT, 0),
        (ProbeKind.TP_BTF, 1),
        (ProbeKind.FENTRY, None),
        (ProbeKind.FEXIT, 2),
        (ProbeKind.FENTRY, None),
        (ProbeKind.FEXIT, 3),
    ]
    assert all(p.captures == () and p.kstack_depth == 0 for p in r.plan.probes)
    entry, exit_ = r.plan.probes[:2]
    assert entry.stash is exit_.stash is Stash.TIME and not entry.emits and exit_.requires_entry
    assert len(entry.tests) == 1 and exit_.tests == ()
    assert exit_.count.errors.size == 4 and exit_.count.latency
    assert r.plan.probes[2].count == Count(1)  # a tracepoint: calls only
    assert r.plan.probes[4].count.errors is None  # void
    assert r.plan.probes[6].count.errors.size == 8  # long
    assert [t.label for t in r.targets] == ["ip_send_skb"] * 2 + ["tp:net_dev_queue"] + ["noargs"] * 2 + [
        "strncpy_from_user"
    ] * 2


@pytest.mark.parametrize("index", range(3))
def test_counting_programs_use_no_ring_buffer(index: int) -> None:
    r = _summary("ip_send_skb", "tp:net_dev_queue")
    program = generate(r.plan, index)
    roles = {role for _, role in program.map_slots}
    assert roles <= {MapRole.COUNTS, MapRole.STASH} and MapRole.EVENTS not in roles
    vm = _vm()
    _call(vm, r, 0, [NET, SKB], 0)
    run = vm.run(generate(r.plan, 2), [SKB])
    assert vm.records == [] and not RINGBUF_HELPERS & set(run.helpers)


# Durations at and around every kind of boundary: bucket k holds [2**k, 2**(k+1)), bucket 0 also 0.
DURATIONS = [
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    1000,
    1023,
    1024,
    2047,
    2048,
    (1 << 31) - 1,
    1 << 31,
    (1 << 32) - 1,
    1 << 32,
    (1 << 32) + 1,
    (1 << 48) - 1,
    1 << 48,
    1 << 62,
    (1 << 63) - 1,
    1 << 63,
    (1 << 64) - 1,
]


@pytest.mark.parametrize("elapsed", DURATIONS)
def test_latency_bucket_boundaries(elapsed: int) -> None:
    r = _summary("ip_send_skb")
    vm = _vm()
    _call(vm, r, 0, [NET, SKB], 0, elapsed)
    assert _buckets(vm) == {max(0, elapsed.bit_length() - 1): 1}
    assert vm.counters(0)[:2] == (1, 0)
    assert _duration_sum(vm) == elapsed


def test_durations_add_up_over_calls() -> None:
    r = _summary("ip_send_skb")
    vm = _vm()
    for elapsed in (1000, 2500, 7):
        _call(vm, r, 0, [NET, SKB], 0, elapsed)
    assert _duration_sum(vm) == 3507 and vm.counters(0)[0] == 3


def test_every_bucket_is_reachable_and_in_bounds() -> None:
    r = _summary("ip_send_skb")
    vm = _vm()
    for k in range(LATENCY_BUCKETS):
        _call(vm, r, 0, [NET, SKB], 0, 1 << k)
    assert _buckets(vm) == {k: 1 for k in range(LATENCY_BUCKETS)}
    assert vm.counters(0)[:2] == (LATENCY_BUCKETS, 0)


def test_log2_has_no_loop_and_six_halving_steps() -> None:
    shifts = [t.insn.imm for t in tpl.LOG2.insns if t.insn.code == (0x07 | 0x70)]  # BPF_ALU64 | BPF_RSH | BPF_K
    assert shifts == [32, 16, 8, 4, 2, 1]
    assert all(t.insn.off >= 0 for t in tpl.LOG2.insns)


# (return value in the u64 slot, counted as an error?) for an int: the upper half is not defined.
INT_RETURNS = [
    (0, False),
    (1, False),
    (-1, True),
    (-4095, True),
    (0x7FFFFFFF, False),
    (-(1 << 31), True),
    (0xFFFFFFFF_00000005, False),
    (0x00000000_FFFFFFFF, True),
    (0x12345678_80000000, True),
]


@pytest.mark.parametrize("ret,error", INT_RETURNS, ids=[hex(r & MASK64) for r, _ in INT_RETURNS])
def test_errors_are_negative_int_returns_only(ret: int, error: bool) -> None:
    r = _summary("ip_send_skb")
    vm = _vm()
    _call(vm, r, 0, [NET, SKB], ret)
    assert vm.counters(0)[:2] == (1, int(error))


@pytest.mark.parametrize("ret,error", [(-1, True), (-(1 << 63), True), ((1 << 63) - 1, False), (0xFFFFFFFF, False)])
def test_errors_of_a_long_return_use_all_64_bits(ret: int, error: bool) -> None:
    r = _summary("strncpy_from_user")
    vm = _vm()
    _call(vm, r, 0, [0, 0, 7], ret)
    assert vm.counters(0)[:2] == (1, int(error))


def test_a_void_function_counts_calls_and_latency_but_no_errors() -> None:
    r = _summary("noargs")
    program = generate(r.plan, 1)
    assert "skip_unless_negative" not in [name for _, name in program.sections]
    vm = _vm()
    _call(vm, r, 0, [], -1, 3000)
    assert vm.counters(0)[:2] == (1, 0) and _buckets(vm) == {11: 1}


def test_a_return_without_its_entry_is_not_counted() -> None:
    r = _summary("ip_send_skb")
    vm = _vm()
    vm.run(generate(r.plan, 1), [NET, SKB, (-1) & MASK64])  # attached mid-call: no stashed entry
    assert vm.counters(0) == (0,) * (2 + LATENCY_BUCKETS + 1)


def test_the_entry_is_consumed_by_its_return() -> None:
    r = _summary("ip_send_skb")
    vm = _vm()
    _call(vm, r, 0, [NET, SKB], 0)
    run = vm.run(generate(r.plan, 1), [NET, SKB, 0])  # a second return with no new entry
    assert set(run.stash.values()) == {bytes(8)} and vm.counters(0)[0] == 1


def test_pid_filter_applies_before_counting() -> None:
    r = _summary("ip_send_skb", "tp:net_dev_queue", pid=PID)
    other = _vm(pid_tgid=(PID + 1) << 32 | (PID + 1))
    _call(other, r, 0, [NET, SKB], -1)
    other.run(generate(r.plan, 2), [SKB])
    assert other.counters(0)[0] == other.counters(1)[0] == 0
    mine = _vm()
    _call(mine, r, 0, [NET, SKB], -1)
    mine.run(generate(r.plan, 2), [SKB])
    assert mine.counters(0)[:2] == (1, 1) and mine.counters(1)[0] == 1


@pytest.mark.parametrize("comm,counted", [(b"curl", 1), (b"wget", 0)])
def test_comm_filter_applies_before_counting(comm: bytes, counted: int) -> None:
    r = _summary("tp:net_dev_queue", comm=b"curl")
    vm = _vm(comm=comm)
    vm.run(generate(r.plan, 0), [SKB])
    assert vm.counters(0)[0] == counted


@pytest.mark.parametrize("length,counted", [(100, 0), (101, 1)])
def test_tracepoint_predicates_apply_before_counting(length: int, counted: int) -> None:
    from tests.unit.bpf.test_codegen import _sk_buff

    r = _summary("tp:net_dev_queue(skb->len > 100)")
    vm = _vm(memory=_memory(skb=_sk_buff(length=length)))
    vm.run(generate(r.plan, 0), [SKB])
    assert vm.counters(0)[:3] == (counted, 0, 0)


@pytest.mark.parametrize("length,counted", [(5, 0), (6, 1)])
def test_an_entry_test_that_fails_leaves_the_return_uncounted(length: int, counted: int) -> None:
    from tests.unit.bpf.test_codegen import _sk_buff

    r = _summary("ip_send_skb(skb->len > 5)")
    vm = _vm(memory=_memory(skb=_sk_buff(length=length)))
    _call(vm, r, 0, [NET, SKB], -3)
    assert vm.counters(0)[:2] == (counted, counted)


@pytest.mark.parametrize("ret,counted", [(0, 0), (-2, 1), (3, 1)])
def test_a_return_test_applies_before_counting(ret: int, counted: int) -> None:
    r = _summary("ip_send_skb(return != 0)")
    vm = _vm()
    _call(vm, r, 0, [NET, SKB], ret)
    assert vm.counters(0)[0] == counted
    # The entry time is used up whether or not the return counts.
    assert set(vm.run(generate(r.plan, 1), [NET, SKB, 0]).stash.values()) == {bytes(8)}
    assert vm.counters(0)[0] == counted


def test_two_functions_count_in_their_own_slots() -> None:
    r = _summary("ip_send_skb", "printk")
    vm = _vm()
    _call(vm, r, 0, [NET, SKB], -1)
    _call(vm, r, 2, [0], 5)
    _call(vm, r, 2, [0], -5)
    assert vm.counters(0)[:2] == (1, 1) and vm.counters(1)[:2] == (2, 1)


def test_latency_without_a_time_stash_is_refused() -> None:
    import dataclasses

    r = _summary("ip_send_skb")
    broken = dataclasses.replace(r.plan.probes[1], requires_entry=False)
    plan = dataclasses.replace(r.plan, probes=(r.plan.probes[0], broken))
    with pytest.raises(CodegenError, match="latency"):
        generate(plan, 1)


def test_the_corpus_structure_checks_hold_for_counting_programs() -> None:
    # The same whole-instruction and in-bounds jump rules as tests/unit/bpf/test_codegen.py's corpus.
    from tests.unit.bpf.test_codegen import _jump_targets, _pair_starts

    r = _summary("ip_send_skb(skb->len > 5, return != 0)", "tp:net_dev_queue(skb->len > 1)", pid=1, comm=b"x")
    for i in range(len(r.plan.probes)):
        insns = generate(r.plan, i).insns
        seconds = {s + 1 for s in _pair_starts(insns)}
        for pc, target in _jump_targets(insns):
            assert 0 <= target < len(insns) and target not in seconds and target > pc
        assert generate(r.plan, i) == generate(
            _summary("ip_send_skb(skb->len > 5, return != 0)", "tp:net_dev_queue(skb->len > 1)", pid=1, comm=b"x").plan,
            i,
        )


def test_calls_only_is_one_fentry_counting_calls_after_its_tests() -> None:
    from tests.unit.bpf.test_codegen import _sk_buff

    r = count_calls(_trace("ip_send_skb(skb->len > 100)", "tp:net_dev_queue"), calls_only=True)
    (entry, tracepoint) = r.plan.probes
    assert entry.kind is ProbeKind.FENTRY and entry.stash is Stash.NONE and entry.count is not None
    assert entry.count.errors is None and not entry.count.latency
    program = generate(r.plan, 0)
    assert {role.value for _, role in program.map_slots} == {"counts"}  # no stash, no ring buffer
    for length, kept in ((242, 1), (50, 0), (101, 1)):
        vm = _vm(memory=_memory(skb=_sk_buff(length=length)))
        vm.run(program, [NET, SKB])
        assert vm.counters(0)[:2] == (kept, 0) and sum(vm.counters(0)[2:]) == 0  # no buckets, no duration


def test_calls_only_refuses_a_test_on_the_return_value() -> None:
    from ksnoop.errors import UsageError

    with pytest.raises(UsageError, match="--calls-only counts at entry"):
        count_calls(_trace("ip_send_skb(return != 0)"), calls_only=True)
