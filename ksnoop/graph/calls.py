# SPDX-License-Identifier: GPL-2.0-only
"""The calls in a function's machine code, decoded by capstone.

capstone (the `graph` extra) decodes x86-64 and arm64 alike and says of each instruction whether
it calls or jumps and what its operands are, so one walk serves both: a call or jump to an
immediate is a direct one (its target an address), one through a register or memory is indirect
(its target known only when it runs). iced-x86 decodes x86 alone; objdump is not on every box.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any, List, Tuple

from ksnoop.errors import UsageError

GRAPH_EXTRA = "pip install 'ksnoop[graph]'"
# Mnemonics that may call or jump (x86: call, jmp, jcc; arm64: b, bl, br, blr, b.cond, cbz, tbz,
# ret): a superset (bt, bsf...), which capstone's groups then sort out.
_MAY_BRANCH = ("call", "j", "b", "cb", "tb", "ret")
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


def decoder(machine: str = "") -> Any:
    """A capstone decoder for this machine (platform.machine() names), with operand details on.
    UsageError when capstone is not installed or does not decode the machine's code."""
    try:
        import capstone
    except ImportError:
        raise UsageError(f"function graphs need the capstone disassembler: {GRAPH_EXTRA}") from None
    machine = machine or platform.machine()
    if machine in ("x86_64", "amd64"):
        md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    elif machine in ("aarch64", "arm64"):
        md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    else:
        raise UsageError(f"function graphs read x86-64 and arm64 code; this machine is {machine}")
    md.detail = True
    return md


def call_sites(md: Any, code: bytes, address: int) -> CallSites:
    """The calls and outward jumps of `code`, which starts at kernel address `address`. Decoding
    stops at bytes that are no instruction (what follows a function is padding or data)."""
    import capstone

    end = address + len(code)
    branches: List[Branch] = []
    indirect = 0
    for at, size, mnemonic, _operands in md.disasm_lite(code, address):
        # Decoding with details costs several times as much: only what may branch gets it.
        if not mnemonic.startswith(_MAY_BRANCH):
            continue
        start = at - address
        insn = next(md.disasm(code[start : start + size], at, 1))
        if insn.group(capstone.CS_GRP_RET):  # arm64's ret is a branch through x30 too
            continue
        is_call = insn.group(capstone.CS_GRP_CALL)
        if not is_call and not insn.group(capstone.CS_GRP_JUMP):
            continue
        # A branch's target is its last operand (arm64's cbz/tbz test a register first).
        operands = insn.operands
        target = operands[-1] if operands else None
        if target is None or target.type != capstone.CS_OP_IMM:
            indirect += 1
            continue
        to = target.imm & _U64
        if is_call or not address <= to < end:
            branches.append(Branch(to, bool(is_call)))
    return CallSites(tuple(branches), indirect)
