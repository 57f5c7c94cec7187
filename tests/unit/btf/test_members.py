# SPDX-License-Identifier: GPL-2.0-only
"""btf/members.py: member paths to offsets, sizes and bitfields, and the errors for wrong paths."""

from __future__ import annotations

import pytest

from btf import BTF, BTFError, BTFLookupError, MemberPath, MemberPathError
from btf.members import Step, parse_path
from tests.support.btfbuilder import BTFBuilder


def resolve(btf, type_id, path):
    return btf.resolve_path(type_id, path)


# ---- parsing -------------------------------------------------------------------------------------


def test_parse_path():
    assert parse_path("->dev->name[0x1f]") == [
        Step("->", "dev", 0, 0),
        Step("->", "name", 0, 5),
        Step("[]", "", 31, 11),
    ]
    assert parse_path(".b[2].c") == [Step(".", "b", 0, 0), Step("[]", "", 2, 2), Step(".", "c", 0, 5)]
    assert parse_path(" -> dev [ 3 ] ") == [Step("->", "dev", 0, 1), Step("[]", "", 3, 7)]
    assert parse_path("") == []


@pytest.mark.parametrize(
    "text, position",
    [("dev", 0), ("->", 0), ("->dev-", 5), (".a[x]", 2), ("->1a", 0), ("->a[-1]", 3), (".a..b", 2)],
)
def test_parse_errors_give_the_position(text, position):
    with pytest.raises(MemberPathError, match="expected '->member', '.member' or '\\[index\\]'") as err:
        parse_path(text)
    assert err.value.position == position
    assert isinstance(err.value, BTFLookupError) and isinstance(err.value, BTFError)


# ---- the mini kernel's sk_buff -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, hops, offset, size, key",
    [
        ("->len", (), 80, 4, "unsigned int"),
        ("->dev", (), 24, 8, "struct net_device *"),
        ("->dev->name", (24,), 0, 16, "char[16]"),
        ("->dev->name[15]", (24,), 15, 1, "char"),
        ("->dev->ifindex", (24,), 16, 4, "int"),
        ("->next", (), 0, 8, "struct sk_buff *"),  # through the anonymous union and struct
        ("->prev", (), 8, 8, "struct sk_buff *"),
        ("->prev->len", (8,), 80, 4, "unsigned int"),
        ("->prev->prev->dev->name[1]", (8, 8, 24), 1, 1, "char"),
        ("->list", (), 0, 16, "struct list_head"),
        ("->list.prev", (), 8, 8, "struct list_head *"),
        ("->list.prev->next", (8,), 0, 8, "struct list_head *"),
        ("->cb[2]", (), 34, 1, "char"),
        ("->cb", (), 32, 48, "char[48]"),
        ("->protocol", (), 86, 2, "__u16"),
        ("->data[3]", (96,), 3, 1, "unsigned char"),
        ("->destructor", (), 88, 8, "void (*)(struct sk_buff *)"),
        ("->sk", (), 16, 8, "struct sock *"),
        ("[1].len", (), 104 + 80, 4, "unsigned int"),  # skb[1] on the pointer: the next sk_buff in memory
    ],
)
def test_sk_buff_paths(kernel, path, hops, offset, size, key):
    btf, ids = kernel
    assert resolve(btf, ids["struct sk_buff *"], path) == MemberPath(hops, True, offset, size, 0, 0, ids[key])


@pytest.mark.parametrize(
    "path, bit_offset, bitfield_size",
    [("->pkt_type", 0, 3), ("->ignore_df", 3, 1), ("->cloned", 4, 1)],
)
def test_kind_flag_bitfields(kernel, path, bit_offset, bitfield_size):
    btf, ids = kernel
    # __u8 pkt_type:3, ignore_df:1, cloned:1 at bits 672, 675, 676: byte 84
    assert resolve(btf, ids["struct sk_buff *"], path) == MemberPath(
        (), True, 84, 1, bit_offset, bitfield_size, ids["__u8"]
    )


