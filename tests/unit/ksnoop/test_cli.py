# SPDX-License-Identifier: GPL-2.0-only
"""`ksnoop info` and `ksnoop list` on BTF built in the tests (mini kernel and small variants).

Expected text comes from what the builder wrote (offsets in minikernel.py's comments) or is literal.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ksnoop
from tests.support import minikernel
from tests.support.btfbuilder import BTFBuilder

REPO = Path(__file__).resolve().parents[3]

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
CONTROL_BUT_LAYOUT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # layouts may hold their own \t and \n


def one_error_line(outcome, status):
    """The CLI failed with `status`, printed nothing on stdout and exactly one `ksnoop: error:` line."""
    assert outcome.exit_code == status, (outcome.stdout, outcome.stderr)
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1, outcome.stderr
    assert lines[0].startswith("ksnoop: error: "), lines[0]
    assert "Traceback" not in outcome.stderr
    assert isinstance(outcome.exception, SystemExit), outcome.exception
    return lines[0]


# ---- layout text, parsed back ---------------------------------------------------------------------------
_ROW = re.compile(r"^(\t+)(.*?);\s+/\*\s+(\d+)(?::\s*(\d+))?\s+(\d+) \*/$")
_OPEN = re.compile(r"^(\t+)(struct|union) \{$")
_HOLE = re.compile(r"^\t+/\* XXX (\d+) bytes? hole, try to pack \*/$")
_BIT_HOLE = re.compile(r"^\t+/\* XXX (\d+) bits? hole, try to pack \*/$")
_TYPE_PADDING = re.compile(r"^\t+/\* XXX last struct has (\d+) bytes? of padding \*/$")
_NOTE = re.compile(r"^\t+/\* (Bitfield combined with (?:next|previous) fields) \*/$")


def parse_layout(text):
    """Rows of a layout: ("open", depth, word), (depth, decl, offset, bit_offset, size), ("hole", n),
    ("bit_hole", n), ("type_padding", n), ("note", text); blank lines and the summary comments (the
    lines after the last blank one) dropped; header and footer checked."""
    lines = text.split("\n")
    assert lines[0].endswith(" {") and lines[-1] == "};", text
    items = []
    for line in lines[1 : len(lines) - 1 - lines[::-1].index("")]:
        if not line:
            continue
        if m := _HOLE.match(line):
            items.append(("hole", int(m[1])))
        elif m := _BIT_HOLE.match(line):
            items.append(("bit_hole", int(m[1])))
        elif m := _TYPE_PADDING.match(line):
            items.append(("type_padding", int(m[1])))
        elif m := _NOTE.match(line):
            items.append(("note", m[1]))
        elif m := _OPEN.match(line):
            items.append(("open", len(m[1]), m[2]))
        elif m := _ROW.match(line):
            bit = None if m[4] is None else int(m[4])
            items.append((len(m[1]), m[2], int(m[3]), bit, int(m[5])))
        else:
            raise AssertionError(f"unexpected layout line {line!r}")
    return items


def summary(text):
    """pahole's closing comments: the lines after the last blank one, before `};`."""
    lines = text.split("\n")
    return [line.strip() for line in lines[len(lines) - lines[::-1].index("") : -1]]


# ---- functions ------------------------------------------------------------------------------------------
def test_info_function_text(cli, mini_btf):
    out = cli("info", "--btf", mini_btf, "ip_send_skb")
    assert out.exit_code == 0, out.stderr
    assert out.stdout == "int ip_send_skb(struct net *net, struct sk_buff *skb);\n"
    assert out.stderr == ""


def test_info_function_json_is_the_issue_object(cli, mini_btf):
    out = cli("info", "--json", "--btf", mini_btf, "ip_send_skb")
    assert out.exit_code == 0, out.stderr
    assert len(out.lines) == 1
    assert json.loads(out.stdout) == {
        "name": "ip_send_skb",
        "kind": "func",
        "module": "vmlinux",
        "return": "int",
        "params": [{"name": "net", "type": "struct net *"}, {"name": "skb", "type": "struct sk_buff *"}],
    }


@pytest.mark.parametrize(
    "name, text",
    [
        (
            "seven_args",
            "int seven_args(int a, long int b, char c, long unsigned int d, struct sk_buff *e, const char *f, u32 g);",
        ),
        ("printk", "int printk(const char *fmt, ...);"),
        ("noargs", "void noargs(void);"),
        (
            "strncpy_from_user",
            "long int strncpy_from_user(char *dst, const char __user *src, long int count);",
        ),
    ],
)
def test_info_function_shapes(cli, mini_btf, name, text):
    out = cli("info", "--btf", mini_btf, name)
    assert out.exit_code == 0, out.stderr
    assert out.lines == [text]


