# SPDX-License-Identifier: GPL-2.0-only
"""btf/values.py: typed bytes -> Python values (decode) and ksnoop text (render), from bytes built here."""

from __future__ import annotations

import struct

import pytest

from btf import BTF, BTFError
from btf.values import TRUNCATED, TRUNCATED_KEY
from tests.support import minikernel

ORDER = {"little": "<", "big": ">"}

DEV = 0xFFFF888012345678
NEXT = 0xFFFF888000001000
PREV = 0xFFFF888000002000
DATA = 0xFFFF8880DEADBEEF


def sk_buff_bytes(byteorder, pkt_type=5, ignore_df=1, cloned=0):
    """An sk_buff laid out by hand from the layout comment in minikernel.py."""
    o = ORDER[byteorder]
    data = bytearray(104)
    struct.pack_into(o + "QQQQ", data, 0, NEXT, PREV, 0, DEV)
    data[32:37] = b"hello"
    struct.pack_into(o + "I", data, 80, 228)
    # pkt_type:3 at bit 672, ignore_df:1 at 675, cloned:1 at 676: all in byte 84. Bit 0 is the
    # least significant bit on little-endian targets and the most significant on big-endian ones.
    if byteorder == "little":
        data[84] = pkt_type | ignore_df << 3 | cloned << 4
    else:
        data[84] = pkt_type << 5 | ignore_df << 4 | cloned << 3
    struct.pack_into(o + "H", data, 86, 0x0800)
    struct.pack_into(o + "Q", data, 96, DATA)
    return bytes(data)


SK_BUFF_VALUE = {
    "next": NEXT,
    "prev": PREV,
    "list": {"next": NEXT, "prev": PREV},
    "sk": 0,
    "dev": DEV,
    "cb": "hello",
    "len": 228,
    "pkt_type": 5,
    "ignore_df": 1,
    "cloned": 0,
    "protocol": 0x0800,
    "destructor": 0,
    "data": DATA,
}

SK_BUFF_TEXT = """\
(struct sk_buff){
  .next = (struct sk_buff *)0xffff888000001000,
  .prev = (struct sk_buff *)0xffff888000002000,
  .list = (struct list_head){
    .next = (struct list_head *)0xffff888000001000,
    .prev = (struct list_head *)0xffff888000002000,
  },
  .dev = (struct net_device *)0xffff888012345678,
  .cb = (char[48])"hello",
  .len = (unsigned int)228,
  .pkt_type:3 = (__u8)5,
  .ignore_df:1 = (__u8)1,
  .protocol = (__u16)2048,
  .data = (unsigned char *)0xffff8880deadbeef,
  /* 3 zero members */
}"""


def test_decode_sk_buff(kernel, byteorder):
    btf, ids = kernel
    value = btf.decode(ids["struct sk_buff"], sk_buff_bytes(byteorder))
    assert value == SK_BUFF_VALUE
    assert list(value) == list(SK_BUFF_VALUE)  # in member order, anonymous members flattened in place


def test_render_sk_buff(kernel, byteorder):
    btf, ids = kernel
    assert btf.render(ids["struct sk_buff"], sk_buff_bytes(byteorder)) == SK_BUFF_TEXT


@pytest.mark.parametrize("pkt_type, ignore_df, cloned", [(0, 0, 1), (7, 1, 1), (2, 0, 0), (1, 1, 0)])
def test_bitfields_exact(kernel, byteorder, pkt_type, ignore_df, cloned):
    btf, ids = kernel
    value = btf.decode(ids["struct sk_buff"], sk_buff_bytes(byteorder, pkt_type, ignore_df, cloned))
    assert (value["pkt_type"], value["ignore_df"], value["cloned"]) == (pkt_type, ignore_df, cloned)
    assert value["len"] == 228 and value["protocol"] == 0x0800  # neighbours untouched


# ---- a struct with every scalar kind ---------------------------------------------------------------


