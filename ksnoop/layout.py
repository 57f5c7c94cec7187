"""The layout of a struct or union, as pahole shows it: each member's offset and size, holes
and padding visible, anonymous members expanded in place. Also enum and typedef definitions.

`type_layout` gives plain data (LayoutLine rows); `layout_text` and `layout_json` present it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from btf import BTF, BTFError, Enum, Enum64, Struct, Typedef, Union
from btf.cdecl import base_name

from .sanitize import sanitize

_CACHELINE = 64
# Anonymous members nested deeper than this only come from loops in corrupt BTF.
_MAX_DEPTH = 64


@dataclass(frozen=True)
class LayoutLine:
    """One row: a member (`decl` set), the opening/closing of an anonymous member, a hole or padding."""

    kind: str  # "member", "open", "close", "hole", "padding"
    depth: int
    decl: str = ""  # `struct sk_buff *next` for a member; `union` / `struct` for an opening
    offset: int = 0  # bytes from the start of the outermost type
    size: int = 0
    bit_offset: Optional[int] = None  # of a bitfield, from `offset`
    bitfield_size: int = 0
    name: str = ""  # the member's name as C code uses it (anonymous ones flattened)
    type_id: int = 0  # the member's type


def type_layout(btf: BTF, type_id: int) -> List[LayoutLine]:
    typ = btf.type_by_id(type_id)
    assert isinstance(typ, (Struct, Union))
    rows: List[LayoutLine] = []
    _members(btf, typ, 0, 1, rows)
    end = _end_of_members(rows)
    if isinstance(typ, Struct) and end < typ.size:
        rows.append(LayoutLine("padding", 1, offset=end, size=typ.size - end))
    return rows


def _members(btf: BTF, typ: Any, base_offset: int, depth: int, rows: List[LayoutLine]) -> None:
    if depth > _MAX_DEPTH:
        raise BTFError("anonymous members nest too deeply", type_id=typ.id)
    is_struct = isinstance(typ, Struct)
    cursor = base_offset  # the first byte after the previous member, for holes
    for m in typ.members:
        offset = base_offset + m.bit_offset // 8
        # Whole unused bytes before a bitfield are a hole too.
        if is_struct and offset > cursor:
            rows.append(LayoutLine("hole", depth, offset=cursor, size=offset - cursor))
        target = btf.skip_modifiers(m.type_id)
        if not m.name and isinstance(target, (Struct, Union)):
            rows.append(LayoutLine("open", depth, "struct" if isinstance(target, Struct) else "union", offset,
                                   target.size))
            _members(btf, target, offset, depth + 1, rows)
            rows.append(LayoutLine("close", depth, offset=offset, size=target.size))
            size = target.size
        elif m.bitfield_size:
            size = btf.resolve_size(m.type_id)
            storage = offset - offset % size if size else offset  # size 0 only in corrupt BTF
            rows.append(LayoutLine("member", depth, btf.decl(m.type_id, m.name) + f":{m.bitfield_size}",
                                   storage, size, m.bit_offset + 8 * base_offset - 8 * storage, m.bitfield_size,
                                   m.name, m.type_id))
            end = base_offset + (m.bit_offset + m.bitfield_size + 7) // 8
            cursor = max(cursor, end) if is_struct else cursor
            continue
        else:
            size = _size(btf, m.type_id)
            rows.append(LayoutLine("member", depth, btf.decl(m.type_id, m.name), offset, size, name=m.name,
                                   type_id=m.type_id))
        if is_struct:
            cursor = max(cursor, offset + size)


def _size(btf: BTF, type_id: int) -> int:
    try:
        return btf.resolve_size(type_id)
    except Exception:
        return 0  # a flexible or function type: takes no room


def _end_of_members(rows: List[LayoutLine]) -> int:
    return max((r.offset + r.size for r in rows if r.kind in ("member", "close") and r.depth == 1), default=0)


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
    holes = [r for r in rows if r.kind == "hole"]
    for r in rows:
        tabs = "\t" * r.depth
        if r.kind == "member":
            where = (f"{r.offset:5d}:{r.bit_offset:2d} {r.size:4d}" if r.bit_offset is not None
                     else f"{r.offset:5d} {r.size:4d}")
            lines.append(f"{tabs}{sanitize(r.decl) + ';':<{_column(r.depth)}s} /* {where} */")
        elif r.kind == "open":
            lines.append(f"{tabs}{r.decl} {{")
        elif r.kind == "close":
            lines.append(f"{tabs}{'};':<{_column(r.depth)}s} /* {r.offset:5d} {r.size:4d} */")
        elif r.kind == "hole":
            lines.append(f"\n{tabs}/* XXX {r.size} byte{'s' if r.size != 1 else ''} hole, try to pack */\n")
        else:
            lines.append(f"\n{tabs}/* XXX {r.size} byte{'s' if r.size != 1 else ''} padding */")
    members = sum(1 for r in rows if r.kind in ("member", "open") and r.depth == 1)
    cachelines = (typ.size + _CACHELINE - 1) // _CACHELINE
    lines.append(f"\n\t/* size: {typ.size}, cachelines: {cachelines}, members: {members} */")
    if holes:
        lines.append(f"\t/* holes: {len(holes)}, sum holes: {sum(h.size for h in holes)} */")
    padding = [r for r in rows if r.kind == "padding"]
    if padding:
        lines.append(f"\t/* padding: {padding[0].size} */")
    lines.append("};")
    return "\n".join(lines)


def _column(depth: int) -> int:
    # Comments line up when tabs are 8 columns wide, as in pahole's output.
    return max(8, 48 - 8 * depth)


def layout_json(btf: BTF, type_id: int) -> Dict[str, Any]:
    typ = btf.skip_qualifiers(type_id)
    if isinstance(typ, Typedef):
        return {"name": typ.name, "kind": "typedef", "type": btf.type_name(typ.type_id)}
    if isinstance(typ, (Enum, Enum64)):
        return {"name": base_name(typ), "kind": "enum", "size": typ.size,
                "values": [{"name": e.name, "value": e.value} for e in typ.values]}
    assert isinstance(typ, (Struct, Union))
    rows = type_layout(btf, typ.id)
    members = []
    for r in rows:
        if r.kind != "member":
            continue
        entry: Dict[str, Any] = {"name": r.name, "type": btf.type_name(r.type_id),
                                 "offset": r.offset, "size": r.size}
        if r.bit_offset is not None:
            entry.update(bit_offset=r.bit_offset, bitfield_size=r.bitfield_size)
        members.append(entry)
    out: Dict[str, Any] = {"name": base_name(typ), "kind": "struct" if isinstance(typ, Struct) else "union",
                           "size": typ.size, "members": members,
                           "holes": [{"offset": r.offset, "size": r.size} for r in rows if r.kind == "hole"]}
    padding = [r.size for r in rows if r.kind == "padding"]
    out["padding"] = padding[0] if padding else 0
    return out
