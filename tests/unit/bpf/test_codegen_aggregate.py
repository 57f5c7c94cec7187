# SPDX-License-Identifier: GPL-2.0-only
"""bpf.codegen in aggregation mode (bpf.plan.Aggregate): programs that count calls per key, run in
tests/support/bpfvm.py.

The plans come from ksnoop.run.aggregate.aggregate_calls over the mini kernel, as `trace --count-by
/ --hist` makes them. Each test reads the keys the programs leave in the aggregate hash and decodes
them as the aggregation loop does (key_decoders, key_totals), or looks at their bytes: the function's
number, the failed mask, the bucket, each value at its offset and zeros everywhere else.
"""

from __future__ import annotations

import dataclasses
import struct

import pytest

from bpf import templates as tpl
from bpf.codegen import CodegenError, MapRole, Sharing, generate, generate_multi
from bpf.plan import (
    AGGREGATE_BUCKET_OFFSET,
    AGGREGATE_FAILED_OFFSET,
    AGGREGATE_FUNCTION_OFFSET,
    AGGREGATE_HEADER_SIZE,
    DURATION,
    HIST_NEGATIVE,
    HIST_UNREADABLE,
    MAX_KEY_PARTS,
    MAX_KEY_VALUES_SIZE,
    Aggregate,
    AggregateLayout,
    Bitfield,
    Builtin,
    Capture,
    Filters,
    Plan,
    PlanError,
    Probe,
    ProbeKind,
    Stash,
    key_part_size,
    key_values_size,
)
from bpf.uapi import BPF_F_NO_PREALLOC, BPF_OBJ_NAME_LEN, Helper, MapType
from ksnoop.output.decode import READ_FAILED
from ksnoop.run.aggregate import DEFAULT_MAX_KEYS, AggregateRequest, KeyTotal, aggregate_calls, key_decoders, key_totals
from ksnoop.spec.language import parse_spec
from ksnoop.spec.resolve import ResolvedTrace, resolve
from ksnoop.spec.targets import KernelBTF
from tests.support import records
from tests.support.bpfvm import MASK64, VM
from tests.unit.bpf.test_codegen import (
    DEV,
    NAME_PTR,
    NET,
    PID,
    SKB,
    TID,
    _jump_targets,
    _memory,
    _net_device,
    _pair_starts,
    _sk_buff,
)
from tests.unit.bpf.test_codegen_summary import DURATIONS, RINGBUF_HELPERS, _call

AGGREGATION_ROLES = {MapRole.AGGREGATE, MapRole.AGGREGATE_DROPS, MapRole.AGGREGATE_OVERFLOW}
MAP_HELPERS = {Helper.map_lookup_elem, Helper.map_update_elem}
# More sk_buffs and net_devices than test_codegen's one of each, for keys that differ.
SKBS = [SKB + 0x10000 * n for n in range(1, 7)]
DEVS = [DEV + 0x10000 * n for n in range(1, 4)]


def _aggregate(
    *specs: str,
    count_by: str = "",
    hist: str = "",
    at_return: bool = False,
    max_keys: int = DEFAULT_MAX_KEYS,
    kernel: KernelBTF | None = None,
    function_kind: ProbeKind = ProbeKind.FENTRY,
    **filters,
) -> ResolvedTrace:
    """The specs resolved as `trace --count-by/--hist` resolves them (no default captures), then aggregated."""
    resolved = resolve(
        [parse_spec(s) for s in specs],
        kernel or records.kernel(),
        Filters(**filters),
        function_kind=function_kind,
        defaults=False,
    )
    return aggregate_calls(resolved, AggregateRequest(count_by, hist), at_return=at_return, max_keys=max_keys)


def _vm(**kwargs) -> VM:
    kwargs.setdefault("memory", _memory())
    kwargs.setdefault("pid_tgid", PID << 32 | TID)
    return VM(**kwargs)


def _run(vm: VM, resolved: ResolvedTrace, index: int, ctx: list[int]):
    return vm.run(generate(resolved.plan, index), ctx)


def _totals(vm: VM, resolved: ResolvedTrace, hist: bool = False) -> list[KeyTotal]:
    return key_totals(key_decoders(resolved), vm.aggregate_counts(), hist)


def _counts(vm: VM, resolved: ResolvedTrace) -> dict[tuple, int]:
    """The key values -> count, for a trace of one function."""
    totals = _totals(vm, resolved)
    assert len({t.function for t in totals}) <= 1
    return {t.values: t.count for t in totals}


def _buckets(vm: VM, resolved: ResolvedTrace) -> dict[tuple, dict[int, int]]:
    """The key values -> its histogram's buckets, for a trace of one function."""
    return {t.values: t.buckets for t in _totals(vm, resolved, hist=True)}


def _head(key: bytes) -> tuple[int, int, int]:
    """(function, failed mask, bucket) of a raw key."""
    return (
        struct.unpack_from("=I", key, AGGREGATE_FUNCTION_OFFSET)[0],
        struct.unpack_from("=H", key, AGGREGATE_FAILED_OFFSET)[0],
        struct.unpack_from("=H", key, AGGREGATE_BUCKET_OFFSET)[0],
    )


def _seven(a: int = 0, b: int = 0, c: int = 0, d: int = 0, e: int = 0, f: int = 0, g: int = 0) -> list[int]:
    """seven_args's context: its seven u64 slots."""
    return [x & MASK64 for x in (a, b, c, d, e, f, g)]


def _skbs(*skbs: bytes, devs: tuple[bytes, ...] = ()) -> dict[int, bytes]:
    """test_codegen's memory, and these sk_buffs at SKBS[0], SKBS[1]..., net_devices at DEVS[0]..."""
    return {**_memory(), **dict(zip(SKBS, skbs)), **dict(zip(DEVS, devs))}


