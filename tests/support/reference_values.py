# SPDX-License-Identifier: GPL-2.0-only
"""The reference the compiled readers (btf/compiled.py) are checked against: btf.values as it was
before them, a walk over the BTF per value, one function per kind, slow and plain.

`decode` gives plain Python, `render` ksnoop's text; data shorter than its type still yields what
fits: decode marks the cut with a TRUNCATED_KEY entry, render with `...`. Kept in tests only.
"""

from __future__ import annotations

import dataclasses

import struct
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from btf import types as t
from btf.cdecl import declaration
from btf.errors import BTFError

# The scalar helpers are btf.values' own: what is checked here is the walk over members and elements.
from btf.compiled import is_struct_group
from btf.values import (
    bitfield_from,
    char_array_text,
    enum_name,
    escape_bytes,
    int_from,
    is_char,
    is_string,
    char_literal,
    string_literal,
)

_HEX_NAMES = ("flags", "mask", "features")
_LEFT_OUT = object()  # a zero-length array member: no bytes, no value

if TYPE_CHECKING:
    from btf.btf import BTF

TRUNCATED_KEY = "..."
TRUNCATED = "truncated"
_MAX_DEPTH = 64
_FLOATS = {4: "f", 8: "d"}


# ---- decode: bytes -> plain Python ---------------------------------------------------------------


def decode(btf: "BTF", type_id: int, data: bytes) -> Any:
    """The value of `data` as `type_id`; see the module docstring for truncation."""
    return _decode(btf, type_id, bytes(data), 0)


