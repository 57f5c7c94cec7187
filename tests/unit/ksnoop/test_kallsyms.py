# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop/output/kallsyms.py: /proc/kallsyms text -> sorted text symbols -> `function+0xoffset [module]`."""

from __future__ import annotations

import random

import pytest

from ksnoop.output.kallsyms import Kallsyms, Symbol, Symbolizer, parse_kallsyms

# As /proc/kallsyms writes it: vmlinux's symbols by address (data among them), then modules and
# BPF programs out of order, absolute symbols and odd lines mixed in; a module's name after a tab.
SAMPLE = """\
ffffffff81000000 T _stext
ffffffff81000000 T _text
ffffffff81001000 t do_one_initcall
ffffffff81001100 T ip_send_skb
ffffffff81001180 W arch_weak_thing
ffffffff81001200 T udp_sendmsg
ffffffff81001300 d data_among_code
ffffffff81001400 T _etext
ffffffff82000000 D jiffies
ffffffff82000100 d some_local_data
ffffffffc0201000 t ftrace_trampoline\t[__builtin__ftrace]
ffffffffc0a00000 t e1000_xmit_frame\t[e1000]
ffffffffc0a00200 T e1000_probe\t[e1000]
ffffffffc0025ba8 t bpf_prog_7661c9d641b0ddc7_ksnoop_sys_ente\t[bpf]
0000000000000000 A fixed_percpu_data
not a line
zzzzzzzzzzzzzzzz T bad_address
"""

HIDDEN = """\
0000000000000000 T _stext
0000000000000000 T ip_send_skb
0000000000000000 t e1000_xmit_frame\t[e1000]
"""


@pytest.fixture(scope="module")
def syms() -> Kallsyms:
    return parse_kallsyms(SAMPLE)


ADDRESSES = sorted({int(line.split()[0], 16) for line in SAMPLE.splitlines()[:-2]})


def test_only_text_symbols_are_kept_in_address_order(syms: Kallsyms) -> None:
    names = [syms.find(a).name for a in ADDRESSES if syms.function_at(a)]  # type: ignore[union-attr]
    assert names == [
        "_stext",
        "do_one_initcall",
        "ip_send_skb",
        "arch_weak_thing",
        "udp_sendmsg",
        "_etext",
        "bpf_prog_7661c9d641b0ddc7_ksnoop_sys_ente",
        "ftrace_trampoline",
        "e1000_xmit_frame",
        "e1000_probe",
    ]
    assert len(syms) == 11  # _text too, an alias of _stext
    assert not syms.hidden


@pytest.mark.parametrize(
    "address, text",
    [
        (0xFFFFFFFF81001100, "ip_send_skb+0x0"),  # a symbol's first byte
        (0xFFFFFFFF8100111D, "ip_send_skb+0x1d"),
        (0xFFFFFFFF8100117F, "ip_send_skb+0x7f"),  # the last byte before the next symbol
        (0xFFFFFFFF81001180, "arch_weak_thing+0x0"),  # weak symbols are code too
        (0xFFFFFFFF81000000, "_stext+0x0"),  # of two names at one address, the first listed
        (0xFFFFFFFF81000FFF, "_stext+0xfff"),
        (0xFFFFFFFF80FFFFFF, "0xffffffff80ffffff"),  # below every symbol
        (0xFFFFFFFFC0A00010, "e1000_xmit_frame+0x10 [e1000]"),
        (0xFFFFFFFFC0A00200, "e1000_probe+0x0 [e1000]"),
        (0xFFFFFFFFC0025C76, "bpf_prog_7661c9d641b0ddc7_ksnoop_sys_ente+0xce [bpf]"),
        (0xFFFFFFFFC0201001, "ftrace_trampoline+0x1 [__builtin__ftrace]"),
        (0xFFFFFFFF82000050, "_etext+0xffec50"),  # data symbols are not kept: the last code before
        (0xFFFFFFFF81001310, "udp_sendmsg+0x110"),  # data among code too
    ],
)
def test_describe(syms: Kallsyms, address: int, text: str) -> None:
    assert syms.describe(address) == text


def test_find(syms: Kallsyms) -> None:
    assert syms.find(0xFFFFFFFFC0A00201) == Symbol(0xFFFFFFFFC0A00200, "e1000_probe", "e1000")
    assert syms.find(0) is None
    assert parse_kallsyms("").find(0xFFFFFFFF81000000) is None


