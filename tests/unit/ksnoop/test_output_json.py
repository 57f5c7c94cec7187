# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop/output/json_lines.py: Events -> one JSON object per line, from records packed as programs write them."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import struct
from pathlib import Path

import pytest

from bpf.plan import ProbeKind
from btf import BTF
from ksnoop.output import json_compiled
from ksnoop.output.json_compiled import record_liner, struct_encoder
from ksnoop.output.decode import READ_FAILED, RawValue
from ksnoop.output.kallsyms import Symbolizer
from ksnoop.output.json_lines import JsonFormatter
from tests.support.btfbuilder import BTFBuilder
from tests.support.records import CPU, IDS, PID, TID, TS, event, golden_events, probe_index, record, sk_buff_bytes
from tests.support.records import trace, with_captures

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "output"
HEADER = {"ts": TS, "cpu": CPU, "pid": PID, "tid": TID, "comm": "curl"}

SK_BUFF_JSON = {
    "next": "0xffff888000001000",
    "prev": "0xffff888000002000",
    "list": {"next": "0xffff888000001000", "prev": "0xffff888000002000"},
    "sk": None,
    "dev": "0xffff888012345678",
    "cb": "hello",
    "len": 228,
    "pkt_type": 5,
    "ignore_df": 1,
    "cloned": 0,
    "protocol": 2048,
    "destructor": None,
    "data": "0xffff8880deadbeef",
}


def line(resolved, probe, *values, duration_ns=None, **header):
    """The formatted line, checked to be one line of pure ASCII that parses as JSON."""
    text = JsonFormatter(resolved).format(event(resolved, probe, *values, **header), duration_ns)
    assert "\n" not in text and text.isascii()
    assert not any(ord(ch) < 0x20 for ch in text)
    return text


def obj(resolved, probe, *values, **kwargs):
    return json.loads(line(resolved, probe, *values, **kwargs))


# ---- the line --------------------------------------------------------------------------------------


def test_scalars_exact_line():
    t = trace("seven_args(a, b, c, d, g)")
    got = line(t, 0, -1, -(1 << 40), 65, (1 << 64) - 1, 4_000_000_000)
    want = dict(
        HEADER,
        func="seven_args",
        probe="entry",
        args={"a": -1, "b": str(-(1 << 40)), "c": 65, "d": str((1 << 64) - 1), "g": 4_000_000_000},
    )
    assert got == json.dumps(want)  # same keys, order and spacing as json.dumps; 64-bit values as strings


def test_return_record_with_duration():
    t = trace("seven_args(return)")
    ret = probe_index(t, ProbeKind.FEXIT)
    assert obj(t, ret, -22, entry_ts=TS - 1234) == dict(
        HEADER, func="seven_args", probe="return", args={"return": -22}, duration_ns=1234
    )
    assert "duration_ns" not in obj(t, ret, -22)  # the entry was not seen
    assert obj(t, ret, -22, duration_ns=77)["duration_ns"] == 77  # the caller's figure wins


def test_tracepoint_func_is_named_as_a_spec_names_it():
    t = trace("tp:net_dev_queue(skb -> len)")
    assert obj(t, 0, 228) == dict(HEADER, func="tp:net_dev_queue", probe="tracepoint", args={"skb->len": 228})


def test_read_failed():
    t = trace("tp:net_dev_queue(skb->len, skb->dev->name, skb->dev)")
    failed = {"error": "read failed"}
    assert obj(t, 0, 228, b"lo", b"", failed=0b110)["args"] == {
        "skb->len": 228,
        "skb->dev->name": failed,
        "skb->dev": failed,
    }
    # A failed scalar in an all-scalar record leaves the fast path for the converters.
    t = trace("seven_args(a, b)")
    assert obj(t, 0, 1, 2, failed=0b01)["args"] == {"a": failed, "b": "2"}  # b is a long


def test_whole_struct_pointers_hex_and_anonymous_members_flattened():
    t = trace("tp:net_dev_queue(skb)")
    assert obj(t, 0, sk_buff_bytes())["args"] == {"skb": SK_BUFF_JSON}


