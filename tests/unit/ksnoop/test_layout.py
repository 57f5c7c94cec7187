# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.output.layout's holes, bit holes and padding on BTF built here, one struct per pahole rule.

The expected texts are what pahole 1.24 (`pahole -F btf FILE`) prints for the same BTF, less what
ksnoop does not print: pahole's type column (ksnoop writes `decl;`, then the offset comment), its
cacheline boundaries, the alignment attributes it infers and the `unsigned int :0;` it invents
after `Force alignment to the next boundary:`. Every struct here, and in the mini kernel, must
account for each of its bits exactly once.
"""

from __future__ import annotations

import pytest

from btf import BTF, Kind, Struct
from ksnoop.output.layout import layout_json, layout_text, type_layout
from tests.support import minikernel
from tests.support.btfbuilder import BTFBuilder


def layout_btf():
    """One struct per rule; the comments give each member's place as byte:bit."""
    b = BTFBuilder()
    char = b.int_("char", 1, signed=True, char=True)
    u8 = b.int_("u8", 1)
    int_ = b.int_("int", 4, signed=True)
    u32 = b.int_("unsigned int", 4)
    long_ = b.int_("long int", 8, signed=True)
    u64 = b.int_("u64", 8)
    b.struct(
        "flags",  # task_struct's: bits left in a unit are a bit hole; bytes between units a byte hole
        24,
        [
            ("a", u32, 0, 1),  # 0:0
            ("b", u32, 1, 3),  # 0:1, then 28 bits to the end of its unit
            ("c", u32, 32, 1),  # 4:0 (after `unsigned int :0`)
            ("d", u32, 33, 2),  # 4:1, then 29 bits to the end of its unit and 8 bytes
            ("e", long_, 128),  # 16
        ],
    )
    b.struct("leaf_0x2_reg", 4, [("invalid", u32, 31, 1)])  # 0:31, after a 31-bit hole
    b.struct(
        "lead",
        8,
        [
            ("c", char, 0),  # 0, then bytes 1-3 before x's unit and 5 bits of it
            ("x", u32, 37, 1),  # 4:5, then 26 bits to the end of the struct: bit padding
        ],
    )
    reject_types = b.enum("nft_reject_types", 4, [("NFT_REJECT_ICMP_UNREACH", 0)])
    b.struct(
        "nft_reject",  # a member inside a bitfield's unit ends it: bytes 2-3 are padding
        4,
        [("type", reject_types, 0, 8), ("icmp_code", u8, 8)],
    )
    b.struct(
        "proto",  # net_device's: a bitfield whose unit holds the plain members before it
        8,
        [
            ("a", u8, 0),
            ("b", u8, 8),
            ("c", u64, 16, 1),  # 0:16 of a u64 unit
            ("d", u64, 17, 1),  # then 46 bits of bit padding
        ],
    )
    inner = b.struct("inner", 16, [("p", long_, 0), ("s", char, 64)])  # 7 bytes of padding
    inner_t = b.typedef("inner_t", inner)
    anon_padded = b.struct("", 16, [("p", long_, 0), ("s", char, 64)])
    anon_holed = b.struct("", 24, [("q", char, 0), ("r", inner, 64)])
    b.struct(
        "outer",
        80,
        [
            ("x", inner, 0),  # pahole notes the padding inside struct inner
            ("y", inner_t, 128),  # but not through a typedef
            ("", anon_padded, 256),  # 32
            ("", anon_holed, 384),  # 48: a hole inside; its last member's note right before `};`
            ("z", int_, 576),  # 72, then 4 bytes of padding
        ],
    )
    b.union("either", 8, [("c", char, 0), ("", b.struct("", 8, [("q", char, 0), ("i", int_, 32)]), 0)])
    return BTF.from_bytes(b.to_bytes())


@pytest.fixture(scope="module")
def btf():
    return layout_btf()


def text_of(btf, name):
    typ = btf.lookup(name)
    return layout_text(btf, typ.id)


def test_bits_left_in_a_unit_are_a_bit_hole_and_bytes_between_units_a_byte_hole(btf):
    assert text_of(btf, "struct flags") == (
        "struct flags {\n"
        "\tunsigned int a:1;                        /*     0: 0    4 */\n"
        "\tunsigned int b:3;                        /*     0: 1    4 */\n"
        "\n"
        "\t/* XXX 28 bits hole, try to pack */\n"
        "\n"
        "\tunsigned int c:1;                        /*     4: 0    4 */\n"
        "\tunsigned int d:2;                        /*     4: 1    4 */\n"
        "\n"
        "\t/* XXX 29 bits hole, try to pack */\n"
        "\t/* XXX 8 bytes hole, try to pack */\n"
        "\n"
        "\tlong int e;                              /*    16    8 */\n"
        "\n"
        "\t/* size: 24, cachelines: 1, members: 5 */\n"
        "\t/* sum members: 8, holes: 1, sum holes: 8 */\n"
        "\t/* sum bitfield members: 7 bits, bit holes: 2, sum bit holes: 57 bits */\n"
        "\t/* last cacheline: 24 bytes */\n"
        "};"
    )


