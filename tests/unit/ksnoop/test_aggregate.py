# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.run.aggregate over the mini kernel: aggregate_calls (where each function is counted, what
its key holds, every SpecError with its message and the column its caret points at in the option's
text), and the reading back (dropped, key_totals, and aggregate_loop.Counts, whose
reports are the counts since the last), from raw keys and from programs run in tests/support/bpfvm.py."""

from __future__ import annotations

import struct

import pytest

from bpf.codegen import MapRole, generate
from bpf.plan import (
    DURATION,
    HIST_NEGATIVE,
    HIST_UNREADABLE,
    MAX_KEY_PARTS,
    Builtin,
    Capture,
    Pair,
    ProbeKind,
    Stash,
    key_part_size,
)
from btf import BTF
from btf.uapi import FuncLinkage
from ksnoop.errors import UsageError
from ksnoop.run.aggregate import (
    DEFAULT_MAX_KEYS,
    MIN_KEY_STRING,
    AggregateRequest,
    Dropped,
    KeyTotal,
    aggregate_calls,
    dropped,
    key_decoders,
    key_totals,
)
from ksnoop.run.aggregate_loop import Counts
from ksnoop.spec.language import SpecError, parse_spec
from ksnoop.spec.resolve import ResolvedTrace, resolve
from ksnoop.spec.targets import KernelBTF
from tests.support import minikernel, records
from tests.support.bpfvm import VM
from tests.support.memring import PerCPUArray

U64 = struct.Struct("=Q")


def _resolved(*specs: str, kernel: KernelBTF | None = None, **kwargs) -> ResolvedTrace:
    """The specs as `trace --count-by/--hist` resolves them: no default captures."""
    kwargs.setdefault("defaults", False)
    return resolve([parse_spec(s) for s in specs], kernel or records.kernel(), **kwargs)


def _aggregate(
    *specs: str,
    count_by: str = "",
    hist: str = "",
    kernel: KernelBTF | None = None,
    at_return: bool = False,
    max_keys: int = DEFAULT_MAX_KEYS,
    **kwargs,
) -> ResolvedTrace:
    resolved = _resolved(*specs, kernel=kernel, **kwargs)
    return aggregate_calls(resolved, AggregateRequest(count_by, hist), at_return=at_return, max_keys=max_keys)


def _error(*specs: str, count_by: str = "", hist: str = "", **kwargs) -> tuple[str, str, int]:
    """(reason, the option's text, the caret's column) of the SpecError aggregate_calls raises."""
    with pytest.raises(SpecError) as raised:
        _aggregate(*specs, count_by=count_by, hist=hist, **kwargs)
    return raised.value.reason, raised.value.text, raised.value.position


def _kprobe_kernel() -> KernelBTF:
    from tests.unit.bpf.test_codegen_multi import _kernel

    return _kernel()


def _extra_kernel() -> KernelBTF:
    """The mini kernel and, after its types, what its own values cannot provoke:
    struct mini_wide { char text[80]; };             void mini_wide_fn(struct mini_wide *w)
    struct mini_ta { char x[56]; int y; };  size 60  void mini_fa(struct mini_ta *p)
    struct mini_tb { int x; char y[56]; };  size 60  void mini_fb(struct mini_tb *p)"""
    b, ids = minikernel.make_builder()
    char80 = b.array(ids["char"], 80, ids["int"])
    char56 = b.array(ids["char"], 56, ids["int"])
    wide = b.struct("mini_wide", 80, [("text", char80, 0)])
    b.func("mini_wide_fn", b.func_proto(0, [("w", b.ptr(wide))]), FuncLinkage.STATIC)
    ta = b.struct("mini_ta", 60, [("x", char56, 0), ("y", ids["int"], 448)])
    tb = b.struct("mini_tb", 60, [("x", ids["int"], 0), ("y", char56, 32)])
    b.func("mini_fa", b.func_proto(0, [("p", b.ptr(ta))]), FuncLinkage.STATIC)
    b.func("mini_fb", b.func_proto(0, [("p", b.ptr(tb))]), FuncLinkage.STATIC)
    return KernelBTF(BTF.from_bytes(b.to_bytes()), [])


# ---- where each function is counted ---------------------------------------------------------------


def test_a_function_whose_values_are_there_at_entry_is_counted_at_entry_alone() -> None:
    r = _aggregate("ip_send_skb", count_by="comm,skb->len", hist="net->ifindex")
    (probe,) = r.plan.probes
    assert (probe.kind, probe.stash, probe.emits, r.plan.pairs) == (ProbeKind.FENTRY, Stash.NONE, False, ())
    assert probe.aggregate.key == 0 and probe.aggregate.hist_signed
    assert [getattr(p, "label", p) for p in probe.aggregate.parts] == [Builtin.COMM, "skb->len"]
    assert probe.aggregate.hist.label == "net->ifindex"


def test_a_record_traces_pair_becomes_one_entry_probe_its_captures_and_stack_dropped() -> None:
    # A spec showing values and the return (record mode's defaults) resolves to a pair with captures.
    resolved = _resolved("ip_send_skb(skb->len, return)", kstack_depth=4, defaults=True)
    assert len(resolved.plan.probes) == 2 and resolved.plan.probes[0].captures
    r = aggregate_calls(resolved, AggregateRequest("comm", ""))
    (probe,) = r.plan.probes
    assert probe.kind is ProbeKind.FENTRY and probe.captures == () and probe.kstack_depth == 0
    assert probe.aggregate.parts == (Builtin.COMM,) and r.targets[0].label == "ip_send_skb"


@pytest.mark.parametrize(
    "spec,count_by,hist,at_return",
    [
        ("ip_send_skb", "return", "", False),
        ("ip_send_skb", "comm,return", "skb->len", False),
        ("ip_send_skb", "", "duration", False),
        ("ip_send_skb", "comm", "return", False),
        ("ip_send_skb(return < 0)", "comm", "", False),
        ("ip_send_skb", "comm", "", True),
    ],
    ids=["count by return", "a key part the return", "hist duration", "hist return", "a return test", "at_return"],
)
def test_what_needs_the_return_is_counted_there_after_an_entry_that_stashes_its_time(
    spec: str, count_by: str, hist: str, at_return: bool
) -> None:
    r = _aggregate(spec, count_by=count_by, hist=hist, at_return=at_return)
    entry, exit_ = r.plan.probes
    assert r.plan.pairs == (Pair(0, 1),)
    assert (entry.kind, entry.stash, entry.emits, entry.aggregate) == (ProbeKind.FENTRY, Stash.TIME, False, None)
    assert entry.captures == () and entry.stash_group == exit_.stash_group == exit_.aggregate.key
    assert (exit_.kind, exit_.stash, exit_.emits, exit_.requires_entry) == (ProbeKind.FEXIT, Stash.TIME, False, True)
    assert [t.label for t in r.targets] == ["ip_send_skb"] * 2
    if "return <" in spec:  # the return's test stays with the return, the entry's with the entry
        assert entry.tests == () and len(exit_.tests) == 1


def test_an_entry_test_stays_at_the_entry() -> None:
    r = _aggregate("ip_send_skb(skb->len > 5)", count_by="return")
    entry, exit_ = r.plan.probes
    assert len(entry.tests) == 1 and exit_.tests == ()


@pytest.mark.parametrize("at_return", [False, True])
def test_a_tracepoint_is_counted_where_it_fires(at_return: bool) -> None:
    r = _aggregate("tp:net_dev_queue(skb->len > 1)", count_by="comm,skb->len", at_return=at_return)
    (probe,) = r.plan.probes
    assert (probe.kind, probe.stash, len(probe.tests)) == (ProbeKind.TP_BTF, Stash.NONE, 1)
    assert probe.aggregate is not None and r.plan.pairs == ()


def test_functions_are_numbered_in_order_and_keep_their_sources() -> None:
    r = _aggregate("ip_send_skb", "tp:net_dev_queue", "ip_send_skb(return != 0)", "s*", count_by="comm")
    assert [(p.kind, p.aggregate and p.aggregate.key) for p in r.plan.probes] == [
        (ProbeKind.FENTRY, 0),
        (ProbeKind.TP_BTF, 1),
        (ProbeKind.FENTRY, None),
        (ProbeKind.FEXIT, 2),
        (ProbeKind.FENTRY, 3),
        (ProbeKind.FENTRY, 4),
    ]
    assert [t.label for t in r.targets] == [
        "ip_send_skb",
        "tp:net_dev_queue",
        "ip_send_skb",
        "ip_send_skb",
        "seven_args",
        "strncpy_from_user",
    ]
    assert r.sources == (0, 1, 2, 2, 3, 3)
    assert r.plan.pairs == (Pair(2, 3),) and r.plan.probes[2].stash_group == 2
    assert set(key_decoders(r)) == {0, 1, 2, 3, 4}


def test_max_keys_is_the_hashs_size() -> None:
    assert _aggregate("noargs", count_by="cpu").plan.aggregate_entries == DEFAULT_MAX_KEYS
    assert _aggregate("noargs", count_by="cpu", max_keys=3).plan.aggregate_entries == 3


# ---- what a key holds -----------------------------------------------------------------------------


def test_builtins_are_parts_of_their_own() -> None:
    r = _aggregate("noargs", count_by="comm,pid,tid,uid,cpu")
    assert r.plan.probes[0].aggregate.parts == (Builtin.COMM, Builtin.PID, Builtin.TID, Builtin.UID, Builtin.CPU)
    layout = r.plan.aggregate_layout
    assert (layout.part_offsets, layout.size) == ((8, 24, 28, 32, 36), 40)


def test_a_struct_pointer_is_keyed_by_the_pointer_not_the_struct() -> None:
    recorded = _resolved("ip_send_skb(skb, skb->dev)").plan.probes[0].captures
    assert all(c.address for c in recorded)  # a record shows the struct, and where it was
    r = _aggregate("ip_send_skb", count_by="skb,skb->dev")
    skb, dev = r.plan.probes[0].aggregate.parts
    assert (skb.address, skb.in_memory, skb.size) == (False, False, 8)
    assert (dev.address, dev.in_memory, dev.offset, dev.size) == (False, True, 24, 8)
    assert r.plan.aggregate_layout.part_sizes == (8, 8)


def test_a_struct_by_value_is_its_bytes() -> None:
    r = _aggregate("ip_send_skb", count_by="skb->list")
    (part,) = r.plan.probes[0].aggregate.parts
    assert (part.address, part.size, part.in_memory) == (False, 16, True)


@pytest.mark.parametrize(
    "spec,count_by,sizes",
    [
        ("seven_args", "f", [56]),  # 64, less 8 for padding
        ("seven_args", "f,c", [48, 1]),
        ("seven_args", "e->cb,f", [48, MIN_KEY_STRING]),  # the least it takes
        ("strncpy_from_user", "dst,src", [24, 24]),  # shared
        ("strncpy_from_user", "dst,src,count", [16, 16, 8]),
        ("strncpy_from_user", "src,comm", [40, 16]),
    ],
)
def test_char_pointers_share_what_the_other_values_leave(spec: str, count_by: str, sizes: list[int]) -> None:
    r = _aggregate(spec, count_by=count_by)
    parts = r.plan.probes[0].aggregate.parts
    assert [key_part_size(p) for p in parts] == sizes
    # Char pointers and char arrays (e->cb, char[48], its size its own) are read as text.
    strings = [p.label for p in parts if isinstance(p, Capture) and p.string]
    assert strings == [name for name in count_by.split(",") if name in ("f", "dst", "src", "e->cb")]
    assert r.plan.aggregate_layout.size <= 8 + 64


def test_a_tracepoint_and_a_function_share_the_keys_layout() -> None:
    r = _aggregate("ip_send_skb", "tp:net_dev_queue", count_by="skb->len,comm")
    a, b = (p.aggregate for p in r.plan.probes)
    assert (a.key, b.key) == (0, 1) and a.parts[1] is b.parts[1] is Builtin.COMM
    assert a.parts[0].label == b.parts[0].label == "skb->len" and a.parts[0].slot != b.parts[0].slot
    assert r.plan.aggregate_layout.part_sizes == (4, 16)


# ---- SpecErrors: the message, and the caret in the option's text ----------------------------------


@pytest.mark.parametrize(
    "specs,count_by,hist,reason,text,column",
    [
        (
            ["ip_send_skb"],
            "comn",
            "",
            "--count-by: ip_send_skb has no argument 'comn'; did you mean 'comm'? the values it can take: "
            "net, skb, return, comm, pid, tid, uid, cpu",
            "comn",
            0,
        ),
        (
            ["tp:net_dev_queue"],
            "skb,pdi",
            "",
            "--count-by: tp:net_dev_queue has no argument 'pdi'; did you mean 'pid'? the values it can take: "
            "skb, comm, pid, tid, uid, cpu",
            "skb,pdi",
            4,
        ),
        (
            ["ip_send_skb"],
            "",
            "durtion",
            "--hist: ip_send_skb has no argument 'durtion'; did you mean 'duration'? the values it can take: "
            "net, skb, return, duration",
            "durtion",
            0,
        ),
        (
            ["ip_send_skb"],
            "zzz",
            "",
            "--count-by: ip_send_skb has no argument 'zzz'; the values it can take: net, skb, return, comm, pid, "
            "tid, uid, cpu",
            "zzz",
            0,
        ),
        (["ip_send_skb"], "skb,comm->x", "", "--count-by: 'comm' is the task's name; it has no members", None, 8),
        (["ip_send_skb"], "pid.x", "", "--count-by: 'pid' is the process id; it has no members", None, 3),
        (["ip_send_skb"], "cpu[1]", "", "--count-by: 'cpu' is the CPU; it has no members", None, 3),
        (
            ["ip_send_skb"],
            "comm,duration",
            "",
            "--count-by: 'duration' is not a key; --hist duration makes a histogram of it",
            None,
            5,
        ),
        (
            ["ip_send_skb"],
            "",
            "uid",
            "--hist: 'uid' is a key (--count-by uid); --hist takes an integer of the function's or 'duration'",
            None,
            0,
        ),
        (
            ["tp:net_dev_queue"],
            "comm,return",
            "",
            "--count-by: tp:net_dev_queue is a tracepoint, which has no return value",
            None,
            5,
        ),
        (
            ["tp:net_dev_queue"],
            "",
            "return",
            "--hist: tp:net_dev_queue is a tracepoint, which has no return value",
            None,
            0,
        ),
        (
            ["tp:net_dev_queue"],
            "",
            "duration",
            "--hist: tp:net_dev_queue is a tracepoint, which has no duration",
            None,
            0,
        ),
        (["noargs"], "cpu,return", "", "--count-by: noargs returns void", None, 4),
        (["noargs"], "", "return", "--hist: noargs returns void", None, 0),
        (
            ["ip_send_skb"],
            "",
            "skb->dev->name",
            "--hist: 'skb->dev->name' is a string (char[16]); a histogram is of an integer",
            None,
            0,
        ),
        (["seven_args"], "", "f", "--hist: 'f' is a string (const char *); a histogram is of an integer", None, 0),
        (
            ["ip_send_skb"],
            "",
            "skb->list",
            "--hist: 'skb->list' is a struct (struct list_head); a histogram is of an integer",
            None,
            0,
        ),
        (
            ["ip_send_skb"],
            "",
            "skb->dev",
            "--hist: 'skb->dev' is a pointer (struct net_device *); a histogram is of an integer",
            None,
            0,
        ),
        (
            ["ip_send_skb"],
            "skb->lenn",
            "",
            "--count-by: struct sk_buff has no member 'lenn'; did you mean 'len'?",
            None,
            3,
        ),
        (["ip_send_skb"], "", "skb->lenn", "--hist: struct sk_buff has no member 'lenn'; did you mean 'len'?", None, 3),
        (
            ["ip_send_skb"],
            "skb->cb,skb->dev->name,comm",
            "",
            "--count-by: a key of 80 bytes of values (skb->cb 48, skb->dev->name 16, comm 16); at most 64",
            None,
            0,
        ),
        (
            ["seven_args"],
            "e->cb,a,f",
            "",
            "--count-by: no room left in the key's 64 bytes for the text of 'f'",
            None,
            8,
        ),
        (
            ["seven_args"],
            ",".join("abcdefg" * 3)[: 2 * (MAX_KEY_PARTS + 1) - 1],
            "",
            f"--count-by: {MAX_KEY_PARTS + 1} values; at most {MAX_KEY_PARTS}",
            None,
            2 * MAX_KEY_PARTS,
        ),
        (["ip_send_skb"], "", "skb->len,net", "--hist: one value, an integer or 'duration'", None, 9),
        (["ip_send_skb"], ",", "", "--count-by: expected an argument name or 'return', found ','", None, 0),
        (["ip_send_skb"], "skb skb", "", "--count-by: expected ',' between values, found 'skb'", None, 4),
        (["ip_send_skb"], "skb->len > 5", "", "--count-by: expected ',' between values, found '>'", None, 9),
    ],
)
def test_spec_errors_point_into_the_options_text(
    specs: list[str], count_by: str, hist: str, reason: str, text: str | None, column: int
) -> None:
    got = _error(*specs, count_by=count_by, hist=hist)
    assert got == (reason, text if text is not None else (count_by or hist), column)


def test_a_value_over_the_keys_64_bytes_is_refused() -> None:
    reason, text, column = _error("mini_wide_fn", count_by="comm,w->text", kernel=_extra_kernel())
    assert (reason, text, column) == (
        "--count-by: 'w->text' is a 80-byte value; a key holds at most 64 bytes of values: name a member",
        "comm,w->text",
        5,
    )


def test_a_big_endian_value_has_no_histogram_but_its_bitfield_does() -> None:
    from tests.unit.ksnoop.test_resolve import more_kernel

    kernel = more_kernel()
    assert _error("mini_rcv", hist="hdr->proto", kernel=kernel) == (
        "--hist: 'hdr->proto' (__be16) is in network byte order; its log2 would mean nothing",
        "hdr->proto",
        0,
    )
    assert _error("mini_rcv", hist="w", kernel=kernel)[0] == (
        "--hist: 'w' is a double (double); a histogram is of an integer"
    )
    # A bitfield is cut out by the program, in the machine's order: it buckets as it is.
    (probe,) = _aggregate("mini_rcv", hist="hdr->frag", kernel=kernel).plan.probes
    assert probe.aggregate.hist.bitfield is not None and not probe.aggregate.hist_signed
    # A signed enum buckets its negative values apart.
    (probe,) = _aggregate("mini_rcv", hist="prio", kernel=kernel).plan.probes
    assert probe.aggregate.hist_signed


def test_duration_with_members_says_it_has_none() -> None:
    reason, _, _ = _error("ip_send_skb", hist="duration->x")
    assert "did you mean 'duration'" not in reason and "no members" in reason


def test_a_kretprobe_reads_no_argument() -> None:
    kernel = _kprobe_kernel()
    assert _error("alone", count_by="return,a", kernel=kernel, function_kind=ProbeKind.KPROBE) == (
        "--count-by: a kretprobe cannot read 'a' of alone: argument registers are not kept until the return, "
        "which these values need (fentry/fexit can)",
        "return,a",
        7,
    )
    assert _error("alone", count_by="a", hist="duration", kernel=kernel, function_kind=ProbeKind.KPROBE)[2] == 0
    assert _error("alone", count_by="return", hist="b", kernel=kernel, function_kind=ProbeKind.KPROBE)[:2] == (
        "--hist: a kretprobe cannot read 'b' of alone: argument registers are not kept until the return, "
        "which these values need (fentry/fexit can)",
        "b",
    )


def test_a_kprobe_counts_its_arguments_at_entry_from_their_registers() -> None:
    r = _aggregate("alone", count_by="a,b", hist="a", kernel=_kprobe_kernel(), function_kind=ProbeKind.KPROBE)
    (probe,) = r.plan.probes
    assert probe.kind is ProbeKind.KPROBE and probe.context_offsets  # pt_regs offsets of di, si
    r = _aggregate("alone", count_by="return", kernel=_kprobe_kernel(), function_kind=ProbeKind.KPROBE)
    entry, exit_ = r.plan.probes
    assert (entry.kind, exit_.kind, exit_.requires_entry) == (ProbeKind.KPROBE, ProbeKind.KRETPROBE, True)
    assert entry.context_offsets and exit_.context_offsets


def test_a_kprobe_without_pt_regs_in_btf_is_an_error_at_the_value() -> None:
    reason, text, column = _error("ip_send_skb", count_by="skb->len", function_kind=ProbeKind.KPROBE)
    assert reason.startswith("--count-by: cannot put a kprobe on ip_send_skb") and (text, column) == ("skb->len", 0)


# ---- globs ----------------------------------------------------------------------------------------


def test_a_glob_leaves_out_the_functions_the_values_do_not_fit_with_a_note() -> None:
    r = _aggregate("s*", count_by="a")
    assert [t.label for t in r.targets] == ["seven_args"]
    assert r.notes[-1] == (
        "ksnoop: warning: left out 1 function matching 's*' whose values cannot be counted as asked (the first: "
        "--count-by: strncpy_from_user has no argument 'a'; the values it can take: dst, src, count, return, comm, "
        "pid, tid, uid, cpu): strncpy_from_user"
    )


def test_a_glob_the_values_fit_nowhere_is_the_first_functions_error() -> None:
    reason, text, column = _error("s*", count_by="comm,zz")
    assert reason.startswith("--count-by: seven_args has no argument 'zz'") and (text, column) == ("comm,zz", 5)


def test_a_glob_where_the_return_is_void_is_left_out_of_a_return_histogram() -> None:
    r = _aggregate("*", hist="return")
    labels = {t.label for t in r.targets}
    assert "noargs" not in labels and {"ip_send_skb", "seven_args", "strncpy_from_user"} <= labels
    assert "returns void" in r.notes[-1] and r.notes[-1].endswith(": __probestub_net_dev_queue, noargs")


def test_a_globs_note_counts_the_functions_kept() -> None:
    r = _aggregate("s*", count_by="a")
    assert "ksnoop: tracing 1 function matching 's*'" in r.notes


def test_values_that_fit_each_function_but_not_all_together_are_a_usage_error() -> None:
    # mini_fa's key: x 56 bytes, y 4; mini_fb's: x 4, y 56. Each fits; as large as their largest, 112.
    with pytest.raises(UsageError, match="--count-by: a key of 112 bytes of values; at most 64"):
        _aggregate("mini_f*", count_by="p->x,p->y", kernel=_extra_kernel())
    for name in ("mini_fa", "mini_fb"):
        assert _aggregate(name, count_by="p->x,p->y", kernel=_extra_kernel()).plan.aggregate_layout.size == 72


# ---- AggregateRequest -----------------------------------------------------------------------------


def test_the_request_parses_its_options() -> None:
    request = AggregateRequest("comm, skb->dev->name", "duration")
    assert [k.text for k in request.keys()] == ["comm", "skb->dev->name"]
    assert request.hist_value().base == DURATION
    assert AggregateRequest().keys() == () and AggregateRequest().hist_value() is None
    with pytest.raises(SpecError, match="--count-by: empty"):
        AggregateRequest(" ").keys()


# ---- reading back -----------------------------------------------------------------------------------


def _key(resolved: ResolvedTrace, function: int, *values: bytes, failed: int = 0, bucket: int = 0) -> bytes:
    """A raw key of `resolved`'s layout: each value's bytes at its offset."""
    layout = resolved.plan.aggregate_layout
    key = bytearray(layout.size)
    struct.pack_into("=IHH", key, 0, function, failed, bucket)
    for value, offset in zip(values, layout.part_offsets):
        key[offset : offset + len(value)] = value
    return bytes(key)


def test_dropped_sums_every_cpu() -> None:
    assert dropped([struct.pack("=QQ", 3, 1), struct.pack("=QQ", 4, 2)]) == Dropped(7, 3)
    assert dropped([]) == Dropped()


def test_key_totals_gathers_each_keys_buckets_most_counted_first() -> None:
    r = _aggregate("ip_send_skb", "tp:net_dev_queue", count_by="comm", hist="skb->len")
    curl, ping = b"curl", b"ping"
    counts = {
        _key(r, 0, curl, bucket=3): 2,
        _key(r, 0, curl, bucket=HIST_NEGATIVE): 1,
        _key(r, 0, ping, bucket=0): 1,
        _key(r, 0, ping, bucket=7): 0,  # counted 0 (in an interval, say): left out
        _key(r, 1, curl, bucket=HIST_UNREADABLE): 4,
        _key(r, 1, ping, bucket=1): 0,
    }
    totals = key_totals(key_decoders(r), counts, hist=True)
    assert totals == [
        KeyTotal(1, "tp:net_dev_queue", ("curl",), 4, {HIST_UNREADABLE: 4}),
        KeyTotal(0, "ip_send_skb", ("curl",), 3, {3: 2, HIST_NEGATIVE: 1}),
        KeyTotal(0, "ip_send_skb", ("ping",), 1, {0: 1}),
    ]
    assert list(totals[1].buckets) == [3, HIST_NEGATIVE]  # in bucket order
    without = key_totals(key_decoders(r), counts, hist=False)
    assert [(t.label, t.values, t.count, t.buckets) for t in without] == [
        ("tp:net_dev_queue", ("curl",), 4, None),
        ("ip_send_skb", ("curl",), 3, None),
        ("ip_send_skb", ("ping",), 1, None),
    ]


def test_key_totals_ties_go_by_label() -> None:
    r = _aggregate("tp:net_dev_queue", "ip_send_skb", count_by="cpu")
    counts = {_key(r, 0, U64.pack(1)[:4]): 2, _key(r, 1, U64.pack(1)[:4]): 2}
    assert [t.label for t in key_totals(key_decoders(r), counts, hist=False)] == ["ip_send_skb", "tp:net_dev_queue"]


def test_a_failed_value_decodes_as_read_failed() -> None:
    from ksnoop.output.decode import READ_FAILED

    r = _aggregate("tp:net_dev_queue", count_by="skb->len,skb->dev->name")
    counts = {_key(r, 0, struct.pack("=I", 9), failed=0b10): 1}
    assert key_totals(key_decoders(r), counts, hist=False) == [
        KeyTotal(0, "tp:net_dev_queue", (9, READ_FAILED), 1, None)
    ]


# ---- the counts of every CPU, from programs run ----------------------------------------------------

TRACE = _aggregate("tp:net_dev_queue", count_by="comm", max_keys=2)


def _cpu(n: int) -> VM:
    from tests.unit.bpf.test_codegen import _memory

    return VM(_memory(), comm=b"curl", cpu=n)


def _fire(vm: VM, times: int = 1) -> None:
    from tests.unit.bpf.test_codegen import SKB

    for _ in range(times):
        vm.run(generate(TRACE.plan, 0), [SKB])


def test_each_cpus_counts_are_summed_as_the_loop_reads_them() -> None:
    cpu0, cpu1 = _cpu(0), _cpu(1)
    _fire(cpu0, 2)
    _fire(cpu1, 3)
    cpu1.comm = b"ping"
    _fire(cpu1)
    aggregates = PerCPUArray([cpu0, cpu1], MapRole.AGGREGATE)
    per_cpu = aggregates.lookup_all_percpu()
    assert sorted(len(v) for v in per_cpu.values()) == [2, 2]  # a value per CPU, zeros where untouched
    totals = key_totals(key_decoders(TRACE), aggregates.sum_all_percpu(), hist=False)
    assert [(t.values, t.count) for t in totals] == [(("curl",), 5), (("ping",), 1)]


def test_each_report_holds_the_calls_since_the_last() -> None:
    cpus = [_cpu(0), _cpu(1)]
    counts = Counts(TRACE, PerCPUArray(cpus, MapRole.AGGREGATE), PerCPUArray(cpus, MapRole.AGGREGATE_DROPS), hist=False)
    _fire(cpus[0], 2)
    _fire(cpus[1])
    first = counts.since_last(1, 1.0)
    assert [(t.values, t.count) for t in first.totals] == [(("curl",), 3)]
    assert (first.dropped, first.interval, first.elapsed_s) == (Dropped(), 1, 1.0)
    second = counts.since_last(2, 2.0)
    assert second.totals == [] and second.dropped == Dropped()  # nothing since: nothing to report
    _fire(cpus[1])
    for comm in (b"ping", b"wget", b"wget", b"nc"):  # a hash of 2: wget and nc are dropped
        cpus[0].comm = comm
        _fire(cpus[0])
    third = counts.since_last(3, 3.0)
    assert sorted((t.values, t.count) for t in third.totals) == [(("curl",), 1), (("ping",), 1)]
    assert third.dropped == Dropped(calls=3, keys=2)
    _fire(cpus[0])  # nc again: a dropped call, no new key
    assert counts.since_last(None, 4.0).dropped == Dropped(calls=1, keys=0)
