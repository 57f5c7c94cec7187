# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop/output/text.py: Events -> upstream ksnoop's text layout, plain or as rich markup, never unsafe."""

from __future__ import annotations

import dataclasses
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bpf.plan import ProbeKind
from ksnoop.output.decode import READ_FAILED
from ksnoop.output.kallsyms import Symbolizer
from ksnoop.output.text import TextFormatter
from tests.support.records import IDS, TS, event, golden_events, probe_index, sk_buff_bytes, trace
from tests.support.records import with_captures

REPO = Path(__file__).resolve().parents[3]
GOLDEN = REPO / "tests" / "golden" / "output"
FIRST = "      1000000123    1     2813 "  # time, cpu, pid of tests.support.records' default header


def lines(resolved, probe, *values, duration_ns=None, color=False, **header):
    return (
        TextFormatter(resolved, color=color).format(event(resolved, probe, *values, **header), duration_ns).split("\n")
    )


SGR = re.compile("\x1b\\[[0-9;]*m")


def rendered(coloured: str) -> str:
    """What a terminal shows of colour output, colours aside: the text without its SGR codes."""
    return SGR.sub("", coloured)


def test_header_is_upstream_ksnoops():
    t = trace("seven_args(a)")
    # printf("%16s %4s %8s %s\n", "TIME", "CPU", "PID", "FUNCTION/ARGS") in libbpf-tools/ksnoop.c
    assert TextFormatter(t, color=False).header() == "            TIME  CPU      PID FUNCTION/ARGS"
    assert rendered(TextFormatter(t, color=True).header()) == TextFormatter(t, color=False).header()


def test_scalars():
    t = trace("seven_args(a, b, c, d, g)")
    assert lines(t, 0, -1, -(1 << 40), 65, (1 << 64) - 1, 7) == [
        FIRST + "seven_args( /* curl */",
        "    a = (int)-1,",
        "    b = (long int)-1099511627776,",
        "    c = (char)'A',",
        "    d = (long unsigned int)0xffffffffffffffff,",  # an unsigned long in the kernel half: hex
        "    g = (u32)7",
        ");",
    ]


def test_return_record_and_duration():
    t = trace("seven_args(return)")
    ret = probe_index(t, ProbeKind.FEXIT)
    assert lines(t, ret, -22, entry_ts=TS - 1234) == [
        FIRST + "seven_args( /* curl */",
        "    return = (int)-22 /* -EINVAL */",
        "); /* duration 1234 ns */",
    ]
    assert lines(t, ret, 0)[-1] == ");"
    assert lines(t, ret, 0, duration_ns=99)[-1] == "); /* duration 99 ns */"


def test_without_comm():
    t = trace("seven_args(a)")
    t = type(t)(dataclasses.replace(t.plan, with_comm=False), t.targets)
    assert lines(t, 0, 5) == [FIRST + "seven_args(", "    a = (int)5", ");"]
    assert rendered(TextFormatter(t, color=True).format(event(t, 0, 5))) == "\n".join(lines(t, 0, 5))


def test_tracepoint_struct_nested_and_indented():
    t = trace("tp:net_dev_queue(skb->dev, skb->sk)")
    dev = b"lo".ljust(16, b"\0") + (1).to_bytes(4, "little") + bytes(4)
    assert lines(t, 0, dev, 0) == [
        FIRST + "tp:net_dev_queue( /* curl */",
        "    skb->dev = *(struct net_device *)0xffff888000c0ffee {",  # where it was, as followed
        '      .name = (char[16])"lo",',
        "      .ifindex = (int)1,",
        "    },",
        "    skb->sk = (struct sock *)NULL",
        ");",
    ]


def test_read_failed():
    t = trace("tp:net_dev_queue(skb->len, skb->dev->name, skb->dev)")
    assert lines(t, 0, 228, b"lo", b"", failed=0b101)[1:4] == [
        "    skb->len = <read failed>,",
        '    skb->dev->name = (char[16])"lo",',
        "    skb->dev = <read failed>",
    ]


def test_truncated_struct():
    t = with_captures(trace("tp:net_dev_queue(skb)"), 0, skb={"size": 32, "full_size": 104})
    assert lines(t, 0, sk_buff_bytes()[:32])[1:] == [
        "    skb = *(struct sk_buff *)0xffff888000c0ffee {",
        "      .next = (struct sk_buff *)0xffff888000001000,",
        "      .prev = (struct sk_buff *)0xffff888000002000,",
        "      .list = (struct list_head){",
        "        .next = (struct list_head *)0xffff888000001000,",
        "        .prev = (struct list_head *)0xffff888000002000,",
        "      },",
        "      .dev = (struct net_device *)0xffff888012345678,",
        "      /* 1 zero member */",
        "      ...",
        "    } /* truncated: 32 of 104 bytes */",
        ");",
    ]


