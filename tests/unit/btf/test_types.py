# SPDX-License-Identifier: GPL-2.0-only
"""btf/types.py as btf.py builds it: every kind of the mini kernel decoded into its dataclass."""

from __future__ import annotations

import pytest

from btf import (
    BTF,
    Array,
    BTFError,
    BTFLookupError,
    Const,
    Datasec,
    DeclTag,
    Enum,
    Enum64,
    Enumerator,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Kind,
    Member,
    Param,
    Ptr,
    Restrict,
    Struct,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarSecinfo,
    Void,
    Volatile,
)
from btf.uapi import FuncLinkage, VarLinkage
from tests.support.btfbuilder import BTFBuilder


def test_ints(kernel):
    btf, ids = kernel
    assert btf.type_by_id(ids["int"]) == Int(ids["int"], "int", 4, 32, 0, True, False, False)
    assert btf.type_by_id(ids["unsigned int"]) == Int(
        ids["unsigned int"], "unsigned int", 4, 32, 0, False, False, False
    )
    assert btf.type_by_id(ids["char"]) == Int(ids["char"], "char", 1, 8, 0, False, False, False)
    assert btf.type_by_id(ids["long int"]) == Int(ids["long int"], "long int", 8, 64, 0, True, False, False)
    assert btf.type_by_id(ids["_Bool"]) == Int(ids["_Bool"], "_Bool", 1, 8, 0, False, False, True)


def test_int_encoding_bits():
    b = BTFBuilder()
    char_id = b.int_("char", 1, signed=True, char=True)
    narrow_id = b.int_("u4", 2, bits=4, offset=3)
    btf = BTF.from_bytes(b.to_bytes())
    assert btf.type_by_id(char_id) == Int(char_id, "char", 1, 8, 0, True, True, False)
    assert btf.type_by_id(narrow_id) == Int(narrow_id, "u4", 2, 4, 3, False, False, False)


def test_void():
    btf = BTF.from_bytes(BTFBuilder().to_bytes())
    assert btf.type_by_id(0) == Void()
    assert btf.type_by_id(0).kind == Kind.UNKN
    assert btf.kind_of(0) == Kind.UNKN
    assert btf.name_of(0) == "void"


def test_pointers_arrays_typedefs(kernel):
    btf, ids = kernel
    assert btf.type_by_id(ids["void *"]) == Ptr(ids["void *"], "", 0)
    assert btf.type_by_id(ids["struct sock *"]) == Ptr(ids["struct sock *"], "", ids["struct sock"])
    assert btf.type_by_id(ids["char[16]"]) == Array(ids["char[16]"], "", ids["char"], ids["int"], 16)
    assert btf.type_by_id(ids["u32"]) == Typedef(ids["u32"], "u32", ids["unsigned int"])
    assert btf.type_by_id(ids["struct sock"]) == Fwd(ids["struct sock"], "sock", False)


def test_qualifiers_and_type_tag(kernel):
    btf, ids = kernel
    assert btf.type_by_id(ids["const char"]) == Const(ids["const char"], "", ids["char"])
    assert btf.type_by_id(ids["volatile long unsigned int"]) == Volatile(
        ids["volatile long unsigned int"], "", ids["long unsigned int"]
    )
    assert btf.type_by_id(ids["type_tag user"]) == TypeTag(ids["type_tag user"], "user", ids["const char"])