def test_info_variadic_and_no_arg_json(cli, mini_btf):
    out = cli("info", "--json", "--btf", mini_btf, "printk", "noargs")
    assert out.exit_code == 0, out.stderr
    printk, noargs = map(json.loads, out.lines)
    assert printk == {
        "name": "printk",
        "kind": "func",
        "module": "vmlinux",
        "return": "int",
        "params": [{"name": "fmt", "type": "const char *"}],
        "variadic": True,
    }
    assert noargs == {"name": "noargs", "kind": "func", "module": "vmlinux", "return": "void", "params": []}


def test_info_unnamed_params_get_arg_names(cli, write_btf):
    b = BTFBuilder()
    i = b.int_("int", 4, signed=True)
    cp = b.ptr(b.int_("char", 1))
    b.func("anon_params", b.func_proto(i, [("", i), ("", cp)]), 0)
    path = write_btf(b)
    assert cli("info", "--btf", path, "anon_params").lines == ["int anon_params(int arg0, char *arg1);"]
    params = json.loads(cli("info", "--json", "--btf", path, "anon_params").stdout)["params"]
    assert params == [{"name": "arg0", "type": "int"}, {"name": "arg1", "type": "char *"}]


def test_info_several_targets_one_line_each_in_order(cli, mini_btf):
    out = cli("info", "--btf", mini_btf, "noargs", "tp:net_dev_queue", "u32")
    assert out.exit_code == 0, out.stderr
    assert out.lines == [
        "void noargs(void);",
        "tp:net_dev_queue(struct sk_buff *skb);",
        "typedef unsigned int u32;",
    ]
    out = cli("info", "--json", "--btf", mini_btf, "noargs", "tp:net_dev_queue", "struct net", "u32")
    assert [json.loads(line)["kind"] for line in out.lines] == ["func", "tracepoint", "struct", "typedef"]


# ---- tracepoints ----------------------------------------------------------------------------------------
def test_info_tracepoint_names_from_probestub(cli, mini_btf):
    out = cli("info", "--btf", mini_btf, "tp:net_dev_queue")
    assert out.exit_code == 0, out.stderr
    assert out.lines == ["tp:net_dev_queue(struct sk_buff *skb);"]
    out = cli("info", "--json", "--btf", mini_btf, "tp:net_dev_queue")
    assert json.loads(out.stdout) == {
        "name": "net_dev_queue",
        "kind": "tracepoint",
        "module": "vmlinux",
        "params": [{"name": "skb", "type": "struct sk_buff *"}],
    }


def tracepoint_btf(probestub=None, traceiter=None):
    """btf_trace_net_dev_xmit(void *, struct sk_buff *, int), with the named helpers asked for."""
    b = BTFBuilder()
    i = b.int_("int", 4, signed=True)
    void_p = b.ptr(0)
    skb_p = b.ptr(b.struct("sk_buff", 4, [("len", i, 0)]))
    b.typedef("btf_trace_net_dev_xmit", b.ptr(b.func_proto(0, [("", void_p), ("", skb_p), ("", i)])))
    arg_types = [skb_p, i]
    if probestub is not None:
        params = [("__data", void_p)] + list(zip(probestub, arg_types))
        b.func("__probestub_net_dev_xmit", b.func_proto(0, params), 0)
    if traceiter is not None:
        params = [("__data", void_p)] + list(zip(traceiter, arg_types))
        b.func("__traceiter_net_dev_xmit", b.func_proto(i, params), 0)
    return b


@pytest.mark.parametrize(
    "probestub, traceiter, names",
    [
        (("skb", "rc"), ("iskb", "irc"), ["skb", "rc"]),  # __probestub_ first
        (None, ("iskb", "irc"), ["iskb", "irc"]),  # only __traceiter_
        (None, None, ["arg0", "arg1"]),  # neither
        (("skb",), ("iskb", "irc"), ["iskb", "irc"]),  # a __probestub_ of the wrong arity is not used
        (("skb", ""), ("iskb", "irc"), ["iskb", "irc"]),  # nor one with an unnamed parameter
    ],
)
def test_info_tracepoint_argument_names(cli, write_btf, probestub, traceiter, names):
    path = write_btf(tracepoint_btf(probestub, traceiter))
    out = cli("info", "--btf", path, "tp:net_dev_xmit")
    assert out.exit_code == 0, out.stderr
    assert out.lines == [f"tp:net_dev_xmit(struct sk_buff *{names[0]}, int {names[1]});"]
    out = cli("info", "--json", "--btf", path, "tp:net_dev_xmit")
    assert [p["name"] for p in json.loads(out.stdout)["params"]] == names


def test_info_tracepoint_typedef_not_a_prototype_is_a_runtime_failure(cli, write_btf):
    b = BTFBuilder()
    b.typedef("btf_trace_odd", b.int_("int", 4, signed=True))
    line = one_error_line(cli("info", "--btf", write_btf(b), "tp:odd"), 1)
    assert "btf_trace_odd" in line


