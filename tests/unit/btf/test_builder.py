# SPDX-License-Identifier: GPL-2.0-only
"""The test BTF writer and the mini kernel, checked against bpftool's reading of the bytes."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess

import pytest

from btf.uapi import FuncLinkage
from tests.support import minikernel
from tests.support.btfbuilder import BTFBuilder

BPFTOOL = shutil.which("bpftool") or next(
    (path for path in ("/usr/sbin/bpftool", "/sbin/bpftool") if os.access(path, os.X_OK)), None
)
needs_bpftool = pytest.mark.skipif(BPFTOOL is None, reason="bpftool is not installed")


def bpftool_dump(tmp_path, blob, base_blob=None, may_refuse=False):
    """`bpftool btf dump ... format raw` of `blob`, as stripped lines; None if it refuses and `may_refuse`."""
    path = tmp_path / "btf.raw"
    path.write_bytes(blob)
    command = [BPFTOOL, "btf", "dump", "file", str(path)]
    if base_blob is not None:
        base_path = tmp_path / "base.raw"
        base_path.write_bytes(base_blob)
        command += ["--base-btf", str(base_path)]
    result = subprocess.run(command + ["format", "raw"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        if may_refuse:
            return None
        pytest.fail(f"bpftool refused the BTF: {result.stderr.strip()}")
    return [line.strip() for line in result.stdout.splitlines()]


def by_id(lines):
    """Dump lines grouped per type: {id: [header line, member lines...]}."""
    blocks = {}
    for line in lines:
        if line.startswith("["):
            type_id = int(line[1 : line.index("]")])
            blocks[type_id] = []
        blocks[type_id].append(line)
    return blocks


def every_kind():
    b = BTFBuilder()
    int_id = b.int_("int", 4, signed=True)
    char_id = b.int_("char", 1, char=True)
    three_bits_id = b.int_("u8_3bits", 1, bits=3, offset=2)
    node_id = b.reserve()
    node_ptr_id = b.ptr(node_id)
    array_id = b.array(char_id, 4)
    b.struct(
        "node",
        16,
        [("next", node_ptr_id, 0), ("tag", array_id, 64), ("flags", three_bits_id, 96)],
        kind_flag=False,
        at=node_id,
    )
    b.union("u", 4, [("i", int_id, 0), ("lo", int_id, 0, 4)])
    b.enum("sign", 4, [("NEG", -1), ("POS", 1)], signed=True)
    b.enum64("big", 8, [("MIN", -(1 << 63)), ("TOP", 1 << 40)], signed=True)
    b.fwd("fu", union=True)
    typedef_id = b.typedef("int_t", int_id)
    restrict_id = b.restrict(b.ptr(b.const(b.volatile(typedef_id))))
    b.type_tag("rcu", node_ptr_id)
    proto_id = b.func_proto(int_id, [("x", int_id), ("", restrict_id)], variadic=True)
    func_id = b.func("f", proto_id, linkage=FuncLinkage.STATIC)
    var_id = b.var("counter", int_id, linkage=0)
    b.datasec(".bss", 4, [(var_id, 0, 4)])
    b.float_("float", 4)
    b.decl_tag("arg", func_id, component_idx=1)
    return b


EVERY_KIND_DUMP = """
    [1] INT 'int' size=4 bits_offset=0 nr_bits=32 encoding=SIGNED
    [2] INT 'char' size=1 bits_offset=0 nr_bits=8 encoding=CHAR
    [3] INT 'u8_3bits' size=1 bits_offset=2 nr_bits=3 encoding=(none)
    [4] STRUCT 'node' size=16 vlen=3
    'next' type_id=5 bits_offset=0
    'tag' type_id=7 bits_offset=64
    'flags' type_id=3 bits_offset=96
    [5] PTR '(anon)' type_id=4
    [6] INT 'unsigned int' size=4 bits_offset=0 nr_bits=32 encoding=(none)
    [7] ARRAY '(anon)' type_id=2 index_type_id=6 nr_elems=4
    [8] UNION 'u' size=4 vlen=2
    'i' type_id=1 bits_offset=0
    'lo' type_id=1 bits_offset=0 bitfield_size=4
    [9] ENUM 'sign' encoding=SIGNED size=4 vlen=2
    'NEG' val=-1
    'POS' val=1
    [10] ENUM64 'big' encoding=SIGNED size=8 vlen=2
    'MIN' val=-9223372036854775808LL
    'TOP' val=1099511627776LL
    [11] FWD 'fu' fwd_kind=union
    [12] TYPEDEF 'int_t' type_id=1
    [13] VOLATILE '(anon)' type_id=12
    [14] CONST '(anon)' type_id=13
    [15] PTR '(anon)' type_id=14
    [16] RESTRICT '(anon)' type_id=15
    [17] TYPE_TAG 'rcu' type_id=5
    [18] FUNC_PROTO '(anon)' ret_type_id=1 vlen=3
    'x' type_id=1
    '(anon)' type_id=16
    '(anon)' type_id=0
    [19] FUNC 'f' type_id=18 linkage=static
    [20] VAR 'counter' type_id=1, linkage=static
    [21] DATASEC '.bss' size=4 vlen=1
    type_id=20 offset=0 size=4 (VAR 'counter')
    [22] FLOAT 'float' size=4
    [23] DECL_TAG 'arg' type_id=19 component_idx=1