def test_struct_with_anonymous_union_and_bitfields(kernel):
    btf, ids = kernel
    skb = btf.type_by_id(ids["struct sk_buff"])
    assert isinstance(skb, Struct) and skb.kind == Kind.STRUCT
    assert (skb.name, skb.size) == ("sk_buff", 104)
    assert skb.members == (
        Member("", ids["sk_buff anon union"], 0, 0),
        Member("sk", ids["struct sock *"], 128, 0),
        Member("dev", ids["struct net_device *"], 192, 0),
        Member("cb", ids["char[48]"], 256, 0),
        Member("len", ids["unsigned int"], 640, 0),
        Member("pkt_type", ids["__u8"], 672, 3),
        Member("ignore_df", ids["__u8"], 675, 1),
        Member("cloned", ids["__u8"], 676, 1),
        Member("protocol", ids["__u16"], 688, 0),
        Member("destructor", ids["void (*)(struct sk_buff *)"], 704, 0),
        Member("data", ids["unsigned char *"], 768, 0),
    )
    assert btf.type_by_id(ids["sk_buff anon union"]) == Union(
        ids["sk_buff anon union"],
        "",
        16,
        (Member("", ids["sk_buff anon struct"], 0, 0), Member("list", ids["struct list_head"], 0, 0)),
    )


def test_old_style_bitfields_have_no_bitfield_size():
    b = BTFBuilder()
    three = b.int_("unsigned int", 4, bits=3)
    sid = b.struct("flags", 4, [("a", three, 0), ("b", three, 3)], kind_flag=False)
    btf = BTF.from_bytes(b.to_bytes())
    assert btf.type_by_id(sid).members == (Member("a", three, 0, 0), Member("b", three, 3, 0))


def test_enums(kernel):
    btf, ids = kernel
    assert btf.type_by_id(ids["enum skb_drop_reason"]) == Enum(
        ids["enum skb_drop_reason"],
        "skb_drop_reason",
        4,
        False,
        (
            Enumerator("SKB_NOT_DROPPED_YET", 0),
            Enumerator("SKB_CONSUMED", 1),
            Enumerator("SKB_DROP_REASON_NOT_SPECIFIED", 2),
            Enumerator("SKB_DROP_REASON_NO_SOCKET", 3),
        ),
    )
    assert btf.type_by_id(ids["enum mini_flags64"]) == Enum64(
        ids["enum mini_flags64"],
        "mini_flags64",
        8,
        False,
        (
            Enumerator("MINI_F_LOW", 1),
            Enumerator("MINI_F_HIGH", 1 << 40),
            Enumerator("MINI_F_ALL", (1 << 64) - 1),
        ),
    )


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_signed_enums(byteorder):
    b = BTFBuilder()
    e32 = b.enum("sign", 4, [("NEG", -1), ("MIN", -(1 << 31)), ("MAX", (1 << 31) - 1)], signed=True)
    e64 = b.enum64("big", 8, [("MIN", -(1 << 63)), ("NEG", -2), ("TOP", 1 << 40)], signed=True)
    u32 = b.enum("unsigned", 4, [("HIGH", 0xFFFFFFFF)])
    btf = BTF.from_bytes(b.to_bytes(byteorder))
    assert btf.type_by_id(e32) == Enum(
        e32,
        "sign",
        4,
        True,
        (Enumerator("NEG", -1), Enumerator("MIN", -(1 << 31)), Enumerator("MAX", (1 << 31) - 1)),
    )
    assert btf.type_by_id(e64) == Enum64(
        e64,
        "big",
        8,
        True,
        (Enumerator("MIN", -(1 << 63)), Enumerator("NEG", -2), Enumerator("TOP", 1 << 40)),
    )
    assert btf.type_by_id(u32) == Enum(u32, "unsigned", 4, False, (Enumerator("HIGH", 0xFFFFFFFF),))