@pytest.fixture(scope="module")
def sample(byteorder):
    """The mini kernel plus struct sample; returns (btf, ids, bytes of a sample filled in by hand)."""
    b, ids = minikernel.make_builder()
    ids["short int"] = b.int_("short int", 2, signed=True)
    ids["long long int"] = b.int_("long long int", 8, signed=True)
    ids["int[20]"] = b.array(ids["int"], 20, ids["int"])
    ids["char[8]"] = b.array(ids["char"], 8, ids["int"])
    ids["const char[8]"] = b.const(ids["char[8]"])
    # struct sample {                                   bytes
    #     int i; unsigned int u; bool flag; char c;      0, 4, 8, 9
    #     short s; enum skb_drop_reason r;               10, 12
    #     long long ll; enum mini_flags64 f64;           16, 24
    #     double d; int arr[20]; struct net n;           32, 40, 120
    #     int sb:5; unsigned ub:11; bool bb:1;           bits 1024, 1029, 1040
    #     enum skb_drop_reason eb:2;                     bit 1041
    #     const char name[8]; void *p;                   132, 144  (CONST -> ARRAY, as gcc writes it)
    # };                                                 size 152
    ids["struct sample"] = b.struct(
        "sample",
        152,
        [
            ("i", ids["int"], 0),
            ("u", ids["unsigned int"], 32),
            ("flag", ids["bool"], 64),
            ("c", ids["char"], 72),
            ("s", ids["short int"], 80),
            ("r", ids["enum skb_drop_reason"], 96),
            ("ll", ids["long long int"], 128),
            ("f64", ids["enum mini_flags64"], 192),
            ("d", ids["double"], 256),
            ("arr", ids["int[20]"], 320),
            ("n", ids["struct net"], 960),
            ("sb", ids["int"], 1024, 5),
            ("ub", ids["unsigned int"], 1029, 11),
            ("bb", ids["bool"], 1040, 1),
            ("eb", ids["enum skb_drop_reason"], 1041, 2),
            ("name", ids["const char[8]"], 1056),
            ("p", ids["void *"], 1152),
        ],
    )
    ids["struct net[3]"] = b.array(ids["struct net"], 3, ids["int"])
    btf = BTF.from_bytes(b.to_bytes(byteorder))

    o = ORDER[byteorder]
    data = bytearray(152)
    struct.pack_into(o + "iI?bh", data, 0, -5, 0xFFFFFFF0, True, 65, -2)
    struct.pack_into(o + "I", data, 12, 1)
    struct.pack_into(o + "qQd", data, 16, -(1 << 40), 1 << 40, 2.5)
    struct.pack_into(o + "20i", data, 40, *range(20))
    struct.pack_into(o + "Ii", data, 120, 7, -1)
    sb, ub, bb, eb = -3 & 0x1F, 1500, 1, 3
    if byteorder == "little":
        word = sb | ub << 5 | bb << 16 | eb << 17
    else:  # bits counted from the most significant end of the 32-bit unit
        word = sb << 27 | ub << 16 | bb << 15 | eb << 13
    struct.pack_into(o + "I", data, 128, word)
    data[132:137] = b"eth0\0"
    struct.pack_into(o + "Q", data, 144, 0xFFFF888000000001)
    return btf, ids, bytes(data)


SAMPLE_VALUE = {
    "i": -5,
    "u": 0xFFFFFFF0,
    "flag": True,
    "c": 65,
    "s": -2,
    "r": "SKB_CONSUMED",
    "ll": -(1 << 40),
    "f64": "MINI_F_HIGH",
    "d": 2.5,
    "arr": list(range(20)),
    "n": {"hash_mix": 7, "ifindex": -1},
    "sb": -3,
    "ub": 1500,
    "bb": True,
    "eb": "SKB_DROP_REASON_NO_SOCKET",
    "name": "eth0",
    "p": 0xFFFF888000000001,
}

