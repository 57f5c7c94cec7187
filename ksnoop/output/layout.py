# SPDX-License-Identifier: GPL-2.0-only
"""The layout of a struct or union, as pahole (dwarves 1.24) shows it: each member's offset and size,
anonymous members expanded in place, and holes, bit holes and padding counted by pahole's rules, so
that every bit of a struct is a member's, a hole's or padding. Also enum and typedef definitions.

`type_layout` gives plain data (LayoutLine rows); `layout_text` and `layout_json` present it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from btf import BTF, BTFError, Enum, Enum64, Member, Struct, Typedef, Union
from btf.cdecl import base_name

from ksnoop.sanitize import sanitize

_CACHELINE = 64
# Anonymous members nested deeper than this only come from loops in corrupt BTF.
_MAX_DEPTH = 64


@dataclass(frozen=True)
class LayoutLine:
    """One row: a member (`decl` set), the opening/closing of an anonymous member, a gap (hole, bit
    hole, padding, bit padding) or pahole's note that a bitfield shares its storage with other members.

    The rows of one struct: for each member, the gaps pahole finds before it, then the note, then the
    member (or its opening, its own rows one level deeper, its closing); after the last member, the
    struct's bit padding and padding."""

    kind: str  # "member", "open", "close", "hole", "bit_hole", "padding", "bit_padding", "note"
    depth: int
    decl: str = ""  # `struct sk_buff *next` for a member; `union` / `struct` for an opening; a note's text
    offset: int = 0  # bytes from the start of the outermost type
    size: int = 0  # bytes; of a bitfield, those of its storage unit (its type's size)
    bit_offset: Optional[int] = None  # of a bitfield, from `offset`; of a bit hole or bit padding, 0-7
    bitfield_size: int = 0
    bit_size: int = 0  # of a bit hole or bit padding
    name: str = ""  # the member's name as C code uses it (anonymous ones flattened)
    type_id: int = 0  # the member's type
    type_padding: int = 0  # bytes of padding at the end of the member's own struct type


def type_layout(btf: BTF, type_id: int) -> List[LayoutLine]:
    typ = btf.type_by_id(type_id)
    assert isinstance(typ, (Struct, Union))
    rows: List[LayoutLine] = []
    _members(btf, typ, 0, 1, rows)
    return rows


def _members(btf: BTF, typ: Any, base_offset: int, depth: int, rows: List[LayoutLine]) -> None:
    if depth > _MAX_DEPTH:
        raise BTFError("anonymous members nest too deeply", type_id=typ.id)
    # pahole looks for holes in structs only: a union's members all start at 0.
    is_struct = isinstance(typ, Struct)
    before, after = _gaps(btf, typ, base_offset, depth) if is_struct else ([[] for _ in typ.members], [])
    last: Optional[Tuple[int, bool]] = None  # the previous member's (offset, is a bitfield), for the notes
    last_size = 0  # bytes from the previous member's offset that pahole takes as used (see _combined_note)
    for m, gaps in zip(typ.members, before):
        offset, size = _unit(btf, m)
        rows.extend(gaps)
        if is_struct and last is not None and last_size:
            note = _combined_note(last, last_size, offset, bool(m.bitfield_size))
            if note:
                rows.append(LayoutLine("note", depth, note))
        if last is None or not last_size or last[0] != offset or (not last[1] and m.bitfield_size):
            last_size = size
        last = (offset, bool(m.bitfield_size))

        own_type = btf.type_by_id(m.type_id)
        # pahole notes the padding of a member typed `struct X` itself, not through a typedef.
        type_padding = _padding(btf, own_type) if is_struct and isinstance(own_type, Struct) else 0
        target = btf.skip_modifiers(m.type_id)
        at = base_offset + offset
        if not m.name and isinstance(target, (Struct, Union)):
            rows.append(
                LayoutLine(
                    "open",
                    depth,
                    "struct" if isinstance(target, Struct) else "union",
                    at,
                    target.size,
                    type_id=m.type_id,
                )
            )
            _members(btf, target, at, depth + 1, rows)
            rows.append(
                LayoutLine("close", depth, offset=at, size=target.size, type_id=m.type_id, type_padding=type_padding)
            )
        elif m.bitfield_size:
            rows.append(
                LayoutLine(
                    "member",
                    depth,
                    btf.decl(m.type_id, m.name) + f":{m.bitfield_size}",
                    at,
                    size,
                    m.bit_offset - 8 * offset,
                    m.bitfield_size,
                    name=m.name,
                    type_id=m.type_id,
                )
            )
        else:
            rows.append(
                LayoutLine(
                    "member",
                    depth,
                    btf.decl(m.type_id, m.name),
                    at,
                    size,
                    name=m.name,
                    type_id=m.type_id,
                    type_padding=type_padding,
                )
            )
    rows.extend(after)