"""


@needs_bpftool
def test_every_kind_reads_back_through_bpftool(tmp_path):
    expected = [line.strip() for line in EVERY_KIND_DUMP.strip().splitlines()]
    assert bpftool_dump(tmp_path, every_kind().to_bytes()) == expected


def test_header_and_strings():
    blob = every_kind().to_bytes()
    magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", blob)
    assert (magic, version, flags, hdr_len, type_off, str_off) == (0xEB9F, 1, 0, 24, 0, type_len)
    assert len(blob) == 24 + type_len + str_len
    strings = blob[24 + type_len :]
    assert strings.startswith(b"\0") and strings.endswith(b"\0")
    assert strings.count(b"\0int\0") == 1  # "int" names a type and nothing else, once


def test_old_bitfield_encoding_refuses_bitfield_size():
    b = BTFBuilder()
    int_id = b.int_("int", 4, signed=True)
    with pytest.raises(ValueError, match="kind_flag=False"):
        b.struct("s", 4, [("x", int_id, 0, 3)], kind_flag=False)


def test_reserved_ids_must_be_filled_once():
    b = BTFBuilder()
    int_id = b.int_("int", 4)
    reserved_id = b.reserve()
    with pytest.raises(ValueError, match="never filled"):
        b.to_bytes()
    with pytest.raises(ValueError, match="not a reserved"):
        b.ptr(0, at=int_id)
    b.ptr(0, at=reserved_id)
    with pytest.raises(ValueError, match="not a reserved"):
        b.ptr(0, at=reserved_id)


def swap_to_big_endian(blob):
    """Rewrite a little-endian blob field by field: the header's fields, then every u32 of the types."""
    header = struct.unpack_from("<HBBIIIII", blob)
    type_len = header[5]
    nwords = type_len // 4
    types = struct.unpack_from(f"<{nwords}I", blob, 24)
    return struct.pack(">HBBIIIII", *header) + struct.pack(f">{nwords}I", *types) + blob[24 + type_len :]


def test_byte_orders_differ_only_in_byte_order():
    little, big = every_kind().to_bytes("little"), every_kind().to_bytes("big")
    assert little[:2] == b"\x9f\xeb" and big[:2] == b"\xeb\x9f"
    assert swap_to_big_endian(little) == big
    kernel_little, _ = minikernel.build("little")
    kernel_big, _ = minikernel.build("big")
    assert swap_to_big_endian(kernel_little) == kernel_big


@needs_bpftool
def test_big_endian_reads_back_the_same(tmp_path):
    little_dump = bpftool_dump(tmp_path, every_kind().to_bytes("little"))
    big_dump = bpftool_dump(tmp_path, every_kind().to_bytes("big"), may_refuse=True)
    if big_dump is None:
        pytest.skip("this bpftool does not read big-endian BTF")
    assert big_dump == little_dump