def test_end_of_is_where_the_next_code_starts(syms: Kallsyms) -> None:
    def end(name: str, module: str = "") -> int | None:
        symbol = syms.by_name(name, module)
        assert symbol is not None
        return syms.end_of(symbol)

    assert end("_stext") == 0xFFFFFFFF81001000
    assert end("udp_sendmsg") == 0xFFFFFFFF81001400  # data among code is no end
    assert end("_etext") == 0xFFFFFFFFC0025BA8  # vmlinux's last: the lowest of the rest
    assert end("e1000_probe", "e1000") is None


def test_by_name(syms: Kallsyms) -> None:
    assert syms.by_name("ip_send_skb") == Symbol(0xFFFFFFFF81001100, "ip_send_skb", "")
    assert syms.by_name("arch_weak_thing") == Symbol(0xFFFFFFFF81001180, "arch_weak_thing", "")
    assert syms.by_name("e1000_xmit_frame") is None  # a module's, asked of vmlinux
    assert syms.by_name("e1000_xmit_frame", "e1000") == Symbol(0xFFFFFFFFC0A00000, "e1000_xmit_frame", "e1000")
    assert syms.by_name("jiffies") is None  # data
    assert syms.by_name("_s") is None and syms.by_name("text") is None  # whole names only
    two = parse_kallsyms("ffffffff81000000 t twice\nffffffff81000100 T other\nffffffff81000200 t twice\n")
    assert two.by_name("twice") == Symbol(0xFFFFFFFF81000000, "twice", "")  # of two statics, the lowest


def test_a_module_below_vmlinux_is_found_too() -> None:
    syms = parse_kallsyms("ffff800080010000 T _stext\nffff800080020000 T _etext\nffff800000100000 t low_fn\t[low]\n")
    assert syms.describe(0xFFFF800000100010) == "low_fn+0x10 [low]"
    assert syms.describe(0xFFFF800080010010) == "_stext+0x10"
    assert syms.end_of(Symbol(0xFFFF800000100000, "low_fn", "low")) == 0xFFFF800080010000


@pytest.mark.parametrize(
    "head",
    [
        "ffffffff81000000 T _stext extra\nffffffff81000100 T ip_send_skb\n",  # a word more
        "ffffffff81000000 T _stext\nffffffff81000100 T ip_send_skb",  # no last newline
        "not-hex! T _stext\nffffffff81000100 T ip_send_skb\n",
    ],
)
def test_a_listing_of_another_shape_is_parsed_line_by_line(head: str) -> None:
    syms = parse_kallsyms(head)
    assert syms.describe(0xFFFFFFFF81000104) == "ip_send_skb+0x4"
    assert syms.by_name("ip_send_skb") == Symbol(0xFFFFFFFF81000100, "ip_send_skb", "")


def test_a_listing_out_of_address_order_is_parsed_not_bisected() -> None:
    lines = [(0xFFFFFFFF81000000 + 0x100 * n, f"fn{n}") for n in range(40)]
    syms = parse_kallsyms("".join(f"{a:016x} T {name}\n" for a, name in reversed(lines)))
    assert [syms.describe(a + 4) for a, _ in lines] == [f"{name}+0x4" for _, name in lines]


def test_the_listing_answers_as_the_parsed_symbols_do() -> None:
    """vmlinux's lines are looked up where they lie; the same lines parsed and sorted are the
    reference. Aliases, data among code, weak symbols and a rare type far from the code asked about."""
    rng = random.Random(7)
    lines, address = [], 0xFFFFFFFF81000000
    for n in range(3000):
        address += rng.choice((0, 0, 1, 16, 0x40, 0x1000))
        kind = rng.choices("TtWwDdRb", weights=(30, 30, 1, 1, 3, 3, 1, 1))[0]
        lines.append((address, kind, f"sym{n}"))
    text = "".join(f"{a:016x} {k} {name}\n" for a, k, name in lines)
    listed = parse_kallsyms(text)
    parsed = Kallsyms([(a, name, "") for a, k, name in lines if k in "TtWw"])
    asked = [a + d for a, _, _ in rng.sample(lines, 500) for d in (-1, 0, 1)] + [0, 1 << 64]
    for address in asked:
        found = listed.find(address)
        assert found == parsed.find(address), hex(address)
        if found is not None:
            assert listed.end_of(found) == parsed.end_of(found)
    for _, _, name in rng.sample(lines, 200):
        assert listed.by_name(name) == parsed.by_name(name)
    assert len(listed) == len(parsed)