def test_enums_bools_floats():
    t = with_captures(
        trace("seven_args(a, b, d, g)"),
        0,
        a={"type_id": IDS["enum skb_drop_reason"]},
        b={"type_id": IDS["enum mini_flags64"]},
        d={"type_id": IDS["double"]},
        g={"type_id": IDS["bool"], "size": 1},
    )
    assert lines(t, 0, 3, 5, 0x4004000000000000, 1)[1:5] == [
        "    a = (enum skb_drop_reason)SKB_DROP_REASON_NO_SOCKET,",
        "    b = (enum mini_flags64)5,",
        "    d = (double)2.5,",
        "    g = (bool)true",
    ]


def test_char_array_invalid_utf8_and_control_characters():
    t = trace("tp:net_dev_queue(skb->dev->name)")
    got = lines(t, 0, b'e\xffth\x1b[31m\x07\x9b"\n')
    assert got[1] == '    skb->dev->name = (char[16])"e\\xffth\\x1b[31m\\x07\\x9b\\"\\n"'


def test_unexpected_values_still_make_text():
    t = trace("seven_args(a, b)")
    f = TextFormatter(t, color=False)
    ev = event(t, 0, 1, 2)
    odd = ev._replace(values=(b"\x01\x02", READ_FAILED))
    assert f.format(odd).split("\n")[1:3] == ["    a = (int)<bytes 0102>,", "    b = <read failed>"]


HOSTILE = [
    b"\x1b]0;pwned\x07",  # sets the terminal's title
    b"\x1b[2J\x1b[H",  # clears the screen
    b"[bold]x[/]",  # rich markup
    b"[link=http://x]y",
    b"a\\",  # a trailing backslash would escape the closing tag after it
    b"a\\\\\\",
    b"\\[bold]x",
    b":smile: [/]",
    b"%s%d",
    b"\xc2\x9b31m",  # C1 CSI, as UTF-8
]


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("color", [False, True])
def test_hostile_comm_and_strings_cannot_inject(hostile, color):
    t = trace("tp:net_dev_queue(skb->dev->name, skb->dev)")
    dev = hostile[:15].ljust(16, b"\0") + bytes(8)
    text = TextFormatter(t, color=color).format(event(t, 0, hostile[:15], dev, comm=hostile))
    assert "\x1b" not in rendered(text) and "\x07" not in text and "\x9b" not in text
    plain = TextFormatter(t, color=False).format(event(t, 0, hostile[:15], dev, comm=hostile))
    if color:
        # Colour adds SGR codes and nothing else: without them it is exactly the plain text.
        assert rendered(text) == plain
    if hostile == b"[bold]x[/]":
        assert "/* [bold]x[/] */" in plain.split("\n")[0]
        assert '"[bold]x[/]"' in plain


@pytest.mark.parametrize("index", range(4))
def test_colour_markup_renders_to_the_plain_text(index):
    t, events = golden_events()
    plain = TextFormatter(t, color=False).format(events[index])
    markup = TextFormatter(t, color=True).format(events[index])
    assert markup != plain
    assert rendered(markup) == plain