def test_info_typedef_of_a_tracepoint_is_shown_as_c(cli, mini_btf):
    out = cli("info", "--btf", mini_btf, "btf_trace_net_dev_queue")
    assert out.lines == ["typedef void (*btf_trace_net_dev_queue)(void *, struct sk_buff *);"]


# ---- type layouts ---------------------------------------------------------------------------------------
SK_BUFF_ROWS = [
    ("open", 1, "union"),
    ("open", 2, "struct"),
    (3, "struct sk_buff *next", 0, None, 8),
    (3, "struct sk_buff *prev", 8, None, 8),
    (2, "}", 0, None, 16),
    (2, "struct list_head list", 0, None, 16),
    (1, "}", 0, None, 16),
    (1, "struct sock *sk", 16, None, 8),
    (1, "struct net_device *dev", 24, None, 8),
    (1, "char cb[48]", 32, None, 48),
    (1, "unsigned int len", 80, None, 4),
    (1, "__u8 pkt_type:3", 84, 0, 1),  # bits 672..674 of the struct
    (1, "__u8 ignore_df:1", 84, 3, 1),  # bit 675
    (1, "__u8 cloned:1", 84, 4, 1),  # bit 676; bits 677..679 and byte 85 are unused
    ("bit_hole", 3),
    ("hole", 1),
    (1, "__u16 protocol", 86, None, 2),
    (1, "void (*destructor)(struct sk_buff *)", 88, None, 8),
    (1, "unsigned char *data", 96, None, 8),
]


def test_info_struct_layout_text(cli, mini_btf):
    out = cli("info", "--btf", mini_btf, "struct sk_buff")
    assert out.exit_code == 0, out.stderr
    text = out.stdout.rstrip("\n")
    assert text.split("\n")[0] == "struct sk_buff {"
    assert parse_layout(text) == SK_BUFF_ROWS
    assert summary(text) == [
        "/* size: 104, cachelines: 2, members: 11 */",
        "/* sum members: 102, holes: 1, sum holes: 1 */",
        "/* sum bitfield members: 5 bits, bit holes: 1, sum bit holes: 3 bits */",
        "/* last cacheline: 40 bytes */",
    ]


def test_info_struct_layout_json(cli, mini_btf):
    out = cli("info", "--json", "--btf", mini_btf, "struct sk_buff")
    assert out.exit_code == 0, out.stderr
    assert json.loads(out.stdout) == {
        "name": "struct sk_buff",
        "kind": "struct",
        "size": 104,
        "members": [
            {"name": "next", "type": "struct sk_buff *", "offset": 0, "size": 8},
            {"name": "prev", "type": "struct sk_buff *", "offset": 8, "size": 8},
            {"name": "list", "type": "struct list_head", "offset": 0, "size": 16},
            {"name": "sk", "type": "struct sock *", "offset": 16, "size": 8},
            {"name": "dev", "type": "struct net_device *", "offset": 24, "size": 8},
            {"name": "cb", "type": "char[48]", "offset": 32, "size": 48},
            {"name": "len", "type": "unsigned int", "offset": 80, "size": 4},
            {
                "name": "pkt_type",
                "type": "__u8",
                "offset": 84,
                "size": 1,
                "bit_offset": 0,
                "bitfield_size": 3,
            },
            {
                "name": "ignore_df",
                "type": "__u8",
                "offset": 84,
                "size": 1,
                "bit_offset": 3,
                "bitfield_size": 1,
            },
            {"name": "cloned", "type": "__u8", "offset": 84, "size": 1, "bit_offset": 4, "bitfield_size": 1},
            {"name": "protocol", "type": "__u16", "offset": 86, "size": 2},
            {"name": "destructor", "type": "void (*)(struct sk_buff *)", "offset": 88, "size": 8},
            {"name": "data", "type": "unsigned char *", "offset": 96, "size": 8},
        ],
        "holes": [{"offset": 84, "bit_offset": 5, "bit_size": 3}, {"offset": 85, "size": 1}],
        "padding": 0,
        "bit_padding": 0,
    }


def holes_btf():
    """struct pad_demo and union mixed; offsets below in bytes (bits in the builder)."""
    b = BTFBuilder()
    char = b.int_("char", 1)
    i = b.int_("int", 4, signed=True)
    long_ = b.int_("long int", 8, signed=True)
    u = b.int_("unsigned int", 4)
    b.struct(
        "pad_demo",
        40,
        [
            ("a", char, 0),  # 0, then 3 bytes hole
            ("b", i, 32),  # 4
            ("c", char, 64),  # 8, then 7 bytes hole
            ("d", long_, 128),  # 16, then 4 bytes hole before a bitfield
            ("f", u, 224, 4),  # 28 bit 0
            ("g", u, 228, 3),  # 28 bit 4; its unit ends at 32: 25 bits of bit padding, then 8 bytes padding
        ],
    )
    b.union("mixed", 8, [("i", i, 0), ("l", long_, 0), ("s", b.array(char, 3, i), 0)])
    return b


