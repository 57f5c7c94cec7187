# SPDX-License-Identifier: GPL-2.0-only
"""btf/btf.py: lookups by name and kind, find vs lookup, suggestions, sizes, alignment, split BTF."""

from __future__ import annotations

import pytest

from btf import BTF, BTFError, BTFLookupError, Enum64, Func, Int, Kind, Struct, Typedef, Union
from tests.support import minikernel
from tests.support.btfbuilder import BTFBuilder


# ---- lookups -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, key",
    [
        ("struct sk_buff", "struct sk_buff"),
        ("sk_buff", "struct sk_buff"),  # a bare tag name still finds the struct
        ("struct  net_device ", "struct net_device"),
        ("enum skb_drop_reason", "enum skb_drop_reason"),
        ("enum mini_flags64", "enum mini_flags64"),  # ENUM64 answers to `enum` too
        ("ip_send_skb", "ip_send_skb"),
        ("u32", "u32"),
        ("unsigned int", "unsigned int"),
        ("long  unsigned int", "long unsigned int"),
        ("jiffies", "jiffies"),
        ("double", "double"),
        ("btf_trace_net_dev_queue", "btf_trace_net_dev_queue"),
        (".data", ".data"),
        ("sock", "struct sock"),  # only a FWD has that name
    ],
)
def test_lookup_by_c_name(kernel, name, key):
    btf, ids = kernel
    assert btf.lookup(name).id == ids[key]
    assert btf.find(name).id == ids[key]


def test_lookup_returns_the_right_class(mini):
    btf, ids = mini
    assert isinstance(btf.lookup("struct sk_buff"), Struct)
    assert isinstance(btf.lookup("ip_send_skb"), Func)
    assert isinstance(btf.lookup("u32"), Typedef)
    assert isinstance(btf.lookup("unsigned int"), Int)
    assert isinstance(btf.lookup("enum mini_flags64"), Enum64)


def test_union_tag():
    b = BTFBuilder()
    int_id = b.int_("int", 4)
    union_id = b.union("both", 4, [("i", int_id, 0)])
    struct_id = b.struct("both", 4, [("j", int_id, 0)])
    func_id = b.func("both", b.func_proto(int_id, []))
    btf = BTF.from_bytes(b.to_bytes())
    assert isinstance(btf.lookup("union both"), Union)
    assert btf.lookup("union both").id == union_id
    assert btf.lookup("struct both").id == struct_id
    assert btf.lookup("both").id == func_id  # a bare name is what C code calls: the function first
    assert btf.find("both", Kind.UNION).id == union_id
    assert sorted(t.id for t in btf.find_all("both")) == [union_id, struct_id, func_id]
    assert [t.id for t in btf.find_all("both", Kind.STRUCT)] == [struct_id]


@pytest.mark.parametrize(
    "name", ["union sk_buff", "enum sk_buff", "struct ip_send_skb", "struct u32", "nosuchthing", "", "struct"]
)
def test_find_misses_return_none(mini, name):
    btf, _ = mini
    assert btf.find(name) is None


def test_find_with_kind(mini):
    btf, ids = mini
    assert btf.find("sk_buff", Kind.STRUCT).id == ids["struct sk_buff"]
    assert btf.find("sk_buff", Kind.UNION) is None
    assert btf.find("u32", Kind.INT) is None
    assert btf.find("unsigned int", Kind.INT).id == ids["unsigned int"]
    with pytest.raises(BTFLookupError, match="UNION 'sk_buff'"):
        btf.lookup("sk_buff", Kind.UNION)


@pytest.mark.parametrize(
    "name, suggestion",
    [
        ("ip_send_skbb", "ip_send_skb"),
        ("struct sk_bufff", "struct sk_buff"),
        ("struct net_devic", "struct net_device"),
        ("enum skb_drop_reasn", "enum skb_drop_reason"),
        ("long unsigned intt", "long unsigned int"),
        ("printkk", "printk"),
    ],
)
def test_lookup_miss_suggests_close_names(mini, name, suggestion):
    btf, _ = mini
    with pytest.raises(BTFLookupError) as err:
        btf.lookup(name)
    assert suggestion in err.value.suggestions
    assert all(btf.find(s) is not None for s in err.value.suggestions), err.value.suggestions
    assert all(s.split()[0] == name.split()[0] for s in err.value.suggestions if name.startswith(("struct ", "enum ")))
    message = str(err.value)
    assert f"'{name}'" in message and "vmlinux BTF" in message
    assert "did you mean " + ", ".join(repr(s) for s in err.value.suggestions) + "?" in message
    assert isinstance(err.value, KeyError)


def test_lookup_miss_with_nothing_close(mini):
    btf, _ = mini
    with pytest.raises(BTFLookupError) as err:
        btf.lookup("zzzzzzzzzzzz")
    assert err.value.suggestions == ()
    assert str(err.value) == "no type or function named 'zzzzzzzzzzzz' in vmlinux BTF"