def test_value_base_without_deref(mini):
    btf, ids = mini
    assert resolve(btf, ids["struct net_device"], ".name[2]") == MemberPath((), False, 2, 1, 0, 0, ids["char"])
    assert resolve(btf, ids["struct net_device"], ".ifindex") == MemberPath((), False, 16, 4, 0, 0, ids["int"])
    assert resolve(btf, ids["struct net_device"], "") == MemberPath((), False, 0, 24, 0, 0, ids["struct net_device"])
    # the pointer followed is a member of the base: where it sits in the base is kept
    assert resolve(btf, ids["struct sk_buff"], ".dev->name") == MemberPath((), True, 0, 16, 0, 0, ids["char[16]"], 24)
    assert resolve(btf, ids["char[16]"], "[3]") == MemberPath((), False, 3, 1, 0, 0, ids["char"])


# ---- arrays of structs, typedefs, qualifiers, old-style bitfields ----------------------------------


@pytest.fixture(scope="module")
def nested():
    b = BTFBuilder()
    ids = {}
    ids["int"] = b.int_("int", 4, signed=True)
    ids["unsigned int"] = b.int_("unsigned int", 4)
    ids["unsigned int:5"] = b.int_("unsigned int", 4, bits=5)  # pre-kind_flag bitfield type
    ids["long int"] = b.int_("long int", 8, signed=True)
    # struct inner { int a; int c; };
    ids["struct inner"] = b.struct("inner", 8, [("a", ids["int"], 0), ("c", ids["int"], 32)])
    ids["inner_t"] = b.typedef("inner_t", ids["struct inner"])
    ids["const inner_t"] = b.const(ids["inner_t"])
    ids["const inner_t[4]"] = b.array(ids["const inner_t"], 4, ids["int"])
    ids["volatile int"] = b.volatile(ids["int"])
    # struct old { unsigned int lo:5, hi:5; volatile int v; }  -- kind_flag 0
    ids["struct old"] = b.struct(
        "old",
        8,
        [("lo", ids["unsigned int:5"], 0), ("hi", ids["unsigned int:5"], 5), ("v", ids["volatile int"], 32)],
        kind_flag=False,
    )
    # union { long int l; struct { int x; int y; }; } anonymous in outer
    ids["anon struct"] = b.struct("", 8, [("x", ids["int"], 0), ("y", ids["int"], 32)])
    ids["anon union"] = b.union("", 8, [("l", ids["long int"], 0), ("", ids["anon struct"], 0)])
    ids["const anon union"] = b.const(ids["anon union"])
    ids["struct outer *"] = b.reserve()
    # struct outer { int x0; const inner_t b[4]; struct old o; const union {...}; unsigned int w:20 (bit 356);
    #                struct outer *self; };
    ids["struct outer"] = b.struct(
        "outer",
        64,
        [
            ("x0", ids["int"], 0),
            ("b", ids["const inner_t[4]"], 32),
            ("o", ids["struct old"], 288),
            ("", ids["const anon union"], 352),
            ("w", ids["unsigned int"], 420, 20),
            ("self", ids["struct outer *"], 448),
        ],
    )
    b.ptr(ids["struct outer"], at=ids["struct outer *"])
    ids["outer_t"] = b.typedef("outer_t", ids["struct outer"])
    ids["const outer_t *"] = b.ptr(b.const(ids["outer_t"]))
    ids["outer_ptr_t"] = b.typedef("outer_ptr_t", ids["const outer_t *"])
    return BTF.from_bytes(b.to_bytes()), ids


@pytest.mark.parametrize(
    "base, path, expected",
    [
        ("struct outer", ".b[2].c", ((), False, 4 + 2 * 8 + 4, 4, 0, 0, "int")),
        ("outer_t", ".b[3]", ((), False, 4 + 3 * 8, 8, 0, 0, "const inner_t")),
        ("outer_t", ".b[0].a", ((), False, 4, 4, 0, 0, "int")),
        ("const outer_t *", "->b[1].c", ((), True, 4 + 8 + 4, 4, 0, 0, "int")),
        ("outer_ptr_t", "->b[1].c", ((), True, 16, 4, 0, 0, "int")),
        ("outer_ptr_t", "->self->self->x0", ((56, 56), True, 0, 4, 0, 0, "int")),
        ("struct outer", ".o.v", ((), False, 40, 4, 0, 0, "volatile int")),
        ("struct outer", ".l", ((), False, 44, 8, 0, 0, "long int")),
        ("struct outer", ".y", ((), False, 48, 4, 0, 0, "int")),
        # kind_flag 0: the member's INT type carries the bit count
        ("struct outer", ".o.lo", ((), False, 36, 1, 0, 5, "unsigned int:5")),
        ("struct outer", ".o.hi", ((), False, 36, 2, 5, 5, "unsigned int:5")),
        # kind_flag 1: bit 420 = byte 52 bit 4, 20 bits span bytes 52..55
        ("struct outer", ".w", ((), False, 52, 4, 4, 20, "unsigned int")),
    ],
)
def test_nested_paths(nested, base, path, expected):
    btf, ids = nested
    hops, in_memory, offset, size, bit_offset, bitfield_size, key = expected
    assert resolve(btf, ids[base], path) == MemberPath(
        hops, in_memory, offset, size, bit_offset, bitfield_size, ids[key]
    )