# ---- structure ------------------------------------------------------------------------------------

CORPUS = [
    (("tp:net_dev_queue",), "comm", ""),
    (("tp:net_dev_queue",), "comm,pid,tid,uid,cpu", ""),
    (("tp:net_dev_queue",), "skb->len,skb->dev->name,skb->pkt_type,skb->cloned,skb", "skb->len"),
    (("ip_send_skb",), "skb->dev->ifindex,net", "net->ifindex"),
    (("ip_send_skb(skb->len > 5)",), "return", "duration"),
    (("ip_send_skb(return != 0)", "tp:net_dev_queue(skb->len > 1)"), "comm", "skb->len"),
    (("seven_args",), "f,c,e->len", "a"),
    (("seven_args", "strncpy_from_user"), "", "return"),
]
CORPUS_IDS = [f"{' '.join(specs)} --count-by {by} --hist {hist}" for specs, by, hist in CORPUS]


@pytest.mark.parametrize("specs,count_by,hist", CORPUS, ids=CORPUS_IDS)
def test_aggregating_programs_are_well_formed_and_deterministic(specs, count_by: str, hist: str) -> None:
    resolved = _aggregate(*specs, count_by=count_by, hist=hist)
    names = {t.name for t in tpl.ALL}
    for i in range(len(resolved.plan.probes)):
        program = generate(resolved.plan, i)
        insns = program.insns
        seconds = {s + 1 for s in _pair_starts(insns)}
        for pc, target in _jump_targets(insns):
            assert 0 <= target < len(insns) and target not in seconds and target != pc, (i, pc, target)
        assert {name for _, name in program.sections} <= names
        assert program == generate(_aggregate(*specs, count_by=count_by, hist=hist).plan, i)


@pytest.mark.parametrize("specs,count_by,hist", CORPUS, ids=CORPUS_IDS)
def test_aggregating_programs_write_no_record_and_run_to_exit(specs, count_by: str, hist: str) -> None:
    resolved = _aggregate(*specs, count_by=count_by, hist=hist)
    vm = _vm(memory={**_memory(), NAME_PTR: b"hello\0"})
    for i, probe in enumerate(resolved.plan.probes):
        program = generate(resolved.plan, i)
        roles = {role for _, role in program.map_slots}
        assert MapRole.EVENTS not in roles and MapRole.DROPS not in roles
        if probe.aggregate is not None:
            assert AGGREGATION_ROLES <= roles <= AGGREGATION_ROLES | {MapRole.STASH}
        else:  # an entry that only stashes its time for the return that counts
            assert roles == {MapRole.STASH} and probe.stash is Stash.TIME
        ctx = [SKB] if probe.kind is ProbeKind.TP_BTF else [NET, SKB, 0, 0, SKB, NAME_PTR, 7, 0]
        run = vm.run(program, ctx)
        assert not RINGBUF_HELPERS & set(run.helpers)
    assert vm.records == [] and vm.aggregate_counts()


def test_the_aggregation_maps_are_the_plans_sized_by_its_key() -> None:
    resolved = _aggregate(
        "ip_send_skb(return != 0)", "tp:net_dev_queue", count_by="comm,skb->len", hist="skb->len", max_keys=77
    )
    layout = resolved.plan.aggregate_layout
    assert (layout.part_offsets, layout.part_sizes, layout.size) == ((8, 24), (16, 4), 32)
    seen: dict[MapRole, set] = {}
    for i in range(len(resolved.plan.probes)):
        for spec in generate(resolved.plan, i).maps:
            seen.setdefault(spec.role, set()).add(spec)
    (counts,) = seen[MapRole.AGGREGATE]  # one spec per role: every program agrees
    (drops,) = seen[MapRole.AGGREGATE_DROPS]
    (overflow,) = seen[MapRole.AGGREGATE_OVERFLOW]
    shape = lambda s: (s.map_type, s.key_size, s.value_size, s.max_entries, s.sharing, s.flags)  # noqa: E731
    assert shape(counts) == (MapType.PERCPU_HASH, 32, 8, 77, Sharing.PLAN, 0)  # preallocated
    assert shape(drops) == (MapType.PERCPU_ARRAY, 4, 16, 1, Sharing.PLAN, 0)
    assert shape(overflow) == (MapType.HASH, 32, 8, 78, Sharing.PLAN, BPF_F_NO_PREALLOC)  # one more
    assert len({s.name for s in (counts, drops, overflow)}) == 3


def test_the_aggregation_maps_names_fit_the_kernels_limit() -> None:
    resolved = _aggregate("tp:net_dev_queue", count_by="comm")
    names = [spec.name for spec in generate(resolved.plan, 0).maps]
    assert all(len(name) <= BPF_OBJ_NAME_LEN - 1 for name in names), names


def test_the_vm_makes_the_aggregation_maps_from_the_programs_specs() -> None:
    resolved = _aggregate("tp:net_dev_queue", count_by="skb->cb,skb->dev->name")  # the largest key: 64 bytes of values
    vm = _vm()
    _run(vm, resolved, 0, [SKB])
    assert vm.map_spec(MapRole.AGGREGATE) == next(
        s for s in generate(resolved.plan, 0).maps if s.role is MapRole.AGGREGATE
    )
    ((key, count),) = vm.aggregate_counts().items()
    assert len(key) == AGGREGATE_HEADER_SIZE + MAX_KEY_VALUES_SIZE and count == 1
    assert _counts(vm, resolved) == {("cb text", "lo"): 1}
    # A program of another plan, whose key is another size, is not the same map.
    other = _aggregate("tp:net_dev_queue", count_by="comm")
    with pytest.raises(AssertionError, match="map aggregate is"):
        _run(vm, other, 0, [SKB])


# ---- key values -----------------------------------------------------------------------------------


