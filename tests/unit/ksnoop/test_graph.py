# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.graph without a kernel: call sites in hand-assembled x86-64 and arm64 code (decoded by
the real capstone), the walk over a made-up kernel's code and kallsyms (clones and cold parts
looked through, thunks counted as indirect, static calls followed), and the tree `info -g` prints."""

from __future__ import annotations

import struct
from typing import Dict, Tuple

import pytest

from ksnoop.errors import UsageError
from ksnoop.graph.static import GraphNode, StaticGraph, discover
from ksnoop.output.graph_text import graph_text
from ksnoop.output.kallsyms import Kallsyms

# capstone comes with the test extra: without it the install is broken, which is no reason to skip.
from ksnoop.graph.calls import Branch, call_sites, decoder

BASE = 0xFFFFFFFF81000000


def _rel32(opcode: bytes, at: int, to: int) -> bytes:
    return opcode + struct.pack("<i", to - (at + len(opcode) + 4))


class _Code:
    """A made-up kernel's text: functions placed at addresses, int3 between them."""

    def __init__(self) -> None:
        self.image = bytearray(b"\xcc" * 0x900)
        self.symbols: Dict[str, int] = {}

    def place(self, name: str, offset: int, *parts: Tuple[str, object]) -> None:
        address = BASE + offset
        self.symbols[name] = address
        code = b""
        for kind, arg in parts:
            pc = address + len(code)
            if kind == "call":
                code += _rel32(b"\xe8", pc, self.symbols[str(arg)])
            elif kind == "jmp":
                code += _rel32(b"\xe9", pc, self.symbols[str(arg)])
            elif kind == "jne":
                code += _rel32(b"\x0f\x85", pc, self.symbols[str(arg)])
            elif kind == "bytes":
                code += bytes(arg)  # type: ignore[call-overload]
        self.image[offset : offset + len(code)] = code

    def read(self, address: int, size: int) -> bytes:
        return bytes(self.image[address - BASE : address - BASE + size])

    def kallsyms(self) -> Kallsyms:
        return Kallsyms([(address, name, "") for name, address in self.symbols.items()])


def test_x86_calls_jumps_and_indirect_calls() -> None:
    at = 0x1000
    code = (
        _rel32(b"\xe8", at, 0x2000)  # call 0x2000
        + b"\xff\xd0"  # call *%rax
        + _rel32(b"\x0f\x85", at + 7, at + 2)  # jne back inside: not a branch out
        + _rel32(b"\x0f\x84", at + 13, 0x3000)  # je 0x3000: out of the function
        + b"\xff\xe0"  # jmp *%rax
        + _rel32(b"\xe9", at + 21, 0x4000)  # jmp 0x4000: a tail call
        + _rel32(b"\xe8", at + 26, at + 1)  # call into itself: a call all the same
        + b"\xff\x15"
        + struct.pack("<i", 0x100)  # call *0x100(%rip)
        + b"\xc3"  # ret
    )
    sites = call_sites(decoder("x86_64"), code, at)
    assert sites.branches == (
        Branch(0x2000, True),
        Branch(0x3000, False),
        Branch(0x4000, False),
        Branch(at + 1, True),
    )
    assert sites.indirect == 3


def test_arm64_calls_and_returns() -> None:
    at = 0x10000

    def word(w: int) -> bytes:
        return struct.pack("<I", w)

    code = (
        word(0x94000000 | (0x400 >> 2))  # bl at+0x400
        + word(0xD63F0100)  # blr x8
        + word(0x14000000 | (0x800 >> 2))  # b at+8+0x800: a tail call
        + word(0xB4000000 | (0x10 >> 2) << 5)  # cbz x0, at+12+0x10: inside, not a branch out
        + word(0x36180000 | (0x8 >> 2) << 5)  # tbz w0, #3, at+16+8: inside, its target the last operand
        + word(0x54000001 | (0x4000 >> 2) << 5)  # b.ne at+20+0x4000: out, to a cold part
        + word(0x8A220020)  # bic x0, x1, x2: a `b` that is no branch
        + word(0xD61F0200)  # br x16
        + word(0xD65F03C0)  # ret: through x30, but not an indirect call
    )
    sites = call_sites(decoder("aarch64"), code, at)
    assert sites.branches == (
        Branch(at + 0x400, True),
        Branch(at + 8 + 0x800, False),
        Branch(at + 20 + 0x4000, False),
    )
    assert sites.indirect == 2


