# SPDX-License-Identifier: GPL-2.0-only
"""Mutated mini-kernel BTF through the whole btf/ API: only BTFError may escape, and nothing may hang.

hypothesis flips bytes, overwrites u32 words with telling values, cuts and splices the blob; each
example parses it and then exercises every type: validate, type_by_id, names, decl, sizes,
alignment, member paths, decode and render. An example that takes longer than a few seconds is a hang.
"""

from __future__ import annotations

import signal
import struct
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from btf import BTF, BTFError, Kind
from tests.support import minikernel


def seed_builder():
    """The mini kernel plus a few shapes it lacks, so that one mutation can reach them."""
    b, ids = minikernel.make_builder()
    empty = b.struct("empty", 0, [])
    b.struct("keys", 4, [("k", b.array(empty, 4, ids["int"]), 0), ("n", ids["int"], 0)])
    five = b.int_("unsigned int", 4, bits=5)
    b.struct("old", 4, [("lo", five, 0), ("hi", five, 5)], kind_flag=False)
    b.struct(
        "signed_bits",
        8,
        [
            ("s", ids["int"], 3, 7),
            ("e", ids["enum skb_drop_reason"], 10, 2),
            ("nets", b.array(ids["struct net"], 0, ids["int"]), 64),
        ],
    )
    handler = b.ptr(b.func_proto(0, [("", ids["int"])]))
    b.func("signal", b.func_proto(handler, [("sig", ids["int"]), ("h", handler)]))
    b.restrict(ids["char *"])
    b.enum64("neg", 8, [("NEG", -2)], signed=True)
    return b, ids


BASE_BUILDER, IDS = seed_builder()
LITTLE = BASE_BUILDER.to_bytes("little")
BIG = BASE_BUILDER.to_bytes("big")
MODULE, _ = minikernel.build_module(BASE_BUILDER, IDS)
NR_TYPES = BASE_BUILDER.next_id