def test_all_zero_addresses_are_hidden() -> None:
    syms = parse_kallsyms(HIDDEN)
    assert syms.hidden and len(syms) == 3
    assert syms.find(0xFFFFFFFF81001100) is None
    assert syms.describe(0xFFFFFFFF81001100) == "0xffffffff81001100"
    assert not parse_kallsyms("").hidden  # nothing listed is not the same as hidden


def test_load_reads_a_file(tmp_path) -> None:
    path = tmp_path / "kallsyms"
    path.write_text(SAMPLE)
    assert Kallsyms.load(str(path)).describe(0xFFFFFFFF81001201) == "udp_sendmsg+0x1"


def _symbolizer(tmp_path, text: str | None) -> tuple[Symbolizer, list[str], str]:
    path = tmp_path / "kallsyms"
    if text is not None:
        path.write_text(text)
    warnings: list[str] = []
    return Symbolizer(warnings.append, str(path)), warnings, str(path)


def test_symbolizer_names_frames_and_reads_the_file_once(tmp_path) -> None:
    symbolizer, warnings, path = _symbolizer(tmp_path, SAMPLE)
    stack = (0xFFFFFFFF8100111D, 0xFFFFFFFFC0A00010)
    assert symbolizer.frames(stack) == ["ip_send_skb+0x1d", "e1000_xmit_frame+0x10 [e1000]"]
    (tmp_path / "kallsyms").unlink()  # read once: later stacks need no file
    assert symbolizer.frames(stack[::-1] + (0xFFFFFFFF81001200,)) == [
        "e1000_xmit_frame+0x10 [e1000]",
        "ip_send_skb+0x1d",
        "udp_sendmsg+0x0",
    ]
    assert symbolizer.frames(()) == []
    assert warnings == []


def test_symbolizer_reads_nothing_until_a_stack_comes(tmp_path) -> None:
    symbolizer, warnings, path = _symbolizer(tmp_path, None)
    (tmp_path / "kallsyms").write_text(SAMPLE)  # written after the Symbolizer was made
    assert symbolizer.frames((0xFFFFFFFF81001100,)) == ["ip_send_skb+0x0"]


@pytest.mark.parametrize(
    "text, says",
    [
        (HIDDEN, "hides kernel addresses (kernel.kptr_restrict, or no CAP_SYSLOG)"),
        (None, "cannot read"),
        ("ffffffff82000000 D jiffies\n", "lists no kernel functions"),
    ],
    ids=["kptr_restrict", "unreadable", "empty"],
)
def test_unnamed_addresses_show_as_hex_with_one_warning(tmp_path, text: str | None, says: str) -> None:
    symbolizer, warnings, path = _symbolizer(tmp_path, text)
    assert symbolizer.frames((0xFFFFFFFF8100111D, 0xFFFFFFFFC0A00010)) == ["0xffffffff8100111d", "0xffffffffc0a00010"]
    assert symbolizer.frames((0xFFFFFFFF81001200,)) == ["0xffffffff81001200"]
    (warning,) = warnings
    assert says in warning and path in warning and warning.endswith("kernel stacks show raw addresses")


def test_frames_start_at_the_traced_code_not_at_the_tracing_program(tmp_path) -> None:
    path = tmp_path / "kallsyms"
    path.write_text(SAMPLE + "ffffffff81002000 T bpf_trace_run1\nffffffff81003000 T __bpf_trace_net_dev_xmit\n")
    symbolizer = Symbolizer(lambda message: None, str(path))
    stack = (
        0xFFFFFFFFC0025BB0,
        0xFFFFFFFF81002010,
        0xFFFFFFFF81003004,
        0xFFFFFFFF81001210,
        0xFFFFFFFF81002020,
        0xFFFFFFFF81001104,
    )
    # Only the leading glue goes: a bpf_trace_run frame deeper in the stack is the kernel's own.
    assert symbolizer.frames(stack) == ["udp_sendmsg+0x10", "bpf_trace_run1+0x20", "ip_send_skb+0x4"]