@pytest.mark.parametrize("comm_pads", [True, False], ids=["padded comm", "comm not padded (5.19-6.3)"])
def test_builtins_are_the_tasks(comm_pads: bool) -> None:
    resolved = _aggregate("tp:net_dev_queue", count_by="comm,pid,tid,uid,cpu")
    vm = _vm(comm=b"ping", uid_gid=1001 << 32 | 1000, cpu=3, comm_pads=comm_pads)
    _run(vm, resolved, 0, [SKB])
    _run(vm, resolved, 0, [SKB])
    ((key, count),) = vm.aggregate_counts().items()
    assert count == 2 and _counts(vm, resolved) == {("ping", PID, TID, 1000, 3): 2}
    # Every byte the values leave is zero, whatever bpf_get_current_comm leaves past the NUL.
    assert key == struct.pack("=IHH16sIIII", 0, 0, 0, b"ping", PID, TID, 1000, 3)


def test_the_pid_is_the_process_and_the_tid_the_thread() -> None:
    resolved = _aggregate("tp:net_dev_queue", count_by="pid,tid")
    vm = _vm()
    for tid in (TID, TID + 1, TID):
        vm.pid_tgid = PID << 32 | tid
        _run(vm, resolved, 0, [SKB])
    assert _counts(vm, resolved) == {(PID, TID): 2, (PID, TID + 1): 1}


def test_an_integer_member_keys_by_its_value() -> None:
    resolved = _aggregate("tp:net_dev_queue", count_by="skb->len")
    vm = _vm(memory=_skbs(_sk_buff(length=242), _sk_buff(length=100), _sk_buff(length=242)))
    for skb in SKBS[:3]:
        _run(vm, resolved, 0, [skb])
    assert _counts(vm, resolved) == {(242,): 2, (100,): 1}


def test_a_char_array_keys_by_its_text_zeros_after_the_nul() -> None:
    resolved = _aggregate("tp:net_dev_queue", count_by="skb->dev->name")
    memory = _skbs(
        _sk_buff(dev=DEVS[0]),
        _sk_buff(dev=DEVS[1]),
        _sk_buff(dev=DEVS[2]),
        devs=(_net_device(b"lo", 1), _net_device(b"lo", 2), _net_device(b"eth0", 3)),
    )
    vm = _vm(memory=memory)
    for skb in SKBS[:3]:
        _run(vm, resolved, 0, [skb])
    # Two net_devices of one name: one key, however they differ elsewhere.
    assert _counts(vm, resolved) == {("lo",): 2, ("eth0",): 1}
    offset = resolved.plan.aggregate_layout.part_offsets[0]
    assert {key[offset:] for key in vm.aggregate_counts()} == {b"lo".ljust(16, b"\0"), b"eth0".ljust(16, b"\0")}


def test_a_bitfield_keys_by_its_own_bits_alone() -> None:
    resolved = _aggregate("tp:net_dev_queue", count_by="skb->pkt_type")
    # pkt_type is bits 0-2 of byte 84; ignore_df (bit 3) and cloned (bit 4) are its neighbours.
    byte84 = [5, 5 | 1 << 3 | 1 << 4, 5 | 1 << 4, 3 | 1 << 3]
    vm = _vm(memory=_skbs(*(_sk_buff(byte84=b) for b in byte84)))
    for skb in SKBS[:4]:
        _run(vm, resolved, 0, [skb])
    assert _counts(vm, resolved) == {(5,): 3, (3,): 1}
    offset = resolved.plan.aggregate_layout.part_offsets[0]
    assert resolved.plan.aggregate_layout.part_sizes == (8,)  # cut out into a u64
    assert sorted(struct.unpack_from("=Q", key, offset)[0] for key in vm.aggregate_counts()) == [3, 5]


def test_neighbouring_bitfields_are_keys_of_their_own() -> None:
    resolved = _aggregate("tp:net_dev_queue", count_by="skb->pkt_type,skb->ignore_df,skb->cloned")
    byte84 = [5, 5 | 1 << 3 | 1 << 4, 5 | 1 << 4, 7 | 1 << 4]
    vm = _vm(memory=_skbs(*(_sk_buff(byte84=b) for b in byte84)))
    for skb in SKBS[:4]:
        _run(vm, resolved, 0, [skb])
    assert _counts(vm, resolved) == {(5, 0, 0): 1, (5, 1, 1): 1, (5, 0, 1): 1, (7, 0, 1): 1}


def test_a_value_behind_a_null_pointer_is_flagged_in_the_key_and_left_zero() -> None:
    resolved = _aggregate("tp:net_dev_queue", count_by="comm,skb->dev->name,skb->dev->ifindex,skb->pkt_type,skb->len")
    layout = resolved.plan.aggregate_layout
    vm = _vm(memory=_skbs(_sk_buff(dev=0, length=10), _sk_buff(dev=0, length=10)))
    _run(vm, resolved, 0, [SKBS[0]])
    _run(vm, resolved, 0, [SKBS[1]])  # another sk_buff, the same values: the same key
    ((key, count),) = vm.aggregate_counts().items()
    assert count == 2 and _head(key) == (0, 0b00110, 0)
    name, ifindex = layout.part_offsets[1], layout.part_offsets[2]
    assert key[name : name + 16] == bytes(16) and key[ifindex : ifindex + 4] == bytes(4)
    assert _counts(vm, resolved) == {("curl", READ_FAILED, READ_FAILED, 5, 10): 2}
    # The argument itself NULL: every value of it fails, the bitfield's too.
    _run(vm, resolved, 0, [0])
    assert _counts(vm, resolved)[("curl",) + (READ_FAILED,) * 4] == 1
    assert sorted(_head(k)[1] for k in vm.aggregate_counts()) == [0b00110, 0b11110]


