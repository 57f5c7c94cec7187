# SPDX-License-Identifier: GPL-2.0-only
"""The calls in a function's machine code, decoded by capstone.

capstone (the `graph` extra) decodes x86-64 and arm64 alike, so one walk serves both: a call or
jump to an immediate is a direct one (its target an address), one through a register or memory is
indirect (its target known only when it runs). iced-x86 decodes x86 alone; objdump is not on every
box. Only capstone's light decoding is used (mnemonic and operand text): its operand details cost
five times as much, and a branch's one immediate is all a graph needs of them.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any, FrozenSet, List, Tuple

from ksnoop.errors import UsageError

GRAPH_EXTRA = "pip install 'ksnoop[graph]'"
_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class Branch:
    target: int  # the kernel address it goes to
    call: bool  # a call (it comes back), or a jump that leaves the code (a tail call, or to a cold part)


@dataclass(frozen=True)
class CallSites:
    """What one stretch of code does with control."""

    branches: Tuple[Branch, ...]  # direct calls and outward jumps, in code order
    indirect: int  # calls and jumps through a register or memory


@dataclass(frozen=True)
class _Branches:
    """One instruction set's branches, by capstone's mnemonics. A branch's target is its last
    operand, an immediate (`0x...`, `#0x...` on arm64) when direct."""

    calls: FrozenSet[str]
    jumps: FrozenSet[str]
    jump_prefixes: Tuple[str, ...]  # conditional jumps: x86's j<cc>, arm64's b.<cond>
    indirect: FrozenSet[str]  # what only ever branches through a register (arm64's br, blr)


_X86 = _Branches(calls=frozenset({"call"}), jumps=frozenset(), jump_prefixes=("j",), indirect=frozenset())
# ret is left out of both: arm64's goes through x30 too, and no return is an indirect call.
_ARM64 = _Branches(
    calls=frozenset({"bl"}),
    jumps=frozenset({"b", "cbz", "cbnz", "tbz", "tbnz"}),
    jump_prefixes=("b.", "bc."),
    indirect=frozenset({"br", "blr", "braa", "braaz", "brab", "brabz", "blraa", "blraaz", "blrab", "blrabz"}),
)


@dataclass(frozen=True)
class Decoder:
    """A capstone decoder for one machine's code, and what its branches look like."""

    capstone: Any  # capstone.Cs
    branches: _Branches


def decoder(machine: str = "") -> Decoder:
    """A decoder for this machine (platform.machine() names). UsageError when capstone is not
    installed or does not decode the machine's code."""
    try:
        import capstone
    except ImportError:
        raise UsageError(f"function graphs need the capstone disassembler: {GRAPH_EXTRA}") from None
    machine = machine or platform.machine()
    if machine in ("x86_64", "amd64"):
        return Decoder(capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64), _X86)
    if machine in ("aarch64", "arm64"):
        return Decoder(capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM), _ARM64)
    raise UsageError(f"function graphs read x86-64 and arm64 code; this machine is {machine}")


def call_sites(md: Decoder, code: bytes, address: int) -> CallSites:
    """The calls and outward jumps of `code`, which starts at kernel address `address`. Decoding
    stops at bytes that are no instruction (what follows a function is padding or data)."""
    end = address + len(code)
    isa = md.branches
    branches: List[Branch] = []
    indirect = 0
    for _at, _size, mnemonic, operands in md.capstone.disasm_lite(code, address):
        is_call = mnemonic in isa.calls
        if not is_call and mnemonic not in isa.jumps and not mnemonic.startswith(isa.jump_prefixes):
            if mnemonic in isa.indirect:
                indirect += 1
            continue
        target = operands.rpartition(",")[2].strip().lstrip("#")
        if not target.startswith("0x"):  # a register or memory: x86's call *%rax, jmp *(%rip)
            indirect += 1
            continue
        to = int(target, 16) & _U64
        if is_call or not address <= to < end:
            branches.append(Branch(to, is_call))
    return CallSites(tuple(branches), indirect)