def test_an_unknown_machine_is_named() -> None:
    with pytest.raises(UsageError, match="function graphs read x86-64 and arm64 code; this machine is mips"):
        decoder("mips")


def _made_up_kernel() -> _Code:
    code = _Code()
    # Callees first, so the callers' offsets can name them.
    for name, offset in (("B", 0x200), ("F", 0x380), ("C", 0x400), ("E", 0x480), ("G", 0x680), ("U", 0x780)):
        code.place(name, offset, ("bytes", b"\xc3"))
    code.place("__x86_indirect_thunk_rax", 0x500, ("bytes", b"\xc3"))
    code.place("A", 0x100, ("call", "C"), ("bytes", b"\xc3"))
    code.place("D.isra.0", 0x300, ("call", "E"), ("bytes", b"\xc3"))
    code.place("__SCT__foo", 0x700, ("jmp", "F"))
    code.symbols["root"] = BASE
    # The cold part calls G, then jumps back into the middle of root.
    code.place("root.cold", 0x600, ("call", "G"), ("bytes", b"\xe9" + struct.pack("<i", 0x10 - (0x600 + 5 + 5))))
    code.place(
        "root",
        0x000,
        ("call", "A"),
        ("call", "__x86_indirect_thunk_rax"),
        ("bytes", b"\xff\xd0"),
        ("jne", "root.cold"),
        ("call", "D.isra.0"),
        ("call", "__SCT__foo"),
        ("call", "U"),
        ("jmp", "B"),
    )
    code.symbols["_etext"] = BASE + 0x800
    return code


def test_the_walk_looks_through_clones_and_cold_parts() -> None:
    code = _made_up_kernel()
    kallsyms = code.kallsyms()
    traceable = {"root", "A", "B", "C", "E", "F", "G"}
    root = kallsyms.by_name("root")
    assert root is not None
    graph = discover(root, 2, code, kallsyms, lambda name, module: name in traceable, decoder("x86_64"))  # type: ignore[arg-type]
    node = graph.node("root")
    # In code order: A; the static call's target F; U cannot be traced; the tail call B; then the
    # cold part's G and the clone's E, whose calls are root's as if inlined.
    assert node.calls == ("A", "F", "B", "G", "E")
    assert node.untraceable == ("U",)
    assert node.indirect == 2  # the retpoline thunk and call *%rax
    assert [(n.name, n.depth) for n in graph.nodes] == [
        ("root", 0),
        ("A", 1),
        ("F", 1),
        ("B", 1),
        ("G", 1),
        ("E", 1),
        ("C", 2),
    ]
    excluded = discover(
        root, 1, code, kallsyms, lambda name, module: name in traceable, decoder("x86_64"), ["A", "[EG]"]
    )  # type: ignore[arg-type]
    assert excluded.node("root").calls == ("F", "B")
    assert "C" not in excluded.functions()
    # Without leaves the same functions, those at the last depth unread: a trace attaches nothing below.
    unread = discover(root, 1, code, kallsyms, lambda name, module: name in traceable, decoder("x86_64"), leaves=False)  # type: ignore[arg-type]
    read = discover(root, 1, code, kallsyms, lambda name, module: name in traceable, decoder("x86_64"))  # type: ignore[arg-type]
    assert unread.functions() == read.functions() == ("root", "A", "F", "B", "G", "E")
    assert read.node("A").calls == ("C",)
    assert unread.node("A") == GraphNode("A", "", 1, (), (), 0)
    assert unread.node("root") == read.node("root")


def test_the_tree_shows_callees_once_at_their_shallowest() -> None:
    graph = StaticGraph(
        "r",
        2,
        (
            GraphNode("r", "", 0, ("a", "b"), (), 1),
            GraphNode("a", "", 1, ("b", "c"), ("x",), 0),
            GraphNode("b", "", 1, ("c",), (), 0),
            GraphNode("c", "", 2, (), (), 2),
        ),
        ("z",),
    )
    assert graph_text(graph).splitlines() == [
        "r: 4 functions within 2 calls, 3 indirect calls not followed",
        "r  (1 indirect)",
        "├─ a  (cannot trace x)",
        "│  ├─ b (its calls: at depth 1)",
        "│  └─ c  (2 indirect)",
        "└─ b",
        "   └─ c  (2 indirect)",  # at the last depth: no calls shown anywhere, so said in full again
        "added by --graph-include: z",
    ]