def test_a_struct_pointer_keys_by_its_address_not_the_struct() -> None:
    resolved = _aggregate("tp:net_dev_queue", count_by="skb,skb->dev")
    assert resolved.plan.aggregate_layout.part_sizes == (8, 8)
    vm = _vm(memory=_skbs(_sk_buff(), _sk_buff()))  # the same bytes at two addresses
    for skb in (SKBS[0], SKBS[1], SKBS[0]):
        _run(vm, resolved, 0, [skb])
    assert _counts(vm, resolved) == {(SKBS[0], DEV): 2, (SKBS[1], DEV): 1}


def test_a_char_pointer_keys_by_its_text_cut_to_its_share() -> None:
    resolved = _aggregate("seven_args", count_by="f,c")
    (size, _) = resolved.plan.aggregate_layout.part_sizes
    assert size == 48  # what the 64 bytes leave after c and padding
    long_text = bytes(range(ord("A"), ord("A") + 60))
    memory = {NAME_PTR: b"hello world!\0", NAME_PTR + 0x100: long_text + b"\0"}
    vm = _vm(memory=memory)
    _run(vm, resolved, 0, _seven(c=ord("x"), f=NAME_PTR))
    _run(vm, resolved, 0, _seven(c=ord("x"), f=NAME_PTR))
    _run(vm, resolved, 0, _seven(c=ord("y"), f=NAME_PTR + 0x100))
    _run(vm, resolved, 0, _seven(c=ord("y"), f=0))
    assert _counts(vm, resolved) == {
        ("hello world!", ord("x")): 2,
        (long_text[: size - 1].decode(), ord("y")): 1,  # cut, its NUL in the last byte
        (READ_FAILED, ord("y")): 1,
    }


def test_a_char_pointer_in_user_memory_is_read_from_there() -> None:
    resolved = _aggregate("seven_args", count_by="f")
    vm = _vm(memory={}, user_memory={NAME_PTR: b"/etc/passwd\0"})
    _run(vm, resolved, 0, _seven(f=NAME_PTR))
    assert _counts(vm, resolved) == {("/etc/passwd",): 1}


def test_arguments_from_registers_drop_their_undefined_upper_bits() -> None:
    resolved = _aggregate("seven_args", count_by="a,c,g,b")
    vm = _vm()
    _run(vm, resolved, 0, _seven(a=0xDEADBEEF_FFFFFFF9, c=0xAB00 | 7, g=0x1_0000_0002, b=-5))
    _run(vm, resolved, 0, _seven(a=0x00000000_FFFFFFF9, c=7, g=2, b=-5))
    assert _counts(vm, resolved) == {(-7, 7, 2, -5): 2}


def test_count_by_return_keys_each_return_value() -> None:
    resolved = _aggregate("ip_send_skb", count_by="return")
    entry, exit_ = resolved.plan.probes
    assert entry.aggregate is None and exit_.aggregate is not None and exit_.requires_entry
    vm = _vm()
    for ret in (-22, 0, 0xDEAD0000_00000000, 5):  # an int: the upper half of the slot is not its
        _call(vm, resolved, 0, [NET, SKB], ret)
    assert _counts(vm, resolved) == {(-22,): 1, (0,): 2, (5,): 1}


def test_a_long_return_keeps_all_64_bits() -> None:
    resolved = _aggregate("strncpy_from_user", count_by="return")
    vm = _vm()
    for ret in (-14, 1 << 40, -14):
        _call(vm, resolved, 0, [0, 0, 7], ret)
    assert _counts(vm, resolved) == {(-14,): 2, (1 << 40,): 1}


def test_each_function_counts_under_its_own_number() -> None:
    resolved = _aggregate("ip_send_skb", "tp:net_dev_queue", "ip_send_skb(return < 0)", count_by="comm")
    vm = _vm()
    _run(vm, resolved, 0, [NET, SKB])
    for _ in range(2):
        _run(vm, resolved, 1, [SKB])
    _call(vm, resolved, 2, [NET, SKB], -1)
    assert {_head(k)[0]: n for k, n in vm.aggregate_counts().items()} == {0: 1, 1: 2, 2: 1}
    assert [(t.label, t.values, t.count) for t in _totals(vm, resolved)] == [
        ("tp:net_dev_queue", ("curl",), 2),
        ("ip_send_skb", ("curl",), 1),
        ("ip_send_skb", ("curl",), 1),
    ]


# ---- histograms -----------------------------------------------------------------------------------

# Bucket 0 holds 0 and bucket k [2**(k-1), 2**k): a value's bucket is its bit length.
U32_VALUES = [0, 1, 2, 3, 4, 7, 8, 1000, 1023, 1024, (1 << 31) - 1, 1 << 31, (1 << 32) - 1]


@pytest.mark.parametrize("value", U32_VALUES)
def test_hist_buckets_a_members_value_by_its_bit_length(value: int) -> None:
    resolved = _aggregate("tp:net_dev_queue", hist="skb->len")
    vm = _vm(memory=_memory(skb=_sk_buff(length=value)))
    _run(vm, resolved, 0, [SKB])
    ((key, count),) = vm.aggregate_counts().items()
    assert _head(key) == (0, 0, value.bit_length()) and count == 1


def test_hist_of_several_values_counts_each_bucket() -> None:
    resolved = _aggregate("tp:net_dev_queue", hist="skb->len")
    vm = _vm(memory=_skbs(*(_sk_buff(length=n) for n in (0, 1, 2, 3, 4, 1000))))
    for skb in SKBS:
        _run(vm, resolved, 0, [skb])
    assert _buckets(vm, resolved) == {(): {0: 1, 1: 1, 2: 2, 3: 1, 10: 1}}