def test_rich_is_imported_only_for_colour():
    code = (
        "import sys\n"
        "from ksnoop.output.text import TextFormatter\n"
        "from ksnoop.output.json_lines import JsonFormatter\n"
        "from tests.support.records import trace, event\n"
        "t = trace('seven_args(a)')\n"
        "TextFormatter(t, color=False).format(event(t, 0, 1))\n"
        "JsonFormatter(t).format(event(t, 0, 1))\n"
        "assert 'rich' not in sys.modules, 'rich imported'\n"
        "TextFormatter(t, color=True)\n"
        "assert 'rich' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_golden_text(request):
    t, events = golden_events()
    f = TextFormatter(t, color=False)
    text = f.header() + "\n" + "".join(f.format(ev) + "\n" for ev in events)
    path = GOLDEN / "trace.txt"
    if os.environ.get("KSNOOP_UPDATE_GOLDEN") == "1" or request.config.getoption("--update-golden", False):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{path} differs; KSNOOP_UPDATE_GOLDEN=1 rewrites it"


# ---- kernel stacks ---------------------------------------------------------------------------------
KALLSYMS = "ffffffff81001100 T ip_send_skb\nffffffff81001200 T udp_sendmsg\nffffffffc0a00000 t e1000_xmit\t[e1000]\n"
STACK = (0xFFFFFFFF8100111D, 0xFFFFFFFF81001234, 0xFFFFFFFFC0A00010)


def _symbolizer(tmp_path, text=KALLSYMS):
    path = tmp_path / "kallsyms"
    path.write_text(text)
    warnings = []
    return Symbolizer(warnings.append, str(path)), warnings


def test_kernel_stack_frames_follow_the_record(tmp_path):
    t = trace("tp:net_dev_queue(skb->len)", kstack_depth=4)
    symbolizer, warnings = _symbolizer(tmp_path)
    text = TextFormatter(t, color=False, symbolizer=symbolizer).format(event(t, 0, 228, kstack=STACK))
    assert text.split("\n") == [
        FIRST + "tp:net_dev_queue( /* curl */",
        "    skb->len = (unsigned int)228",
        ");",
        "    ip_send_skb+0x1d",
        "    udp_sendmsg+0x34",
        "    e1000_xmit+0x10 [e1000]",
    ]
    assert warnings == []
    # Without a symbolizer, and when the stack could not be read.
    plain = TextFormatter(t, color=False).format(event(t, 0, 228, kstack=STACK[:1]))
    assert plain.split("\n")[3:] == ["    0xffffffff8100111d"]
    failed = TextFormatter(t, color=False).format(event(t, 0, 228, kstack=STACK, kstack_written=-14))
    assert failed.split("\n")[3:] == ["    <no kernel stack>"]


def test_kernel_stack_with_duration_and_colour(tmp_path):
    t = trace("seven_args(a, return)", kstack_depth=2)
    symbolizer, _ = _symbolizer(tmp_path)
    ev = event(t, 0, 7, kstack=STACK[:2])
    plain = TextFormatter(t, color=False, symbolizer=symbolizer).format(ev, 1234)
    assert plain.split("\n")[-3:] == ["); /* duration 1234 ns */", "    ip_send_skb+0x1d", "    udp_sendmsg+0x34"]
    coloured = TextFormatter(t, color=True, symbolizer=symbolizer).format(ev, 1234)
    assert rendered(coloured) == plain


def test_hostile_symbol_names_are_escaped(tmp_path):
    t = trace("tp:net_dev_queue(skb->len)", kstack_depth=1)
    symbolizer, _ = _symbolizer(tmp_path, "ffffffff81001100 T evil\x1b]0;x\x07\n")
    text = TextFormatter(t, color=False, symbolizer=symbolizer).format(event(t, 0, 1, kstack=STACK[:1]))
    assert "\x1b" not in text and "\x07" not in text and text.endswith("evil\\x1b]0;x\\x07+0x1d")


def test_function_pointers_read_as_the_function_they_point_to(tmp_path):
    """A function pointer whose target starts a kallsyms symbol shows that function's name, as C
    writes a function's address; anything else stays an address."""
    path = tmp_path / "kallsyms"
    path.write_text(KALLSYMS)
    t = trace("tp:net_dev_queue(skb->destructor, skb)")
    data = bytearray(sk_buff_bytes())
    data[88:96] = (0xFFFFFFFF81001200).to_bytes(8, "little")  # destructor = udp_sendmsg
    text = (
        TextFormatter(t, color=False, kallsyms_path=str(path))
        .format(event(t, 0, 0xFFFFFFFF81001200, bytes(data)))
        .split("\n")
    )
    assert text[1] == "    skb->destructor = (void (*)(struct sk_buff *))udp_sendmsg,"
    assert "      .destructor = (void (*)(struct sk_buff *))udp_sendmsg," in text
    # Not the start of a function (or no kallsyms to read): the address.
    elsewhere = (
        TextFormatter(t, color=False, kallsyms_path=str(path))
        .format(event(t, 0, 0xFFFFFFFF81001201, bytes(data)))
        .split("\n")
    )
    assert elsewhere[1] == "    skb->destructor = (void (*)(struct sk_buff *))0xffffffff81001201,"
    unreadable = (
        TextFormatter(t, color=False, kallsyms_path=str(tmp_path / "missing"))
        .format(event(t, 0, 0xFFFFFFFF81001200, bytes(data)))
        .split("\n")
    )
    assert unreadable[1] == "    skb->destructor = (void (*)(struct sk_buff *))0xffffffff81001200,"


def test_zeros_and_compact_layouts():
    from ksnoop.output.text import TextLayout

    t = trace("tp:net_dev_queue(skb->len, skb)")
    record = event(t, 0, 228, sk_buff_bytes())
    default = TextFormatter(t, color=False).format(record).split("\n")
    assert "      /* 3 zero members */" in default and not any(".sk = " in line for line in default)
    zeros = TextFormatter(t, color=False, layout=TextLayout(zeros=True)).format(record).split("\n")
    assert "      .sk = (struct sock *)NULL," in zeros and not any("zero member" in line for line in zeros)
    assert len(zeros) == len(default) - 1 + 3  # the count's line gives way to the 3 members
    (compact,) = TextFormatter(t, color=False, layout=TextLayout(compact=True)).format(record).split("\n")
    assert compact == (
        FIRST + "tp:net_dev_queue( /* curl */ skb->len = (unsigned int)228, "
        "skb = *(struct sk_buff *)0xffff888000c0ffee { "
        ".next = (struct sk_buff *)0xffff888000001000, .prev = (struct sk_buff *)0xffff888000002000, "
        ".list = (struct list_head){ .next = (struct list_head *)0xffff888000001000, "
        ".prev = (struct list_head *)0xffff888000002000, }, "
        '.dev = (struct net_device *)0xffff888012345678, .cb = (char[48])"hello", '
        ".len = (unsigned int)228, .pkt_type:3 = (__u8)5, .ignore_df:1 = (__u8)1, "
        ".protocol = (__u16)2048, .data = (unsigned char *)0xffff8880deadbeef, "
        "/* 3 zero members */ } );"
    )