def test_funcs_and_protos(kernel):
    btf, ids = kernel
    assert btf.type_by_id(ids["ip_send_skb"]) == Func(
        ids["ip_send_skb"], "ip_send_skb", ids["ip_send_skb proto"], FuncLinkage.STATIC
    )
    assert btf.type_by_id(ids["ip_send_skb proto"]) == FuncProto(
        ids["ip_send_skb proto"],
        "",
        ids["int"],
        (Param("net", ids["struct net *"]), Param("skb", ids["struct sk_buff *"])),
        False,
    )
    assert btf.type_by_id(ids["printk proto"]) == FuncProto(
        ids["printk proto"], "", ids["int"], (Param("fmt", ids["const char *"]),), True
    )
    assert btf.type_by_id(ids["noargs proto"]) == FuncProto(ids["noargs proto"], "", 0, (), False)
    assert btf.type_by_id(ids["destructor proto"]) == FuncProto(
        ids["destructor proto"], "", 0, (Param("", ids["struct sk_buff *"]),), False
    )
    seven = btf.type_by_id(ids["seven_args proto"])
    assert [p.name for p in seven.params] == ["a", "b", "c", "d", "e", "f", "g"]
    assert seven.params[6] == Param("g", ids["u32"])


def test_var_datasec_float_decl_tag(kernel):
    btf, ids = kernel
    assert btf.type_by_id(ids["jiffies"]) == Var(
        ids["jiffies"], "jiffies", ids["volatile long unsigned int"], VarLinkage.GLOBAL_ALLOCATED
    )
    assert btf.type_by_id(ids[".data"]) == Datasec(ids[".data"], ".data", 8, (VarSecinfo(ids["jiffies"], 0, 8),))
    assert btf.type_by_id(ids["double"]) == Float(ids["double"], "double", 8)
    assert btf.type_by_id(ids["decl_tag bpf_kfunc"]) == DeclTag(
        ids["decl_tag bpf_kfunc"], "bpf_kfunc", ids["ip_send_skb"], -1
    )


def test_restrict_and_decl_tag_on_a_param():
    b = BTFBuilder()
    char_id = b.int_("char", 1)
    ptr_id = b.ptr(char_id)
    restrict_id = b.restrict(ptr_id)
    proto_id = b.func_proto(0, [("dst", restrict_id)])
    func_id = b.func("f", proto_id, FuncLinkage.GLOBAL)
    tag_id = b.decl_tag("nonnull", func_id, component_idx=0)
    btf = BTF.from_bytes(b.to_bytes("big"))
    assert btf.type_by_id(restrict_id) == Restrict(restrict_id, "", ptr_id)
    assert btf.type_by_id(func_id) == Func(func_id, "f", proto_id, FuncLinkage.GLOBAL)
    assert btf.type_by_id(tag_id) == DeclTag(tag_id, "nonnull", func_id, 0)


def test_every_kind_has_its_class(kernel):
    btf, ids = kernel
    expected = {
        "int": (Int, Kind.INT),
        "void *": (Ptr, Kind.PTR),
        "char[16]": (Array, Kind.ARRAY),
        "struct sk_buff": (Struct, Kind.STRUCT),
        "sk_buff anon union": (Union, Kind.UNION),
        "enum skb_drop_reason": (Enum, Kind.ENUM),
        "enum mini_flags64": (Enum64, Kind.ENUM64),
        "struct sock": (Fwd, Kind.FWD),
        "u32": (Typedef, Kind.TYPEDEF),
        "volatile long unsigned int": (Volatile, Kind.VOLATILE),
        "const char": (Const, Kind.CONST),
        "type_tag user": (TypeTag, Kind.TYPE_TAG),
        "ip_send_skb": (Func, Kind.FUNC),
        "ip_send_skb proto": (FuncProto, Kind.FUNC_PROTO),
        "jiffies": (Var, Kind.VAR),
        ".data": (Datasec, Kind.DATASEC),
        "double": (Float, Kind.FLOAT),
        "decl_tag bpf_kfunc": (DeclTag, Kind.DECL_TAG),
    }
    assert {kind for _, kind in expected.values()} == set(Kind) - {
        Kind.UNKN,
        Kind.RESTRICT,
    }  # RESTRICT: below
    for name, (cls, kind) in expected.items():
        typ = btf.type_by_id(ids[name])
        assert type(typ) is cls, name
        assert typ.id == ids[name]
        assert typ.kind == kind
        assert btf.kind_of(ids[name]) == kind