# ---- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, message, position, suggestions",
    [
        ("->lne", "struct sk_buff has no member 'lne'; did you mean 'len', 'cloned'?", 0, ("len", "cloned")),
        ("->dev->nmae", "struct net_device has no member 'nmae'; did you mean 'name'?", 5, ("name",)),
        ("->dev->ifindx", "struct net_device has no member 'ifindx'; did you mean 'ifindex'?", 5, ("ifindex",)),
        ("->lis.next", "struct sk_buff has no member 'lis'; did you mean 'list'?", 0, ("list",)),
        ("->nxt", "struct sk_buff has no member 'nxt'; did you mean 'next'?", 0, ("next",)),
        ("->zzzzzz", "struct sk_buff has no member 'zzzzzz'", 0, ()),
        (".len", "'.' on 'struct sk_buff *', which is a pointer; use '->'", 0, ()),
        ("->dev.name", "'.' on 'struct net_device *', which is a pointer; use '->'", 5, ()),
        ("->len->x", "'->' on 'unsigned int', which is not a pointer; use '.'", 5, ()),
        ("->list->next", "'->' on 'struct list_head', which is not a pointer; use '.'", 6, ()),
        ("->len.x", "'.x' on 'unsigned int', which is not a struct or union", 5, ()),
        ("->dev->name[16]", "index 16 is past the end of 'char[16]' (valid: 0..15)", 11, ()),
        ("->cb[48]", "index 48 is past the end of 'char[48]' (valid: 0..47)", 4, ()),
        ("->len[0]", "'[0]' on 'unsigned int', which is neither an array nor a pointer", 5, ()),
        ("->pkt_type.x", "'__u8' is a bitfield; it has no members", 10, ()),
        ("->sk->sk_num", "'struct sock' is only declared in this BTF; its members are unknown", 4, ()),
        ("->destructor[0]", "cannot index 'void (struct sk_buff *)': its elements have no size", 12, ()),
    ],
)
def test_errors(kernel, path, message, position, suggestions):
    btf, ids = kernel
    with pytest.raises(MemberPathError) as err:
        resolve(btf, ids["struct sk_buff *"], path)
    assert str(err.value) == message
    assert err.value.position == position
    assert err.value.suggestions == suggestions
    assert path[position:].lstrip().startswith(("->", ".", "["))


def test_error_names_the_struct_behind_a_typedef(nested):
    btf, ids = nested
    with pytest.raises(MemberPathError) as err:
        resolve(btf, ids["outer_ptr_t"], "->b[0].cc")
    assert str(err.value) == "struct inner has no member 'cc'; did you mean 'c'?"
    assert err.value.position == 6
    with pytest.raises(MemberPathError) as err:
        resolve(btf, ids["outer_t"], ".yy")
    assert "did you mean" in str(err.value) and "y" in err.value.suggestions  # anonymous members' names count


def test_anonymous_member_loop_raises_btf_error():
    b = BTFBuilder()
    int_id = b.int_("int", 4)
    anon = b.reserve()
    b.struct("", 4, [("", anon, 0), ("x", int_id, 0)], at=anon)  # an anonymous member that is itself
    outer = b.struct("outer", 4, [("", anon, 0)])
    btf = BTF.from_bytes(b.to_bytes())
    with pytest.raises(BTFError, match="anonymous members nest in a loop"):
        resolve(btf, outer, ".nosuch")
    assert resolve(btf, outer, ".x") == MemberPath((), False, 0, 4, 0, 0, int_id)  # found before the loop
