# SPDX-License-Identifier: GPL-2.0-only
"""Member paths: `->dev->name`, `.b[2].c` from a value of some type -> where the bytes are.

A path resolves to the pointers to follow (each a load at an offset), then the final offset,
size, bitfield position and type. Typedefs, qualifiers and anonymous members are seen through.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

from . import types as t
from .errors import BTFError, BTFLookupError

if TYPE_CHECKING:
    from .btf import BTF

# Anonymous members nested deeper than this only come from loops in corrupt BTF.
_MAX_DEPTH = 64


@dataclass(frozen=True)
class Step:
    """One component of a path as written: `->name`, `.name` or `[index]`, at `position` in the text.
    parse_path() makes them from path text; a caller with a language of its own makes them itself."""

    op: str  # "->", "." or "[]"
    name: str  # the member name; "" for an index
    index: int
    position: int


@dataclass(frozen=True)
class MemberPath:
    """Where a path's value lives, starting from a base value held in a register.

    If `in_memory` is False the value is in the base itself (no `->` in the path), `offset` bytes
    into it. Otherwise the base holds a pointer `base_offset` bytes into it (0: the base is that
    pointer; more: a member of a struct held by value, `s.ptr->x`): follow it, then for each offset
    in `hops` load the pointer stored at that offset and follow that; the value is `size` bytes at
    `offset` in the last object reached.
    """

    hops: Tuple[int, ...]
    in_memory: bool
    offset: int
    size: int
    bit_offset: int  # of a bitfield, within the `size` bytes read (little-endian bit numbering)
    bitfield_size: int  # 0 unless the value is a bitfield
    type_id: int
    base_offset: int = 0  # in_memory only: where in the base the pointer followed first is


class MemberPathError(BTFLookupError):
    """A path that does not fit its types; `position` is where in the path text it went wrong."""

    def __init__(self, message: str, position: int, suggestions: Sequence[str] = ()):
        super().__init__(message, suggestions)
        self.position = position


_TOKEN = re.compile(r"\s*(?:(->|\.)\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*(0x[0-9a-fA-F]+|\d+)\s*\])")


def parse_path(text: str) -> List[Step]:
    """`->dev->name[0]` -> Steps; MemberPathError for anything else."""
    steps = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            raise MemberPathError(f"expected '->member', '.member' or '[index]' at '{text[pos:].strip()}'", pos)
        start = m.start(1) if m.group(1) else m.start()
        if m.group(1):
            steps.append(Step(m.group(1), m.group(2), 0, start))
        else:
            steps.append(Step("[]", "", int(m.group(3), 0), start))
        pos = m.end()
    return steps


def find_member(btf: "BTF", composite: t.Composite, name: str) -> Optional[Tuple[t.Member, int]]:
    """A member by name, looking inside anonymous members; (member, bit offset from `composite`)."""
    return _find_member(btf, composite, name, (composite.id,))


def _find_member(
    btf: "BTF", composite: t.Composite, name: str, outer: Tuple[int, ...]
) -> Optional[Tuple[t.Member, int]]:
    for m in composite.members:
        if m.name == name:
            return m, m.bit_offset
    for m in composite.members:
        if not m.name:
            inner = _anonymous_composite(btf, m, outer)
            if inner is not None:
                found = _find_member(btf, inner, name, outer + (inner.id,))
                if found is not None:
                    return found[0], m.bit_offset + found[1]
    return None


def member_names(btf: "BTF", composite: t.Composite) -> List[str]:
    """Names usable after `.`/`->`, anonymous members' own members included."""
    return _member_names(btf, composite, (composite.id,))


def _member_names(btf: "BTF", composite: t.Composite, outer: Tuple[int, ...]) -> List[str]:
    names = []
    for m in composite.members:
        if m.name:
            names.append(m.name)
        else:
            inner = _anonymous_composite(btf, m, outer)
            if inner is not None:
                names.extend(_member_names(btf, inner, outer + (inner.id,)))
    return names


def _anonymous_composite(btf: "BTF", m: t.Member, outer: Tuple[int, ...]) -> Optional[t.Composite]:
    # `outer` holds the structs we are inside: corrupt BTF can make one its own anonymous member.
    inner = btf.skip_modifiers(m.type_id)
    if not isinstance(inner, (t.Struct, t.Union)):
        return None
    if inner.id in outer or len(outer) > _MAX_DEPTH:
        raise BTFError("anonymous members nest in a loop", type_id=inner.id)
    return inner


