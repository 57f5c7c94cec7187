# SPDX-License-Identifier: GPL-2.0-only
"""btf/reader.py: header checks, both byte orders, split BTF id and string arithmetic, broken input."""

from __future__ import annotations

import struct

import pytest

from btf import BTF, BTFError, Kind
from btf import reader
from tests.support import minikernel
from tests.support.btfbuilder import BTFBuilder

FIELDS = ("magic", "version", "flags", "hdr_len", "type_off", "type_len", "str_off", "str_len")
FORMAT = {"little": "<HBBIIIII", "big": ">HBBIIIII"}


def header_of(blob, byteorder="little"):
    return dict(zip(FIELDS, struct.unpack_from(FORMAT[byteorder], blob)))


def with_header(blob, byteorder="little", **changes):
    """`blob` with some header fields replaced, the rest of the bytes kept."""
    fields = header_of(blob, byteorder)
    fields.update(changes)
    return struct.pack(FORMAT[byteorder], *(fields[f] for f in FIELDS)) + blob[24:]


def small_blob(byteorder="little"):
    # [1] INT 'int' (4 words, bytes 0..15 of the type section), [2] PTR -> [1] (3 words, bytes 16..27)
    b = BTFBuilder()
    b.int_("int", 4, signed=True)
    b.ptr(1)
    return b.to_bytes(byteorder)


# ---- header --------------------------------------------------------------------------------------


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_parse_header_reads_both_byte_orders(byteorder):
    blob, _ = minikernel.build(byteorder)
    h = header_of(blob, byteorder)
    assert blob[:2] == (b"\x9f\xeb" if byteorder == "little" else b"\xeb\x9f")
    assert reader.parse_header(blob) == (byteorder, 24, 0, h["type_len"], h["type_len"], h["str_len"])
    assert 24 + h["type_len"] + h["str_len"] == len(blob)


def test_both_byte_orders_index_the_same():
    little, ids = minikernel.build("little")
    big, _ = minikernel.build("big")
    a, b = reader.index(little), reader.index(big)
    assert (a.byteorder, b.byteorder) == ("little", "big")
    assert a.words == b.words
    assert a.type_starts == b.type_starts
    assert a.kinds == b.kinds
    assert a.strings == b.strings
    assert len(a.kinds) == max(ids.values())
    # Record positions follow the builder's layout: ids 1..4 are INTs, 4 words each.
    assert list(a.type_starts[:5]) == [0, 4, 8, 12, 16]
    assert a.kinds[ids["struct net"] - 1] == Kind.STRUCT
    assert a.kinds[ids["enum mini_flags64"] - 1] == Kind.ENUM64
    assert a.kinds[ids["decl_tag bpf_kfunc"] - 1] == Kind.DECL_TAG
    assert a.kinds[ids[".data"] - 1] == Kind.DATASEC


@pytest.mark.parametrize("length", [0, 1, 2, 23])
def test_shorter_than_header(length):
    blob = small_blob()[:length]
    with pytest.raises(BTFError, match="shorter than its 24-byte header") as err:
        reader.index(blob)
    assert err.value.offset == 0


@pytest.mark.parametrize(
    "changes, offset, message",
    [
        ({"magic": 0x1234}, 0, "bad BTF magic 0x(1234|3412), expected 0xeb9f"),
        ({"version": 2}, 2, "unsupported BTF version 2"),
        ({"hdr_len": 20}, 4, "header length 20 is out of range"),
        ({"hdr_len": 10_000}, 4, "header length 10000 is out of range"),
        ({"type_off": 2}, 8, "type section offset 2 is not 4-byte aligned"),
        ({"type_len": 26}, 12, "type section length 26 is not a multiple of 4"),
        ({"type_len": 1 << 20}, 8, "type section .* runs past the data"),
        ({"str_len": 1 << 20}, 16, "string section .* runs past the data"),
        ({"str_off": 4}, 8, "type and string sections overlap"),
    ],
)
@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_bad_header(byteorder, changes, offset, message):
    blob = with_header(small_blob(byteorder), byteorder, **changes)
    with pytest.raises(BTFError, match=message) as err:
        reader.index(blob)
    assert err.value.offset == offset
    assert f"at offset {offset}" in str(err.value)


def test_huge_section_lengths_do_not_wrap():
    blob = with_header(small_blob(), type_off=0xFFFFFFFC, type_len=8)
    with pytest.raises(BTFError, match="runs past"):
        reader.index(blob)


def test_strings_must_start_and_end_with_nul():
    blob = small_blob()
    h = header_of(blob)
    str_start = 24 + h["str_off"]
    assert blob[str_start : str_start + 4] == b"\0int"
    with pytest.raises(BTFError, match="does not start with an empty string") as err:
        reader.index(blob[:str_start] + b"x" + blob[str_start + 1 :])
    assert err.value.offset == str_start
    with pytest.raises(BTFError, match="does not end in NUL") as err:
        reader.index(blob[:-1] + b"x")
    assert err.value.offset == len(blob) - 1