def test_types_are_cached_and_frozen(mini):
    btf, ids = mini
    first = btf.type_by_id(ids["struct net"])
    assert btf.type_by_id(ids["struct net"]) is first
    with pytest.raises(AttributeError):
        first.size = 9


def test_both_byte_orders_give_equal_types():
    from tests.support import minikernel

    little = BTF.from_bytes(minikernel.build("little")[0])
    big = BTF.from_bytes(minikernel.build("big")[0])
    assert little.nr_types == big.nr_types
    for type_id in range(little.nr_types):
        assert little.type_by_id(type_id) == big.type_by_id(type_id)


@pytest.mark.parametrize("type_id", [-1, 60, 10_000])
def test_ids_out_of_range(mini, type_id):
    btf, ids = mini
    assert max(ids.values()) == 59
    with pytest.raises(BTFLookupError, match=f"type id {type_id} is out of range"):
        btf.type_by_id(type_id)
    with pytest.raises(KeyError):
        btf.type_by_id(type_id)


def test_bad_references_name_the_record():
    b = BTFBuilder()
    b.int_("int", 4)  # bytes 0..15 of the type section
    b.ptr(99)  # bytes 16..27
    b.struct("s", 4, [("x", 77, 0)])  # bytes 28..51
    b.func("f", 1)  # a FUNC whose type is not a FUNC_PROTO, bytes 52..63
    b.raw(Kind.TYPEDEF, size_or_type=0, extra=[])
    b.raw(Kind.INT, "wide", size_or_type=4, extra=[33])  # 33 bits in 4 bytes
    b.raw(Kind.INT, "odd", size_or_type=3, extra=[24])
    btf = BTF.from_bytes(b.to_bytes())
    with pytest.raises(BTFError, match="refers to type id 99") as err:
        btf.type_by_id(2)
    assert (err.value.type_id, err.value.offset) == (2, 24 + 16)
    with pytest.raises(BTFError, match="refers to type id 77") as err:
        btf.type_by_id(3)
    assert (err.value.type_id, err.value.offset) == (3, 24 + 28)
    with pytest.raises(BTFError, match="not a FUNC_PROTO") as err:
        btf.type_by_id(4)
    assert (err.value.type_id, err.value.offset) == (4, 24 + 52)
    assert btf.type_by_id(5) == Typedef(5, "", 0)
    with pytest.raises(BTFError, match="INT 'wide' has size 4 and 33 bits"):
        btf.type_by_id(6)
    with pytest.raises(BTFError, match="INT 'odd' has size 3"):
        btf.type_by_id(7)
    with pytest.raises(BTFError):
        btf.validate()


def test_bad_string_offsets_name_the_record():
    b = BTFBuilder()
    b.int_("int", 4)  # bytes 0..15
    b.raw(Kind.STRUCT, "s", vlen=1, size_or_type=4, extra=[5000, 1, 0])  # member name past the strings
    b.raw(Kind.TYPEDEF, size_or_type=1)  # bytes 40..51
    blob = bytearray(b.to_bytes())
    blob[24 + 40 : 24 + 44] = (4000).to_bytes(4, "little")  # the typedef's own name_off
    btf = BTF.from_bytes(bytes(blob))
    for type_id, offset in ((2, 24 + 16), (3, 24 + 40)):
        with pytest.raises(BTFError, match="string offset .* is past the string section's end") as err:
            btf.type_by_id(type_id)
        assert (err.value.type_id, err.value.offset) == (type_id, offset)


def test_int_bits_and_offset_must_fit_its_size():
    b = BTFBuilder()
    b.int_("shifted", 1, bits=4, offset=6)  # bits 6..9 of a 1-byte INT
    btf = BTF.from_bytes(b.to_bytes("big"))
    with pytest.raises(BTFError, match="INT 'shifted'") as err:
        btf.type_by_id(1)
    assert err.value.offset == 24