SAMPLE_TEXT = """\
(struct sample){
  .i = (int)-5,
  .u = (unsigned int)4294967280,
  .flag = (bool)true,
  .c = (char)'A',
  .s = (short int)-2,
  .r = (enum skb_drop_reason)SKB_CONSUMED,
  .ll = (long long int)-1099511627776,
  .f64 = (enum mini_flags64)MINI_F_HIGH,
  .d = (double)2.5,
  .arr = (int[20])[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, ... 4 more],
  .n = (struct net){
    .hash_mix = (unsigned int)7,
    .ifindex = (int)-1,
  },
  .sb:5 = (int)-3,
  .ub:11 = (unsigned int)1500,
  .bb:1 = (bool)true,
  .eb:2 = (enum skb_drop_reason)SKB_DROP_REASON_NO_SOCKET,
  .name = (char[8])"eth0",
  .p = (void *)0xffff888000000001,
}"""


def test_decode_every_scalar(sample):
    btf, ids, data = sample
    assert btf.decode(ids["struct sample"], data) == SAMPLE_VALUE
    assert type(btf.decode(ids["struct sample"], data)["flag"]) is bool


def test_render_every_scalar(sample):
    btf, ids, data = sample
    # Like bpftool's btf_dump, a qualifier on an array type is dropped: C cannot qualify arrays.
    assert btf.render(ids["struct sample"], data) == SAMPLE_TEXT


def test_unknown_enum_values_stay_numbers(sample, byteorder):
    btf, ids, data = sample
    data = bytearray(data)
    o = ORDER[byteorder]
    struct.pack_into(o + "I", data, 12, 9)
    struct.pack_into(o + "Q", data, 24, 5)
    value = btf.decode(ids["struct sample"], bytes(data))
    assert (value["r"], value["f64"]) == (9, 5)
    text = btf.render(ids["struct sample"], bytes(data))
    assert "  .r = (enum skb_drop_reason)9,\n" in text
    assert "  .f64 = (enum mini_flags64)5,\n" in text


@pytest.mark.parametrize(
    "key, raw, value, text",
    [
        ("int", b"\xff\xff\xff\xff", -1, "(int)-1"),
        ("unsigned int", b"\xff\xff\xff\xff", 0xFFFFFFFF, "(unsigned int)4294967295"),
        ("_Bool", b"\x01", True, "(_Bool)true"),
        ("bool", b"\x00", False, "(bool)false"),
        ("char", b"A", 65, "(char)'A'"),
        ("char", b"\n", 10, "(char)10"),
        ("void *", b"\0" * 8, 0, "(void *)NULL"),
        (
            "enum skb_drop_reason",
            None,
            "SKB_DROP_REASON_NO_SOCKET",
            "(enum skb_drop_reason)SKB_DROP_REASON_NO_SOCKET",
        ),
        ("enum mini_flags64", b"\xff" * 8, "MINI_F_ALL", "(enum mini_flags64)MINI_F_ALL"),
        # Bytes after the NUL that are not NUL: not a string but bytes, every one shown.
        (
            "char[16]",
            b"eth0\0junk\0\0\0\0\0\0\0",
            "eth0\\x00junk" + "\\x00" * 7,
            '(char[16])"eth0\\x00junk' + "\\x00" * 7 + '"',
        ),
        ("char[16]", b"eth0" + b"\0" * 12, "eth0", '(char[16])"eth0"'),
        (
            "char[16]",
            b"\0\0P\x7f" + b"\1" * 12,
            "\\x00\\x00P\\x7f" + "\\x01" * 12,
            '(char[16])"\\x00\\x00P\\x7f' + "\\x01" * 12 + '"',
        ),
        ("char[16]", b"abcdefghijklmnop", "abcdefghijklmnop", '(char[16])"abcdefghijklmnop"'),
        ("char[16]", b"a\xffb\0" + b"\0" * 12, "a\\xffb", '(char[16])"a\\xffb"'),
        ("char[16]", "dé\0".encode() + b"\0" * 12, "dé", '(char[16])"dé"'),
        ("char[16]", b'say "hi"\n\\\0' + b"\0" * 5, 'say "hi"\n\\', '(char[16])"say \\"hi\\"\\n\\\\"'),
        ("u32", None, 3, "(u32)3"),
    ],
)
def test_top_level_values(kernel, byteorder, key, raw, value, text):
    btf, ids = kernel
    if raw is None:
        raw = (3).to_bytes(4, byteorder)
    assert btf.decode(ids[key], raw) == value
    assert btf.render(ids[key], raw) == text


