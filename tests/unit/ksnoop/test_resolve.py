# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop/spec/resolve.py and resolve_dump.py over the mini kernel's BTF: what each value becomes (context
slot, pointer hops, offset, size, bitfield, string), what each comparison becomes (a typed, range-checked,
byte-swapped constant), and every SpecError the types can provoke, with its message and caret column."""

from __future__ import annotations

import functools
import struct
from pathlib import Path

import pytest

from bpf.codegen import generate
from bpf.plan import MAX_CAPTURES, Bitfield, Capture, CompareOp, Predicate, Probe, ProbeKind, Stash
from bpf.plan import Test as ValueTest  # not named Test*, or pytest tries to collect it
from btf import BTF
from btf.uapi import FuncLinkage
from ksnoop.errors import RuntimeFailure, UsageError
from ksnoop.output.decode import build_decoder
from ksnoop.spec.iter_targets import IterTargets, LinkInfo
from ksnoop.spec.language import SpecError, parse_spec
from ksnoop.spec.resolve import STRING_SIZE, ResolvedTrace, resolve, resolve_path
from ksnoop.spec.resolve_dump import IterParams, parse_dump_spec, resolve_dump
from ksnoop.spec.targets import KernelBTF
from tests.support import minikernel, miniiter, records
from tests.support.bpfvm import VM
from tests.support.btfbuilder import BTFBuilder
from tests.unit.bpf.test_golden_listings import check_golden, check_round_trip, render_plan

IDS = records.IDS


# ---- what the mini kernel lacks, built here so that its golden outputs stay put ------------------------------------


def _tracepoint(
    b: BTFBuilder, name: str, params: list[tuple[str, int]], void_ptr: int, *, names_from: str | None = "__probestub_"
) -> None:
    """btf_trace_<name>, a pointer to a prototype with unnamed params (`void *__data` first), and the
    FUNC whose prototype names them (`names_from`: __probestub_ or __traceiter_; None: no such FUNC)."""
    proto = b.func_proto(0, [("", void_ptr)] + [("", type_id) for _, type_id in params])
    b.typedef(f"btf_trace_{name}", b.ptr(proto))
    if names_from is not None:
        named = b.func_proto(0, [("__data", void_ptr)] + params)
        b.func(names_from + name, named, FuncLinkage.STATIC)


def build_more(byteorder: str = "little") -> tuple[bytes, dict[str, int]]:
    """The mini kernel and, after its types (so their ids stay put), types and targets it lacks."""
    b, ids = minikernel.make_builder()
    static = FuncLinkage.STATIC
    ids["__be16"] = b.typedef("__be16", ids["__u16"])
    ids["__le16"] = b.typedef("__le16", ids["__u16"])
    ids["__be32"] = b.typedef("__be32", ids["u32"])
    # struct mini_hdr { __be16 proto; __le16 len; __be32 saddr;      0 2 4
    #                   __be16 frag:13, more:3; double weight; };   8 (bits 64, 77) 16; size 24
    ids["struct mini_hdr"] = b.struct(
        "mini_hdr",
        24,
        [
            ("proto", ids["__be16"], 0),
            ("len", ids["__le16"], 16),
            ("saddr", ids["__be32"], 32),
            ("frag", ids["__be16"], 64, 13),
            ("more", ids["__be16"], 77, 3),
            ("weight", ids["double"], 128),
        ],
    )
    ids["struct mini_hdr *"] = b.ptr(ids["struct mini_hdr"])
    # struct holder { struct sock sk; }: a member whose type is only declared, so it has no size.
    ids["struct holder"] = b.struct("holder", 8, [("sk", ids["struct sock"], 0)])
    ids["struct holder *"] = b.ptr(ids["struct holder"])
    ids["enum mini_prio"] = b.enum("mini_prio", 4, [("MINI_PRIO_LOW", -1), ("MINI_PRIO_HIGH", 1)], signed=True)
    ids["struct sk_buff **"] = b.ptr(ids["struct sk_buff *"])
    # int mini_rcv(struct mini_hdr *hdr, enum skb_drop_reason reason, enum mini_flags64 flags,
    #              struct list_head l, double w, long n, struct sk_buff **pp, enum mini_prio prio)
    # l is passed by value in two u64 slots (3 and 4).
    ids["mini_rcv"] = b.func(
        "mini_rcv",
        b.func_proto(
            ids["int"],
            [
                ("hdr", ids["struct mini_hdr *"]),
                ("reason", ids["enum skb_drop_reason"]),
                ("flags", ids["enum mini_flags64"]),
                ("l", ids["struct list_head"]),
                ("w", ids["double"]),
                ("n", ids["long int"]),
                ("pp", ids["struct sk_buff **"]),
                ("prio", ids["enum mini_prio"]),
            ],
        ),
        static,
    )
    # void mini_hold(struct holder *h)
    ids["mini_hold"] = b.func("mini_hold", b.func_proto(0, [("h", ids["struct holder *"])]), static)
    # int mini_tagged(const char __rcu *name): a type tag other than __user
    ids["const char __rcu *"] = b.ptr(b.type_tag("rcu", ids["const char"]))
    ids["mini_tagged"] = b.func("mini_tagged", b.func_proto(ids["int"], [("name", ids["const char __rcu *"])]), static)
    # struct task_struct { pid_t pid; char comm[16]; };  0 4; size 20
    ids["pid_t"] = b.typedef("pid_t", ids["int"])
    ids["struct task_struct"] = b.struct("task_struct", 20, [("pid", ids["pid_t"], 0), ("comm", ids["char[16]"], 32)])
    ids["struct task_struct *"] = b.ptr(ids["struct task_struct"])
    ids["struct linux_binprm *"] = b.ptr(b.fwd("linux_binprm"))
    void_ptr = ids["void *"]
    _tracepoint(
        b,
        "sched_process_exec",
        [("p", ids["struct task_struct *"]), ("old_pid", ids["pid_t"]), ("bprm", ids["struct linux_binprm *"])],
        void_ptr,
    )
    _tracepoint(b, "mini_bare", [("skb", ids["struct sk_buff *"])], void_ptr, names_from=None)
    _tracepoint(
        b, "mini_iter", [("skb", ids["struct sk_buff *"]), ("len", ids["int"])], void_ptr, names_from="__traceiter_"
    )
    # Structs passed by value, each filling consecutive slots; a member's byte offset picks its slot.
    # struct mini_pair { int lo; __u16 id; __u16 flags:4, more:12; };       0 4 6 (bits 48, 52); size 8
    ids["struct mini_pair"] = b.struct(
        "mini_pair",
        8,
        [
            ("lo", ids["int"], 0),
            ("id", ids["__u16"], 32),
            ("flags", ids["__u16"], 48, 4),
            ("more", ids["__u16"], 52, 12),
        ],
    )
    # struct mini_packed { int tag; struct list_head *ptr; __be16 port; char code[2]; } __packed;  0 4 12 14; size 16
    ids["char[2]"] = b.array(ids["char"], 2, ids["int"])
    ids["struct mini_packed"] = b.struct(
        "mini_packed",
        16,
        [
            ("tag", ids["int"], 0),
            ("ptr", ids["struct list_head *"], 32),
            ("port", ids["__be16"], 96),
            ("code", ids["char[2]"], 112),
        ],
    )
    # int mini_pairs(struct mini_pair p, struct mini_packed k, long after): slots 0, 1 and 2, 3
    ids["mini_pairs"] = b.func(
        "mini_pairs",
        b.func_proto(
            ids["int"],
            [
                ("p", ids["struct mini_pair"]),
                ("k", ids["struct mini_packed"]),
                ("after", ids["long int"]),
            ],
        ),
        static,
    )
    # Values in registers a program copies only in part or not at all: struct mini_rgb { __u8 r, g, b; }
    # (3 bytes); struct mini_trio { int a, b, c; } (12 bytes: a slot and half of the next); and
    # void mini_big(struct mini_hdr h, struct mini_rgb c, struct mini_trio t, int x): slots 0-2, 3, 4-5, 6
    ids["struct mini_rgb"] = b.struct(
        "mini_rgb", 3, [("r", ids["__u8"], 0), ("g", ids["__u8"], 8), ("b", ids["__u8"], 16)]
    )
    ids["struct mini_trio"] = b.struct(
        "mini_trio", 12, [("a", ids["int"], 0), ("b", ids["int"], 32), ("c", ids["int"], 64)]
    )
    ids["mini_big"] = b.func(
        "mini_big",
        b.func_proto(
            0,
            [
                ("h", ids["struct mini_hdr"]),
                ("c", ids["struct mini_rgb"]),
                ("t", ids["struct mini_trio"]),
                ("x", ids["int"]),
            ],
        ),
        static,
    )
    # struct list_head mini_pop(long n): a 16-byte return value
    ids["mini_pop"] = b.func("mini_pop", b.func_proto(ids["struct list_head"], [("n", ids["long int"])]), static)
    return b.to_bytes(byteorder), ids


MORE_IDS = build_more()[1]


@functools.lru_cache(maxsize=None)
def _more_btf(byteorder: str = "little") -> BTF:
    return BTF.from_bytes(build_more(byteorder)[0])


def more_kernel(byteorder: str = "little") -> KernelBTF:
    return KernelBTF(_more_btf(byteorder), [])


def _resolve(*specs: str, kernel: KernelBTF | None = None, **kwargs) -> ResolvedTrace:
    return resolve([parse_spec(s) for s in specs], kernel or records.kernel(), **kwargs)


def _first_probe(spec: str, kernel: KernelBTF | None = None) -> Probe:
    """The entry (or tracepoint) probe of one spec."""
    return _resolve(spec, kernel=kernel).plan.probes[0]


def _spec_error(resolving, spec: str) -> SpecError:
    """The SpecError `resolving()` raises about `spec`, drawn as the CLI shows it."""
    with pytest.raises(SpecError) as err:
        resolving()
    assert err.value.text == spec
    assert str(err.value) == f"{err.value.reason}\n  {err.value.text}\n  {' ' * err.value.position}^"
    assert err.value.exit_status == 2
    return err.value


def _trace_error(spec: str, kernel: KernelBTF) -> SpecError:
    return _spec_error(lambda: resolve([parse_spec(spec)], kernel), spec)


# ---- values: where each lives and how much of it a record carries ------------------------------------------------

UINT, INT, CHAR = IDS["unsigned int"], IDS["int"], IDS["char"]
SK_BUFF = IDS["struct sk_buff"]

# (spec with one value, the capture it becomes), on the mini kernel. `slot` is the u64 context slot of the
# argument; `in_memory` says the base is a pointer followed to reach the value; `hops` are the offsets of the
# pointers loaded on the way, `offset`/`size` where the value is in the last object reached.
VALUES = [
    # arguments in registers
    ("seven_args(b)", Capture("b", 1, size=8, type_id=IDS["long int"])),
    ("seven_args(c)", Capture("c", 2, size=1, type_id=CHAR)),
    ("seven_args(g)", Capture("g", 6, size=4, type_id=IDS["u32"])),
    # members through the argument's pointer
    ("ip_send_skb(skb->len)", Capture("skb->len", 1, in_memory=True, offset=80, size=4, type_id=UINT)),
    (
        "ip_send_skb(skb->protocol)",
        Capture("skb->protocol", 1, in_memory=True, offset=86, size=2, type_id=IDS["__u16"]),
    ),
    # members of anonymous structs and unions are the outer struct's
    (
        "ip_send_skb(skb->list.prev)",
        Capture("skb->list.prev", 1, hops=(8,), in_memory=True, size=16, type_id=IDS["struct list_head"], address=True),
    ),
    # nested members: each '->' but the first loads a pointer at an offset (a hop)
    (
        "ip_send_skb(skb->dev->ifindex)",
        Capture("skb->dev->ifindex", 1, hops=(24,), in_memory=True, offset=16, size=4, type_id=INT),
    ),
    (
        "ip_send_skb(skb->next->dev->name)",
        Capture("skb->next->dev->name", 1, hops=(0, 24), in_memory=True, size=16, type_id=IDS["char[16]"]),
    ),
    # arrays, and indexes into arrays and through pointers
    ("ip_send_skb(skb->cb)", Capture("skb->cb", 1, in_memory=True, offset=32, size=48, type_id=IDS["char[48]"])),
    ("ip_send_skb(skb->cb[3])", Capture("skb->cb[3]", 1, in_memory=True, offset=35, size=1, type_id=CHAR)),
    (
        "ip_send_skb(skb->dev->name[0xf])",
        Capture("skb->dev->name[15]", 1, hops=(24,), in_memory=True, offset=15, size=1, type_id=CHAR),
    ),
    ("ip_send_skb(skb[1].len)", Capture("skb[1].len", 1, in_memory=True, offset=184, size=4, type_id=UINT)),
    ("ip_send_skb(skb[2])", Capture("skb[2]", 1, in_memory=True, offset=208, size=104, type_id=SK_BUFF)),
    # bitfields: the bytes that hold them and the bits within
    (
        "ip_send_skb(skb->pkt_type)",
        Capture("skb->pkt_type", 1, in_memory=True, offset=84, size=1, bitfield=Bitfield(0, 3), type_id=IDS["__u8"]),
    ),
    (
        "ip_send_skb(skb->ignore_df)",
        Capture("skb->ignore_df", 1, in_memory=True, offset=84, size=1, bitfield=Bitfield(3, 1), type_id=IDS["__u8"]),
    ),
    (
        "ip_send_skb(skb->cloned)",
        Capture("skb->cloned", 1, in_memory=True, offset=84, size=1, bitfield=Bitfield(4, 1), type_id=IDS["__u8"]),
    ),
    # a pointer to a struct is followed and the struct copied whole, after its address
    ("ip_send_skb(skb)", Capture("skb", 1, in_memory=True, size=104, type_id=SK_BUFF, address=True)),
    ("ip_send_skb(net)", Capture("net", 0, in_memory=True, size=8, type_id=IDS["struct net"], address=True)),
    (
        "ip_send_skb(skb->next)",
        Capture("skb->next", 1, hops=(0,), in_memory=True, size=104, type_id=SK_BUFF, address=True),
    ),
    # other pointers are shown as they are: to a declared-only struct, to a function, to bytes
    ("ip_send_skb(skb->sk)", Capture("skb->sk", 1, in_memory=True, offset=16, size=8, type_id=IDS["struct sock *"])),
    (
        "ip_send_skb(skb->destructor)",
        Capture("skb->destructor", 1, in_memory=True, offset=88, size=8, type_id=IDS["void (*)(struct sk_buff *)"]),
    ),
    (
        "ip_send_skb(skb->data)",
        Capture("skb->data", 1, in_memory=True, offset=96, size=8, type_id=IDS["unsigned char *"]),
    ),
    # char pointers are strings (a __user one read from user memory)
    ("seven_args(f)", Capture("f", 5, in_memory=True, size=STRING_SIZE, string=True, type_id=IDS["const char *"])),
    ("printk(fmt)", Capture("fmt", 0, in_memory=True, size=STRING_SIZE, string=True, type_id=IDS["const char *"])),
    ("strncpy_from_user(dst)", Capture("dst", 0, in_memory=True, size=STRING_SIZE, string=True, type_id=IDS["char *"])),
    (
        "strncpy_from_user(src)",
        Capture(
            "src",
            1,
            in_memory=True,
            size=STRING_SIZE,
            string=True,
            user_memory=True,
            type_id=IDS["const char __user *"],
        ),
    ),
    # a tracepoint's arguments start at slot 0: its `void *__data` is not one
    ("tp:net_dev_queue(skb->len)", Capture("skb->len", 0, in_memory=True, offset=80, size=4, type_id=UINT)),
    (
        "tp:net_dev_queue(skb->dev->name[0x2])",
        Capture("skb->dev->name[2]", 0, hops=(24,), in_memory=True, offset=2, size=1, type_id=CHAR),
    ),
]


@pytest.mark.parametrize("spec,capture", VALUES, ids=[s for s, _ in VALUES])
def test_values(spec: str, capture: Capture) -> None:
    probe = _first_probe(spec)
    assert probe.captures == (capture,)
    assert probe.tests == ()


MORE_VALUES = [
    # a struct passed by value takes two slots: what follows it moves up
    ("mini_rcv(n)", Capture("n", 6, size=8, type_id=MORE_IDS["long int"])),
    ("mini_rcv(prio)", Capture("prio", 8, size=4, type_id=MORE_IDS["enum mini_prio"])),
    (
        "mini_rcv(l.next)",
        Capture("l.next", 3, in_memory=True, size=16, type_id=MORE_IDS["struct list_head"], address=True),
    ),
    ("mini_rcv(reason)", Capture("reason", 1, size=4, type_id=MORE_IDS["enum skb_drop_reason"])),
    ("mini_rcv(flags)", Capture("flags", 2, size=8, type_id=MORE_IDS["enum mini_flags64"])),
    # a pointer the verifier will not let a program load from the context (to a pointer, to a fwd)
    ("mini_rcv(pp)", Capture("pp", 7, size=8, type_id=MORE_IDS["struct sk_buff **"], opaque_slot=True)),
    (
        "tp:sched_process_exec(bprm)",
        Capture("bprm", 2, size=8, type_id=MORE_IDS["struct linux_binprm *"], opaque_slot=True),
    ),
    # a string behind a type tag other than __user is read from kernel memory
    (
        "mini_tagged(name)",
        Capture("name", 0, in_memory=True, size=STRING_SIZE, string=True, type_id=MORE_IDS["const char __rcu *"]),
    ),
    # __be16 bitfields
    (
        "mini_rcv(hdr->frag)",
        Capture("hdr->frag", 0, in_memory=True, offset=8, size=2, bitfield=Bitfield(0, 13), type_id=MORE_IDS["__be16"]),
    ),
    (
        "mini_rcv(hdr->more)",
        Capture("hdr->more", 0, in_memory=True, offset=9, size=1, bitfield=Bitfield(5, 3), type_id=MORE_IDS["__be16"]),
    ),
    ("mini_rcv(hdr->weight)", Capture("hdr->weight", 0, in_memory=True, offset=16, size=8, type_id=MORE_IDS["double"])),
    # l, a struct list_head passed by value, fills slots 3 (next) and 4 (prev): each member is its own slot,
    # and a pointer followed from it starts there
    (
        "mini_rcv(l.prev)",
        Capture("l.prev", 4, in_memory=True, size=16, type_id=MORE_IDS["struct list_head"], address=True),
    ),
    (
        "mini_rcv(l.prev->next)",
        Capture(
            "l.prev->next", 4, hops=(0,), in_memory=True, size=16, type_id=MORE_IDS["struct list_head"], address=True
        ),
    ),
    (
        "mini_rcv(l.next->prev)",
        Capture(
            "l.next->prev", 3, hops=(8,), in_memory=True, size=16, type_id=MORE_IDS["struct list_head"], address=True
        ),
    ),
    (
        "mini_rcv(l.prev->prev->next)",
        Capture(
            "l.prev->prev->next",
            4,
            hops=(8, 0),
            in_memory=True,
            size=16,
            type_id=MORE_IDS["struct list_head"],
            address=True,
        ),
    ),
    # a member past the first byte of its slot is the slot, whole, with the member's bits cut out of it
    ("mini_pairs(p.lo)", Capture("p.lo", 0, size=4, type_id=MORE_IDS["int"])),
    ("mini_pairs(p.id)", Capture("p.id", 0, size=8, bitfield=Bitfield(32, 16), type_id=MORE_IDS["__u16"])),
    ("mini_pairs(p.flags)", Capture("p.flags", 0, size=8, bitfield=Bitfield(48, 4), type_id=MORE_IDS["__u16"])),
    ("mini_pairs(p.more)", Capture("p.more", 0, size=8, bitfield=Bitfield(52, 12), type_id=MORE_IDS["__u16"])),
    ("mini_pairs(k.tag)", Capture("k.tag", 1, size=4, type_id=MORE_IDS["int"])),
    ("mini_pairs(after)", Capture("after", 3, size=8, type_id=MORE_IDS["long int"])),
    # a struct of up to 16 bytes passed by value is copied whole from its two slots
    ("mini_rcv(l)", Capture("l", 3, size=16, type_id=MORE_IDS["struct list_head"])),
    ("mini_pairs(k)", Capture("k", 1, size=16, type_id=MORE_IDS["struct mini_packed"])),
    ("mini_big(t)", Capture("t", 4, size=12, type_id=MORE_IDS["struct mini_trio"])),
    ("mini_big(x)", Capture("x", 6, size=4, type_id=MORE_IDS["int"])),
]


@pytest.mark.parametrize("spec,capture", MORE_VALUES, ids=[s for s, _ in MORE_VALUES])
def test_values_of_types_the_mini_kernel_lacks(spec: str, capture: Capture) -> None:
    assert _first_probe(spec, more_kernel()).captures == (capture,)


def _entry_values(spec: str, ctx: list[int], memory: dict[int, bytes] | None = None) -> list[tuple]:
    """Each record's values, decoded, when the spec's entry program runs over `ctx` in the BPF interpreter."""
    resolved = _resolve(spec, kernel=more_kernel())
    run = VM(memory or {}).run(generate(resolved.plan, 0), ctx)
    decode = build_decoder(resolved.plan, 0, resolved.targets[0].btf)
    return [decode(record).values for record in run.records]


def test_the_members_of_a_struct_passed_by_value_are_read_from_their_own_slots() -> None:
    # mini_rcv's l = {next = a, prev = b} fills slots 3 and 4: l.prev is the list_head at b, not l.next's at a.
    a, b, c = 0x1000, 0x2000, 0x3000
    memory = {a: struct.pack("<QQ", 0xA1, c), b: struct.pack("<QQ", 0xB1, 0xB2), c: struct.pack("<QQ", 0xC1, 0xC2)}
    ctx = [0, 0, 0, a, b, 0, 0, 0, 0]
    (values,) = _entry_values("mini_rcv(l.prev != 0x1000, l.prev, l.next->prev)", ctx, memory)
    assert [(v.address, v.data) for v in values] == [(b, memory[b]), (c, memory[c])]
    assert _entry_values("mini_rcv(l.prev != 0x2000)", ctx, memory) == []
    # members inside one slot: p = {lo = -5, id = 7, flags = 3, more = 0xabc} in slot 0, k.tag in slot 1
    slot0 = (-5 & 0xFFFFFFFF) | 7 << 32 | 3 << 48 | 0xABC << 52
    spec = "mini_pairs(p.id == 7, p.lo, p.id, p.flags, p.more, k.tag)"
    assert _entry_values(spec, [slot0, 9 | 0xDEAD << 32, 0, 0]) == [(7, -5, 3, 0xABC, 9)]  # p.id first: tested
    assert _entry_values(spec, [slot0 + (1 << 32), 9, 0, 0]) == []  # p.id is 8


def test_a_value_named_twice_is_shown_once_and_tested_once_per_comparison() -> None:
    probe = _first_probe("seven_args(a > 1, a, a != 5)")
    a = Capture("a", 0, size=4, type_id=INT)
    assert probe.captures == (a,)
    assert probe.tests == (
        ValueTest(a, Predicate(CompareOp.GT, 1, True)),
        ValueTest(a, Predicate(CompareOp.NE, 5, True)),
    )


def test_no_items_show_every_argument_and_the_return_value() -> None:
    entry, exit_ = _resolve("ip_send_skb").plan.probes
    assert [(c.label, c.slot) for c in entry.captures] == [("net", 0), ("skb", 1)]
    assert exit_.captures == (Capture("return", 2, size=4, type_id=INT),)


# ---- comparisons: the constant, typed, range-checked and in the value's byte order -------------------------------


def _test(spec: str, kernel: KernelBTF | None = None) -> ValueTest:
    (test,) = _first_probe(spec, kernel).tests
    return test


LEN = Capture("skb->len", 1, in_memory=True, offset=80, size=4, type_id=UINT)
DEV = Capture("skb->dev", 1, in_memory=True, offset=24, size=8, type_id=IDS["struct net_device *"])
DEV_NAME = Capture("skb->dev->name", 1, hops=(24,), in_memory=True, size=16, type_id=IDS["char[16]"])
F_STRING = Capture("f", 5, in_memory=True, size=STRING_SIZE, string=True, type_id=IDS["const char *"])

PREDICATES = [
    ("ip_send_skb(skb->len > 1500)", ValueTest(LEN, Predicate(CompareOp.GT, 1500))),
    ("ip_send_skb(skb->len <= 0xffffffff)", ValueTest(LEN, Predicate(CompareOp.LE, 0xFFFFFFFF))),
    ("seven_args(a < -1)", ValueTest(Capture("a", 0, size=4, type_id=INT), Predicate(CompareOp.LT, -1, True))),
    (
        "seven_args(b >= -9223372036854775808)",
        ValueTest(Capture("b", 1, size=8, type_id=IDS["long int"]), Predicate(CompareOp.GE, -(1 << 63), True)),
    ),
    (
        "seven_args(d == 18446744073709551615)",
        ValueTest(Capture("d", 3, size=8, type_id=IDS["long unsigned int"]), Predicate(CompareOp.EQ, (1 << 64) - 1)),
    ),
    ("seven_args(c == 255)", ValueTest(Capture("c", 2, size=1, type_id=CHAR), Predicate(CompareOp.EQ, 255))),
    # a pointer compares with NULL or an address, and the test reads the pointer, not what it points to
    ("ip_send_skb(skb->dev != NULL)", ValueTest(DEV, Predicate(CompareOp.NE, 0))),
    ("ip_send_skb(skb->dev == 0xffff888000000000)", ValueTest(DEV, Predicate(CompareOp.EQ, 0xFFFF888000000000))),
    # a bitfield's range is its bits
    (
        "ip_send_skb(skb->pkt_type == 7)",
        ValueTest(
            Capture(
                "skb->pkt_type", 1, in_memory=True, offset=84, size=1, bitfield=Bitfield(0, 3), type_id=IDS["__u8"]
            ),
            Predicate(CompareOp.EQ, 7),
        ),
    ),
    (
        "ip_send_skb(skb->cloned != 1)",
        ValueTest(
            Capture("skb->cloned", 1, in_memory=True, offset=84, size=1, bitfield=Bitfield(4, 1), type_id=IDS["__u8"]),
            Predicate(CompareOp.NE, 1),
        ),
    ),
    # strings: a char array up to its length (no NUL needed), a char pointer read as a string
    ('ip_send_skb(skb->dev->name == "lo")', ValueTest(DEV_NAME, Predicate(CompareOp.EQ, b"lo"))),
    (
        'ip_send_skb(skb->dev->name != "0123456789abcdef")',
        ValueTest(DEV_NAME, Predicate(CompareOp.NE, b"0123456789abcdef")),
    ),
    ('seven_args(f == "/etc/passwd")', ValueTest(F_STRING, Predicate(CompareOp.EQ, b"/etc/passwd"))),
    ('seven_args(f == "")', ValueTest(F_STRING, Predicate(CompareOp.EQ, b""))),
    (
        'strncpy_from_user(src != "x")',
        ValueTest(
            Capture(
                "src",
                1,
                in_memory=True,
                size=STRING_SIZE,
                string=True,
                user_memory=True,
                type_id=IDS["const char __user *"],
            ),
            Predicate(CompareOp.NE, b"x"),
        ),
    ),
    # a plain __u16 is in the BTF's own order: no swap
    (
        "ip_send_skb(skb->protocol == 0x0800)",
        ValueTest(
            Capture("skb->protocol", 1, in_memory=True, offset=86, size=2, type_id=IDS["__u16"]),
            Predicate(CompareOp.EQ, 0x0800),
        ),
    ),
]


@pytest.mark.parametrize("spec,test", PREDICATES, ids=[s for s, _ in PREDICATES])
def test_predicates(spec: str, test: ValueTest) -> None:
    assert _test(spec) == test


PROTO = Capture("hdr->proto", 0, in_memory=True, offset=0, size=2, type_id=MORE_IDS["__be16"])
HDR_LEN = Capture("hdr->len", 0, in_memory=True, offset=2, size=2, type_id=MORE_IDS["__le16"])
SADDR = Capture("hdr->saddr", 0, in_memory=True, offset=4, size=4, type_id=MORE_IDS["__be32"])
FRAG = Capture("hdr->frag", 0, in_memory=True, offset=8, size=2, bitfield=Bitfield(0, 13), type_id=MORE_IDS["__be16"])
REASON = Capture("reason", 1, size=4, type_id=MORE_IDS["enum skb_drop_reason"])
FLAGS = Capture("flags", 2, size=8, type_id=MORE_IDS["enum mini_flags64"])
PRIO = Capture("prio", 8, size=4, type_id=MORE_IDS["enum mini_prio"])

# (spec, byte order of the BTF, test): enumerators by name, and constants swapped into a value's own order.
MORE_PREDICATES = [
    ("mini_rcv(reason == SKB_CONSUMED)", "little", ValueTest(REASON, Predicate(CompareOp.EQ, 1))),
    ("mini_rcv(reason != SKB_DROP_REASON_NO_SOCKET)", "little", ValueTest(REASON, Predicate(CompareOp.NE, 3))),
    ("mini_rcv(reason >= 2)", "little", ValueTest(REASON, Predicate(CompareOp.GE, 2))),
    ("mini_rcv(flags == MINI_F_HIGH)", "little", ValueTest(FLAGS, Predicate(CompareOp.EQ, 1 << 40))),
    ("mini_rcv(flags == MINI_F_ALL)", "little", ValueTest(FLAGS, Predicate(CompareOp.EQ, (1 << 64) - 1))),
    ("mini_rcv(prio == MINI_PRIO_LOW)", "little", ValueTest(PRIO, Predicate(CompareOp.EQ, -1, True))),
    ("mini_rcv(prio < 0)", "little", ValueTest(PRIO, Predicate(CompareOp.LT, 0, True))),
    # network order on a little-endian kernel: swapped once, here
    ("mini_rcv(hdr->proto == 0x0800)", "little", ValueTest(PROTO, Predicate(CompareOp.EQ, 0x0008))),
    ("mini_rcv(hdr->proto != 0x1234)", "little", ValueTest(PROTO, Predicate(CompareOp.NE, 0x3412))),
    ("mini_rcv(hdr->saddr == 0x7f000001)", "little", ValueTest(SADDR, Predicate(CompareOp.EQ, 0x0100007F))),
    ("mini_rcv(hdr->len == 0x1234)", "little", ValueTest(HDR_LEN, Predicate(CompareOp.EQ, 0x1234))),
    # a bitfield is cut from its bytes as loaded: no swap, and every operator
    ("mini_rcv(hdr->frag > 0x100)", "little", ValueTest(FRAG, Predicate(CompareOp.GT, 0x100))),
    # on a big-endian kernel it is __le16 that is swapped, and __be16 that takes every operator
    ("mini_rcv(hdr->proto == 0x0800)", "big", ValueTest(PROTO, Predicate(CompareOp.EQ, 0x0800))),
    ("mini_rcv(hdr->proto > 1)", "big", ValueTest(PROTO, Predicate(CompareOp.GT, 1))),
    ("mini_rcv(hdr->len == 0x1234)", "big", ValueTest(HDR_LEN, Predicate(CompareOp.EQ, 0x3412))),
    # members of a struct passed by value, in the slot their offset picks
    (
        "mini_rcv(l.prev != NULL)",
        "little",
        ValueTest(Capture("l.prev", 4, size=8, type_id=MORE_IDS["struct list_head *"]), Predicate(CompareOp.NE, 0)),
    ),
    (
        "mini_pairs(p.id == 7)",
        "little",
        ValueTest(
            Capture("p.id", 0, size=8, bitfield=Bitfield(32, 16), type_id=MORE_IDS["__u16"]), Predicate(CompareOp.EQ, 7)
        ),
    ),
]


@pytest.mark.parametrize("spec,byteorder,test", MORE_PREDICATES, ids=[f"{s}-{o}" for s, o, _ in MORE_PREDICATES])
def test_predicates_on_enums_and_fixed_byte_orders(spec: str, byteorder: str, test: ValueTest) -> None:
    assert _test(spec, more_kernel(byteorder)) == test


# ---- return values and the probes a spec makes -------------------------------------------------------------------


def test_return_alone_still_shows_every_argument_at_entry() -> None:
    entry, exit_ = _resolve("seven_args(return)").plan.probes
    assert (entry.kind, exit_.kind) == (ProbeKind.FENTRY, ProbeKind.FEXIT)
    assert [(c.label, c.slot) for c in entry.captures] == [(n, i) for i, n in enumerate("abcdefg")]
    assert exit_.captures == (Capture("return", 7, size=4, type_id=INT),)
    assert (entry.stash, exit_.stash, entry.stash_group, exit_.stash_group) == (Stash.TIME, Stash.TIME, 0, 0)


def test_no_items_show_a_struct_passed_by_value_whole_from_its_two_slots() -> None:
    for spec in ("mini_rcv", "mini_rcv(return)"):
        resolved = _resolve(spec, kernel=more_kernel())
        entry, exit_ = resolved.plan.probes
        assert [(c.label, c.slot, c.size) for c in entry.captures] == [
            ("hdr", 0, 24),
            ("reason", 1, 4),
            ("flags", 2, 8),
            ("l", 3, 16),
            ("w", 5, 8),
            ("n", 6, 8),
            ("pp", 7, 8),
            ("prio", 8, 4),
        ]
        assert [(c.label, c.slot) for c in exit_.captures] == [("return", 9)]
        assert resolved.notes == ()


def test_no_items_leave_out_what_registers_do_not_hold_whole_with_a_note() -> None:
    # h (24 bytes) and c (3 bytes) cannot be copied: shown by default, they are left out, each with a note;
    # named, they are the errors above.
    resolved = _resolve("mini_big", kernel=more_kernel())
    (entry,) = resolved.plan.probes
    assert [(c.label, c.slot, c.size) for c in entry.captures] == [("t", 4, 12), ("x", 6, 4)]
    assert resolved.notes == (
        "ksnoop: mini_big: 'h' left out of the values shown: 'h' is a 24-byte value passed in registers: ksnoop "
        "copies 1, 2, 4, 8, 9, 10, 12 or 16 bytes from them; name its members instead",
        "ksnoop: mini_big: 'c' left out of the values shown: 'c' is a 3-byte value passed in registers: ksnoop "
        "copies 1, 2, 4, 8, 9, 10, 12 or 16 bytes from them; name its members instead",
    )
    # a return value wider than its slot: the entry alone, and a note
    resolved = _resolve("mini_pop", kernel=more_kernel())
    assert [p.kind for p in resolved.plan.probes] == [ProbeKind.FENTRY]
    assert resolved.notes == (
        "ksnoop: mini_pop: 'return' left out of the values shown: 'return' is a 16-byte "
        "value; ksnoop copies 1, 2, 4 or 8 bytes of a return value",
    )
    # after a glob's own note, and in a call path
    assert _resolve("mini_bi*", kernel=more_kernel()).notes == (
        "ksnoop: tracing 1 function matching 'mini_bi*'",
        *_resolve("mini_big", kernel=more_kernel()).notes,
    )
    b, ids = minikernel.make_builder(task_exit=True)
    b.func("mini_pop", b.func_proto(ids["struct list_head"], [("n", ids["long int"])]), FuncLinkage.STATIC)
    kernel = KernelBTF(BTF.from_bytes(b.to_bytes()), [])
    assert resolve_path([parse_spec("ip_send_skb"), parse_spec("mini_pop")], kernel).notes == resolved.notes


def test_a_struct_passed_by_value_is_copied_from_both_its_slots() -> None:
    slots = [0, 0, 0, 0x1111111111111111, 0x2222222222222222, 0, 0, 0, 0]
    ((whole,),) = _entry_values("mini_rcv(l)", slots)
    assert whole.data == struct.pack("<QQ", 0x1111111111111111, 0x2222222222222222)
    # 12 bytes: the first slot whole and 4 bytes of the next, not its upper half
    ((t, x),) = _entry_values("mini_big(t, x)", [0, 0, 0, 0, 0x00000002_00000001, 0xDEADBEEF_00000003, 7])
    assert (t.data, x) == (struct.pack("<iii", 1, 2, 3), 7)


# Golden listings of the copies a struct passed by value makes, as tests/unit/bpf/test_golden_listings.py keeps
# them, in their own folder (the mini kernel lacks these functions): `pytest --update-golden` rewrites them.
BY_VALUE_GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "listings" / "by_value"
BY_VALUE_CASES = {"two_slots": "mini_big(t, x)"}  # t: 8 bytes of slot 4, then 4 of slot 5


@pytest.mark.parametrize("case", sorted(BY_VALUE_CASES))
def test_the_listing_of_a_struct_passed_by_value(case: str, request: pytest.FixtureRequest) -> None:
    plan = _resolve(BY_VALUE_CASES[case], kernel=more_kernel()).plan
    path = BY_VALUE_GOLDEN / f"{case}.txt"
    check_golden(path, render_plan(f"# {BY_VALUE_CASES[case]}", plan), request)
    check_round_trip(plan, path.read_text().splitlines())
    assert sorted(p.stem for p in BY_VALUE_GOLDEN.glob("*.txt")) == sorted(BY_VALUE_CASES)


def test_the_return_slot_follows_every_argument_slot() -> None:
    # mini_rcv's struct list_head takes slots 3 and 4, so eight arguments end at slot 8.
    _, exit_ = _resolve("mini_rcv(n, return)", kernel=more_kernel()).plan.probes
    assert exit_.captures == (Capture("return", 9, size=4, type_id=MORE_IDS["int"]),)


def test_a_test_on_the_return_value_holds_the_entry_back() -> None:
    entry, exit_ = _resolve("ip_send_skb(return != 0)").plan.probes
    assert exit_.tests == (ValueTest(Capture("return", 2, size=4, type_id=INT), Predicate(CompareOp.NE, 0, True)),)
    assert (entry.stash, exit_.stash, entry.emits, exit_.requires_entry) == (Stash.RECORD, Stash.RECORD, True, False)


def test_a_test_at_entry_is_required_by_the_return() -> None:
    entry, exit_ = _resolve("ip_send_skb(skb->len > 0, return)").plan.probes
    assert entry.tests == (ValueTest(LEN, Predicate(CompareOp.GT, 0)),)
    assert exit_.requires_entry and exit_.tests == ()


def test_a_void_function_or_values_without_return_make_one_probe() -> None:
    (probe,) = _resolve("noargs").plan.probes
    assert (probe.kind, probe.captures, probe.stash) == (ProbeKind.FENTRY, (), Stash.NONE)
    (probe,) = _resolve("ip_send_skb(skb->len)").plan.probes
    assert probe.kind is ProbeKind.FENTRY and probe.stash is Stash.NONE


# ---- tracepoints: argument names from __probestub_ / __traceiter_ ------------------------------------------------


@pytest.mark.parametrize(
    "spec,args",
    [
        ("tp:net_dev_queue", [("skb", 0)]),
        ("tp:sched_process_exec", [("p", 0), ("old_pid", 1), ("bprm", 2)]),
        ("tp:mini_iter", [("skb", 0), ("len", 1)]),  # no __probestub_: __traceiter_ names them
        ("tp:mini_bare", [("arg0", 0)]),  # neither: arg0, arg1...
    ],
)
def test_tracepoint_arguments_are_named_as_the_kernel_names_them(spec: str, args: list[tuple[str, int]]) -> None:
    resolved = _resolve(spec, kernel=more_kernel())
    (probe,) = resolved.plan.probes
    assert probe.kind is ProbeKind.TP_BTF
    assert [(c.label, c.slot) for c in probe.captures] == args
    assert [a.name for a in resolved.targets[0].args] == [name for name, _ in args]


def test_a_tracepoints_members_by_their_names() -> None:
    probe = _first_probe("tp:sched_process_exec(p->pid, p->comm, old_pid == 1)", more_kernel())
    pid_t = MORE_IDS["pid_t"]
    assert probe.captures == (
        Capture("p->pid", 0, in_memory=True, size=4, type_id=pid_t),
        Capture("p->comm", 0, in_memory=True, offset=4, size=16, type_id=MORE_IDS["char[16]"]),
        Capture("old_pid", 1, size=4, type_id=pid_t),
    )
    assert probe.tests == (ValueTest(Capture("old_pid", 1, size=4, type_id=pid_t), Predicate(CompareOp.EQ, 1, True)),)
    assert probe.attach_btf_id == _more_btf().find("btf_trace_sched_process_exec").id


# ---- iterator contexts (ksnoop dump) -----------------------------------------------------------------------------

ITER_IDS = miniiter.IDS


def _dump(
    *specs: str,
    params: IterParams = IterParams(),
    limit: int = 32760,
    kernel: KernelBTF | None = None,
    element_sizes: tuple[int, int] | None = None,
):
    return resolve_dump(
        [parse_dump_spec(s) for s in specs],
        IterTargets(kernel or miniiter.kernel()),
        params,
        max_record_size=limit,
        element_sizes=element_sizes,
    )


def test_an_iterator_contexts_members_are_its_slots_after_meta() -> None:
    (probe,) = _dump("task_file(task->pid, fd, file->f_path.dentry->d_name.name)").resolved.plan.probes
    assert probe.kind is ProbeKind.ITER
    assert probe.captures == (
        Capture("task->pid", 1, in_memory=True, size=4, type_id=ITER_IDS["pid_t"]),
        Capture("fd", 2, size=4, type_id=ITER_IDS["u32"]),
        # file->f_path.dentry is at 16, d_name.name at 8 in the dentry: a const unsigned char * is text
        Capture(
            "file->f_path.dentry->d_name.name",
            3,
            hops=(16, 8),
            in_memory=True,
            size=STRING_SIZE,
            string=True,
            type_id=ITER_IDS["const unsigned char *"],
        ),
    )
    # the first test skips the call after the last object, made with the object NULL
    assert probe.tests == (
        ValueTest(Capture("file", 3, size=8, type_id=ITER_IDS["struct file *"]), Predicate(CompareOp.NE, 0)),
    )


def test_a_map_elements_key_and_value_are_copied_as_the_maps_sizes() -> None:
    (probe,) = _dump(
        "bpf_map_elem(map->id, key, value)", params=IterParams(map_id=7), element_sizes=(4, 16)
    ).resolved.plan.probes
    assert probe.captures == (
        Capture("map->id", 1, in_memory=True, size=4, type_id=ITER_IDS["u32"]),
        Capture("key", 2, in_memory=True, size=4),
        Capture("value", 3, in_memory=True, size=16),
    )


def test_a_record_too_big_for_the_iterators_buffer_has_its_largest_struct_cut() -> None:
    dump = _dump("task(task, task->comm)", limit=80)  # 104 bytes uncut: header 40, task 8 + 40, comm 16
    (probe,) = dump.resolved.plan.probes
    task, comm = probe.captures
    assert (task.size, task.full_size, comm.size) == (16, 40, 16)
    assert dump.resolved.notes == (
        "ksnoop: dump:task: 'task' cut to 16 of 40 bytes, so that a record fits the iterator's buffer (80 bytes)",
    )


# ---- errors: every SpecError the types provoke, with its message and the column of its caret ---------------------

LONG_STRING = "x" * 128

# (spec, message, caret column), resolved on the mini kernel. The first part comes from resolve.py, the
# rest from btf/members.py, whose MemberPathError resolve.py turns into a SpecError at the step's position.
ERRORS = [
    # resolve: no such target (the caret is on the target)
    ("ip_send_skbb", "no kernel function 'ip_send_skbb' in BTF; did you mean 'ip_send_skb'?", 0),
    ("tp:net_dev_queu", "no tracepoint 'net_dev_queu' in BTF; did you mean 'tp:net_dev_queue'?", 0),
    ("ip_sned_*", "no kernel function matches 'ip_sned_*'; did you mean 'ip_send_skb'?", 0),
    ("tp:net_dev_qeue*(skb)", "no tracepoint matches 'tp:net_dev_qeue*'; did you mean 'tp:net_dev_queue'?", 0),
    # resolve: a glob whose items fit none of its functions: the first one's error, where it points
    (
        "ip_*(skbb)",
        "none of the 1 functions matching 'ip_*' fits: ip_send_skb has no argument 'skbb'; did you "
        "mean 'skb'? its arguments are: net, skb",
        5,
    ),
    # _sides: `return` on a tracepoint
    ("tp:net_dev_queue(return)", "a tracepoint has no return value", 17),
    ("tp:net_dev_queue(skb, return != 0)", "a tracepoint has no return value", 22),
    # _sides: more values than a record holds (the caret is at the start)
    (
        "seven_args("
        + ", ".join([f"e->cb[{i}]" for i in range(48)] + [f"e->dev->name[{i}]" for i in range(16)])
        + ", a)",
        f"65 values in one probe; at most {MAX_CAPTURES}",
        0,
    ),
    # _locate: `return` of a void function
    ("__probestub_net_dev_queue(return)", "__probestub_net_dev_queue returns void", 26),
    # _locate: no such argument, with the closest name when there is one
    (
        "tp:net_dev_queue(sbk->len)",
        "tp:net_dev_queue has no argument 'sbk'; did you mean 'skb'? its arguments are: skb",
        17,
    ),
    ("ip_send_skb(net, zzz)", "ip_send_skb has no argument 'zzz'; its arguments are: net, skb", 17),
    ("noargs(x)", "noargs has no argument 'x'; its arguments are: none", 7),
    # members.resolve: a member of a bitfield
    ("ip_send_skb(skb->pkt_type.x)", "'__u8' is a bitfield; it has no members", 25),
    # members.resolve: '->' on what is not a pointer
    ("ip_send_skb(skb->len->x)", "'->' on 'unsigned int', which is not a pointer; use '.'", 20),
    ("ip_send_skb(skb->list->next)", "'->' on 'struct list_head', which is not a pointer; use '.'", 21),
    # members.resolve: '.' on a pointer
    ("ip_send_skb(skb.len)", "'.' on 'struct sk_buff *', which is a pointer; use '->'", 15),
    # members.resolve: an index on what is neither an array nor a pointer
    ("ip_send_skb(skb->len[0])", "'[0]' on 'unsigned int', which is neither an array nor a pointer", 20),
    # members.resolve: an index past the end of an array
    ("ip_send_skb(skb->dev->name[16])", "index 16 is past the end of 'char[16]' (valid: 0..15)", 26),
    ("ip_send_skb(skb->cb[0x30])", "index 48 is past the end of 'char[48]' (valid: 0..47)", 19),
    # members.resolve: members of a struct only declared
    ("ip_send_skb(skb->sk->x)", "'struct sock' is only declared in this BTF; its members are unknown", 19),
    # members.resolve: a member of what is not a struct or union
    ("ip_send_skb(skb->dev->ifindex.x)", "'.x' on 'int', which is not a struct or union", 29),
    ("ip_send_skb(skb->data->x)", "'->x' on 'unsigned char', which is not a struct or union", 21),
    # members.resolve: no such member, with the closest ones when there are
    ("ip_send_skb(skb->lenn)", "struct sk_buff has no member 'lenn'; did you mean 'len'?", 15),
    ("ip_send_skb(skb->list.nxt)", "struct list_head has no member 'nxt'; did you mean 'next'?", 21),
    ("ip_send_skb(skb->zzz)", "struct sk_buff has no member 'zzz'", 15),
    # members._element_size: an index through a pointer to what has no size
    ("ip_send_skb(skb->destructor[0])", "cannot index 'void (struct sk_buff *)': its elements have no size", 27),
    # _test: a string with an ordering (the caret is on the operator)
    ('ip_send_skb(skb->dev->name > "lo")', "strings compare only with == and !=, not >", 27),
    ('seven_args(d >= "x")', "strings compare only with == and !=, not >=", 13),
    # ... wherever the spacing puts it
    ('ip_send_skb(skb->dev->name>"lo")', "strings compare only with == and !=, not >", 26),
    ('seven_args(d<=   "x")', "strings compare only with == and !=, not <=", 12),
    # _test: a string longer than a predicate compares
    (f'seven_args(f == "{LONG_STRING}")', "string of 128 bytes; at most 127 compare", 16),
    # _test: a string longer than the char array
    (
        'ip_send_skb(skb->dev->name == "0123456789abcdefg")',
        "'0123456789abcdefg' is longer than 'skb->dev->name' (char[16]) can hold",
        30,
    ),
    # _test: a string with what is not a char array or char pointer (u8 pointers are bytes)
    (
        'ip_send_skb(skb->len == "abc")',
        "cannot compare 'skb->len' (unsigned int) with a string; strings compare with char arrays and char pointers",
        24,
    ),
    (
        'ip_send_skb(skb->data == "x")',
        "cannot compare 'skb->data' (unsigned char *) with a string; strings compare "
        "with char arrays and char pointers",
        25,
    ),
    (
        'ip_send_skb(skb == "abc")',
        "cannot compare 'skb' (struct sk_buff *) with a string; strings compare with char arrays and char pointers",
        19,
    ),
    # _test: a number or a name with what is not a number
    (
        "ip_send_skb(skb->dev->name == 5)",
        "cannot compare 'skb->dev->name' (char[16]) with a number; name a member that is a number",
        30,
    ),
    (
        "ip_send_skb(skb->list == 1)",
        "cannot compare 'skb->list' (struct list_head) with a number; name a member that is a number",
        25,
    ),
    (
        "ip_send_skb(skb->list != NULL)",
        "cannot compare 'skb->list' (struct list_head) with a name; name a member that is a number",
        25,
    ),
    # _test: a pointer with a negative number
    ("ip_send_skb(skb->dev == -1)", "a pointer compares with NULL or an address, not -1", 24),
    # _test: a number out of the value's range (signed or not; a bitfield's is its bits)
    ("ip_send_skb(skb->len == -1)", "-1 is out of range for 'skb->len' (unsigned int: 0..4294967295)", 24),
    (
        "ip_send_skb(skb->len == 4294967296)",
        "4294967296 is out of range for 'skb->len' (unsigned int: 0..4294967295)",
        24,
    ),
    ("seven_args(a < -2147483649)", "-2147483649 is out of range for 'a' (int: -2147483648..2147483647)", 15),
    ("seven_args(a > 2147483648)", "2147483648 is out of range for 'a' (int: -2147483648..2147483647)", 15),
    (
        "seven_args(b == 9223372036854775808)",
        "9223372036854775808 is out of range for 'b' (long int: -9223372036854775808..9223372036854775807)",
        16,
    ),
    ("seven_args(c == 256)", "256 is out of range for 'c' (char: 0..255)", 16),
    ("ip_send_skb(skb->pkt_type == 8)", "8 is out of range for 'skb->pkt_type' (__u8: 0..7)", 29),
    ("ip_send_skb(skb->cloned == 2)", "2 is out of range for 'skb->cloned' (__u8: 0..1)", 27),
    ("ip_send_skb(skb->protocol == 65536)", "65536 is out of range for 'skb->protocol' (__u16: 0..65535)", 29),
    # _name_constant: NULL with what is not a pointer
    ("ip_send_skb(skb->len == NULL)", "NULL compares with pointers; 'skb->len' is unsigned int", 24),
    # _name_constant: a name with what is neither an enum nor (for NULL) a pointer
    (
        "ip_send_skb(skb->len == FOO)",
        "'FOO' is not a value for 'skb->len' (unsigned int): use a number, or NULL for a pointer",
        24,
    ),
    (
        "ip_send_skb(skb->dev == FOO)",
        "'FOO' is not a value for 'skb->dev' (struct net_device *): use a number, or NULL for a pointer",
        24,
    ),
]


@pytest.mark.parametrize("spec,message,column", ERRORS, ids=[s[:60] for s, _, _ in ERRORS])
def test_errors(spec: str, message: str, column: int) -> None:
    err = _trace_error(spec, records.kernel())
    assert (err.reason, err.position) == (message, column)


# The same, for types the mini kernel lacks.
MORE_ERRORS = [
    # _locate: members.resolve raising BTFError: a member whose type has no size
    ("mini_hold(h->sk)", f"h->sk: FWD has no size ([{MORE_IDS['struct sock']}])", 10),
    # _locate: `return` of a void function
    ("mini_hold(return)", "mini_hold returns void", 10),
    # _locate: no such argument, the names from __traceiter_ or made up
    ("tp:mini_iter(sk)", "tp:mini_iter has no argument 'sk'; did you mean 'skb'? its arguments are: skb, len", 13),
    ("tp:mini_bare(skb)", "tp:mini_bare has no argument 'skb'; its arguments are: arg0", 13),
    # _check_registers: a value in registers of a size the program does not copy (more than two slots, or
    # not 1, 2, 4 or 8 bytes of each), or a return value wider than its one slot
    (
        "mini_big(h)",
        "'h' is a 24-byte value passed in registers: ksnoop copies 1, 2, 4, 8, 9, 10, 12 or 16 bytes "
        "from them; name its members instead",
        9,
    ),
    (
        "mini_big(x, c)",
        "'c' is a 3-byte value passed in registers: ksnoop copies 1, 2, 4, 8, 9, 10, 12 or 16 bytes "
        "from them; name its members instead",
        12,
    ),
    ("mini_pop(return)", "'return' is a 16-byte value; ksnoop copies 1, 2, 4 or 8 bytes of a return value", 9),
    # _locate: a pointer followed from a struct passed by value, not within one slot (a packed struct)
    (
        "mini_pairs(k.ptr->next)",
        "'k.ptr->next' follows a pointer at byte 4 of 'k', which straddles two argument slots",
        11,
    ),
    # _value: a member of a struct passed by value that is not within one slot, or (past the slot's first byte)
    # not a number in the kernel's byte order
    ("mini_pairs(k.ptr)", "'k.ptr' (struct list_head *) straddles two argument slots; show 'k' whole instead", 11),
    (
        "mini_pairs(k.port)",
        "'k.port' (__be16) starts at byte 4 of an argument slot, where only a number in the "
        "kernel's byte order is cut out; show 'k' whole instead",
        11,
    ),
    (
        "mini_pairs(k.port == 80)",
        "'k.port' (__be16) starts at byte 4 of an argument slot, where only a number in "
        "the kernel's byte order is cut out; show 'k' whole instead",
        11,
    ),
    (
        "mini_pairs(k.code)",
        "'k.code' (char[2]) starts at byte 6 of an argument slot, where only a number in the "
        "kernel's byte order is cut out; show 'k' whole instead",
        11,
    ),
    # _test: a number with a float
    ("mini_rcv(w > 1)", "cannot compare 'w' (double) with a number; name a member that is a number", 13),
    (
        "mini_rcv(hdr->weight == 1)",
        "cannot compare 'hdr->weight' (double) with a number; name a member that is a number",
        24,
    ),
    # _test: a string with a pointer to a pointer
    (
        'mini_rcv(pp == "x")',
        "cannot compare 'pp' (struct sk_buff **) with a string; strings compare with char arrays and char pointers",
        15,
    ),
    # _test: out of range, for a signed enum, a __be16 (checked before swapping) and a __be16 bitfield
    (
        "mini_rcv(prio == 2147483648)",
        "2147483648 is out of range for 'prio' (enum mini_prio: -2147483648..2147483647)",
        17,
    ),
    ("mini_rcv(hdr->proto == 65536)", "65536 is out of range for 'hdr->proto' (__be16: 0..65535)", 23),
    ("mini_rcv(hdr->frag == 8192)", "8192 is out of range for 'hdr->frag' (__be16: 0..8191)", 22),
    # _test: an ordering on a value in another byte order (the caret is on the operator)
    ("mini_rcv(hdr->proto > 1)", "'hdr->proto' (__be16) is in network byte order: compare it with == or !=, not >", 20),
    (
        "mini_rcv(hdr->saddr <= 1)",
        "'hdr->saddr' (__be32) is in network byte order: compare it with == or !=, not <=",
        20,
    ),
    ("mini_rcv(hdr->proto>1)", "'hdr->proto' (__be16) is in network byte order: compare it with == or !=, not >", 19),
    (
        "mini_rcv(hdr->saddr  >=  1)",
        "'hdr->saddr' (__be32) is in network byte order: compare it with == or !=, not >=",
        21,
    ),
    # _name_constant: NULL with an enum
    ("mini_rcv(reason == NULL)", "NULL compares with pointers; 'reason' is enum skb_drop_reason", 19),
    # _name_constant: no such enumerator, with the closest ones when there are
    (
        "mini_rcv(reason == SKB_CONSUMD)",
        "enum skb_drop_reason has no enumerator 'SKB_CONSUMD'; did you mean 'SKB_CONSUMED'?",
        19,
    ),
    (
        "mini_rcv(flags == MINI_F_HGH)",
        "enum mini_flags64 has no enumerator 'MINI_F_HGH'; did you mean 'MINI_F_HIGH', 'MINI_F_LOW', 'MINI_F_ALL'?",
        18,
    ),
    ("mini_rcv(reason == XYZ)", "enum skb_drop_reason has no enumerator 'XYZ'", 19),
]


@pytest.mark.parametrize("spec,message,column", MORE_ERRORS, ids=[s for s, _, _ in MORE_ERRORS])
def test_errors_of_types_the_mini_kernel_lacks(spec: str, message: str, column: int) -> None:
    err = _trace_error(spec, more_kernel())
    assert (err.reason, err.position) == (message, column)


def test_an_ordering_on_little_endian_values_in_a_big_endian_kernel() -> None:
    # Worded as __be16 on a little-endian kernel is ("in network byte order"), not "in little byte order".
    err = _trace_error("mini_rcv(hdr->len > 1)", more_kernel("big"))
    assert (err.reason, err.position) == (
        "'hdr->len' (__le16) is in little-endian byte order: compare it with == or !=, not >",
        18,
    )


# tests/kernel/test_trace_cli.py's SPEC_ERRORS, each spec mistake at unit level: the mini kernel (with
# sched_process_exec from build_more) stands in for this machine's, and the whole message is checked.
CLI_SPEC_ERRORS = [
    ("ip_send_skbb", "no kernel function 'ip_send_skbb' in BTF; did you mean 'ip_send_skb'?", 0),
    ("tp:net_dev_queu", "no tracepoint 'net_dev_queu' in BTF; did you mean 'tp:net_dev_queue'?", 0),
    (
        "tp:net_dev_queue(sbk->len)",
        "tp:net_dev_queue has no argument 'sbk'; did you mean 'skb'? its arguments are: skb",
        17,
    ),
    (
        "tp:sched_process_exec(old_pd, p)",
        "tp:sched_process_exec has no argument 'old_pd'; did you mean 'old_pid'? its arguments are: p, old_pid, bprm",
        22,
    ),
    ("tp:net_dev_queue(skb->lenn)", "struct sk_buff has no member 'lenn'; did you mean 'len'?", 20),
    ("tp:sched_process_exec(p->comn)", "struct task_struct has no member 'comn'; did you mean 'comm'?", 23),
    ("tp:net_dev_queue(skb->len->x)", "'->' on 'unsigned int', which is not a pointer; use '.'", 25),
    ("tp:net_dev_queue(skb.len)", "'.' on 'struct sk_buff *', which is a pointer; use '->'", 20),
    (
        'tp:net_dev_queue(skb->len == "abc")',
        "cannot compare 'skb->len' (unsigned int) with a string; strings compare with char arrays and char pointers",
        29,
    ),
    (
        "tp:net_dev_queue(skb->dev->name == 5)",
        "cannot compare 'skb->dev->name' (char[16]) with a number; name a member that is a number",
        35,
    ),
    ("tp:net_dev_queue(skb->dev->name[16])", "index 16 is past the end of 'char[16]' (valid: 0..15)", 31),
    ("tp:net_dev_queue(skb->len == -1)", "-1 is out of range for 'skb->len' (unsigned int: 0..4294967295)", 29),
    ("tp:net_dev_queue(return)", "a tracepoint has no return value", 17),
    ("tp:net_dev_queue(skb->len", "expected ',' or ')', found the end of the spec", 25),
]


@pytest.mark.parametrize("spec,message,column", CLI_SPEC_ERRORS, ids=[s for s, _, _ in CLI_SPEC_ERRORS])
def test_the_cli_tables_spec_errors(spec: str, message: str, column: int) -> None:
    err = _trace_error(spec, more_kernel())
    assert (err.reason, err.position) == (message, column)


# ---- errors: globs, the probe limit and call paths ---------------------------------------------------------------


@pytest.mark.parametrize(
    "specs,message",
    [
        (["*"], "'*' matches 7 functions, more than --max-probes 3: narrow the glob or raise --max-probes"),
        (["tp:*", "*"], "'*' matches 7 functions, more than --max-probes 3: narrow the glob or raise --max-probes"),
        (
            ["ip_*", "s*", "noargs"],
            "4 functions and tracepoints to trace ('ip_*' matches 1, 's*' matches 2), more than "
            "--max-probes 3: narrow the glob or raise --max-probes",
        ),
        (
            ["noargs", "ip_send_skb", "seven_args", "printk"],
            "4 functions and tracepoints to trace (each spec names one), "
            "more than --max-probes 3: narrow the glob or raise --max-probes",
        ),
    ],
)
def test_more_probes_than_the_limit(specs: list[str], message: str) -> None:
    with pytest.raises(UsageError) as err:
        _resolve(*specs, max_probes=3)
    assert str(err.value) == message and not isinstance(err.value, SpecError)


def _path_error(*specs: str, wrong: int = -1) -> SpecError:
    """The SpecError about specs[wrong] that resolving the call path `specs` raises."""
    return _spec_error(lambda: resolve_path([parse_spec(s) for s in specs], records.path_kernel()), specs[wrong])


@pytest.mark.parametrize(
    "specs,message,column",
    [
        (("noargs", "strncpy_*"), "a call path (-s) names functions one by one, not a glob", 0),
        (("noargs", "ip_send_skbb(skb)"), "no kernel function 'ip_send_skbb' in BTF; did you mean 'ip_send_skb'?", 0),
        (
            ("noargs", " tp:net_dev_queue(skb)"),
            "a call path (-s) is made of functions: a tracepoint has no return to end a call",
            1,
        ),
        (
            ("noargs", "ip_send_skb", "noargs(return)"),
            "noargs is already in the call path: each function can be one step",
            0,
        ),
    ],
)
def test_call_path_errors(specs: tuple[str, ...], message: str, column: int) -> None:
    err = _path_error(*specs)
    assert (err.reason, err.position) == (message, column)


def test_a_call_paths_steps_are_resolved_as_a_traces() -> None:
    err = _path_error("ip_send_skb(skb->lenn)", "noargs", wrong=0)
    assert (err.reason, err.position) == ("struct sk_buff has no member 'lenn'; did you mean 'len'?", 15)


def test_a_call_path_longer_than_the_state_holds() -> None:
    with pytest.raises(UsageError) as err:
        resolve_path([parse_spec("noargs")] * 17, records.path_kernel())
    assert str(err.value) == "a call path of 17 functions; at most 16" and not isinstance(err.value, SpecError)


# ---- errors: dump specs (resolve_dump.py) ------------------------------------------------------------------------


def _dump_error(spec: str, **kwargs) -> SpecError:
    return _spec_error(lambda: _dump(spec, **kwargs), spec)


DUMP_ERRORS = [
    # a glob
    ("task*(task->pid)", "dump walks one iterator target per spec, not a glob (see ksnoop list 'dump:*')", 0),
    # no such target: the closest names, or all of them when none is close
    ("taks(task->pid)", "no iterator target 'taks' in this kernel's BTF; did you mean 'task'?", 0),
    ("  dump:taks", "no iterator target 'taks' in this kernel's BTF; did you mean 'task'?", 2),
    (
        "xyzzy",
        "no iterator target 'xyzzy' in this kernel's BTF; "
        "did you mean 'bpf_map_elem', 'cgroup', 'task', 'task_file', 'tcp'?",
        0,
    ),
    # _check_name: `return`
    ("task(return)", "an iterator has no return value; dump:task gives: task", 5),
    # _check_name: not a member of the context, meta included
    ("task(tsk->pid)", "dump:task has no member 'tsk'; did you mean 'task'? its context gives: task", 5),
    ("task(zzz)", "dump:task has no member 'zzz'; its context gives: task", 5),
    (
        "task_file(fd, meta->seq_num)",
        "dump:task_file has no member 'meta' (meta is the iterator's own bookkeeping); "
        "did you mean 'task'? its context gives: task, fd, file",
        14,
    ),
    # resolve_items: what trace checks, the same way
    ("task(task->pidd)", "struct task_struct has no member 'pidd'; did you mean 'pid'?", 9),
    (
        'task(task->comm == "abcdefghijklmnopq")',
        "'abcdefghijklmnopq' is longer than 'task->comm' (char[16]) can hold",
        19,
    ),
    ("dump:task_file(fd > -1)", "-1 is out of range for 'fd' (u32: 0..4294967295)", 20),
    (
        "tcp(sk_common->skc_num == 70000)",
        "70000 is out of range for 'sk_common->skc_num' (short unsigned int: 0..65535)",
        26,
    ),
    # resolve_items: more values than a record holds
    (
        "task("
        + ", ".join(f"task{'->real_parent' * k}->comm[{i}]" for k in range(4) for i in range(16))
        + ", task->pid)",
        f"65 values in one probe; at most {MAX_CAPTURES}",
        0,
    ),
    # parse_dump_spec: a parse error, pointing into the text as written
    ("  dump:task(task->pid >)", "expected a number, a \"string\", an enumerator or NULL, found ')'", 23),
]


@pytest.mark.parametrize("spec,message,column", DUMP_ERRORS, ids=[s[:60] for s, _, _ in DUMP_ERRORS])
def test_dump_errors(spec: str, message: str, column: int) -> None:
    err = _dump_error(spec)
    assert (err.reason, err.position) == (message, column)


def test_a_kernel_without_iterators() -> None:
    err = _dump_error("task", kernel=records.kernel())
    assert (err.reason, err.position) == (
        "no iterator target 'task': this kernel has no BPF iterators (they came in "
        "5.8; its BTF has no struct bpf_iter_meta)",
        0,
    )


def test_values_that_no_cut_makes_fit_the_iterators_buffer() -> None:
    # Strings and scalars are never cut: 40 bytes of header, 16 of comm and 8 (4, aligned) of pid.
    err = _dump_error("task(task->comm, task->pid)", limit=56)
    assert (err.reason, err.position) == (
        "the values make a record of 64 bytes, more than the 56 an iterator's buffer takes; name fewer or smaller ones",
        0,
    )


@pytest.mark.parametrize(
    "spec,params,message",
    [
        ("tcp", IterParams(pid=1), "--pid is for dump:task, dump:task_file; dump:tcp takes no options"),
        ("task", IterParams(map_id=1), "--map-id is for dump:bpf_map_elem; dump:task takes --pid or --tid"),
        ("task", IterParams(cgroup_id=1), "--cgroup-id is for dump:cgroup; dump:task takes --pid or --tid"),
        ("bpf_map_elem", IterParams(pid=1), "--pid is for dump:task, dump:task_file; dump:bpf_map_elem takes --map-id"),
        ("tcp", IterParams(cgroup_order="self-only"), "--cgroup-order is for dump:cgroup; dump:tcp takes no options"),
        (
            "bpf_map_elem",
            IterParams(),
            "dump:bpf_map_elem walks the elements of one map: give --map-id ID (ksnoop dump "
            "'bpf_map(map->id, map->name)' lists them)",
        ),
        ("task", IterParams(pid=1, tid=2), "--pid and --tid: give one (a process, or one of its threads)"),
        (
            "cgroup",
            IterParams(cgroup_id=1, cgroup_path="/sys/fs/cgroup"),
            "--cgroup-id and --cgroup: give one (where the walk starts)",
        ),
        (
            "cgroup",
            IterParams(cgroup_order="sideways"),
            "--cgroup-order sideways: one of self-only, descendants-pre, descendants-post, ancestors-up",
        ),
    ],
)
def test_dump_options_that_do_not_fit_the_target(spec: str, params: IterParams, message: str) -> None:
    with pytest.raises(UsageError) as err:
        _dump(spec, params=params)
    assert str(err.value) == message and not isinstance(err.value, SpecError)


def test_dump_options_this_kernels_link_info_lacks() -> None:
    iters = IterTargets(miniiter.kernel())
    iters._link_info = LinkInfo({"map": ("map_fd",)})  # as a v5.9 kernel's union bpf_iter_link_info
    with pytest.raises(RuntimeFailure) as err:
        resolve_dump([parse_dump_spec("task")], iters, IterParams(pid=1), max_record_size=32760)
    assert str(err.value) == (
        "--pid: this kernel's iterators take no task pid (union bpf_iter_link_info has no such field in its BTF)"
    )