def test_info_struct_holes_padding_and_bitfields(cli, write_btf):
    path = write_btf(holes_btf())
    out = cli("info", "--btf", path, "struct pad_demo")
    assert out.exit_code == 0, out.stderr
    text = out.stdout.rstrip("\n")
    assert parse_layout(text) == [
        (1, "char a", 0, None, 1),
        ("hole", 3),
        (1, "int b", 4, None, 4),
        (1, "char c", 8, None, 1),
        ("hole", 7),
        (1, "long int d", 16, None, 8),
        ("hole", 4),
        (1, "unsigned int f:4", 28, 0, 4),
        (1, "unsigned int g:3", 28, 4, 4),
    ]
    assert summary(text) == [
        "/* size: 40, cachelines: 1, members: 6 */",
        "/* sum members: 14, holes: 3, sum holes: 14 */",
        "/* sum bitfield members: 7 bits (0 bytes) */",
        "/* padding: 8 */",
        "/* bit_padding: 25 bits */",
        "/* last cacheline: 40 bytes */",
    ]
    data = json.loads(cli("info", "--json", "--btf", path, "struct pad_demo").stdout)
    assert data["holes"] == [{"offset": 1, "size": 3}, {"offset": 9, "size": 7}, {"offset": 24, "size": 4}]
    assert (data["padding"], data["bit_padding"]) == (8, 25)
    assert data["members"][-1] == {
        "name": "g",
        "type": "unsigned int",
        "offset": 28,
        "size": 4,
        "bit_offset": 4,
        "bitfield_size": 3,
    }


def test_info_union_layout(cli, write_btf):
    path = write_btf(holes_btf())
    out = cli("info", "--btf", path, "union mixed")
    assert out.exit_code == 0, out.stderr
    text = out.stdout.rstrip("\n")
    assert text.split("\n")[0] == "union mixed {"
    assert parse_layout(text) == [
        (1, "int i", 0, None, 4),
        (1, "long int l", 0, None, 8),
        (1, "char s[3]", 0, None, 3),
    ]
    assert summary(text) == ["/* size: 8, cachelines: 1, members: 3 */", "/* last cacheline: 8 bytes */"]
    data = json.loads(cli("info", "--json", "--btf", path, "union mixed").stdout)
    assert (data["kind"], data["size"], data["holes"], data["padding"]) == ("union", 8, [], 0)


def test_info_enum(cli, mini_btf):
    out = cli("info", "--btf", mini_btf, "enum skb_drop_reason")
    assert out.exit_code == 0, out.stderr
    assert out.stdout == (
        "enum skb_drop_reason {\n"
        "\tSKB_NOT_DROPPED_YET = 0,\n"
        "\tSKB_CONSUMED = 1,\n"
        "\tSKB_DROP_REASON_NOT_SPECIFIED = 2,\n"
        "\tSKB_DROP_REASON_NO_SOCKET = 3,\n"
        "};\t/* size: 4 */\n"
    )
    out = cli("info", "--json", "--btf", mini_btf, "enum mini_flags64")
    assert json.loads(out.stdout) == {
        "name": "enum mini_flags64",
        "kind": "enum",
        "size": 8,
        "values": [
            {"name": "MINI_F_LOW", "value": 1},
            {"name": "MINI_F_HIGH", "value": 1 << 40},
            {"name": "MINI_F_ALL", "value": (1 << 64) - 1},
        ],
    }


def test_info_enum_signedness(cli, write_btf):
    b = BTFBuilder()
    b.enum("sgn", 4, [("NEG", -1), ("POS", 5)], signed=True)
    b.enum("uns", 4, [("ALL", 0xFFFFFFFF)])
    path = write_btf(b)
    assert "\tNEG = -1," in cli("info", "--btf", path, "enum sgn").lines
    assert "\tALL = 4294967295," in cli("info", "--btf", path, "enum uns").lines


def test_info_typedef(cli, mini_btf):
    assert cli("info", "--btf", mini_btf, "u32").lines == ["typedef unsigned int u32;"]
    assert cli("info", "--btf", mini_btf, "bool").lines == ["typedef _Bool bool;"]
    out = cli("info", "--json", "--btf", mini_btf, "u32")
    assert json.loads(out.stdout) == {"name": "u32", "kind": "typedef", "type": "unsigned int"}


# ---- list -----------------------------------------------------------------------------------------------
MINI_FUNCS = [
    "__probestub_net_dev_queue",
    "__traceiter_net_dev_queue",
    "ip_send_skb",
    "noargs",
    "printk",
    "seven_args",
    "strncpy_from_user",
]