def test_byte_order_decides_integers(kernel, byteorder):
    btf, ids = kernel
    raw = b"\x80" + b"\0" * 7
    expected = 0x80 if byteorder == "little" else -(1 << 63)
    assert btf.decode(ids["long int"], raw) == expected
    assert btf.render(ids["long int"], raw) == f"(long int){expected}"
    assert btf.decode(ids["short unsigned int"], b"\x12\x34") == (0x3412 if byteorder == "little" else 0x1234)


def test_float(kernel, byteorder):
    btf, ids = kernel
    raw = struct.pack(ORDER[byteorder] + "d", -0.125)
    assert btf.decode(ids["double"], raw) == -0.125
    assert btf.render(ids["double"], raw) == "(double)-0.125"


def test_zeroes_option(mini):
    btf, ids = mini
    assert btf.render(ids["struct net"], bytes(8)) == "(struct net){\n  /* 2 zero members */\n}"
    assert btf.render(ids["struct net"], bytes(8), zeroes=True) == (
        "(struct net){\n  .hash_mix = (unsigned int)0,\n  .ifindex = (int)0,\n}"
    )
    assert btf.decode(ids["struct net"], bytes(8)) == {"hash_mix": 0, "ifindex": 0}


def test_indent_option(mini):
    btf, ids = mini
    data = struct.pack("<Ii", 1, 2)
    assert btf.render(ids["struct net"], data, indent="\t") == (
        "(struct net){\n\t.hash_mix = (unsigned int)1,\n\t.ifindex = (int)2,\n}"
    )


# ---- arrays --------------------------------------------------------------------------------------


def test_arrays_elided_past_max_elems(sample, byteorder):
    btf, ids, _ = sample
    raw = struct.pack(ORDER[byteorder] + "20i", *range(100, 120))
    assert btf.decode(ids["int[20]"], raw) == list(range(100, 120))
    assert btf.render(ids["int[20]"], raw, max_elems=4) == "(int[20])[100, 101, 102, 103, ... 16 more]"
    assert btf.render(ids["int[20]"], raw, max_elems=20) == "(int[20])[" + ", ".join(map(str, range(100, 120))) + "]"


def test_array_of_structs(sample, byteorder):
    btf, ids, _ = sample
    raw = struct.pack(ORDER[byteorder] + "6I", 1, 2, 3, 4, 5, 6)
    assert btf.decode(ids["struct net[3]"], raw) == [
        {"hash_mix": 1, "ifindex": 2},
        {"hash_mix": 3, "ifindex": 4},
        {"hash_mix": 5, "ifindex": 6},
    ]
    assert (
        btf.render(ids["struct net[3]"], raw, max_elems=2)
        == """\
(struct net[3])[
  (struct net){
    .hash_mix = (unsigned int)1,
    .ifindex = (int)2,
  },
  (struct net){
    .hash_mix = (unsigned int)3,
    .ifindex = (int)4,
  },
  ... 1 more
]"""
    )


# ---- truncated data ------------------------------------------------------------------------------


def test_truncated_struct_keeps_what_fits(kernel, byteorder):
    btf, ids = kernel
    full = sk_buff_bytes(byteorder)
    # 30 bytes: next, prev and sk fit, dev (24..32) does not.
    assert btf.decode(ids["struct sk_buff"], full[:30]) == {
        "next": NEXT,
        "prev": PREV,
        "list": {"next": NEXT, "prev": PREV},
        "sk": 0,
        TRUNCATED_KEY: TRUNCATED,
    }
    # 84 bytes: everything up to len; the bitfield byte is missing.
    value = btf.decode(ids["struct sk_buff"], full[:84])
    assert list(value) == ["next", "prev", "list", "sk", "dev", "cb", "len", TRUNCATED_KEY]
    assert btf.render(ids["struct sk_buff"], full[:84]).endswith(
        "  .len = (unsigned int)228,\n  /* 1 zero member */\n  ...\n}"
    )