def test_names_glob_and_iter_types(mini):
    btf, ids = mini
    funcs = [name for name, _ in btf.names([Kind.FUNC])]
    assert funcs == [
        "seven_args",
        "ip_send_skb",
        "noargs",
        "printk",
        "strncpy_from_user",
        "__probestub_net_dev_queue",
        "__traceiter_net_dev_queue",
    ]
    assert btf.glob("__*_net_dev_queue", [Kind.FUNC]) == [
        ("__probestub_net_dev_queue", ids["__probestub_net_dev_queue"]),
        ("__traceiter_net_dev_queue", ids["__traceiter_net_dev_queue"]),
    ]
    assert btf.glob("*", [Kind.UNION]) == []  # the only union is anonymous
    assert [t.id for t in btf.iter_types(Kind.ENUM)] == [ids["enum skb_drop_reason"]]
    assert [t.id for t in btf.iter_types()] == list(range(1, 60))


# ---- sizes and alignment -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, size",
    [
        ("int", 4),
        ("char", 1),
        ("short unsigned int", 2),
        ("long int", 8),
        ("_Bool", 1),
        ("double", 8),
        ("bool", 1),
        ("u32", 4),
        ("const char", 1),
        ("volatile long unsigned int", 8),
        ("void *", 8),
        ("const char __user *", 8),
        ("type_tag user", 1),
        ("char[16]", 16),
        ("char[48]", 48),
        ("struct sk_buff", 104),
        ("struct net_device", 24),
        ("struct list_head", 16),
        ("sk_buff anon union", 16),
        ("enum skb_drop_reason", 4),
        ("enum mini_flags64", 8),
        ("jiffies", 8),
        (".data", 8),
        ("btf_trace_net_dev_queue", 8),
    ],
)
def test_resolve_size(kernel, key, size):
    btf, ids = kernel
    assert btf.resolve_size(ids[key]) == size


@pytest.mark.parametrize(
    "key, kind",
    [
        ("struct sock", "FWD"),
        ("ip_send_skb", "FUNC"),
        ("ip_send_skb proto", "FUNC_PROTO"),
        ("decl_tag bpf_kfunc", "DECL_TAG"),
    ],
)
def test_resolve_size_of_sizeless_types(mini, key, kind):
    btf, ids = mini
    with pytest.raises(BTFError, match=f"{kind} has no size"):
        btf.resolve_size(ids[key])
    with pytest.raises(BTFError, match="UNKN has no size"):
        btf.resolve_size(0)


def test_resolve_size_of_nested_arrays():
    b = BTFBuilder()
    int_id = b.int_("int", 4)
    row = b.array(int_id, 3)
    grid = b.array(row, 5)
    typedef = b.typedef("grid_t", grid)
    const_grid = b.const(typedef)
    empty = b.array(int_id, 0)
    btf = BTF.from_bytes(b.to_bytes())
    assert btf.resolve_size(grid) == 60
    assert btf.resolve_size(const_grid) == 60
    assert btf.resolve_size(empty) == 0


def test_loops_raise_btf_error():
    b = BTFBuilder()
    a = b.reserve()
    b.typedef("loop_b", b.typedef("loop_a", a))
    b.const(a + 2, at=a)  # [1] const -> [3] typedef -> [2] typedef -> [1]
    arr = b.reserve()
    b.array(arr, 2, at=arr)  # an array of itself
    volatile = b.reserve()
    b.volatile(b.const(volatile), at=volatile)
    btf = BTF.from_bytes(b.to_bytes())
    with pytest.raises(BTFError, match="loops"):
        btf.resolve_size(a)
    with pytest.raises(BTFError, match="loops"):
        btf.skip_modifiers(a)
    assert btf.skip_qualifiers(a).name == "loop_b"  # stops at the first typedef
    with pytest.raises(BTFError, match="loops"):
        btf.skip_qualifiers(volatile)
    with pytest.raises(BTFError):
        btf.resolve_size(arr)
    with pytest.raises(BTFError):
        btf.alignment(arr)


@pytest.mark.parametrize(
    "key, align",
    [
        ("int", 4),
        ("char", 1),
        ("short unsigned int", 2),
        ("long int", 8),
        ("double", 8),
        ("u32", 4),
        ("void *", 8),
        ("char[16]", 1),
        ("struct sk_buff", 8),
        ("struct net_device", 4),
        ("struct net", 4),
        ("enum skb_drop_reason", 4),
        ("enum mini_flags64", 8),
        ("const char", 1),
    ],
)
def test_alignment(kernel, key, align):
    btf, ids = kernel
    assert btf.alignment(ids[key]) == align