def _unit(btf: BTF, m: Member) -> Tuple[int, int]:
    # (offset, size) in bytes from the start of the enclosing type, where pahole puts a member: a
    # bitfield at the start of its storage unit, a block of its type's size aligned to that size
    # (dwarves' btf_loader.c, class__fixup_btf_bitfields).
    size = _size(btf, m.type_id)
    if m.bitfield_size and size:
        return m.bit_offset // (8 * size) * size, size
    return m.bit_offset // 8, size


def _size(btf: BTF, type_id: int) -> int:
    try:
        return btf.resolve_size(type_id)
    except Exception:
        return 0  # a flexible or function type: takes no room


def _gaps(btf: BTF, typ: Struct, base_offset: int, depth: int) -> Tuple[List[List[LayoutLine]], List[LayoutLine]]:
    """The gaps between a struct's own members, found as pahole's class__find_holes (dwarves.c) finds
    them: the rows before each member, and the rows after the last one.

    Unused bits of a bitfield's storage unit are a bit hole, whole bytes between units a byte hole; the
    rest of the last unit is bit padding, the bytes after it padding. A member inside the unit of the
    bitfield before it (`u8 x` after `enum e f:8`) ends the unit there: padding counts from its end."""
    before: List[List[LayoutLine]] = []
    seen = 0  # bits from the start: the end of the previous member, or of the unit whose rest was counted
    unit_end: Optional[int] = None  # after a bitfield: the end of its storage unit, in bits
    unit_bits = 0
    for m in typ.members:
        offset, size = _unit(btf, m)
        start = m.bit_offset
        end = start + (m.bitfield_size or 8 * size)
        bit_hole_at, trailing = seen, 0
        if unit_end is not None:  # the previous bitfield's unit, up to this member
            stop = min(start, unit_end)
            trailing, seen = stop - seen, stop
        hole_at = seen // 8
        if m.bitfield_size:
            hole = 0
            if seen < 8 * offset <= start:  # whole bytes before this bitfield's own unit
                hole, seen = offset - seen // 8, 8 * offset
            if trailing <= 0:
                bit_hole_at = seen
            # The bits of its unit before it count too: pahole shows one bit hole, from the first bit.
            bits = trailing + start - seen
        else:
            bits, hole = trailing, start // 8 - seen // 8
        gaps = []
        # Members that overlap give negative counts, which pahole prints wrapped; they are no gap.
        if bits > 0:
            gaps.append(
                LayoutLine(
                    "bit_hole", depth, offset=base_offset + bit_hole_at // 8, bit_offset=bit_hole_at % 8, bit_size=bits
                )
            )
        if hole > 0:
            gaps.append(LayoutLine("hole", depth, offset=base_offset + hole_at, size=hole))
        before.append(gaps)
        seen = end
        if not m.bitfield_size:
            unit_end, unit_bits = None, 0
        elif unit_end is None or end > unit_end or 8 * size > unit_bits:
            # A new unit; in a packed struct a bitfield can run on into the next one.
            unit_bits, unit_end = 8 * size, 8 * (offset + size)
            if end > unit_end:
                unit_end += unit_bits
    after = []
    if unit_end is not None:
        stop = min(8 * typ.size, unit_end)
        if stop > seen:
            after.append(
                LayoutLine(
                    "bit_padding", depth, offset=base_offset + seen // 8, bit_offset=seen % 8, bit_size=stop - seen
                )
            )
        seen = stop
    if typ.size > seen // 8:
        after.append(LayoutLine("padding", depth, offset=base_offset + seen // 8, size=typ.size - seen // 8))
    return before, after


def _padding(btf: BTF, typ: Struct) -> int:
    return sum(r.size for r in _gaps(btf, typ, 0, 0)[1] if r.kind == "padding")


def _combined_note(last: Tuple[int, bool], last_size: int, offset: int, bitfield: bool) -> str:
    # pahole's notes where a member's storage overlaps the previous one's (dwarves_fprintf.c,
    # __class__fprintf): a bitfield in the bytes of a plain member, or a member in a bitfield's unit.
    last_offset, last_bitfield = last
    if offset < last_offset or (offset == last_offset and not last_bitfield and bitfield):
        return "Bitfield combined with previous fields"
    if 0 < offset - last_offset < last_size:
        return "Bitfield combined with next fields"
    return ""


def layout_text(btf: BTF, type_id: int) -> str:
    """pahole-style text of a struct/union, enum or typedef definition."""
    typ = btf.skip_qualifiers(type_id)
    if isinstance(typ, Typedef):
        return f"typedef {sanitize(btf.decl(typ.type_id, typ.name))};"
    if isinstance(typ, (Enum, Enum64)):
        lines = [f"{sanitize(base_name(typ))} {{"]
        lines += [f"\t{sanitize(e.name)} = {e.value}," for e in typ.values]
        lines.append(f"}};\t/* size: {typ.size} */")
        return "\n".join(lines)
    assert isinstance(typ, (Struct, Union))
    rows = type_layout(btf, typ.id)
    lines = [f"{sanitize(base_name(typ))} {{"]
    commented = False  # the last line is a comment: pahole sets a run of them off with blank lines
    for r in rows:
        tabs = "\t" * r.depth
        if r.kind in ("padding", "bit_padding"):
            continue  # in the summary; an anonymous struct's as its closing's type_padding
        if r.kind in ("hole", "bit_hole", "note"):
            lines += [tabs + _comment(r)] if commented else ["", tabs + _comment(r)]
            commented = True
            continue
        if commented and r.kind != "close":  # pahole closes an anonymous struct right after its comments
            lines.append("")
        if r.kind == "member":
            where = (
                f"{r.offset:5d}:{r.bit_offset:2d} {r.size:4d}"
                if r.bit_offset is not None
                else f"{r.offset:5d} {r.size:4d}"
            )
            lines.append(f"{tabs}{sanitize(r.decl) + ';':<{_column(r.depth)}s} /* {where} */")
        elif r.kind == "open":
            lines.append(f"{tabs}{r.decl} {{")
        else:
            lines.append(f"{tabs}{'};':<{_column(r.depth)}s} /* {r.offset:5d} {r.size:4d} */")
        commented = bool(r.type_padding)
        if r.type_padding:
            lines += ["", f"{tabs}/* XXX last struct has {_bytes(r.type_padding)} of padding */"]
    lines.append("")
    lines += [f"\t/* {text} */" for text in _summary(typ, rows)]
    lines.append("};")
    return "\n".join(lines)


def _comment(r: LayoutLine) -> str:
    if r.kind == "hole":
        return f"/* XXX {_bytes(r.size)} hole, try to pack */"
    if r.kind == "bit_hole":
        return f"/* XXX {r.bit_size} bit{'s' if r.bit_size != 1 else ''} hole, try to pack */"
    return f"/* {r.decl} */"


def _bytes(n: int) -> str:
    return f"{n} byte{'s' if n != 1 else ''}"


def _summary(typ: Any, rows: List[LayoutLine]) -> List[str]:
    # pahole's closing comments, in its order and wording; they count the type's own members and gaps.
    own = [r for r in rows if r.depth == 1]
    members = sum(1 for r in own if r.kind in ("member", "open"))
    out = [f"size: {typ.size}, cachelines: {(typ.size + _CACHELINE - 1) // _CACHELINE}, members: {members}"]
    member_bytes = sum(r.size for r in own if r.kind == "open" or (r.kind == "member" and not r.bitfield_size))
    member_bits = sum(r.bitfield_size for r in own if r.kind == "member")
    holes = [r.size for r in own if r.kind == "hole"]
    bit_holes = [r.bit_size for r in own if r.kind == "bit_hole"]
    if (holes or bit_holes) and member_bytes:
        holes_text = f", holes: {len(holes)}, sum holes: {sum(holes)}" if holes else ""
        out.append(f"sum members: {member_bytes}{holes_text}")
    if (holes or bit_holes) and member_bits:
        bit_holes_text = (
            f", bit holes: {len(bit_holes)}, sum bit holes: {sum(bit_holes)} bits"
            if bit_holes
            else f" ({member_bits // 8} bytes)"
        )
        out.append(f"sum bitfield members: {member_bits} bits{bit_holes_text}")
    padding = sum(r.size for r in own if r.kind == "padding")
    if padding:
        out.append(f"padding: {padding}")
    paddings = [r.type_padding for r in own if r.type_padding]
    if paddings:
        out.append(f"paddings: {len(paddings)}, sum paddings: {sum(paddings)}")
    bit_padding = sum(r.bit_size for r in own if r.kind == "bit_padding")
    if bit_padding:
        out.append(f"bit_padding: {bit_padding} bits")
    if typ.size % _CACHELINE:
        out.append(f"last cacheline: {typ.size % _CACHELINE} bytes")
    return out


def _column(depth: int) -> int:
    # Comments line up when tabs are 8 columns wide, as in pahole's output.
    return max(8, 48 - 8 * depth)


def layout_json(btf: BTF, type_id: int) -> Dict[str, Any]:
    """A JSON-ready dict. `holes` lists, in place order and at every depth, byte holes as {offset,
    size} and bit holes as {offset, bit_offset, bit_size} (the first unused bit is bit `bit_offset`,
    0-7, of byte `offset`); `padding` (bytes) and `bit_padding` (bits) are the outermost struct's."""
    typ = btf.skip_qualifiers(type_id)
    if isinstance(typ, Typedef):
        return {"name": typ.name, "kind": "typedef", "type": btf.type_name(typ.type_id)}
    if isinstance(typ, (Enum, Enum64)):
        return {
            "name": base_name(typ),
            "kind": "enum",
            "size": typ.size,
            "values": [{"name": e.name, "value": e.value} for e in typ.values],
        }
    assert isinstance(typ, (Struct, Union))
    rows = type_layout(btf, typ.id)
    members = []
    holes: List[Dict[str, int]] = []
    for r in rows:
        if r.kind == "member":
            entry: Dict[str, Any] = {
                "name": r.name,
                "type": btf.type_name(r.type_id),
                "offset": r.offset,
                "size": r.size,
            }
            if r.bit_offset is not None:
                entry.update(bit_offset=r.bit_offset, bitfield_size=r.bitfield_size)
            members.append(entry)
        elif r.kind == "hole":
            holes.append({"offset": r.offset, "size": r.size})
        elif r.kind == "bit_hole":
            holes.append({"offset": r.offset, "bit_offset": r.bit_offset or 0, "bit_size": r.bit_size})
    own = [r for r in rows if r.depth == 1]
    # pahole names a bit hole before a byte hole after the same member; here they go in place order.
    holes.sort(key=lambda h: 8 * h["offset"] + h.get("bit_offset", 0))
    return {
        "name": base_name(typ),
        "kind": "struct" if isinstance(typ, Struct) else "union",
        "size": typ.size,
        "members": members,
        "holes": holes,
        "padding": sum(r.size for r in own if r.kind == "padding"),
        "bit_padding": sum(r.bit_size for r in own if r.kind == "bit_padding"),
    }