def resolve(btf: "BTF", type_id: int, steps: Sequence[Step]) -> MemberPath:
    """Resolve steps from a value of `type_id`; MemberPathError names the type and the closest members."""
    hops: List[int] = []
    in_memory = False
    base_offset = 0
    bit_offset = 0  # within the current object (or the base value, before any dereference)
    current = type_id
    bitfield_size = 0
    for step in steps:
        if bitfield_size:
            raise MemberPathError(f"'{btf.type_name(current)}' is a bitfield; it has no members", step.position)
        typ = btf.skip_modifiers(current)
        if step.op == "->" or (step.op == "[]" and isinstance(typ, t.Ptr)):
            if not isinstance(typ, t.Ptr):
                raise MemberPathError(
                    f"'->' on '{btf.type_name(current)}', which is not a pointer; use '.'", step.position
                )
            if in_memory:
                hops.append(bit_offset // 8)
            else:  # the pointer is the base, or a member of a base held by value
                base_offset = bit_offset // 8
            in_memory = True
            bit_offset = 0
            current = typ.type_id
            typ = btf.skip_modifiers(current)
            if step.op == "[]":
                bit_offset = 8 * step.index * _element_size(btf, current, step)
                continue
        elif step.op == "." and isinstance(typ, t.Ptr):
            raise MemberPathError(f"'.' on '{btf.type_name(current)}', which is a pointer; use '->'", step.position)
        if step.op == "[]":
            if not isinstance(typ, t.Array):
                raise MemberPathError(
                    f"'[{step.index}]' on '{btf.type_name(current)}', which is neither an array nor a pointer",
                    step.position,
                )
            if typ.nelems and step.index >= typ.nelems:
                raise MemberPathError(
                    f"index {step.index} is past the end of '{btf.type_name(current)}' (valid: 0..{typ.nelems - 1})",
                    step.position,
                )
            bit_offset += 8 * step.index * _element_size(btf, typ.type_id, step)
            current = typ.type_id
            continue
        if isinstance(typ, t.Fwd):
            raise MemberPathError(
                f"'{btf.type_name(current)}' is only declared in this BTF; its members are unknown", step.position
            )
        if not isinstance(typ, (t.Struct, t.Union)):
            raise MemberPathError(
                f"'{step.op}{step.name}' on '{btf.type_name(current)}', which is not a struct or union", step.position
            )
        found = find_member(btf, typ, step.name)
        if found is None:
            names = member_names(btf, typ)
            close = difflib.get_close_matches(step.name, names, n=3, cutoff=0.6)
            hint = "; did you mean " + ", ".join(repr(c) for c in close) + "?" if close else ""
            raise MemberPathError(f"{btf.type_name(typ.id)} has no member '{step.name}'{hint}", step.position, close)
        member, member_bit_offset = found
        bit_offset += member_bit_offset
        current = member.type_id
        bitfield_size = member.bitfield_size
        if not bitfield_size:
            final = btf.skip_modifiers(current)
            if isinstance(final, t.Int) and final.bits < 8 * final.size:
                bitfield_size = final.bits  # the pre-kind_flag encoding: an INT narrower than its size
                bit_offset += final.bit_offset
    size = btf.resolve_size(current) if not isinstance(btf.skip_modifiers(current), t.FuncProto) else 0
    if bitfield_size:
        byte_offset = bit_offset // 8
        bit_in_byte = bit_offset % 8
        span = (bit_in_byte + bitfield_size + 7) // 8
        size = 1 if span <= 1 else 2 if span <= 2 else 4 if span <= 4 else 8
        return MemberPath(tuple(hops), in_memory, byte_offset, size, bit_in_byte, bitfield_size, current, base_offset)
    return MemberPath(tuple(hops), in_memory, bit_offset // 8, size, 0, 0, current, base_offset)


def _element_size(btf: "BTF", type_id: int, step: Step) -> int:
    try:
        return btf.resolve_size(type_id)
    except Exception:
        raise MemberPathError(
            f"cannot index '{btf.type_name(type_id)}': its elements have no size", step.position
        ) from None