def test_bits_of_a_unit_before_its_first_bitfield_are_a_bit_hole(btf):
    assert text_of(btf, "struct leaf_0x2_reg") == (
        "struct leaf_0x2_reg {\n"
        "\n"
        "\t/* XXX 31 bits hole, try to pack */\n"
        "\n"
        "\tunsigned int invalid:1;                  /*     0:31    4 */\n"
        "\n"
        "\t/* size: 4, cachelines: 1, members: 1 */\n"
        "\t/* sum bitfield members: 1 bits, bit holes: 1, sum bit holes: 31 bits */\n"
        "\t/* last cacheline: 4 bytes */\n"
        "};"
    )


def test_bytes_before_a_unit_are_a_byte_hole_and_the_rest_of_the_last_unit_bit_padding(btf):
    assert text_of(btf, "struct lead") == (
        "struct lead {\n"
        "\tchar c;                                  /*     0    1 */\n"
        "\n"
        "\t/* XXX 5 bits hole, try to pack */\n"
        "\t/* XXX 3 bytes hole, try to pack */\n"
        "\n"
        "\tunsigned int x:1;                        /*     4: 5    4 */\n"
        "\n"
        "\t/* size: 8, cachelines: 1, members: 2 */\n"
        "\t/* sum members: 1, holes: 1, sum holes: 3 */\n"
        "\t/* sum bitfield members: 1 bits, bit holes: 1, sum bit holes: 5 bits */\n"
        "\t/* bit_padding: 26 bits */\n"
        "\t/* last cacheline: 8 bytes */\n"
        "};"
    )


def test_a_member_inside_a_bitfields_unit_ends_it_and_padding_follows(btf):
    assert text_of(btf, "struct nft_reject") == (
        "struct nft_reject {\n"
        "\tenum nft_reject_types type:8;            /*     0: 0    4 */\n"
        "\n"
        "\t/* Bitfield combined with next fields */\n"
        "\n"
        "\tu8 icmp_code;                            /*     1    1 */\n"
        "\n"
        "\t/* size: 4, cachelines: 1, members: 2 */\n"
        "\t/* padding: 2 */\n"
        "\t/* last cacheline: 4 bytes */\n"
        "};"
    )


def test_a_bitfield_over_the_members_before_it_is_combined_with_previous_fields(btf):
    assert text_of(btf, "struct proto") == (
        "struct proto {\n"
        "\tu8 a;                                    /*     0    1 */\n"
        "\tu8 b;                                    /*     1    1 */\n"
        "\n"
        "\t/* Bitfield combined with previous fields */\n"
        "\n"
        "\tu64 c:1;                                 /*     0:16    8 */\n"
        "\tu64 d:1;                                 /*     0:17    8 */\n"
        "\n"
        "\t/* size: 8, cachelines: 1, members: 4 */\n"
        "\t/* bit_padding: 46 bits */\n"
        "\t/* last cacheline: 8 bytes */\n"
        "};"
    )


def test_padding_inside_member_structs_is_noted_after_them(btf):
    assert text_of(btf, "struct outer") == (
        "struct outer {\n"
        "\tstruct inner x;                          /*     0   16 */\n"
        "\n"
        "\t/* XXX last struct has 7 bytes of padding */\n"
        "\n"
        "\tinner_t y;                               /*    16   16 */\n"
        "\tstruct {\n"
        "\t\tlong int p;                      /*    32    8 */\n"
        "\t\tchar s;                          /*    40    1 */\n"
        "\t};                                       /*    32   16 */\n"
        "\n"
        "\t/* XXX last struct has 7 bytes of padding */\n"
        "\n"
        "\tstruct {\n"
        "\t\tchar q;                          /*    48    1 */\n"
        "\n"
        "\t\t/* XXX 7 bytes hole, try to pack */\n"
        "\n"
        "\t\tstruct inner r;                  /*    56   16 */\n"
        "\n"
        "\t\t/* XXX last struct has 7 bytes of padding */\n"
        "\t};                                       /*    48   24 */\n"
        "\tint z;                                   /*    72    4 */\n"
        "\n"
        "\t/* size: 80, cachelines: 2, members: 5 */\n"
        "\t/* padding: 4 */\n"
        "\t/* paddings: 2, sum paddings: 14 */\n"
        "\t/* last cacheline: 16 bytes */\n"
        "};"
    )