def test_truncated_nested_struct(kernel, byteorder):
    btf, ids = kernel
    full = sk_buff_bytes(byteorder)
    # 12 bytes: the anonymous union's list is cut inside its prev.
    assert btf.decode(ids["struct sk_buff"], full[:12]) == {"next": NEXT, TRUNCATED_KEY: TRUNCATED}
    assert btf.render(ids["struct sk_buff"], full[:12]) == (
        "(struct sk_buff){\n  .next = (struct sk_buff *)0xffff888000001000,\n  ...\n}"
    )


def test_truncated_char_array_is_flagged(mini):
    btf, ids = mini
    # net_device: char name[16] then int ifindex; the data stops inside name, with no NUL yet.
    assert btf.decode(ids["struct net_device"], b"abcdefgh") == {"name": "abcdefgh", TRUNCATED_KEY: TRUNCATED}
    assert btf.decode(ids["struct net_device"], b"eth0\0\0\0\0\0\0\0\0\0\0\0\0\x05\0") == {
        "name": "eth0",
        TRUNCATED_KEY: TRUNCATED,
    }
    assert btf.render(ids["struct net_device"], b"abcdefgh") == "(struct net_device){\n  ...\n}"
    assert btf.render(ids["char[16]"], b"abc") == '(char[16])"abc"...'
    assert btf.render(ids["char[16]"], b"abc\0") == '(char[16])"abc"'


def test_truncated_last_member_is_flagged():
    from tests.support.btfbuilder import BTFBuilder

    b = BTFBuilder()
    char_id = b.int_("char", 1)
    int_id = b.int_("int", 4, signed=True)
    comm_id = b.array(char_id, 16, int_id)
    task_id = b.struct("task", 20, [("pid", int_id, 0), ("comm", comm_id, 32)])
    btf = BTF.from_bytes(b.to_bytes())
    assert btf.decode(task_id, struct.pack("<i", 42) + b"kworker/") == {
        "pid": 42,
        "comm": "kworker/",
        TRUNCATED_KEY: TRUNCATED,
    }
    assert btf.decode(task_id, struct.pack("<i", 42) + b"kworker/0:1\0") == {
        "pid": 42,
        "comm": "kworker/0:1",
        TRUNCATED_KEY: TRUNCATED,
    }
    assert btf.decode(task_id, struct.pack("<i", 42) + b"kworker/0:1\0".ljust(16, b"\0")) == {
        "pid": 42,
        "comm": "kworker/0:1",
    }


def test_truncated_scalars_and_arrays(sample, byteorder):
    btf, ids, _ = sample
    raw = struct.pack(ORDER[byteorder] + "3i", 7, 8, 9)[:10]
    assert btf.decode(ids["int[20]"], raw) == [7, 8, TRUNCATED]
    assert btf.render(ids["int[20]"], raw) == "(int[20])[7, 8, ...]"
    assert btf.decode(ids["int"], raw[:3]) == TRUNCATED
    assert btf.render(ids["int"], raw[:3]) == "(int)..."
    assert btf.decode(ids["void *"], b"\1\2") == TRUNCATED
    assert btf.render(ids["void *"], b"") == "(void *)..."


def test_truncated_bitfields(sample):
    btf, ids, data = sample
    value = btf.decode(ids["struct sample"], data[:130])  # the bitfields' unit (128..131) is cut at 130
    assert value["sb"] == -3 and value["ub"] == 1500  # bits 1024..1039 are all there
    assert list(value)[-1] == TRUNCATED_KEY and "bb" not in value
    text = btf.render(ids["struct sample"], data[:130])
    assert text.endswith("  .sb:5 = (int)-3,\n  .ub:11 = (unsigned int)1500,\n  ...\n}")