@pytest.mark.parametrize(
    "arg,value,bucket",
    [
        ("d", (1 << 63) - 1, 63),
        ("d", 1 << 63, 64),
        ("d", MASK64, 64),  # unsigned: the largest value, not a negative one
        ("g", 0xFFFFFFFF, 32),
        ("g", 0xDEAD_00000004, 3),  # a u32: the upper half of the slot is not its
        ("c", 0xFF, 8),  # char is unsigned in the mini kernel, as pahole writes it
        ("a", -1, HIST_NEGATIVE),
        ("a", -(1 << 31), HIST_NEGATIVE),
        ("a", 0x00000000_FFFFFFFF, HIST_NEGATIVE),  # -1 in the low half
        ("a", 0xFFFFFFFF_00000005, 3),  # 5 under ones
        ("a", (1 << 31) - 1, 31),
        ("b", -1, HIST_NEGATIVE),
        ("b", -(1 << 63), HIST_NEGATIVE),
        ("b", 0, 0),
    ],
)
def test_hist_of_an_argument_by_its_type(arg: str, value: int, bucket: int) -> None:
    resolved = _aggregate("seven_args", hist=arg)
    assert resolved.plan.probes[0].aggregate.hist_signed == (arg in "ab")
    vm = _vm()
    _run(vm, resolved, 0, _seven(**{arg: value}))
    assert _buckets(vm, resolved) == {(): {bucket: 1}}


def test_hist_of_a_negative_member_and_an_unreadable_one() -> None:
    resolved = _aggregate("ip_send_skb", hist="net->ifindex")  # -7 in test_codegen's struct net
    vm = _vm()
    _run(vm, resolved, 0, [NET, SKB])
    _run(vm, resolved, 0, [0, SKB])
    _run(vm, resolved, 0, [0, SKB])
    assert _buckets(vm, resolved) == {(): {HIST_NEGATIVE: 1, HIST_UNREADABLE: 2}}
    unreadable = next(k for k in vm.aggregate_counts() if _head(k)[2] == HIST_UNREADABLE)
    assert _head(unreadable) == (0, 0, HIST_UNREADABLE)  # no key value failed: the histogram's did


def test_hist_behind_a_null_member_pointer_is_unreadable() -> None:
    resolved = _aggregate("tp:net_dev_queue", count_by="skb->len", hist="skb->dev->ifindex")
    vm = _vm(memory=_skbs(_sk_buff(dev=0), _sk_buff(dev=DEV)))
    _run(vm, resolved, 0, [SKBS[0]])
    _run(vm, resolved, 0, [SKBS[1]])
    assert _buckets(vm, resolved) == {(242,): {HIST_UNREADABLE: 1, HIST_NEGATIVE: 1}}  # ifindex -3


def test_hist_of_a_bitfield() -> None:
    resolved = _aggregate("tp:net_dev_queue", hist="skb->pkt_type")
    vm = _vm(memory=_skbs(_sk_buff(byte84=5 | 1 << 3 | 1 << 4), _sk_buff(byte84=1 << 4), _sk_buff(byte84=7)))
    for skb in SKBS[:3]:
        _run(vm, resolved, 0, [skb])
    assert _buckets(vm, resolved) == {(): {0: 1, 3: 2}}


def test_hist_per_key() -> None:
    resolved = _aggregate("tp:net_dev_queue", count_by="skb->dev->name", hist="skb->len")
    memory = _skbs(
        _sk_buff(length=100, dev=DEVS[0]),
        _sk_buff(length=1500, dev=DEVS[0]),
        _sk_buff(length=120, dev=DEVS[1]),
        _sk_buff(length=0, dev=DEVS[1]),
        devs=(_net_device(b"eth0"), _net_device(b"lo")),
    )
    vm = _vm(memory=memory)
    for skb in SKBS[:4]:
        _run(vm, resolved, 0, [skb])
    _run(vm, resolved, 0, [SKBS[0]])
    totals = _totals(vm, resolved, hist=True)
    assert [(t.values, t.count, t.buckets) for t in totals] == [
        (("eth0",), 3, {7: 2, 11: 1}),
        (("lo",), 2, {0: 1, 7: 1}),
    ]
    assert len(vm.aggregate_counts()) == 4  # a key per bucket in the hash, gathered on reading


@pytest.mark.parametrize("elapsed", DURATIONS)
def test_hist_duration_at_the_return(elapsed: int) -> None:
    resolved = _aggregate("ip_send_skb", hist="duration")
    entry, exit_ = resolved.plan.probes
    assert (entry.kind, entry.stash, entry.aggregate) == (ProbeKind.FENTRY, Stash.TIME, None)
    assert (exit_.kind, exit_.stash, exit_.requires_entry, exit_.aggregate.hist) == (
        ProbeKind.FEXIT,
        Stash.TIME,
        True,
        DURATION,
    )
    vm = _vm()
    _call(vm, resolved, 0, [NET, SKB], 0, elapsed)
    assert _buckets(vm, resolved) == {(): {elapsed.bit_length(): 1}}


def test_hist_duration_per_return_value() -> None:
    resolved = _aggregate("ip_send_skb", count_by="return", hist="duration")
    vm = _vm()
    for ret, elapsed in ((0, 5000), (0, 6000), (-1, 100), (0, 1 << 20)):
        _call(vm, resolved, 0, [NET, SKB], ret, elapsed)
    assert _buckets(vm, resolved) == {(0,): {13: 2, 21: 1}, (-1,): {7: 1}}


def test_hist_of_the_return_value_is_signed() -> None:
    resolved = _aggregate("ip_send_skb", hist="return")
    vm = _vm()
    for ret in (-5, 0, 100, 0xFFFFFFFF_00000001):
        _call(vm, resolved, 0, [NET, SKB], ret)
    assert _buckets(vm, resolved) == {(): {HIST_NEGATIVE: 1, 0: 1, 7: 1, 1: 1}}