# Values that make records point at themselves, past the end, at void, or claim huge sizes and counts;
# and info words: FUNC_PROTO vlen 1, STRUCT kind_flag vlen 2, ARRAY, STRUCT vlen 1, UNION vlen 2, ...
SMALL_WORDS = [0, 1, 2, 3, 4, 8, 16, 0x7F, 0xFF, 0xFFFF, 0x10000, 1 << 24]
HUGE_WORDS = [0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
INFO_WORDS = [0x0D000001, 0x84000002, 0x03000000, 0x04000001, 0x05000002, 0x08000000, 0x13000001]
INTERESTING_WORDS = SMALL_WORDS + HUGE_WORDS + INFO_WORDS + [NR_TYPES - 1, NR_TYPES, NR_TYPES + 1]

PATHS = ["->len", "->dev->name[3]", "->next->prev", ".list.next", "->pkt_type", "[1]", ".x", "->a.b[2].c"]
NAMES = [
    "struct sk_buff",
    "sk_buff",
    "ip_send_skb",
    "u32",
    "enum skb_drop_reason",
    "union x",
    "int",
    "long int",
    "mini_hook",
    "struct nf_minimod_state",
    "zzz",
]

SETTINGS = settings(
    max_examples=600,
    deadline=2000,  # ms per example; the alarm below catches what never returns at all
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ALARM_SECONDS = 5


class Hang(Exception):
    pass


@contextmanager
def no_hang(seconds=ALARM_SECONDS):
    def on_alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def flip(data, draw):
    pos = draw(st.integers(0, len(data) - 1))
    data[pos] ^= draw(st.integers(1, 255))


def set_word(data, draw, byteorder, type_len):
    # A word of the type section: a name offset, info, size, type id or count. Another type's id
    # is the likeliest to parse and then loop; the odd values make sizes and counts huge.
    if type_len < 4 or len(data) < 24 + type_len:
        return
    pos = 24 + draw(st.integers(0, type_len // 4 - 1)) * 4
    word = draw(st.one_of(st.integers(0, NR_TYPES + 1), st.sampled_from(INTERESTING_WORDS), st.integers(0, 0xFFFFFFFF)))
    data[pos : pos + 4] = word.to_bytes(4, byteorder)


def cut(data, draw):
    end = draw(st.integers(0, len(data)))
    del data[end:]


def splice(data, draw):
    if len(data) < 2:
        return
    start = draw(st.integers(0, len(data) - 1))
    length = draw(st.integers(1, 64))
    if draw(st.booleans()):
        src = draw(st.integers(0, len(data) - 1))
        piece = bytes(data[src : src + length])  # a copy of another part of the blob
    else:
        piece = draw(st.binary(min_size=1, max_size=length))
    if draw(st.booleans()):
        data[start : start + len(piece)] = piece  # overwrite
    else:
        data[start:start] = piece  # insert


def header_field(data, draw, byteorder):
    if len(data) < 24:
        return
    field = draw(st.sampled_from([4, 8, 12, 16, 20]))
    fmt = ("<" if byteorder == "little" else ">") + "I"
    (old,) = struct.unpack_from(fmt, data, field)
    new = draw(st.one_of(st.integers(0, 0xFFFFFFFF), st.sampled_from([old - 4, old + 4, old - 1, old + 1, 0])))
    struct.pack_into(fmt, data, field, new & 0xFFFFFFFF)


@st.composite
def mutated(draw, blob, byteorder):
    """`blob` with 1-4 mutations; most rewrite type-section words, so the result usually still parses."""
    data = bytearray(blob)
    type_len = struct.unpack_from(("<" if byteorder == "little" else ">") + "I", blob, 12)[0]
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["word"] * 6 + ["flip", "cut", "splice", "header"]))
        if not data:
            break
        if op == "flip":
            flip(data, draw)
        elif op == "word":
            set_word(data, draw, byteorder, type_len)
        elif op == "cut":
            cut(data, draw)
        elif op == "splice":
            splice(data, draw)
        else:
            header_field(data, draw, byteorder)
    return bytes(data)


def attempt(call, *args, **kwargs):
    """Run one API call; a BTFError is a fine answer to broken BTF, anything else fails the test."""
    try:
        return call(*args, **kwargs)
    except BTFError:
        return None


def exercise(btf):
    """Every public operation on every type id of `btf`, and its base's."""
    attempt(btf.validate)
    repr(btf)
    for type_id in range(btf.nr_types):
        typ = attempt(btf.type_by_id, type_id)
        attempt(btf.kind_of, type_id)
        attempt(btf.name_of, type_id)
        attempt(btf.decl, type_id, "x")
        attempt(btf.type_name, type_id)
        attempt(btf.skip_modifiers, type_id)
        attempt(btf.skip_qualifiers, type_id)
        size = attempt(btf.resolve_size, type_id)
        attempt(btf.alignment, type_id)
        if typ is not None and typ.kind == Kind.FUNC:
            attempt(btf.signature, typ)
        for path in PATHS:
            attempt(btf.resolve_path, type_id, path)
        if size is not None:
            size = min(size, 4096)
            attempt(btf.decode, type_id, bytes(size))
            attempt(btf.render, type_id, bytes(size))
            attempt(btf.decode, type_id, b"\xa5" * (size // 2))
            attempt(btf.render, type_id, b"\xa5" * (size // 2), zeroes=True, max_elems=3)
        else:
            attempt(btf.decode, type_id, bytes(16))
            attempt(btf.render, type_id, bytes(16))
    for name in NAMES:
        attempt(btf.find, name)
        attempt(btf.lookup, name)
        attempt(btf.find_all, name)
    for kinds in ([Kind.FUNC], [Kind.STRUCT, Kind.UNION], list(Kind)):
        attempt(btf.names, kinds)
        attempt(btf.glob, "*_*", kinds)
    attempt(lambda: list(btf.iter_types()))
    attempt(lambda: btf.pointer_size)


def parse_and_exercise(blob, base=None):
    with no_hang():
        btf = attempt(BTF.from_bytes, blob, base)
        if btf is not None:
            exercise(btf)


@pytest.mark.parametrize("blob, byteorder", [(LITTLE, "little"), (BIG, "big")], ids=["little", "big"])
def test_unmutated_blob_is_clean(blob, byteorder):
    btf = BTF.from_bytes(blob)
    btf.validate()
    exercise(btf)


@SETTINGS
@given(st.data())
def test_mutated_little_endian(data):
    parse_and_exercise(data.draw(mutated(LITTLE, "little")))


@SETTINGS
@given(st.data())
def test_mutated_big_endian(data):
    parse_and_exercise(data.draw(mutated(BIG, "big")))


@settings(SETTINGS, max_examples=200)
@given(st.data())
def test_mutated_split_module(data):
    base = BTF.from_bytes(BASE_BUILDER.to_bytes())
    parse_and_exercise(data.draw(mutated(MODULE, "little")), base)


@settings(SETTINGS, max_examples=200)
@given(st.binary(max_size=200))
def test_random_bytes(blob):
    parse_and_exercise(blob)