def _decode(btf: "BTF", type_id: int, data: bytes, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise BTFError("type nests too deeply to decode", type_id=type_id)
    typ = btf.skip_modifiers(type_id)
    order = btf.byteorder
    if isinstance(typ, (t.Struct, t.Union)):
        out: Dict[str, Any] = {}
        _decode_members(btf, typ, data, depth, out)
        return out
    if isinstance(typ, t.Array):
        elem = btf.skip_modifiers(typ.type_id)
        if is_char(elem):
            return char_array_text(data[: typ.nelems])
        size = btf.resolve_size(typ.type_id)
        if size == 0:
            return []  # elements without size hold no data, and the count alone could be 2**32
        items = []
        for i in range(typ.nelems):
            chunk = data[i * size : (i + 1) * size]
            if len(chunk) < size:
                items.append(TRUNCATED)
                break
            items.append(_decode(btf, typ.type_id, chunk, depth + 1))
        return items
    if isinstance(typ, t.Int):
        if len(data) < typ.size:
            return TRUNCATED
        chunk = data[: typ.size]
        if typ.bits < 8 * typ.size or typ.bit_offset:
            value = bitfield_from(chunk, typ.bit_offset, typ.bits, typ.signed, order)
        else:
            value = int_from(chunk, typ.signed, btf.value_byteorder(type_id))
        return bool(value) if typ.is_bool else value
    if isinstance(typ, t.Ptr):
        size = btf.pointer_size
        return int_from(data[:size], False, order) if len(data) >= size else TRUNCATED
    if isinstance(typ, (t.Enum, t.Enum64)):
        if len(data) < typ.size:
            return TRUNCATED
        value = int_from(data[: typ.size], typ.signed, order)
        name = enum_name(typ, value)
        return value if name is None else name
    if isinstance(typ, t.Float):
        if len(data) < typ.size:
            return TRUNCATED
        fmt = _FLOATS.get(typ.size)
        if fmt is None:
            return "0x" + data[: typ.size][:: -1 if order == "little" else 1].hex()
        return struct.unpack(("<" if order == "little" else ">") + fmt, data[: typ.size])[0]
    return None  # void, functions, forward declarations: nothing to show


def _decode_members(
    btf: "BTF", typ: t.Composite, data: bytes, depth: int, out: Dict[str, Any], base_bit: int = 0
) -> bool:
    """Fill `out`; False once the data ran out (and TRUNCATED_KEY is set)."""
    if depth > _MAX_DEPTH:
        raise BTFError("type nests too deeply to decode", type_id=typ.id)
    for m in typ.members:
        bit = base_bit + m.bit_offset
        if not m.name:
            inner = btf.skip_modifiers(m.type_id)
            if isinstance(inner, t.Union) and is_struct_group(btf, inner):
                inner = dataclasses.replace(inner, members=inner.members[:1])
            if isinstance(inner, (t.Struct, t.Union)):
                if not _decode_members(btf, inner, data, depth + 1, out, bit):
                    return False
                continue
        value, whole = _member_value(btf, m, bit, data, depth)
        if value is _LEFT_OUT:
            continue
        if value is TRUNCATED:
            out[TRUNCATED_KEY] = TRUNCATED
            return False
        out[m.name] = value
        if not whole or _is_truncated(value):
            out[TRUNCATED_KEY] = TRUNCATED
            return False
    return True


def _is_truncated(value: Any) -> bool:
    if isinstance(value, dict):
        return value.get(TRUNCATED_KEY) == TRUNCATED
    if isinstance(value, list):
        return bool(value) and value[-1] == TRUNCATED
    return False


def _member_value(btf: "BTF", m: t.Member, bit: int, data: bytes, depth: int) -> Tuple[Any, bool]:
    """(value, whether all its bytes were there): a char array cut short still reads as text."""
    bitfield_size = m.bitfield_size
    target = btf.skip_modifiers(m.type_id)
    if not bitfield_size and isinstance(target, t.Int) and target.bits < 8 * target.size:
        bitfield_size, bit = target.bits, bit + target.bit_offset
    if bitfield_size:
        start = bit // 8
        span = (bit % 8 + bitfield_size + 7) // 8
        if start + span > len(data):
            return TRUNCATED, False
        signed = isinstance(target, (t.Int, t.Enum, t.Enum64)) and target.signed
        value = bitfield_from(data[start : start + span], bit % 8, bitfield_size, signed, btf.byteorder)
        if isinstance(target, t.Int) and target.is_bool:
            return bool(value), True
        if isinstance(target, (t.Enum, t.Enum64)):
            name = enum_name(target, value)
            return (value if name is None else name), True
        return value, True
    start = bit // 8
    size = _size_or_zero(btf, m.type_id)
    if not size and isinstance(target, t.Array):
        return _LEFT_OUT, True
    if start >= len(data) and size:
        return TRUNCATED, False
    # A member of no size is never cut (a flexible array past the data's end holds nothing either way).
    return _decode(btf, m.type_id, data[start : start + size], depth + 1), start + size <= len(data) or not size


def _size_or_zero(btf: "BTF", type_id: int) -> int:
    try:
        return btf.resolve_size(type_id)
    except BTFError:
        return 0


# ---- render: bytes -> ksnoop text ----------------------------------------------------------------


def render(
    btf: "BTF", type_id: int, data: bytes, *, indent: str = "  ", zeroes: bool = False, max_elems: int = 16
) -> str:
    """`(unsigned int)228`; structs as `(struct x){` then one `.member = value,` per line."""
    r = _Renderer(btf, indent, zeroes, max_elems)
    lines: List[str] = []
    r.value(type_id, bytes(data), 0, "", lines)
    return "\n".join(lines)


class _Renderer:
    def __init__(self, btf: "BTF", indent: str, zeroes: bool, max_elems: int):
        self.btf = btf
        self.indent = indent
        self.zeroes = zeroes
        self.max_elems = max_elems

    def type_label(self, type_id: int) -> str:
        return "(" + declaration(self.btf, type_id, "") + ")"

    def value(
        self,
        type_id: int,
        data: bytes,
        level: int,
        prefix: str,
        lines: List[str],
        bitfield: Optional[Tuple[int]] = None,
        name: str = "",
    ) -> None:
        """Append the lines of one value; `prefix` (`.len = `) goes before its first line."""
        if level > _MAX_DEPTH:
            raise BTFError("type nests too deeply to render", type_id=type_id)
        btf = self.btf
        pad = self.indent * level
        label = self.type_label(type_id)
        typ = btf.skip_modifiers(type_id)
        if bitfield is not None:
            lines.append(f"{pad}{prefix}{label}{self.scalar_text(typ, bitfield_value=bitfield[0])}")
            return
        if isinstance(typ, (t.Struct, t.Union)):
            lines.append(f"{pad}{prefix}{label}{{")
            ok, zero_members = self.members(typ, data, level + 1, 0, lines)
            if zero_members:
                lines.insert(
                    len(lines) - (0 if ok else 1),
                    f"{pad}{self.indent}/* {zero_members} zero member{'' if zero_members == 1 else 's'} */",
                )
            lines.append(f"{pad}}}")
            return
        if isinstance(typ, t.Array):
            self.array(typ, label, data, level, prefix, lines)
            return
        lines.append(f"{pad}{prefix}{label}{self.scalar_text(typ, data, name=name, type_id=type_id)}")

    def scalar_text(
        self, typ: t.Type, data: bytes = b"", bitfield_value: Optional[int] = None, name: str = "", type_id: int = 0
    ) -> str:
        btf = self.btf
        if bitfield_value is not None:
            value: Any = bitfield_value
        else:
            value = _decode(btf, type_id or typ.id, data, 0)
        if value is TRUNCATED:
            return "..."
        if isinstance(typ, t.Ptr):
            return f"0x{value:x}" if value else "NULL"
        if isinstance(typ, t.Int) and typ.is_bool:
            return "true" if value else "false"  # a bool bitfield's value arrives as an int
        if isinstance(typ, t.Int) and is_char(typ):
            return char_literal(value)
        if (
            isinstance(typ, t.Int)
            and bitfield_value is None
            and typ.bits == 8 * typ.size
            and not typ.bit_offset
            and typ.size in (1, 2, 4, 8)
        ):
            if btf.value_byteorder(type_id or typ.id) != btf.byteorder:
                text = f"0x{value:0{2 * typ.size}x}"
                if typ.size == 4 and name.endswith("addr"):
                    text += f" /* {'.'.join(str(b) for b in value.to_bytes(4, 'big'))} */"
                return text
            if name.endswith(_HEX_NAMES):
                return f"0x{value & ((1 << (8 * typ.size)) - 1):x}"
            if typ.size == 8 and not typ.signed and value >= 0xFFFF000000000000:
                return f"0x{value:x}"
        if isinstance(value, float):
            return repr(value)
        if value is None:
            return "{}"
        return str(value)

    def members(
        self, typ: t.Composite, data: bytes, level: int, base_bit: int, lines: List[str], depth: int = 0
    ) -> Tuple[bool, int]:
        """(whether the data lasted, how many members were left out for being zero)."""
        # `depth` counts anonymous members, which render at their parent's level.
        if level + depth > _MAX_DEPTH:
            raise BTFError("type nests too deeply to render", type_id=typ.id)
        btf = self.btf
        pad = self.indent * level
        zero_members = 0
        for m in typ.members:
            bit = base_bit + m.bit_offset
            target = btf.skip_modifiers(m.type_id)
            if not m.name and isinstance(target, t.Union) and is_struct_group(btf, target):
                target = dataclasses.replace(target, members=target.members[:1])
            if not m.name and isinstance(target, (t.Struct, t.Union)):
                ok, inner_zeroes = self.members(target, data, level, bit, lines, depth + 1)
                zero_members += inner_zeroes
                if not ok:
                    return False, zero_members
                continue
            bitfield_size = m.bitfield_size
            fbit = bit
            if not bitfield_size and isinstance(target, t.Int) and target.bits < 8 * target.size:
                bitfield_size, fbit = target.bits, bit + target.bit_offset
            if bitfield_size:
                start, span = fbit // 8, (fbit % 8 + bitfield_size + 7) // 8
                if start + span > len(data):
                    lines.append(f"{pad}...")
                    return False, zero_members
                signed = isinstance(target, (t.Int, t.Enum, t.Enum64)) and target.signed
                value = bitfield_from(data[start : start + span], fbit % 8, bitfield_size, signed, btf.byteorder)
                if value or self.zeroes:
                    if isinstance(target, (t.Enum, t.Enum64)):
                        value_text = enum_name(target, value) or str(value)
                        lines.append(f"{pad}.{m.name}:{bitfield_size} = {self.type_label(m.type_id)}{value_text},")
                    else:
                        self.value(m.type_id, b"", level, f".{m.name}:{bitfield_size} = ", lines, bitfield=(value,))
                        lines[-1] += ","
                else:
                    zero_members += 1
                continue
            start = bit // 8
            size = _size_or_zero(btf, m.type_id)
            chunk = data[start : start + size]
            if len(chunk) < size:
                lines.append(f"{pad}...")
                return False, zero_members
            if not self.zeroes and not size:
                continue  # a member of no size: nothing to show or count
            if not self.zeroes and not any(chunk):
                zero_members += 1
                continue
            self.value(m.type_id, chunk, level, f".{m.name} = ", lines, name=m.name)
            lines[-1] += ","
        return True, zero_members

    def array(self, typ: t.Array, label: str, data: bytes, level: int, prefix: str, lines: List[str]) -> None:
        btf = self.btf
        pad = self.indent * level
        elem = btf.skip_modifiers(typ.type_id)
        if is_char(elem):
            chunk = data[: typ.nelems]
            if len(chunk) < typ.nelems:
                text = string_literal(chunk) if b"\0" in chunk else '"' + escape_bytes(chunk) + '"...'
            else:
                text = string_literal(chunk) if is_string(chunk) else '"' + escape_bytes(chunk) + '"'
            lines.append(f"{pad}{prefix}{label}{text}")
            return
        size = _size_or_zero(btf, typ.type_id)
        count = typ.nelems
        shown = min(count, self.max_elems)
        scalar = not isinstance(elem, (t.Struct, t.Union, t.Array))
        if scalar:
            items = []
            for i in range(shown):
                chunk = data[i * size : (i + 1) * size]
                if len(chunk) < size:
                    items.append("...")
                    break
                items.append(self.scalar_text(elem, chunk, type_id=typ.type_id))
            more = f", ... {count - shown} more" if count > shown and len(items) == shown else ""
            lines.append(f"{pad}{prefix}{label}[{', '.join(items)}{more}]")
            return
        lines.append(f"{pad}{prefix}{label}[")
        for i in range(shown):
            chunk = data[i * size : (i + 1) * size]
            if len(chunk) < size:
                lines.append(f"{pad}{self.indent}...")
                break
            self.value(typ.type_id, chunk, level + 1, "", lines)
            lines[-1] += ","
        if count > shown:
            lines.append(f"{pad}{self.indent}... {count - shown} more")
        lines.append(f"{pad}]")