def test_truncated_struct_is_marked():
    t = with_captures(trace("tp:net_dev_queue(skb)"), 0, skb={"size": 32, "full_size": 104})
    assert obj(t, 0, sk_buff_bytes()[:32])["args"]["skb"] == {
        "next": "0xffff888000001000",
        "prev": "0xffff888000002000",
        "list": {"next": "0xffff888000001000", "prev": "0xffff888000002000"},
        "sk": None,
        "dev": "0xffff888012345678",
        "...": "truncated",
    }


def test_enums_bools_floats():
    t = with_captures(
        trace("seven_args(a, b, d, g)"),
        0,
        a={"type_id": IDS["enum skb_drop_reason"]},
        b={"type_id": IDS["enum mini_flags64"]},
        d={"type_id": IDS["double"]},
        g={"type_id": IDS["bool"], "size": 1},
    )
    args = obj(t, 0, 1, 1 << 40, struct.unpack("<Q", struct.pack("<d", 2.5))[0], 1)["args"]
    assert args == {"a": "SKB_CONSUMED", "b": "MINI_F_HIGH", "d": 2.5, "g": True}
    args = obj(t, 0, 9, (1 << 64) - 1, struct.unpack("<Q", struct.pack("<d", float("nan")))[0], 0)["args"]
    assert args == {"a": 9, "b": "MINI_F_ALL", "d": "nan", "g": False}  # JSON has no NaN


def test_pointers_not_followed_are_hex_strings():
    t = trace("ip_send_skb(skb->sk, skb->data)")
    entry = probe_index(t, ProbeKind.FENTRY)
    args = obj(t, entry, 0xFFFF888000ABC000, 0)["args"]
    assert args == {"skb->sk": "0xffff888000abc000", "skb->data": None}


def test_strings():
    t = trace("seven_args(f)")
    assert obj(t, 0, b'say "hi"\\\n')["args"] == {"f": 'say "hi"\\\n'}


def test_char_array_invalid_utf8_and_control_characters():
    t = trace("tp:net_dev_queue(skb->dev->name)")
    text = line(t, 0, b"e\xffth\x1b[31m\x07\x9b")
    assert json.loads(text)["args"]["skb->dev->name"] == "e\\xffth\x1b[31m\x07\\x9b"
    assert "\\u001b[31m\\u0007" in text


@pytest.mark.parametrize("comm", [b"\x1b]0;pwned\x07", b"[bold]x[/]", b"%s%d%%", b"\xff\xfe"])
def test_hostile_comm(comm):
    t = trace("seven_args(a)")
    got = obj(t, 0, 1, comm=comm)["comm"]
    assert got == comm.decode("utf-8", "backslashreplace")


def test_unexpected_values_still_make_json():
    """Values the capture's type did not promise (a different decoder, odd sizes) take the generic path."""
    t = trace("seven_args(a, b)")
    f = JsonFormatter(t)
    ev = event(t, 0, 1, 2)
    odd = ev._replace(values=(b"\x01\x02", RawValue(IDS["struct net"], struct.pack("<Ii", 7, -1), False)))
    assert json.loads(f.format(odd))["args"] == {"a": {"bytes": "0102"}, "b": {"hash_mix": 7, "ifindex": -1}}
    odd = ev._replace(values=(READ_FAILED, None))
    assert json.loads(f.format(odd))["args"] == {"a": {"error": "read failed"}, "b": None}


def test_without_comm():
    t = trace("seven_args(a)")
    t = type(t)(dataclasses.replace(t.plan, with_comm=False), t.targets)
    assert obj(t, 0, 5) == {
        "ts": TS,
        "cpu": CPU,
        "pid": PID,
        "tid": TID,
        "func": "seven_args",
        "probe": "entry",
        "args": {"a": 5},
    }


def test_two_specs_each_probe_its_own_line():
    t = trace("seven_args(a)", "tp:net_dev_queue(skb->len)")
    tp = probe_index(t, ProbeKind.TP_BTF)
    assert obj(t, tp, 1500)["func"] == "tp:net_dev_queue"
    assert obj(t, 0, 3)["func"] == "seven_args"


# ---- whole structs: the compiled encoder against btf.decode ---------------------------------------


