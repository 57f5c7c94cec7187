# SPDX-License-Identifier: GPL-2.0-only
"""Where a kprobe finds a function's arguments and its return value: the calling convention of
each architecture, written once as the struct pt_regs members that hold them, and their offsets
in the kernel's own struct pt_regs (from its BTF).

A kprobe's context is the registers at the probed instruction, not the u64 array of arguments
fentry gets, so only what the convention puts in registers can be read, and only where it is
certain: integers and pointers, one register each, in order. A struct or union passed by value,
a float, and every argument after one of those are refused, naming the argument, rather than
guessed at: where their bytes go depends on a classification of their members that a tracer
must not get wrong.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from btf import BTF, BTFError, Float, Struct, Union
from btf.members import MemberPathError, parse_path
from btf.members import resolve as resolve_members

from ksnoop.spec.language import RETURN
from ksnoop.spec.targets import Target


@dataclass(frozen=True)
class Convention:
    """One architecture's convention, as paths into its struct pt_regs."""

    arguments: Tuple[str, ...]  # the members holding integer and pointer arguments, in order
    return_value: str  # the member holding an integer or pointer return value


# Keyed by os.uname().machine. x86-64: the System V AMD64 ABI (rdi, rsi, rdx, rcx, r8, r9; rax).
# arm64: AAPCS64 (x0-x7; x0), which the kernel's pt_regs holds as regs[0..30].
CONVENTIONS: Dict[str, Convention] = {
    "x86_64": Convention((".di", ".si", ".dx", ".cx", ".r8", ".r9"), ".ax"),
    "aarch64": Convention(tuple(f".regs[{n}]" for n in range(8)), ".regs[0]"),
}
CONVENTIONS["arm64"] = CONVENTIONS["aarch64"]


class NoConvention(Exception):
    """This architecture's convention is not written down, or its pt_regs does not have it."""


@dataclass(frozen=True)
class Registers:
    """A function's values as a kprobe and a kretprobe find them (Probe.context_offsets), and
    why each value that no register holds for certain cannot be read."""

    entry_offsets: Tuple[int, ...]  # per context slot of an argument: its register's offset, -1 for none
    return_offsets: Tuple[int, ...]  # per context slot: -1, but the return value's slot (the last)
    refused: Dict[str, str]  # argument name (or RETURN) -> why a kprobe cannot read it ("it is ...")


def machine() -> str:
    return os.uname().machine


def register_offsets(btf: BTF, arch: Optional[str] = None) -> Tuple[Tuple[int, ...], int]:
    """The byte offsets in `btf`'s struct pt_regs of the argument registers, and of the return
    value's; NoConvention when there is no convention for `arch` or its pt_regs lacks a member."""
    arch = arch or machine()
    convention = CONVENTIONS.get(arch)
    if convention is None:
        raise NoConvention(f"ksnoop does not know which registers hold a function's arguments on {arch}")
    key = ("kprobe registers", arch)
    cached: Optional[Tuple[Tuple[int, ...], int]] = btf.compiled.get(key)
    if cached is not None:
        return cached
    regs = btf.find("struct pt_regs")
    if regs is None:
        raise NoConvention("this kernel's BTF has no struct pt_regs")

    def offset(path: str) -> int:
        try:
            return resolve_members(btf, regs.id, parse_path(path)).offset
        except (MemberPathError, BTFError):
            raise NoConvention(f"this kernel's struct pt_regs has no {path[1:]} ({arch})") from None

    found = (tuple(offset(path) for path in convention.arguments), offset(convention.return_value))
    btf.compiled[key] = found
    return found


def registers(target: Target, arch: Optional[str] = None) -> Registers:
    """Where a kprobe on `target` (a function) finds each argument, and its kretprobe the return
    value; the arguments no register holds for certain, with the reason. NoConvention as above."""
    arch = arch or machine()
    key = ("kprobe registers of", target.attach_btf_id, arch)
    cached: Optional[Registers] = target.btf.compiled.get(key)
    if cached is None:
        cached = target.btf.compiled[key] = _registers(target, arch)
    return cached


def _registers(target: Target, arch: str) -> Registers:
    arguments, return_value = register_offsets(target.btf, arch)
    btf = target.btf
    entry: list[int] = []
    refused: Dict[str, str] = {}
    after: Optional[str] = None  # the argument passed by value whose class hides where the rest go
    for n, arg in enumerate(target.args):
        typ = btf.skip_modifiers(arg.type_id)
        try:
            slots = max(1, (btf.resolve_size(arg.type_id) + 7) // 8)
        except BTFError:
            slots = 1
        if after is not None:
            refused[arg.name] = (
                f"it comes after '{after}', passed by value, so which register holds it depends on how "
                "the ABI classifies that one (fentry reads it)"
            )
        elif isinstance(typ, (Struct, Union)):
            refused[arg.name] = (
                f"it is a {'struct' if isinstance(typ, Struct) else 'union'} passed by value, in registers "
                "or on the stack as the ABI classifies its members, which a kprobe does not guess "
                "(fentry reads it)"
            )
            after = arg.name
        elif isinstance(typ, Float):
            refused[arg.name] = "it is a floating-point argument, in a register pt_regs does not hold"
            after = arg.name
        elif len(entry) >= len(arguments):
            refused[arg.name] = (
                f"it is argument {n + 1}, and a kprobe on {arch} sees only the first {len(arguments)}, "
                "passed in registers (fentry reads them all)"
            )
        for _ in range(slots):
            entry.append(arguments[len(entry)] if len(entry) < len(arguments) and arg.name not in refused else -1)
    returned = btf.skip_modifiers(target.return_type_id) if target.return_type_id else None
    if isinstance(returned, (Struct, Union)):
        refused[RETURN] = "a struct returned by value is in no register a kretprobe can read"
    elif isinstance(returned, Float):
        refused[RETURN] = "a floating-point return value is in a register pt_regs does not hold"
    return Registers(tuple(entry), tuple([-1] * len(entry) + [return_value]), refused)