# ---- returns, tests and filters before counting ---------------------------------------------------


def test_a_return_without_its_entry_is_not_counted() -> None:
    resolved = _aggregate("ip_send_skb", count_by="return")
    vm = _vm()
    _run(vm, resolved, 1, [NET, SKB, 0])  # attached mid-call: no stashed entry
    assert vm.aggregate_counts() == {}
    _call(vm, resolved, 0, [NET, SKB], 3)
    _run(vm, resolved, 1, [NET, SKB, 4])  # a second return: its entry was used up by the first
    assert _counts(vm, resolved) == {(3,): 1}


@pytest.mark.parametrize("length,counted", [(5, 0), (6, 1)])
def test_an_entry_test_that_fails_leaves_the_return_uncounted(length: int, counted: int) -> None:
    resolved = _aggregate("ip_send_skb(skb->len > 5)", count_by="return")
    vm = _vm(memory=_memory(skb=_sk_buff(length=length)))
    _call(vm, resolved, 0, [NET, SKB], -3)
    assert sum(vm.aggregate_counts().values()) == counted


@pytest.mark.parametrize("ret,counted", [(0, 0), (-2, 1), (3, 1)])
def test_a_return_test_applies_before_counting(ret: int, counted: int) -> None:
    resolved = _aggregate("ip_send_skb(return != 0)", count_by="comm")
    assert resolved.plan.probes[1].aggregate is not None  # the test needs the return: counted there
    vm = _vm()
    _call(vm, resolved, 0, [NET, SKB], ret)
    assert _counts(vm, resolved) == ({("curl",): 1} if counted else {})
    # The entry time is used up whether or not the return counts.
    assert set(_run(vm, resolved, 1, [NET, SKB, 0]).stash.values()) == {bytes(8)}


@pytest.mark.parametrize("length,counted", [(100, 0), (101, 1)])
def test_a_tracepoint_test_applies_before_counting(length: int, counted: int) -> None:
    resolved = _aggregate("tp:net_dev_queue(skb->len > 100)", count_by="skb->len")
    vm = _vm(memory=_memory(skb=_sk_buff(length=length)))
    _run(vm, resolved, 0, [SKB])
    assert _counts(vm, resolved) == ({(length,): 1} if counted else {})


def test_pid_filter_applies_before_counting() -> None:
    resolved = _aggregate("ip_send_skb", "tp:net_dev_queue", count_by="comm", pid=PID)
    other = _vm(pid_tgid=(PID + 1) << 32 | (PID + 1))
    _run(other, resolved, 0, [NET, SKB])
    _run(other, resolved, 1, [SKB])
    assert other.aggregate_counts() == {} and other.aggregate_drops() == (0, 0)
    mine = _vm()
    _run(mine, resolved, 0, [NET, SKB])
    _run(mine, resolved, 1, [SKB])
    assert sorted(mine.aggregate_counts().values()) == [1, 1]


@pytest.mark.parametrize("comm,counted", [(b"curl", 1), (b"wget", 0)])
def test_comm_filter_applies_before_counting(comm: bytes, counted: int) -> None:
    resolved = _aggregate("tp:net_dev_queue", count_by="pid", comm=b"curl")
    vm = _vm(comm=comm)
    _run(vm, resolved, 0, [SKB])
    assert sum(vm.aggregate_counts().values()) == counted


def test_at_return_moves_the_count_to_the_return() -> None:
    resolved = _aggregate("ip_send_skb", count_by="skb->len", at_return=True)
    entry, exit_ = resolved.plan.probes
    assert entry.aggregate is None and exit_.aggregate is not None and exit_.kind is ProbeKind.FEXIT
    vm = _vm()
    _run(vm, resolved, 0, [NET, SKB])
    assert vm.aggregate_counts() == {}  # nothing at entry
    _run(vm, resolved, 1, [NET, SKB, 0])
    assert _counts(vm, resolved) == {(242,): 1}  # the argument, read at the return


# ---- a full hash ----------------------------------------------------------------------------------


def test_a_full_hash_counts_the_calls_it_drops_and_their_distinct_keys() -> None:
    resolved = _aggregate("seven_args", count_by="a", max_keys=2)
    assert resolved.plan.aggregate_entries == 2
    vm = _vm()
    for a in (1, 2, 3, 3, 1, 4, 2):
        _run(vm, resolved, 0, _seven(a=a))
    assert _counts(vm, resolved) == {(1,): 2, (2,): 2}  # the keys it holds still count
    assert vm.aggregate_drops() == (3, 2)  # 3, 3 and 4: three calls, two keys
    decode = key_decoders(resolved)[0][1]
    assert [decode(k).values for k in vm.overflow_keys()] == [(3,), (4,)]


def test_a_full_hash_counts_each_dropped_bucket_as_a_key() -> None:
    resolved = _aggregate("seven_args", hist="a", max_keys=2)
    vm = _vm()
    for a in (1, 2, 100, 100, 0):
        _run(vm, resolved, 0, _seven(a=a))
    assert _buckets(vm, resolved) == {(): {1: 1, 2: 1}}
    assert vm.aggregate_drops() == (3, 2)  # buckets 7 and 0


def test_dropped_keys_are_counted_as_far_as_the_overflow_hash_holds_them() -> None:
    # The overflow hash holds one key more than the aggregate hash: past that, a dropped key is
    # no longer told new, so the distinct keys dropped are a lower bound (the calls stay exact),
    # which the warning says ("at least") once they are more than --max-keys.
    resolved = _aggregate("seven_args", count_by="a", max_keys=1)
    vm = _vm()
    for a in (1, 2, 3, 4, 4):
        _run(vm, resolved, 0, _seven(a=a))
    assert vm.aggregate_drops() == (4, 2) and len(vm.overflow_keys()) == 2