def _everything(byteorder):
    """A struct with every kind of member the compiled encoder handles itself, and some it does not."""
    b = BTFBuilder()
    i32 = b.int_("int", 4, signed=True)
    u32 = b.int_("unsigned int", 4)
    i8 = b.int_("signed char", 1, signed=True)
    u16 = b.int_("short unsigned int", 2)
    u64 = b.int_("long long unsigned int", 8)
    i128 = b.int_("__int128", 16, signed=True)
    char = b.int_("char", 1, char=True)
    bool_ = b.int_("_Bool", 1, bool_=True)
    old3 = b.int_("int", 4, signed=True, bits=3)  # an old-style bitfield type
    f32, f64, f128 = b.float_("float", 4), b.float_("double", 8), b.float_("long double", 16)
    e = b.enum("e", 4, [("A", 0), ("B", 1), ("B_ALIAS", 1), ("NEG", -2)], signed=True)
    e64 = b.enum64("e64", 8, [("BIG", 1 << 63), ("ONE", 1)])
    vptr = b.ptr(0)
    pair = b.struct("pair", 8, [("x", i32, 0), ("y", u32, 32)])
    anon = b.struct("", 8, [("ax", u16, 0), ("ay", u16, 16), ("az", u32, 32)])
    un = b.union("", 8, [("", anon, 0), ("whole", u64, 0), ("p", vptr, 0)])
    fwd = b.fwd("opaque")
    fields = [
        ("i", i32, 0),
        ("u", u32, 32),
        ("sc", i8, 64),
        ("flag", bool_, 72),
        ("w", u16, 80),
        ("", un, 128),
        ("big", u64, 192),
        ("huge", i128, 256),
        ("fl", f32, 384),
        ("db", f64, 448),
        ("ld", f128, 512),
        ("en", e, 640),
        ("en64", e64, 704),
        ("sb", i32, 768, 5),
        ("ub", u32, 773, 11),
        ("bb", bool_, 784, 1),
        ("eb", e, 785, 2),
        ("name", b.array(char, 8), 800),
        ("ints", b.array(u16, 4), 864),
        ("ptrs", b.array(vptr, 2), 960),
        ("pairs", b.array(pair, 2), 1088),
        ("grid", b.array(b.array(i8, 2), 2), 1216),
        ("empty", b.array(i32, 0), 1248),
        ("tail", b.array(char, 0), 1248),
    ]
    everything = b.struct("everything", 160, fields)
    old = b.struct("old", 8, [("o", old3, 0), ("after", i32, 32)], kind_flag=False)
    wrap = b.struct(
        "wrap",
        32,
        [
            ("e", b.ptr(everything), 0),
            ("o", old, 64),
            ("f", b.ptr(fwd), 128),
            ("c", b.const(b.typedef("pair_t", pair)), 192),
        ],
    )
    pairs = b.array(pair, 3)
    btf = BTF.from_bytes(b.to_bytes(byteorder))
    return btf, {"everything": everything, "old": old, "wrap": wrap, "pairs": pairs}


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_compiled_encoder_matches_btf_decode(byteorder):
    from tests.support import minikernel

    cases = []
    btf, ids = _everything(byteorder)
    cases += [(btf, type_id) for type_id in ids.values()]
    mini = BTF.from_bytes(minikernel.build(byteorder)[0])
    cases += [(mini, mini.lookup(name).id) for name in ("struct sk_buff", "struct net_device", "struct net")]
    rng = random.Random(7)
    for btf, type_id in cases:
        size = btf.resolve_size(type_id)
        compiled = struct_encoder(btf, type_id, size, False)
        for data in [bytes(size), b"\xff" * size] + [rng.randbytes(size) for _ in range(20)]:
            # The same values as btf.decode, but pointers are "0x..." strings and NaNs strings too.
            assert _plain_numbers(json.loads(compiled(data))) == _plain_numbers(
                json_compiled.finite(btf.decode(type_id, data))
            ), btf.type_name(type_id)


def _plain_numbers(value):
    # JSON writes pointers as "0x..." strings (NULL as null) and 64-bit integers as decimal strings.
    if value is None:
        return 0
    if isinstance(value, str) and value.startswith("0x"):
        return int(value, 16)
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_numbers(v) for v in value]
    return value