def test_alignment_of_packed_structs():
    b = BTFBuilder()
    char_id = b.int_("char", 1)
    int_id = b.int_("int", 4)
    long_id = b.int_("long int", 8, signed=True)
    # struct { char c; int i; } __attribute__((packed)): i at byte 1
    misaligned = b.struct("misaligned", 5, [("c", char_id, 0), ("i", int_id, 8)])
    # struct { int i; char c; } __attribute__((packed)): size 5 is no multiple of 4
    short = b.struct("short", 5, [("i", int_id, 0), ("c", char_id, 32)])
    # struct { char c; int i:7; }: a bitfield at an odd bit does not mean packed
    bits = b.struct("bits", 4, [("c", char_id, 0), ("i", int_id, 8, 7)])
    # struct { long l; struct misaligned m; }: a packed member aligns to 1 inside an aligned struct
    outer = b.struct("outer", 16, [("l", long_id, 0), ("m", misaligned, 64)])
    empty = b.struct("empty", 0, [])
    btf = BTF.from_bytes(b.to_bytes())
    assert btf.alignment(misaligned) == 1
    assert btf.alignment(short) == 1
    assert btf.alignment(bits) == 4
    assert btf.alignment(outer) == 8
    assert btf.alignment(empty) == 1


def test_alignment_of_sizeless_types(mini):
    btf, ids = mini
    with pytest.raises(BTFError, match="FWD has no alignment"):
        btf.alignment(ids["struct sock"])
    with pytest.raises(BTFError, match="FUNC has no alignment"):
        btf.alignment(ids["noargs"])


@pytest.mark.parametrize("long_name", ["long int", "long unsigned int", "long", "unsigned long"])
def test_pointer_size_comes_from_long(long_name):
    # A 32-bit target: `long` is 4 bytes, so are pointers.
    b = BTFBuilder()
    b.int_("int", 4, signed=True)
    long_id = b.int_(long_name, 4)
    ptr_id = b.ptr(long_id)
    sid = b.struct("pair", 8, [("p", ptr_id, 0), ("n", long_id, 32)])
    btf = BTF.from_bytes(b.to_bytes())
    assert btf.pointer_size == 4
    assert btf.resolve_size(ptr_id) == 4
    assert btf.alignment(ptr_id) == 4
    assert btf.alignment(sid) == 4
    assert btf.decode(sid, bytes([1, 0, 0, 0, 2, 0, 0, 0])) == {"p": 1, "n": 2}


def test_pointer_size_defaults_to_8():
    b = BTFBuilder()
    char_id = b.int_("char", 1)
    ptr_id = b.ptr(char_id)
    assert BTF.from_bytes(b.to_bytes()).resolve_size(ptr_id) == 8


# ---- split BTF -----------------------------------------------------------------------------------


def test_split_lookups_reach_the_base(split):
    base, module, base_ids, module_ids = split
    assert module.lookup("mini_hook").id == module_ids["mini_hook"]
    assert module.lookup("mini_state_get").id == module_ids["mini_state_get"]
    assert module.lookup("struct nf_minimod_state").id == module_ids["struct nf_minimod_state"]
    assert module.lookup("struct sk_buff").id == base_ids["struct sk_buff"]
    assert module.lookup("ip_send_skb").id == base_ids["ip_send_skb"]
    assert module.type_by_id(base_ids["struct net"]) is base.type_by_id(base_ids["struct net"])
    assert base.find("mini_hook") is None
    assert base.find("struct nf_minimod_state") is None


def test_split_sizes_and_names_cross_the_boundary(split):
    base, module, base_ids, module_ids = split
    assert module.resolve_size(module_ids["struct nf_minimod_state"]) == 16
    assert module.alignment(module_ids["struct nf_minimod_state"]) == 8
    assert module.resolve_size(module_ids["struct nf_minimod_state *"]) == 8
    assert module.decl(module_ids["mini_hook"]) == "int mini_hook(struct sk_buff *skb)"
    assert module.decl(module_ids["mini_state_get"]) == "struct nf_minimod_state *mini_state_get(int hooknum)"
    assert module.kind_of(base_ids["struct sk_buff"]) == Kind.STRUCT
    assert module.kind_of(module_ids["mini_hook"]) == Kind.FUNC
    funcs = dict(module.names([Kind.FUNC]))
    assert funcs["mini_hook"] == module_ids["mini_hook"]
    assert funcs["ip_send_skb"] == base_ids["ip_send_skb"]
    assert [t.id for t in module.iter_types()] == sorted(module_ids.values())
    assert module.glob("mini_*", [Kind.FUNC]) == [
        ("mini_hook", module_ids["mini_hook"]),
        ("mini_state_get", module_ids["mini_state_get"]),
    ]