def test_a_union_has_no_holes_but_a_struct_inside_it_does(btf):
    assert text_of(btf, "union either") == (
        "union either {\n"
        "\tchar c;                                  /*     0    1 */\n"
        "\tstruct {\n"
        "\t\tchar q;                          /*     0    1 */\n"
        "\n"
        "\t\t/* XXX 3 bytes hole, try to pack */\n"
        "\n"
        "\t\tint i;                           /*     4    4 */\n"
        "\t};                                       /*     0    8 */\n"
        "\n"
        "\t/* size: 8, cachelines: 1, members: 2 */\n"
        "\t/* last cacheline: 8 bytes */\n"
        "};"
    )


def test_json_lists_byte_and_bit_holes_in_place_order_and_both_paddings(btf):
    data = layout_json(btf, btf.lookup("struct lead").id)
    assert data["holes"] == [{"offset": 1, "size": 3}, {"offset": 4, "bit_offset": 0, "bit_size": 5}]
    assert (data["padding"], data["bit_padding"]) == (0, 26)
    data = layout_json(btf, btf.lookup("struct flags").id)
    assert data["holes"] == [
        {"offset": 0, "bit_offset": 4, "bit_size": 28},
        {"offset": 4, "bit_offset": 3, "bit_size": 29},
        {"offset": 8, "size": 8},
    ]
    data = layout_json(btf, btf.lookup("struct nft_reject").id)
    assert (data["holes"], data["padding"], data["bit_padding"]) == ([], 2, 0)
    data = layout_json(btf, btf.lookup("struct outer").id)
    assert data["holes"] == [{"offset": 49, "size": 7}]  # inside the anonymous struct, at its place
    assert (data["padding"], data["bit_padding"]) == (4, 0)  # the outermost struct's own


def test_overlapping_members_make_no_negative_gap():
    # Not C, but BTF can say it: pahole prints the negative counts wrapped; ksnoop shows no gap.
    b = BTFBuilder()
    u32 = b.int_("unsigned int", 4)
    b.struct("overlap", 8, [("a", u32, 0), ("b", u32, 16), ("c", u32, 4, 3), ("d", u32, 0)])
    btf = BTF.from_bytes(b.to_bytes())
    rows = type_layout(btf, btf.lookup("struct overlap").id)
    assert [r.kind for r in rows if r.kind not in ("member", "note")] == ["padding"]
    assert all(r.size >= 0 and r.bit_size >= 0 for r in rows)


# ---- every bit accounted once ------------------------------------------------------------------------
_BYTES = {"hole", "padding"}
_BITS = {"bit_hole", "bit_padding"}


def unaccounted_bits(rows, typ):
    """[(where, bits the rows miss (+) or count twice (-))] for the struct `typ` and each anonymous
    struct inside it, empty when each one's own members, holes, bit holes, padding and bit padding
    add up to its size. A union's members overlap, so only the structs in a union are checked."""
    problems = []
    levels = [[isinstance(typ, Struct), typ.size, 0, "the struct"]]  # [is a struct, bytes, bits seen, where]
    for r in rows:
        level = levels[-1]
        if r.kind == "open":
            level[2] += 8 * r.size
            levels.append([r.decl == "struct", r.size, 0, f"the anonymous {r.decl} at {r.offset}"])
        elif r.kind == "close":
            is_struct, size, seen, where = levels.pop()
            if is_struct and seen != 8 * size:
                problems.append((where, 8 * size - seen))
        elif r.kind == "member":
            level[2] += r.bitfield_size or 8 * r.size
        elif r.kind in _BYTES:
            level[2] += 8 * r.size
        elif r.kind in _BITS:
            level[2] += r.bit_size
    is_struct, size, seen, where = levels.pop()
    if is_struct and seen != 8 * size:
        problems.append((where, 8 * size - seen))
    return problems


def _structs_and_unions(btf):
    return [t for kind in (Kind.STRUCT, Kind.UNION) for t in btf.iter_types(kind) if t.name != "overlap"]


def test_every_bit_of_every_struct_is_accounted_once(btf):
    mini = BTF.from_bytes(minikernel.build()[0])
    checked = 0
    for source in (btf, mini):
        for typ in _structs_and_unions(source):
            assert unaccounted_bits(type_layout(source, typ.id), typ) == [], f"{typ.name or typ.id}"
            checked += 1
    assert checked >= 15