def test_compiled_encoder_reads_what_it_should():
    btf, ids = _everything("little")
    data = bytearray(160)
    struct.pack_into("<iIb?H", data, 0, -5, 7, -3, True, 9)
    struct.pack_into("<HHI", data, 16, 1, 2, 3)
    struct.pack_into("<f", data, 48, 0.5)
    struct.pack_into("<d", data, 56, -1.25)
    struct.pack_into("<i", data, 80, -2)
    struct.pack_into("<I", data, 96, 0b10_1_00000000011_11101)  # sb=-3, ub=3, bb=1, eb=0b10 (-2)
    data[100:104] = b"eth0"
    value = json.loads(struct_encoder(btf, ids["everything"], 160, False)(bytes(data)))
    assert value["i"] == -5 and value["flag"] is True and value["sc"] == -3
    assert (value["ax"], value["ay"], value["az"]) == (1, 2, 3) and value["p"] == "0x300020001"
    assert (value["fl"], value["db"], value["en"]) == (0.5, -1.25, "NEG")
    assert (value["sb"], value["ub"], value["bb"], value["eb"]) == (-3, 3, True, "NEG")
    assert value["name"] == "eth0" and "empty" not in value and "tail" not in value  # arrays of no bytes
    assert value["grid"] == ["", ""] and value["ptrs"] == [None, None]  # signed char arrays read as text


def test_enum_aliases_show_the_first_name():
    btf, ids = _everything("little")
    data = bytearray(160)
    struct.pack_into("<i", data, 80, 1)
    value = json.loads(struct_encoder(btf, ids["everything"], 160, False)(bytes(data)))
    assert value["en"] == "B"


# ---- golden ---------------------------------------------------------------------------------------


def check_golden(name, text, request):
    path = GOLDEN / name
    if os.environ.get("KSNOOP_UPDATE_GOLDEN") == "1" or request.config.getoption("--update-golden", False):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{path} differs; KSNOOP_UPDATE_GOLDEN=1 rewrites it"


def test_golden_jsonl(request):
    t, events = golden_events()
    f = JsonFormatter(t)
    text = "".join(f.format(ev) + "\n" for ev in events)
    for row in text.splitlines():
        json.loads(row)
    check_golden("trace.jsonl", text, request)


# ---- kernel stacks ---------------------------------------------------------------------------------
KALLSYMS = "ffffffff81001100 T ip_send_skb\nffffffff81001200 T udp_sendmsg\nffffffffc0a00000 t e1000_xmit\t[e1000]\n"
STACK = (0xFFFFFFFF8100111D, 0xFFFFFFFF81001234, 0xFFFFFFFFC0A00010)


def test_kernel_stack_is_a_list_after_everything_else(tmp_path):
    path = tmp_path / "kallsyms"
    path.write_text(KALLSYMS)
    symbolizer = Symbolizer(lambda message: None, str(path))
    t = trace("seven_args(a, return)", kstack_depth=4)
    text = JsonFormatter(t, symbolizer=symbolizer).format(event(t, 0, 7, kstack=STACK), 99)
    want = dict(
        HEADER,
        func="seven_args",
        probe="entry",
        args={"a": 7},
        duration_ns=99,
        kstack=["ip_send_skb+0x1d", "udp_sendmsg+0x34", "e1000_xmit+0x10 [e1000]"],
    )
    assert text == json.dumps(want)
    # Without a symbolizer, addresses; a stack that could not be read, an empty list.
    assert json.loads(JsonFormatter(t).format(event(t, 0, 7, kstack=STACK[:1])))["kstack"] == ["0xffffffff8100111d"]
    assert json.loads(JsonFormatter(t).format(event(t, 0, 7, kstack=STACK, kstack_written=-14)))["kstack"] == []
    # Records of probes without a stack have no key.
    ret = probe_index(t, ProbeKind.FEXIT)
    assert "kstack" not in json.loads(JsonFormatter(t).format(event(t, ret, 0)))


def test_kernel_stack_json_is_ascii_whatever_the_names(tmp_path):
    path = tmp_path / "kallsyms"
    path.write_text('ffffffff81001100 T \u00e9vil\x1b"\n')
    t = trace("tp:net_dev_queue(skb->len)", kstack_depth=1)
    text = JsonFormatter(t, symbolizer=Symbolizer(lambda m: None, str(path))).format(event(t, 0, 1, kstack=STACK[:1]))
    assert text.isascii() and json.loads(text)["kstack"] == ['\u00e9vil\x1b"+0x1d']