@pytest.mark.parametrize(
    "pattern, expected",
    [
        (None, sorted(MINI_FUNCS + ["tp:net_dev_queue"])),
        ("*", sorted(MINI_FUNCS + ["tp:net_dev_queue"])),
        ("tp:*", ["tp:net_dev_queue"]),
        ("tp:net_*", ["tp:net_dev_queue"]),
        ("ip_*", ["ip_send_skb"]),
        ("*net_dev*", ["__probestub_net_dev_queue", "__traceiter_net_dev_queue", "tp:net_dev_queue"]),
        ("[ns]*", ["noargs", "seven_args", "strncpy_from_user", "tp:net_dev_queue"]),
        ("?rintk", ["printk"]),
    ],
)
def test_list_globs(cli, mini_btf, pattern, expected):
    args = ["list", "--btf", mini_btf] + ([pattern] if pattern is not None else [])
    out = cli(*args)
    assert out.exit_code == 0, out.stderr
    assert out.lines == sorted(expected)
    assert out.stderr == ""


@pytest.mark.parametrize(
    "pattern, message",
    [
        ("tp:ip_*", "no tracepoint matches 'tp:ip_*'"),  # tp: matches tracepoints only
        ("nothing_matches*", "no traceable function or tracepoint matches 'nothing_matches*'"),
        ("u32", "no traceable function or tracepoint matches 'u32'"),  # typedefs and types are not traceable
        ("dump:nosuch*", "no iterator target matches 'dump:nosuch*'"),
    ],
)
def test_list_of_a_glob_nothing_matches_says_so(cli, mini_btf, pattern, message):
    line = one_error_line(cli("list", "--btf", mini_btf, pattern), 1)
    assert line == f"ksnoop: error: {message} (ksnoop list '*' lists them all)"


def test_list_names_each_function_once(cli, write_btf):
    b = BTFBuilder()
    proto = b.func_proto(0, [])
    b.func("twice", proto, 0)  # two static functions of one name, as vmlinux has
    b.func("twice", proto, 0)
    b.func("other", proto, 0)
    assert cli("list", "--btf", write_btf(b)).lines == ["other", "twice"]


# ---- modules (a stand-in for /sys/kernel/btf) -----------------------------------------------------------
@pytest.fixture
def with_module(fake_sysfs):
    builder, ids = minikernel.make_builder()
    fake_sysfs("vmlinux", builder.to_bytes())
    blob, _ = minikernel.build_module(builder, ids)
    fake_sysfs(minikernel.MODULE_NAME, blob)


def test_info_module_function_shows_its_module(cli, with_module):
    assert cli("info", "mini_hook").lines == ["int mini_hook(struct sk_buff *skb); [nf_minimod]"]
    assert cli("info", "ip_send_skb").lines == ["int ip_send_skb(struct net *net, struct sk_buff *skb);"]
    out = cli("info", "--json", "mini_state_get")
    assert json.loads(out.stdout) == {
        "name": "mini_state_get",
        "kind": "func",
        "module": "nf_minimod",
        "return": "struct nf_minimod_state *",
        "params": [{"name": "hooknum", "type": "int"}],
    }


def test_info_module_struct(cli, with_module):
    text = cli("info", "struct nf_minimod_state").stdout.rstrip("\n")
    assert parse_layout(text) == [
        (1, "struct sk_buff *skb", 0, None, 8),
        (1, "unsigned int hook_calls", 8, None, 4),
    ]
    assert "/* padding: 4 */" in summary(text)


def test_list_with_module(cli, with_module):
    assert cli("list", "mini_*").lines == ["mini_hook [nf_minimod]", "mini_state_get [nf_minimod]"]
    everything = cli("list").lines
    assert everything == sorted(
        MINI_FUNCS + ["tp:net_dev_queue", "mini_hook [nf_minimod]", "mini_state_get [nf_minimod]"]
    )


def test_unknown_name_suggests_module_function(cli, with_module):
    assert "mini_hook" in one_error_line(cli("info", "mini_hok"), 2)


# ---- errors ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, suggestion",
    [
        ("ip_send_sk", "ip_send_skb"),
        ("seven_arg", "seven_args"),
        ("tp:net_dev_queu", "tp:net_dev_queue"),
        ("struct sk_bufff", "struct sk_buff"),
        ("enum skb_drop_reaso", "enum skb_drop_reason"),
        ("u3", "u32"),
    ],
)
def test_unknown_name_exit_2_with_closest_matches(cli, mini_btf, name, suggestion):
    out = cli("info", "--btf", mini_btf, name)
    line = one_error_line(out, 2)
    assert out.stdout == ""
    assert re.search(rf"did you mean .*(?<![\w:]){re.escape(suggestion)}(?![\w])", line), line