@needs_bpftool
def test_minikernel_reads_back_through_bpftool(tmp_path):
    blob, ids = minikernel.build()
    types = by_id(bpftool_dump(tmp_path, blob))
    assert max(types) == max(ids.values())

    assert types[ids["struct sk_buff"]] == [
        f"[{ids['struct sk_buff']}] STRUCT 'sk_buff' size=104 vlen=11",
        f"'(anon)' type_id={ids['sk_buff anon union']} bits_offset=0",
        f"'sk' type_id={ids['struct sock *']} bits_offset=128",
        f"'dev' type_id={ids['struct net_device *']} bits_offset=192",
        f"'cb' type_id={ids['char[48]']} bits_offset=256",
        f"'len' type_id={ids['unsigned int']} bits_offset=640",
        f"'pkt_type' type_id={ids['__u8']} bits_offset=672 bitfield_size=3",
        f"'ignore_df' type_id={ids['__u8']} bits_offset=675 bitfield_size=1",
        f"'cloned' type_id={ids['__u8']} bits_offset=676 bitfield_size=1",
        f"'protocol' type_id={ids['__u16']} bits_offset=688",
        f"'destructor' type_id={ids['void (*)(struct sk_buff *)']} bits_offset=704",
        f"'data' type_id={ids['unsigned char *']} bits_offset=768",
    ]
    assert types[ids["sk_buff anon union"]][1:] == [
        f"'(anon)' type_id={ids['sk_buff anon struct']} bits_offset=0",
        f"'list' type_id={ids['struct list_head']} bits_offset=0",
    ]
    assert types[ids["sk_buff anon struct"]][1:] == [
        f"'next' type_id={ids['struct sk_buff *']} bits_offset=0",
        f"'prev' type_id={ids['struct sk_buff *']} bits_offset=64",
    ]
    assert types[ids["struct net_device"]][1:] == [
        f"'name' type_id={ids['char[16]']} bits_offset=0",
        f"'ifindex' type_id={ids['int']} bits_offset=128",
    ]
    assert types[ids["char[16]"]][0].endswith(
        f"ARRAY '(anon)' type_id={ids['char']} index_type_id={ids['int']} nr_elems=16"
    )
    assert types[ids["_Bool"]][0].endswith("INT '_Bool' size=1 bits_offset=0 nr_bits=8 encoding=BOOL")
    assert types[ids["const char __user *"]][0].endswith(f"PTR '(anon)' type_id={ids['type_tag user']}")
    assert types[ids["type_tag user"]][0].endswith(f"TYPE_TAG 'user' type_id={ids['const char']}")

    assert types[ids["seven_args"]][0].endswith(f"FUNC 'seven_args' type_id={ids['seven_args proto']} linkage=static")
    assert [line.split(" type_id=")[0] for line in types[ids["seven_args proto"]][1:]] == [
        "'a'",
        "'b'",
        "'c'",
        "'d'",
        "'e'",
        "'f'",
        "'g'",
    ]
    assert types[ids["noargs proto"]] == [f"[{ids['noargs proto']}] FUNC_PROTO '(anon)' ret_type_id=0 vlen=0"]
    assert types[ids["printk proto"]][1:] == [f"'fmt' type_id={ids['const char *']}", "'(anon)' type_id=0"]

    assert types[ids["btf_trace_net_dev_queue"]][0].endswith(
        f"TYPEDEF 'btf_trace_net_dev_queue' type_id={ids['btf_trace_net_dev_queue *']}"
    )
    assert types[ids["btf_trace_net_dev_queue proto"]][1:] == [
        f"'(anon)' type_id={ids['void *']}",
        f"'(anon)' type_id={ids['struct sk_buff *']}",
    ]
    named_params = [f"'__data' type_id={ids['void *']}", f"'skb' type_id={ids['struct sk_buff *']}"]
    assert types[ids["__probestub_net_dev_queue proto"]] == [
        f"[{ids['__probestub_net_dev_queue proto']}] FUNC_PROTO '(anon)' ret_type_id=0 vlen=2",
        *named_params,
    ]
    assert types[ids["__traceiter_net_dev_queue proto"]] == [
        f"[{ids['__traceiter_net_dev_queue proto']}] FUNC_PROTO '(anon)' ret_type_id={ids['int']} vlen=2",
        *named_params,
    ]
    assert types[ids[".data"]][1:] == [f"type_id={ids['jiffies']} offset=0 size=8 (VAR 'jiffies')"]


@needs_bpftool
@pytest.mark.parametrize("split_leading_nul", [False, True])
def test_split_module_reads_back_through_bpftool(tmp_path, split_leading_nul):
    base, base_ids = minikernel.make_builder()
    module = BTFBuilder(base=base, split_leading_nul=split_leading_nul)
    proto_id = module.func_proto(base_ids["int"], [("skb", base_ids["struct sk_buff *"])])
    func_id = module.func("mini_hook", proto_id)
    assert proto_id == base.last_id + 1

    types = by_id(bpftool_dump(tmp_path, module.to_bytes(), base.to_bytes()))
    assert types == {
        proto_id: [
            f"[{proto_id}] FUNC_PROTO '(anon)' ret_type_id={base_ids['int']} vlen=1",
            f"'skb' type_id={base_ids['struct sk_buff *']}",
        ],
        func_id: [f"[{func_id}] FUNC 'mini_hook' type_id={proto_id} linkage=global"],
    }


def test_split_module_strings_continue_the_base():
    base, base_ids = minikernel.make_builder()
    blob, ids = minikernel.build_module(base, base_ids)
    base_str_len = struct.unpack_from("<I", base.to_bytes(), 20)[0]
    type_len = struct.unpack_from("<I", blob, 12)[0]
    strings = blob[24 + type_len :]
    assert not strings.startswith(b"\0")  # as libbpf writes module BTF
    assert strings.startswith(b"mini_hook\0")
    assert base.find_str("skb") < base_str_len  # reused from the base, not repeated
    assert b"skb\0" not in strings
    assert BTFBuilder(base=base).add_str("mini_hook") == base_str_len
    assert min(ids.values()) == base.last_id + 1


@needs_bpftool
def test_minikernel_module_reads_back_through_bpftool(tmp_path):
    base, base_ids = minikernel.make_builder()
    blob, ids = minikernel.build_module(base, base_ids)
    types = by_id(bpftool_dump(tmp_path, blob, base.to_bytes()))
    assert sorted(types) == sorted(ids.values())
    assert types[ids["mini_hook"]] == [
        f"[{ids['mini_hook']}] FUNC 'mini_hook' type_id={ids['mini_hook proto']} linkage=static"
    ]
    assert types[ids["struct nf_minimod_state"]][1:] == [
        f"'skb' type_id={base_ids['struct sk_buff *']} bits_offset=0",
        f"'hook_calls' type_id={base_ids['unsigned int']} bits_offset=64",
    ]