@pytest.mark.parametrize("leading_nul", [False, True])
def test_split_glob_finds_module_functions_named_by_either_blobs_strings(leading_nul):
    """A module's function whose name vmlinux's strings already hold points into them (libbpf's
    string dedup): glob looks for the pattern's text in both string sections."""
    base_builder, base_ids = minikernel.make_builder()
    m = BTFBuilder(base=base_builder, split_leading_nul=leading_nul)
    proto = m.func_proto(base_ids["int"], [])
    own = {name: m.func(name, proto) for name in ("printk", "print_mod", "xprint")}
    base = BTF.from_bytes(base_builder.to_bytes())
    module = BTF.from_bytes(m.to_bytes(), base=base, name="mod")
    assert module.glob("print*", [Kind.FUNC], inherited=False) == [
        ("print_mod", own["print_mod"]),
        ("printk", own["printk"]),  # named by the base's string "printk"
    ]
    assert module.glob("print*", [Kind.FUNC]) == sorted(
        [("print_mod", own["print_mod"]), ("printk", own["printk"]), ("printk", base_ids["printk"])]
    )
    assert module.glob("*print?", [Kind.FUNC], inherited=False) == [("printk", own["printk"])]
    assert module.glob("[px]*", [Kind.FUNC], inherited=False) == sorted((n, i) for n, i in own.items())
    assert module.glob("*", [Kind.FUNC], inherited=False) == sorted((n, i) for n, i in own.items())


@pytest.mark.parametrize("leading_nul", [False, True])
def test_named_index_has_every_id_of_a_name_the_base_first(leading_nul):
    """What find_all answers from the index is what it answers by scanning: static functions of one
    name in several files, a name both blobs have, a module's name held by the base's strings."""
    base_builder, base_ids = minikernel.make_builder()
    proto = base_builder.func_proto(base_ids["int"], [])
    statics = [base_builder.func("twice", proto) for _ in range(3)]
    m = BTFBuilder(base=base_builder, split_leading_nul=leading_nul)
    own = {name: m.func(name, m.func_proto(base_ids["int"], [])) for name in ("printk", "twice", "mod_only")}
    base = BTF.from_bytes(base_builder.to_bytes())
    module = BTF.from_bytes(m.to_bytes(), base=base, name="mod")
    names = ("twice", "printk", "mod_only", "ip_send_skb", "nosuch", "")
    scanned = {name: [t.id for t in module.find_all(name, Kind.FUNC)] for name in names}
    found = {name: module.find(name, Kind.FUNC) for name in names}
    index = module.named_index(Kind.FUNC)
    assert {name: index.get(name) for name in names} == scanned
    assert scanned["twice"] == statics + [own["twice"]]
    assert scanned["printk"] == [base_ids["printk"], own["printk"]]
    assert scanned["nosuch"] == []
    assert {name: [t.id for t in module.find_all(name, Kind.FUNC)] for name in names} == scanned  # now by index
    assert {name: module.find(name, Kind.FUNC) for name in names} == found
    assert base.named_index(Kind.FUNC).get("twice") == statics


def test_split_suggestions_come_from_both(split):
    _, module, _, _ = split
    with pytest.raises(BTFLookupError) as err:
        module.lookup("mini_hok")
    assert "mini_hook" in err.value.suggestions
    assert "nf_minimod BTF" in str(err.value)
    with pytest.raises(BTFLookupError) as err:
        module.lookup("ip_send_skbb")
    assert "ip_send_skb" in err.value.suggestions


def test_split_ids_out_of_range(split):
    base, module, base_ids, module_ids = split
    with pytest.raises(BTFLookupError):
        module.type_by_id(max(module_ids.values()) + 1)
    with pytest.raises(BTFLookupError):
        base.type_by_id(min(module_ids.values()))


def test_split_reference_past_the_module():
    from tests.support import minikernel

    base_builder, base_ids = minikernel.make_builder()
    m = BTFBuilder(base=base_builder)
    first = m.ptr(base_ids["int"])
    bad = m.ptr(first + 5)
    base = BTF.from_bytes(base_builder.to_bytes())
    module = BTF.from_bytes(m.to_bytes(), base=base)
    assert module.type_by_id(first).type_id == base_ids["int"]
    with pytest.raises(BTFError, match=f"refers to type id {first + 5}") as err:
        module.type_by_id(bad)
    assert (err.value.type_id, err.value.offset) == (bad, 24 + 12)


def test_btf_decode_and_render_take_names_ids_and_types(mini):
    btf, ids = mini
    data = (7).to_bytes(4, "little") + (9).to_bytes(4, "little")
    expected = {"hash_mix": 7, "ifindex": 9}
    assert btf.decode("struct net", data) == expected
    assert btf.decode(ids["struct net"], data) == expected
    assert btf.decode(btf.lookup("struct net"), data) == expected
    assert btf.render("struct net", data) == btf.render(ids["struct net"], data)
    assert repr(btf) == "<BTF vmlinux: ids 1..59>"