@pytest.mark.parametrize("name", ["union nosuch", "tp:", "", "struct", "tp:nosuch_at_all_xyz"])
def test_unknown_name_without_close_match(cli, mini_btf, name):
    one_error_line(cli("info", "--btf", mini_btf, name), 2)


def test_unknown_second_target_keeps_the_first_output(cli, mini_btf):
    out = cli("info", "--btf", mini_btf, "noargs", "nosuch")
    one_error_line(out, 2)
    assert out.lines == ["void noargs(void);"]


def _corrupt_blob(what, elf_file):
    good, _ = minikernel.build()
    return {
        "empty": b"",
        "text": b"this is not BTF at all, just some text in a file\n" * 4,
        "short header": good[:20],
        "truncated": good[:100],
        "bad magic": b"\0\0" + good[2:],
        "bad version": good[:2] + b"\x07" + good[3:],
        "elf without .BTF": elf_file({".text": b"\xc3"}),
        "corrupt elf": b"\x7fELF" + b"\xff" * 60,
    }[what]


@pytest.mark.parametrize(
    "what",
    [
        "empty",
        "text",
        "short header",
        "truncated",
        "bad magic",
        "bad version",
        "elf without .BTF",
        "corrupt elf",
    ],
)
@pytest.mark.parametrize("command", [["info", "ip_send_skb"], ["list"]])
def test_unreadable_btf_exit_1_one_line(cli, write_btf, elf_file, what, command):
    path = write_btf(_corrupt_blob(what, elf_file))
    out = cli(command[0], "--btf", path, *command[1:])
    line = one_error_line(out, 1)
    assert out.stdout == ""
    assert line.startswith("ksnoop: error: --btf") and path in line, line  # which file, and what is wrong


@pytest.mark.parametrize("command", [["info", "ip_send_skb"], ["list"]])
def test_missing_or_directory_btf_exit_1(cli, tmp_path, command):
    for path, what in (
        (tmp_path / "nonexistent", "file not found"),
        (tmp_path, "is a directory, not a BTF or ELF file"),
    ):
        line = one_error_line(cli(command[0], "--btf", str(path), *command[1:]), 1)
        assert line.startswith("ksnoop: error: --btf") and str(path) in line and what in line, line


def test_bad_type_reference_is_reported_not_raised(cli, write_btf):
    b = BTFBuilder()
    i = b.int_("int", 4, signed=True)
    b.func("broken", b.func_proto(i, [("x", 999)]), 0)  # no type 999
    b.struct("brokens", 8, [("x", 999, 0)])
    path = write_btf(b)
    assert "corrupt BTF" in one_error_line(cli("info", "--btf", path, "broken"), 1)
    one_error_line(cli("info", "--btf", path, "struct brokens"), 1)


def test_anonymous_member_loop_is_reported_not_raised(cli, write_btf):
    b = BTFBuilder()
    i = b.int_("int", 4, signed=True)
    anon = b.reserve()
    b.struct("", 8, [("", anon, 0), ("x", i, 0)], at=anon)  # an anonymous struct that contains itself
    b.struct("loop", 8, [("", anon, 0)])
    path = write_btf(b)
    one_error_line(cli("info", "--btf", path, "struct loop"), 1)
    one_error_line(cli("info", "--json", "--btf", path, "struct loop"), 1)


def test_bitfield_of_zero_size_type_is_not_a_crash(cli, write_btf):
    b = BTFBuilder()
    empty = b.struct("empty", 0, [])
    b.struct("odd", 4, [("a", empty, 0, 3)])
    out = cli("info", "--btf", write_btf(b), "struct odd")
    assert out.exception is None or isinstance(out.exception, SystemExit), out.exception
    assert out.exit_code in (0, 1)


def test_btf_from_elf_and_big_endian(cli, write_btf, elf_file, minikernel_blob):
    elf = write_btf(elf_file({".text": b"\xc3", ".BTF": minikernel_blob[0]}), "vmlinux.o")
    big = write_btf(minikernel.build("big")[0], "big.btf")
    for path in (elf, big):
        out = cli("info", "--btf", path, "ip_send_skb", "tp:net_dev_queue")
        assert out.lines == [
            "int ip_send_skb(struct net *net, struct sk_buff *skb);",
            "tp:net_dev_queue(struct sk_buff *skb);",
        ], out.stderr


# ---- control characters in BTF names --------------------------------------------------------------------
TITLE = "\x1b]0;pwned\x07"  # sets the terminal's title
RED = "\x1b[31m"


@pytest.fixture
def evil_btf(write_btf):
    b = BTFBuilder()
    i = b.int_("int", 4, signed=True)
    s = b.struct("evil" + RED, 8, [("a" + TITLE, i, 0), ("b\nc", i, 32)])
    proto = b.func_proto(i, [("x\x1b[2J", b.ptr(s))])
    b.func("f" + TITLE, proto, 0)
    b.func("g\nfake_line\tX", proto, 0)
    b.enum("col\x9b", 4, [("RED" + RED, 1)])
    b.typedef("t\x1b[1m", i)
    return write_btf(b)


