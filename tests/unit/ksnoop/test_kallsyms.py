# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop/output/kallsyms.py: /proc/kallsyms text -> sorted text symbols -> `function+0xoffset [module]`."""

from __future__ import annotations

import pytest

from ksnoop.output.kallsyms import Kallsyms, Symbol, Symbolizer, parse_kallsyms

# As /proc/kallsyms writes it: out of order across vmlinux, modules and BPF programs; data and
# absolute symbols mixed in; a module's name after a tab.
SAMPLE = """\
ffffffff81000000 T _stext
ffffffff81000000 T _text
ffffffff81001000 t do_one_initcall
ffffffff81001100 T ip_send_skb
ffffffff81001180 W arch_weak_thing
ffffffff81001200 T udp_sendmsg
ffffffff82000000 D jiffies
ffffffff82000100 d some_local_data
ffffffff81001400 T _etext
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


def test_only_text_symbols_are_kept_in_address_order(syms: Kallsyms) -> None:
    names = [syms.find(a).name for a in sorted(set(syms._addresses))]  # type: ignore[union-attr]
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
    ],
)
def test_describe(syms: Kallsyms, address: int, text: str) -> None:
    assert syms.describe(address) == text


def test_find(syms: Kallsyms) -> None:
    assert syms.find(0xFFFFFFFFC0A00201) == Symbol(0xFFFFFFFFC0A00200, "e1000_probe", "e1000")
    assert syms.find(0) is None
    assert parse_kallsyms("").find(0xFFFFFFFF81000000) is None


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