def test_a_key_another_cpu_makes_between_lookup_and_insert_is_counted_on_this_one() -> None:
    resolved = _aggregate("seven_args", count_by="a")
    vm = _vm()
    vm.aggregate_races = 1
    run = _run(vm, resolved, 0, _seven(a=7))
    # lookup misses, the insert finds the key made (EEXIST), the second lookup finds it
    assert [h for h in run.helpers if h in MAP_HELPERS] == [
        Helper.map_lookup_elem,
        Helper.map_update_elem,
        Helper.map_lookup_elem,
    ]
    assert _counts(vm, resolved) == {(7,): 1} and vm.aggregate_drops() == (0, 0)
    run = _run(vm, resolved, 0, _seven(a=7))
    assert [h for h in run.helpers if h in MAP_HELPERS] == [Helper.map_lookup_elem]
    assert _counts(vm, resolved) == {(7,): 2}


def test_a_new_key_is_inserted_once_with_a_count_of_one() -> None:
    resolved = _aggregate("seven_args", count_by="a")
    vm = _vm()
    run = _run(vm, resolved, 0, _seven(a=7))
    assert [h for h in run.helpers if h in MAP_HELPERS] == [Helper.map_lookup_elem, Helper.map_update_elem]
    assert list(vm.aggregate_counts().values()) == [1]


# ---- kprobes ----------------------------------------------------------------------------------------


def test_kprobe_multi_branches_key_by_the_function_their_cookie_names() -> None:
    from ksnoop.spec.multi import group_kprobes, split_multi
    from tests.unit.bpf.test_codegen_multi import FUNCTIONS, _branches, _kernel, _regs

    resolved = _aggregate("f*", count_by="a", kernel=_kernel(), function_kind=ProbeKind.KPROBE)
    grouped = group_kprobes(resolved)
    split = split_multi(grouped, _branches(grouped))
    (entries,) = split.plan.multi
    program = generate_multi(split.plan, 0)
    vm = _vm()
    for n in range(FUNCTIONS):
        vm.run(program, _regs(di=100 + n, si=1), cookie=program.multi_cookies[n])
    totals = _totals(vm, split)
    assert sorted((t.label, t.values, t.count) for t in totals) == [
        (f"f{n:02d}", (100 + n,), 1) for n in range(FUNCTIONS)
    ]
    assert {_head(k)[0] for k in vm.aggregate_counts()} == {split.plan.probes[i].aggregate.key for i in entries.probes}


def test_kprobe_return_keys_by_the_return_register() -> None:
    from tests.unit.bpf.test_codegen_multi import _kernel, _regs

    resolved = _aggregate("alone", count_by="return", hist="duration", kernel=_kernel(), function_kind=ProbeKind.KPROBE)
    entry, exit_ = resolved.plan.probes
    assert (entry.kind, exit_.kind) == (ProbeKind.KPROBE, ProbeKind.KRETPROBE)
    vm = _vm()
    vm.run(generate(resolved.plan, 0), _regs(di=1, si=2))
    vm.ktime += 3000
    vm.run(generate(resolved.plan, 1), _regs(ax=(-4) & MASK64))
    assert _buckets(vm, resolved) == {(-4,): {12: 1}}  # 4000 ns: ktime_get_ns moves 1000 a call


# ---- plans by hand --------------------------------------------------------------------------------

LEN = Capture(label="len", slot=0, in_memory=True, offset=80, size=4)
BYTE = Capture(label="byte", slot=0, size=1)
WORD = Capture(label="word", slot=0, size=8)
BITS = Capture(label="bits", slot=0, in_memory=True, offset=84, size=1, bitfield=Bitfield(0, 3))


def _probe(*parts, key: int = 0, **changes) -> Probe:
    return Probe(ProbeKind.TP_BTF, "hand", 1, emits=False, aggregate=Aggregate(key, tuple(parts)), **changes)


def test_key_layout_aligns_each_value_to_its_size() -> None:
    assert [key_part_size(p) for p in (Builtin.COMM, Builtin.PID, Builtin.CPU, LEN, BYTE, WORD, BITS)] == [
        16,
        4,
        4,
        4,
        1,
        8,
        8,  # a bitfield's value is cut out into a u64
    ]
    layout = AggregateLayout.of(Plan(probes=(_probe(BYTE, WORD, Builtin.PID, BYTE, LEN),)))
    assert layout.part_offsets == (8, 16, 24, 28, 32) and layout.size == 40
    assert key_values_size((BYTE, WORD, Builtin.PID, BYTE, LEN)) == 28  # bytes 8 to 36
    assert key_values_size(()) == 0
    # No values: the header alone (function, failed mask, bucket).
    assert AggregateLayout.of(Plan(probes=(_probe(),))).size == AGGREGATE_HEADER_SIZE


def test_key_layout_takes_each_value_as_large_as_its_largest_over_the_functions() -> None:
    plan = Plan(probes=(_probe(BYTE, Builtin.COMM, key=0), _probe(WORD, Builtin.COMM, key=1)))
    layout = plan.aggregate_layout
    assert layout.part_sizes == (8, 16) and layout.part_offsets == (8, 16) and layout.size == 32