def test_record_cut_short():
    # A type section of 20 bytes holds the INT (16 bytes) and 4 bytes of the PTR's 12.
    blob = with_header(small_blob(), type_len=20)
    blob = blob[: 24 + 20] + blob[24 + 28 :]
    blob = with_header(blob, str_off=20)
    with pytest.raises(BTFError, match="type record cut short") as err:
        reader.index(blob)
    assert err.value.offset == 24 + 16


def test_last_record_runs_past_the_section():
    # The PTR claims vlen 1: kinds without per-vlen words ignore it, so make it a STRUCT of one member.
    b = BTFBuilder()
    b.int_("int", 4)
    b.raw(Kind.STRUCT, "s", vlen=2, size_or_type=4, extra=[0, 1, 0])  # room for one member, claims two
    with pytest.raises(BTFError, match="last type record runs 12 bytes past the type section") as err:
        reader.index(b.to_bytes())
    assert err.value.offset == 24 + 16
    assert err.value.type_id == 2
    assert "[2]" in str(err.value)


@pytest.mark.parametrize("kind", [0, 20, 31])
@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_unknown_kind(byteorder, kind):
    b = BTFBuilder()
    b.int_("int", 4)
    b.raw(kind, "odd", size_or_type=1)
    with pytest.raises(BTFError, match=f"unknown BTF kind {kind}") as err:
        reader.index(b.to_bytes(byteorder))
    assert err.value.offset == 24 + 16
    assert err.value.type_id == 2


def test_empty_type_section():
    b = BTFBuilder()
    index = reader.index(b.to_bytes())
    assert len(index.type_starts) == 0
    assert BTF.from_bytes(b.to_bytes()).nr_types == 1


def test_header_longer_than_24_bytes():
    blob = small_blob()
    h = header_of(blob)
    longer = struct.pack(FORMAT["little"], *(dict(h, hdr_len=32)[f] for f in FIELDS)) + b"\0" * 8 + blob[24:]
    index = reader.index(longer)
    assert index.types_file_offset == 32
    assert BTF.from_bytes(longer).type_by_id(2).type_id == 1


# ---- split BTF -----------------------------------------------------------------------------------


def test_split_index_continues_the_base(split):
    base, module, base_ids, module_ids = split
    base_builder, _ = minikernel.make_builder()
    base_blob = base_builder.to_bytes()
    base_str_len = header_of(base_blob)["str_len"]
    last_base_id = max(base_ids.values())

    assert base.nr_types == last_base_id + 1
    assert module.start_id == last_base_id + 1
    assert module.nr_types == max(module_ids.values()) + 1
    assert min(module_ids.values()) == module.start_id
    assert module._index.start_str_off == base_str_len
    # The module's first string sits at offset base_str_len, with no leading NUL (as libbpf writes it).
    assert module.string_at(base_str_len) == "mini_hook"
    assert module.string_at(0) == ""
    # A string the module shares with the base is read from the base.
    assert module.name_of(module_ids["mini_hook"]) == "mini_hook"
    assert module.type_by_id(module_ids["mini_hook proto"]).params[0].name == "skb"
    assert module.name_of(base_ids["struct net"]) == "net"


def test_split_string_offsets_past_the_end(split):
    base, module, _, _ = split
    end = module._index.start_str_off + len(module._index.strings)
    with pytest.raises(BTFError, match=f"string offset {end} is past"):
        module.string_at(end)
    with pytest.raises(BTFError):
        base.string_at(module._index.start_str_off)  # the module's first string is not the base's


def test_split_with_leading_nul():
    base_builder, base_ids = minikernel.make_builder()
    m = BTFBuilder(base=base_builder, split_leading_nul=True)
    proto = m.func_proto(base_ids["int"], [("cookie", base_ids["int"])])
    func = m.func("nul_first", proto)
    base = BTF.from_bytes(base_builder.to_bytes())
    module = BTF.from_bytes(m.to_bytes(), base=base)
    assert module.name_of(func) == "nul_first"
    assert module.type_by_id(proto).params[0].name == "cookie"
    assert module.lookup("nul_first").id == func


def test_split_record_errors_count_ids_from_the_base():
    base_builder, base_ids = minikernel.make_builder()
    m = BTFBuilder(base=base_builder)
    m.ptr(base_ids["int"])
    m.raw(25, "bad")
    base = BTF.from_bytes(base_builder.to_bytes())
    with pytest.raises(BTFError, match="unknown BTF kind 25") as err:
        BTF.from_bytes(m.to_bytes(), base=base)
    assert err.value.offset == 24 + 12
    assert err.value.type_id == max(base_ids.values()) + 2  # global ids, as everywhere else


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_split_both_byte_orders(byteorder):
    base_builder, base_ids = minikernel.make_builder()
    module_blob, module_ids = minikernel.build_module(base_builder, base_ids, byteorder)
    base = BTF.from_bytes(base_builder.to_bytes(byteorder))
    module = BTF.from_bytes(module_blob, base=base)
    assert module.byteorder == byteorder
    state = module.type_by_id(module_ids["struct nf_minimod_state"])
    assert [(m.name, m.type_id, m.bit_offset) for m in state.members] == [
        ("skb", base_ids["struct sk_buff *"], 0),
        ("hook_calls", base_ids["unsigned int"], 64),
    ]