def test_types_without_values_are_an_error(mini):
    # A forward declaration or a function has no bytes to decode: a BTFError naming the id, not None.
    btf, ids = mini
    for name in ("struct sock", "ip_send_skb"):
        with pytest.raises(BTFError, match=r"not a type that values have \(\[%d\]\)" % ids[name]):
            btf.decode(ids[name], b"")
        with pytest.raises(BTFError):
            btf.render(ids[name], b"")


def test_more_bytes_than_the_type_is_an_error(mini):
    btf, ids = mini
    with pytest.raises(BTFError, match=r"5 bytes of a 4-byte type"):
        btf.decode(ids["u32"], b"\0" * 5)


def test_nothing_to_show(mini):
    btf, ids = mini
    assert btf.decode(ids["struct net"], b"") == {TRUNCATED_KEY: TRUNCATED}
    assert btf.render(ids["struct net"], b"") == "(struct net){\n  ...\n}"


# ---- odd and corrupt shapes: an answer or a BTFError, never a hang or another exception ----------


def test_array_of_zero_size_elements(time_limit):
    from tests.support.btfbuilder import BTFBuilder

    b = BTFBuilder()
    empty = b.struct("empty", 0, [])
    huge = b.array(empty, 0xFFFFFFFF)
    holder = b.struct("holder", 4, [("keys", huge, 0), ("n", b.int_("int", 4), 0)])
    btf = BTF.from_bytes(b.to_bytes())
    assert btf.decode(huge, b"") == []
    assert btf.decode(holder, struct.pack("<i", 3)) == {"n": 3}  # an array of no bytes is left out
    assert btf.render(holder, struct.pack("<i", 3)) == "(struct holder){\n  .n = (int)3,\n}"


def test_anonymous_member_loop(time_limit):
    from btf import BTFError
    from tests.support.btfbuilder import BTFBuilder

    b = BTFBuilder()
    anon = b.reserve()
    int_id = b.int_("int", 4)
    b.struct("", 4, [("", anon, 0), ("x", int_id, 0)], at=anon)  # its own anonymous member
    btf = BTF.from_bytes(b.to_bytes())
    with pytest.raises(BTFError, match="nests too deeply"):
        btf.decode(anon, bytes(4))
    with pytest.raises(BTFError, match="nests too deeply"):
        btf.render(anon, bytes(4))


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_zero_bit_int(byteorder):
    from tests.support.btfbuilder import BTFBuilder

    b = BTFBuilder()
    zero = b.int_("nothing", 4, signed=True, bits=0)
    holder = b.struct("holder", 4, [("z", zero, 0)], kind_flag=False)
    btf = BTF.from_bytes(b.to_bytes(byteorder))
    assert btf.decode(zero, b"\xff" * 4) == 0
    assert btf.decode(holder, b"\xff" * 4) == {"z": 0}


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_old_style_bitfields(byteorder):
    from tests.support.btfbuilder import BTFBuilder

    b = BTFBuilder()
    five = b.int_("unsigned int", 4, bits=5)
    signed_three = b.int_("int", 4, signed=True, bits=3)
    # struct old { unsigned int lo:5, hi:5; int s:3; } with kind_flag 0: the member types carry the bits
    old = b.struct("old", 4, [("lo", five, 0), ("hi", five, 5), ("s", signed_three, 10)], kind_flag=False)
    btf = BTF.from_bytes(b.to_bytes(byteorder))
    lo, hi, s = 17, 9, -2 & 0x7
    word = lo | hi << 5 | s << 10 if byteorder == "little" else lo << 27 | hi << 22 | s << 19
    raw = word.to_bytes(4, byteorder)
    assert btf.decode(old, raw) == {"lo": 17, "hi": 9, "s": -2}
    assert btf.render(old, raw) == (
        "(struct old){\n  .lo:5 = (unsigned int)17,\n  .hi:5 = (unsigned int)9,\n  .s:3 = (int)-2,\n}"
    )