def test_list_escapes_control_characters(cli, evil_btf):
    out = cli("list", "--btf", evil_btf)
    assert out.exit_code == 0, out.stderr
    assert not CONTROL.search(out.stdout.replace("\n", ""))
    assert out.lines == ["f\\x1b]0;pwned\\x07", "g\\x0afake_line\\x09X"]


def test_info_text_escapes_control_characters(cli, evil_btf):
    out = cli(
        "info",
        "--btf",
        evil_btf,
        "f" + TITLE,
        "g\nfake_line\tX",
        "t\x1b[1m",
        "enum col\x9b",
        "struct evil" + RED,
    )
    assert out.exit_code == 0, out.stderr
    assert not CONTROL_BUT_LAYOUT.search(out.stdout)
    lines = out.lines
    assert lines[0] == "int f\\x1b]0;pwned\\x07(struct evil\\x1b[31m *x\\x1b[2J);"
    assert lines[1] == "int g\\x0afake_line\\x09X(struct evil\\x1b[31m *x\\x1b[2J);"
    assert lines[2] == "typedef int t\\x1b[1m;"
    assert lines[3:6] == ["enum col\\x9b {", "\tRED\\x1b[31m = 1,", "};\t/* size: 4 */"]
    layout = "\n".join(lines[6:])
    assert parse_layout(layout) == [
        (1, "int a\\x1b]0;pwned\\x07", 0, None, 4),
        (1, "int b\\x0ac", 4, None, 4),
    ]
    assert lines[6] == "struct evil\\x1b[31m {"


def test_info_json_escapes_control_characters(cli, evil_btf):
    out = cli("info", "--json", "--btf", evil_btf, "f" + TITLE, "struct evil" + RED, "enum col\x9b", "t\x1b[1m")
    assert out.exit_code == 0, out.stderr
    assert not CONTROL.search(out.stdout.replace("\n", ""))
    assert "\\u001b]0;pwned\\u0007" in out.stdout
    func, struct, enum, typedef = map(json.loads, out.lines)
    assert func["name"] == "f" + TITLE  # the escapes decode back to the kernel's bytes
    assert func["params"] == [{"name": "x\x1b[2J", "type": "struct evil" + RED + " *"}]
    assert [m["name"] for m in struct["members"]] == ["a" + TITLE, "b\nc"]
    assert enum["values"][0]["name"] == "RED" + RED
    assert typedef["name"] == "t\x1b[1m"


def test_error_message_escapes_control_characters(cli, evil_btf):
    line = one_error_line(cli("info", "--btf", evil_btf, "f\x1b]0;pwne"), 2)
    assert not CONTROL.search(line)
    assert "f\\x1b]0;pwned\\x07" in line  # the suggestion, escaped


# ---- version and help -----------------------------------------------------------------------------------
def _project_version():
    text = (REPO / "pyproject.toml").read_text()
    return re.search(r'^version = "([^"]+)"', text, re.MULTILINE)[1]


def test_version(cli):
    out = cli("--version")
    assert out.exit_code == 0
    assert out.stdout == f"ksnoop {_project_version()}\n"
    assert ksnoop.__version__ == _project_version()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--help"], ["info", "list", "--version"]),
        (["info", "--help"], ["TARGET", "--json", "--btf", "tp:"]),
        (["list", "--help"], ["GLOB", "--btf", "tp:*"]),
    ],
)
def test_help_renders(cli, args, words):
    out = cli(*args)
    assert out.exit_code == 0, out.stderr
    assert out.exception is None or isinstance(out.exception, SystemExit)
    for word in words:
        assert word in out.stdout, (word, out.stdout)


@pytest.mark.parametrize("command", ["info", "list", "trace", "dump"])
def test_help_wraps_to_the_terminal_and_says_what_every_option_is(run_module, command):
    # A process, so that COLUMNS reaches rich as it does at a terminal (CliRunner fixes the width).
    width = 72
    result = run_module(command, "--help", env={**os.environ, "COLUMNS": str(width), "TERM": "dumb"})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line) <= width for line in lines), [line for line in lines if len(line) > width]
    # No paragraph keeps a line break of its own: each wrapped line but a paragraph's last is full.
    text = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith(("│", "╭", "╰", "Usage"))]
    prose = text[: text.index("Examples:")] if "Examples:" in text else text  # examples are lines of their own
    for line, after in zip(prose, prose[1:]):
        if not line.endswith((".", ":", ")")) and after[:1].islower():
            assert len(line) + len(after.split()[0]) >= width - 4, (line, after)
    options = [line for line in lines if line.lstrip("│ ").startswith("--")]
    assert options and all(len(line.split("  ")) > 2 for line in options), options  # each with its help