def test_aggregation_plan_errors() -> None:
    with pytest.raises(PlanError, match="build keys of different parts"):
        Plan(probes=(_probe(BYTE, key=0), _probe(BYTE, BYTE, key=1)))
    with pytest.raises(PlanError, match=f"a key of {MAX_KEY_PARTS + 1} values; at most {MAX_KEY_PARTS}"):
        Plan(probes=(_probe(*[BYTE] * (MAX_KEY_PARTS + 1)),))
    Plan(probes=(_probe(*[BYTE] * MAX_KEY_PARTS),))
    with pytest.raises(PlanError, match="a key of 72 bytes of values; at most 64"):
        Plan(probes=(_probe(*[WORD] * 9),))
    Plan(probes=(_probe(*[WORD] * 8),))
    with pytest.raises(PlanError, match="aggregates, so it emits nothing, captures nothing"):
        Plan(probes=(_probe(BYTE, captures=(LEN,)),))
    with pytest.raises(PlanError, match="aggregates, so it emits nothing"):
        Plan(probes=(dataclasses.replace(_probe(BYTE), emits=True),))
    with pytest.raises(PlanError, match="takes a duration, which needs a return probe"):
        Plan(probes=(dataclasses.replace(_probe(), aggregate=Aggregate(0, (), DURATION)),))
    with pytest.raises(PlanError, match="no probe of the plan aggregates"):
        _ = Plan(probes=(Probe(ProbeKind.TP_BTF, "hand", 1, captures=(LEN,)),)).aggregate_layout


def test_a_duration_without_the_entrys_time_is_refused() -> None:
    resolved = _aggregate("ip_send_skb", hist="duration")
    entry, exit_ = resolved.plan.probes
    # A return probe that requires its entry but took a record, not a time, from its stash.
    broken = Plan(
        probes=(
            dataclasses.replace(entry, stash=Stash.RECORD, emits=True),
            dataclasses.replace(exit_, stash=Stash.RECORD),
        ),
        pairs=resolved.plan.pairs,
    )
    with pytest.raises(CodegenError, match="a duration needs a return probe with its entry's stashed time"):
        generate(broken, 1)


def test_a_hist_of_a_value_that_is_no_number_is_refused() -> None:
    odd = Capture(label="odd", slot=0, in_memory=True, size=3)
    plan = Plan(probes=(dataclasses.replace(_probe(), aggregate=Aggregate(0, (), odd)),))
    with pytest.raises(CodegenError, match="odd: a 3-byte value is no number"):
        generate(plan, 0)


def test_by_hand_a_key_of_every_kind_of_value() -> None:
    probe = Probe(
        ProbeKind.TP_BTF,
        "hand",
        1,
        emits=False,
        aggregate=Aggregate(5, (Builtin.CPU, LEN, BITS, Builtin.COMM), LEN),
    )
    plan = Plan(probes=(probe,))
    vm = VM({SKB: _sk_buff(length=1000)}, cpu=2)
    vm.run(generate(plan, 0), [SKB])
    ((key, count),) = vm.aggregate_counts().items()
    assert count == 1
    assert key == struct.pack("=IHHIIQ16s", 5, 0, 10, 2, 1000, 5, b"curl")


# ---- a key's value reads as the same value in a record -------------------------------------------


def _flags_kernel() -> KernelBTF:
    """The mini kernel and, after its types, bitfields of signed and enum types:
    struct mini_flags { int delta:4; enum skb_drop_reason reason:4; enum mini_prio prio:2; };  size 4
    int mini_flags_fn(struct mini_flags *m)"""
    from btf import BTF
    from btf.uapi import FuncLinkage

    from tests.support import minikernel

    b, ids = minikernel.make_builder()
    prio = b.enum("mini_prio", 4, [("MINI_PRIO_LOW", -1), ("MINI_PRIO_HIGH", 1)], signed=True)
    flags = b.struct(
        "mini_flags",
        4,
        [("delta", ids["int"], 0, 4), ("reason", ids["enum skb_drop_reason"], 4, 4), ("prio", prio, 8, 2)],
    )
    proto = b.func_proto(ids["int"], [("m", b.ptr(flags))])
    b.func("mini_flags_fn", proto, FuncLinkage.STATIC)
    return KernelBTF(BTF.from_bytes(b.to_bytes()), [])


FLAGS = 0xFFFF888000007000
HDR = 0xFFFF888000008000


@pytest.mark.parametrize(
    "spec,member",
    [
        ("mini_flags_fn", "m->reason"),
        ("mini_flags_fn", "m->delta"),
        ("mini_flags_fn", "m->prio"),
        ("mini_rcv", "hdr->proto"),
        ("mini_rcv", "hdr->saddr"),
        ("mini_rcv", "hdr->more"),
        ("mini_rcv", "hdr->frag"),
        ("mini_rcv", "reason"),
        ("mini_rcv", "prio"),
    ],
)
def test_a_keys_value_reads_as_a_records_does(spec: str, member: str) -> None:
    from tests.unit.bpf.test_codegen import _decode
    from tests.unit.ksnoop.test_resolve import more_kernel

    kernel = _flags_kernel() if spec == "mini_flags_fn" else more_kernel()
    # delta -3 (0b1101), reason 2, prio -1 (0b11); hdr: proto 0x0800, saddr 10.0.0.1, frag/more
    # from the two bytes 0xb4 0xb4, as the records' decoder reads them.
    memory = {
        FLAGS: bytes([0xD | 2 << 4, 3, 0, 0]),
        HDR: struct.pack(">HHI", 0x0800, 0, 0x0A000001) + bytes([0x09, 0x1D]) + bytes(14),
    }
    ctx = [FLAGS] if spec == "mini_flags_fn" else [HDR, 2, 1 << 40, 0, 0, 0, 0, 0, (-1) & MASK64]
    recorded = resolve([parse_spec(f"{spec}({member})")], kernel)
    (event,) = _decode(recorded, _vm(memory=memory).run(generate(recorded.plan, 0), ctx).records)
    counted = _aggregate(spec, count_by=member, kernel=kernel)
    vm = _vm(memory=memory)
    _run(vm, counted, 0, ctx)
    assert _counts(vm, counted) == {event.values: 1}


def test_the_vm_has_an_fd_for_every_map_role() -> None:
    from tests.support.bpfvm import _FDS

    assert set(_FDS) == set(MapRole) and len(set(_FDS.values())) == len(_FDS)