@pytest.mark.parametrize("cb", [b"0x0", b'a"0x0', b'0x0"', b"x0x0"])
def test_null_pointers_are_null_and_text_that_reads_like_one_stays_text(cb):
    """Inside a struct, NULL pointers become null over the whole line at once; a char array whose
    text would print as a NULL pointer does must come out as that text all the same."""
    t = trace("tp:net_dev_queue(skb)")
    skb = obj(t, 0, sk_buff_bytes(name=cb))["args"]["skb"]
    assert skb["sk"] is None and skb["destructor"] is None and skb["next"] == "0xffff888000001000"
    assert skb["cb"] == cb.decode()


# ---- a record's line from its bytes equals its Event's ----------------------------------------------

_LINE_SPECS = [
    ("seven_args(a, b, c, d, e, f, g, return)",),  # ints of each size, char, pointer, string, u32
    ("tp:net_dev_queue(skb)",),  # a whole struct: union, bitfields, char array, function pointer
    ("tp:net_dev_queue(skb->len, skb->dev->name, skb->pkt_type, skb->sk, skb->protocol, skb->cloned)",),
    ("tp:net_dev_queue(skb->dev->name, skb->dev, skb->destructor)",),  # text, a followed struct, a function
    ("seven_args(a)", "ip_send_skb(skb, return)"),  # several probes in one plan
]


@pytest.mark.parametrize("specs", _LINE_SPECS, ids=lambda specs: specs[0])
@pytest.mark.parametrize("with_comm", [True, False])
def test_a_records_line_from_its_bytes_equals_its_events(specs, with_comm):
    """JsonFormatter.record and .batch (compiled from the record's bytes, what trace and dump use)
    give exactly format(decode(record)) (the Event path held and stack records take), for random
    values, failed reads, return records with and without their entry time, and hostile comms."""
    resolved = trace(*specs)
    if not with_comm:
        resolved = dataclasses.replace(resolved, plan=dataclasses.replace(resolved.plan, with_comm=False))
    _assert_lines_from_bytes_equal_events(resolved)


def test_a_records_line_from_its_bytes_equals_its_events_for_enums_bools_and_floats():
    resolved = with_captures(
        trace("seven_args(a, b, c, d)"),
        0,
        a={"type_id": IDS["enum skb_drop_reason"]},
        b={"type_id": IDS["enum mini_flags64"]},
        c={"type_id": IDS["bool"]},
        d={"type_id": IDS["double"]},
    )
    _assert_lines_from_bytes_equal_events(resolved)


def _assert_lines_from_bytes_equal_events(resolved):
    from ksnoop.output.decode import build_decoder, record_fields

    rng = random.Random(11)
    formatter = JsonFormatter(resolved)
    comms = [b"curl", b"\x1b]0;pwned\x07", b'q"uo\\te', b"caf\xc3\xa9", b"\xff\xfe", b""]
    for index, target in enumerate(resolved.targets):
        probe = resolved.plan.probes[index]
        decode = build_decoder(resolved.plan, index, target.btf)
        fields = record_fields(resolved.plan, index, target.btf)
        line, batch = formatter.record(index, fields, decode), formatter.batch(index, fields, decode)
        assert record_liner(target.btf, probe, fields, "", [""] * len(probe.captures), False, str) is not None, (
            "every capture here has a compiled line"
        )
        records = []
        for n in range(200):
            values = []
            for capture in probe.captures:
                data = rng.choice([bytes(capture.size), b"\xff" * capture.size, rng.randbytes(capture.size)])
                values.append((rng.getrandbits(64), data) if capture.address else data)
            failed = rng.getrandbits(len(probe.captures)) if n % 5 == 0 else 0
            records.append(
                record(
                    resolved,
                    index,
                    *values,
                    failed=failed,
                    comm=comms[n % len(comms)],
                    entry_ts=rng.choice([0, TS - 1000]),
                    ts=TS + n,
                )
            )
        expected = [formatter.format(decode(r)) for r in records]
        assert [line(r) for r in records] == expected
        assert batch(memoryview(b"".join(records))) == expected
        for text in expected:
            json.loads(text)