def test_trace_help_teaches_the_spec_language(run_module):
    text = " ".join(run_module("trace", "--help", env={**os.environ, "COLUMNS": "200"}).stdout.split())
    for taught in ("A SPEC is TARGET or TARGET(ITEM, ...)", "==, !=, <, <=, > or >=", "'return'", "Examples:"):
        assert taught in text, taught
    assert text.count("ksnoop trace ") >= 3


# ---- the real entry point, as a process -----------------------------------------------------------------
def test_module_entry_point(run_module, mini_btf):
    result = run_module("info", "--btf", mini_btf, "ip_send_skb")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "int ip_send_skb(struct net *net, struct sk_buff *skb);\n",
        "",
    )
    result = run_module("--version")
    assert (result.returncode, result.stdout) == (0, f"ksnoop {_project_version()}\n")
    for args in (["--help"], ["info", "--help"]):
        result = run_module(*args)
        assert result.returncode == 0 and "Usage" in result.stdout and result.stderr == "", result


@pytest.mark.parametrize(
    "args, status",
    [
        (["info", "ip_send_sk"], 2),
        (["info", "--json", "tp:x"], 2),
        (["list", "--btf", "/nonexistent/btf"], 1),
    ],
)
def test_module_entry_point_errors(run_module, mini_btf, args, status):
    if "--btf" not in args:
        args = [args[0], "--btf", mini_btf, *args[1:]]
    result = run_module(*args)
    assert result.returncode == status
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("ksnoop: error: "), result.stderr


def _closed_stdout(args):
    """Run with stdout a pipe whose reader reads one line and closes it, like `| head -1`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ksnoop", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    first = proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read()
    proc.stderr.close()
    return first, proc.wait(timeout=60), stderr.decode()


def test_closed_stdout_small_output_is_quiet(mini_btf):
    # The whole output fits in the pipe; it fails only when the app flushes at the end.
    proc = subprocess.Popen(
        [sys.executable, "-m", "ksnoop", "list", "--btf", mini_btf],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # closed before the interpreter has even started
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert (proc.wait(timeout=60), stderr) == (1, "")


def test_closed_stdout_large_output_is_quiet(write_btf):
    b = BTFBuilder()
    proto = b.func_proto(0, [])
    for n in range(6000):  # ~130 kB of names: more than a pipe holds
        b.func(f"function_number_{n:05d}", proto, 0)
    first, status, stderr = _closed_stdout(["list", "--btf", write_btf(b)])
    assert first == b"function_number_00000\n"
    assert (status, stderr) == (1, "")


# ---- trace options ------------------------------------------------------------------------------------------
@pytest.fixture
def trace_options(monkeypatch):
    """Runs of `trace` record their RunOptions here instead of tracing."""
    from ksnoop.run import trace as session

    seen = []

    def fake_run(options, out, err):
        seen.append(options)
        return session.Summary(0, 0)

    monkeypatch.setattr(session, "run", fake_run)
    return seen


@pytest.mark.parametrize(
    "args, depth",
    [([], 0), (["--kstack"], 32), (["--kstack-depth", "5"], 5), (["--kstack", "--kstack-depth", "127"], 127)],
)
def test_kstack_options(cli, mini_btf, trace_options, args, depth):
    out = cli("trace", "--btf", mini_btf, *args, "tp:net_dev_queue")
    assert out.exit_code == 0, out.stderr
    (options,) = trace_options
    assert options.kstack_depth == depth


@pytest.mark.parametrize("depth", ["0", "128", "-1", "many"])
def test_kstack_depth_out_of_range_is_a_usage_error(cli, mini_btf, trace_options, depth):
    out = cli("trace", "--btf", mini_btf, "--kstack-depth", depth, "tp:net_dev_queue")
    assert out.exit_code == 2 and trace_options == []
    assert "--kstack-depth" in out.stderr


def test_kstack_depth_is_checked_without_the_cli_too():
    from ksnoop.errors import UsageError
    from ksnoop.run.trace import RunOptions, prepare

    with pytest.raises(UsageError, match="--kstack-depth 128: at most 127 frames"):
        prepare(RunOptions(specs=("tp:net_dev_queue",), kstack_depth=128))


@pytest.mark.parametrize(
    "args, zeros, compact",
    [
        ([], False, False),
        (["--zeros"], True, False),
        (["--compact"], False, True),
        (["--zeros", "--compact"], True, True),
    ],
)
def test_layout_options(cli, mini_btf, trace_options, args, zeros, compact):
    out = cli("trace", "--btf", mini_btf, *args, "tp:net_dev_queue")
    assert out.exit_code == 0, out.stderr
    (options,) = trace_options
    assert (options.zeros, options.compact) == (zeros, compact)
