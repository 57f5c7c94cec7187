# SPDX-License-Identifier: GPL-2.0-only
"""Typed bytes -> values, over btf.compiled's readers: `decode` gives plain Python, `render` gives
ksnoop's text (optionally styled). Neither reads bytes itself: the compiled reader does.

Data shorter than its type still yields what fits: decode marks the cut with a TRUNCATED_KEY
entry (or a TRUNCATED list element), render with `...`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import types as t
from .cdecl import declaration
from .compiled import Elements, Leaf, Meaning, Missing, Node, Nothing, Record, compile_type, is_char, is_cut

if TYPE_CHECKING:
    from .btf import BTF

__all__ = [
    "HEX_NAMES",
    "TRUNCATED",
    "TRUNCATED_KEY",
    "Styles",
    "address_or_number",
    "bitfield_from",
    "char_array_literal",
    "char_array_text",
    "char_literal",
    "decode",
    "enum_name",
    "escape_bytes",
    "function_text",
    "int_from",
    "ipv4_text",
    "is_char",
    "is_string",
    "leaf_value",
    "number_text",
    "pointer_text",
    "render",
    "string_literal",
    "text_from",
    "text_renderer",
]

TRUNCATED_KEY = "..."
TRUNCATED = "truncated"


def int_from(data: bytes, signed: bool, byteorder: str) -> int:
    return int.from_bytes(data, byteorder, signed=signed)  # type: ignore[arg-type]


def bitfield_from(data: bytes, bit_offset: int, bitfield_size: int, signed: bool, byteorder: str) -> int:
    """A bitfield of `bitfield_size` bits starting `bit_offset` bits into `data` (a capture's bytes;
    values inside a type are cut by its compiled reader).

    BTF counts bit offsets from the first byte's least significant bit on little-endian targets
    and from its most significant bit on big-endian ones, as compilers lay bitfields out.
    """
    if bitfield_size == 0:
        return 0  # an INT of 0 bits: the kernel's btf_int_check_meta lets it through
    raw = int.from_bytes(data, byteorder)  # type: ignore[arg-type]
    if byteorder == "little":
        value = (raw >> bit_offset) & ((1 << bitfield_size) - 1)
    else:
        value = (raw >> (8 * len(data) - bit_offset - bitfield_size)) & ((1 << bitfield_size) - 1)
    if signed and value >> (bitfield_size - 1):
        value -= 1 << bitfield_size
    return value


def text_from(data: bytes) -> str:
    """A char array's text: up to the first NUL, bytes that are not UTF-8 escaped as \\xNN."""
    end = data.find(b"\0")
    return (data if end < 0 else data[:end]).decode("utf-8", "backslashreplace")


def enum_name(typ: Any, value: int) -> Optional[str]:
    for e in typ.values:
        if e.value == value:
            return str(e.name)
    return None


def leaf_value(leaf: Leaf, raw: Any, byteorder: str) -> Any:
    """A leaf's plain Python value from its raw one (CompiledType.read()): int, bool, enumerator
    name, str for text, float, or a "0x..." string for a float of a size Python has none for."""
    meaning = leaf.meaning
    if leaf.raw and meaning is not Meaning.TEXT:
        if meaning is Meaning.FLOAT:
            return "0x" + bytes(raw)[:: -1 if byteorder == "little" else 1].hex()
        raw = int.from_bytes(raw, byteorder, signed=leaf.signed)  # type: ignore[arg-type]
    if meaning is Meaning.ENUM:
        assert leaf.names is not None
        return leaf.names.get(raw, raw)
    if meaning is Meaning.BOOL:
        return bool(raw)
    if meaning is Meaning.TEXT:
        return char_array_text(raw)
    return raw


def is_string(data: bytes) -> bool:
    """Does a char array hold a C string: a NUL, and nothing but NULs after it (libbpf btf_dump's
    rule, tightened)? A port and address that start with a zero byte, say, do not."""
    end = data.find(b"\0")
    return end >= 0 and not data[end:].strip(b"\0")


def char_array_text(data: bytes) -> str:
    """A char array's value: its text when it holds a string (text_from), else every byte, escaped
    (escape_bytes), so that bytes are not mistaken for an empty or cut string."""
    return text_from(data) if is_string(data) else escape_bytes(data)


# Each byte's text in a C string literal: printable ASCII as itself (backslash and quote escaped),
# every other byte as \xNN; applied to the bytes read as Latin-1 (one character a byte) by translate().
_BYTE_TEXT = {
    b: "\\\\" if b == 0x5C else '\\"' if b == 0x22 else chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}"
    for b in range(256)
}


def escape_bytes(data: bytes) -> str:
    """Bytes as C writes them in a string literal: printable ASCII as itself (backslash and quote
    escaped), every other byte as \\xNN."""
    return bytes(data).decode("latin-1").translate(_BYTE_TEXT)


# ---- decode: bytes -> plain Python ---------------------------------------------------------------


def decode(btf: "BTF", type_id: int, data: bytes) -> Any:
    """The value of `data` as `type_id`; see the module docstring for truncation. Raises BTFError
    for a type values do not have, or for more data than the type holds."""
    compiled = compile_type(btf, type_id, len(data))
    values = compiled.read(data)
    return _plain(compiled.root, values, btf.byteorder)


def _plain(node: Node, values: Sequence[Any], byteorder: str) -> Any:
    if isinstance(node, Leaf):
        return leaf_value(node, values[node.index], byteorder)
    if isinstance(node, Record):
        out: Dict[str, Any] = {}
        for f in node.fields:
            out[f.name] = _plain(f.node, values, byteorder)
        if node.cut:
            out[TRUNCATED_KEY] = TRUNCATED
        return out
    if isinstance(node, Elements):
        items = [_plain(item, values, byteorder) for item in node.items]
        if node.cut:
            items.append(TRUNCATED)
        return items
    if isinstance(node, Missing):
        return TRUNCATED
    return None


# ---- render: bytes -> ksnoop text ----------------------------------------------------------------


def _plain_text(text: str) -> str:
    return text


@dataclass(frozen=True)
class Styles:
    """What goes around each part of a rendered value (a style's ANSI codes, say), and what cleans a
    name that came from BTF (member, type and enumerator names) for where the text goes. The
    default is plain text, names as they are."""

    label: Tuple[str, str] = ("", "")
    type: Tuple[str, str] = ("", "")
    value: Tuple[str, str] = ("", "")
    string: Tuple[str, str] = ("", "")
    note: Tuple[str, str] = ("", "")  # `/* 3 zero members */`
    # The kernel function at an address (/proc/kallsyms), for function pointers; None: addresses only.
    symbol: Optional[Callable[[int], Optional[str]]] = None
    clean: Callable[[str], str] = _plain_text


PLAIN = Styles()


def render(
    btf: "BTF",
    type_id: int,
    data: bytes,
    *,
    indent: str = "  ",
    zeroes: bool = False,
    max_elems: int = 16,
    styles: Styles = PLAIN,
) -> str:
    """`(unsigned int)228`; structs as `(struct x){` then one `.member = value,` per line; members
    that are all zero left out unless `zeroes`; arrays show their first `max_elems` elements."""
    return "\n".join(
        text_renderer(btf, type_id, len(data), indent=indent, zeroes=zeroes, max_elems=max_elems, styles=styles)(data)
    )


def text_renderer(
    btf: "BTF",
    type_id: int,
    available: int,
    *,
    indent: str = "  ",
    zeroes: bool = False,
    max_elems: int = 16,
    styles: Styles = PLAIN,
) -> Callable[[Any], List[str]]:
    """A function from `available` bytes of `type_id` to render()'s lines, built once and cached."""
    key = ("text", type_id, available, indent, zeroes, max_elems, styles)
    renderer: Optional[Callable[[Any], List[str]]] = btf.compiled.get(key)
    if renderer is None:
        compiled = compile_type(btf, type_id, available)
        emit = _TextCompiler(btf, available, indent, zeroes, max_elems, styles).node(compiled.root, 0)
        read = compiled.read

        def render_lines(data: Any) -> List[str]:
            lines: List[str] = []
            emit(read(data), data, "", lines)
            return lines

        renderer = btf.compiled[key] = render_lines
    return renderer


Emit = Callable[[Sequence[Any], Any, str, List[str]], None]  # (values, data, prefix, lines)


class _TextCompiler:
    """Turns a compiled reader's tree into closures that append text lines: every label, type and
    name is styled and cleaned once, here, so a record costs a lookup and a join per line."""

    def __init__(self, btf: "BTF", available: int, indent: str, zeroes: bool, max_elems: int, styles: Styles):
        self.btf = btf
        self.available = available
        self.indent = indent
        self.zeroes = zeroes
        self.max_elems = max_elems
        self.styles = styles
        self.order = btf.byteorder

    def style(self, part: Tuple[str, str], text: str) -> str:
        return part[0] + text + part[1] if text and part[0] else text

    def label(self, type_id: int) -> str:
        return self.style(self.styles.type, "(" + self.styles.clean(declaration(self.btf, type_id, "")) + ")")

    def node(self, node: Node, level: int) -> Emit:
        """What appends the lines of `node` at `level`; `prefix` (`.len = `) goes before the first."""
        pad = self.indent * level
        if isinstance(node, Record):
            return self.record(node, level)
        if isinstance(node, Elements) and not node.scalar:
            return self.elements(node, level)
        head = pad
        label = self.label(node.type_id)
        scalar = self.scalar(node)

        def emit(values: Sequence[Any], data: Any, prefix: str, lines: List[str]) -> None:
            lines.append(head + prefix + label + scalar(values))

        return emit

    def scalar(self, node: Node) -> Callable[[Sequence[Any]], str]:
        """The text after a scalar's `(type)`: of a leaf, a cut value, nothing, or a scalar array."""
        value_style, string_style = self.styles.value, self.styles.string
        if isinstance(node, Leaf):
            text = self.leaf_text(node)
            index = node.index
            style = string_style if node.meaning is Meaning.TEXT else value_style
            if style[0]:
                before, after = style
                return lambda values: before + text(values[index]) + after
            return lambda values: text(values[index])
        if isinstance(node, Missing):
            return lambda values: "..."
        if isinstance(node, Nothing):
            return lambda values: "{}"
        assert isinstance(node, Elements)
        shown = min(node.count, self.max_elems)
        items = [self.scalar(item) for item in node.items[:shown]]
        cut = len(node.items) < shown
        count = node.count
        more = f", ... {count - shown} more" if count > shown and len(items) + cut == shown else ""
        tail = ["..."] if cut else []

        def array(values: Sequence[Any]) -> str:
            return "[" + ", ".join([item(values) for item in items] + tail) + more + "]"

        return array

    def leaf_text(self, leaf: Leaf, name: str = "") -> Callable[[Any], str]:
        """The text of a leaf's raw value; `name`, the member's, says whether it is a set of flags."""
        meaning, order = leaf.meaning, self.order
        if leaf.raw and meaning is not Meaning.TEXT:
            return lambda raw: str(leaf_value(leaf, raw, order))
        if meaning is Meaning.INT and not leaf.bitfield_size:
            number = number_text(leaf.size, leaf.signed, leaf.foreign, name)
            if number is not None:
                return number
        if meaning is Meaning.PTR:
            return pointer_text
        if meaning is Meaning.FUNC_PTR:
            return function_text(self.styles.symbol)
        if meaning is Meaning.BOOL:
            return _bool_text
        if meaning is Meaning.CHAR:
            return char_literal
        if meaning is Meaning.ENUM:
            assert leaf.names is not None
            names = {value: self.styles.clean(name) for value, name in leaf.names.items()}
            return lambda raw: names.get(raw) or str(raw)
        if meaning is Meaning.FLOAT:
            return repr
        if meaning is Meaning.TEXT:
            typ = self.btf.skip_modifiers(leaf.type_id)
            nelems = typ.nelems if isinstance(typ, t.Array) else leaf.size
            if leaf.size < nelems:  # cut short: say so unless the text ended within what there is
                return lambda raw: string_literal(raw) if b"\0" in raw else '"' + escape_bytes(raw) + '"...'
            return char_array_literal
        return str

    def record(self, node: Record, level: int) -> Emit:
        pad = self.indent * level
        label = self.label(node.type_id)
        members = self.members(node, level + 1)

        def emit(values: Sequence[Any], data: Any, prefix: str, lines: List[str]) -> None:
            lines.append(pad + prefix + label + "{")
            members(values, data, lines)
            lines.append(pad + "}")

        return emit

    def members(self, node: Record, level: int) -> Callable[[Sequence[Any], Any, List[str]], None]:
        """What appends a record's member lines: those all zero left out (unless `zeroes`), and `...`
        where the data ended (in place of a member it cut). A scalar member's line is one join of
        text made here and its value's text; anything else is its own emitter's lines."""
        pad = self.indent * level
        steps: List[_Step] = []
        ended = node.cut
        for f in node.fields:
            width = f":{f.node.bitfield_size}" if f.bitfield and isinstance(f.node, Leaf) else ""
            prefix = "." + self.style(self.styles.label, self.styles.clean(f.name) + width) + " = "
            child = f.node
            if not f.bitfield and (is_cut(child) or (f.size and f.offset + f.size > self.available)):
                ended = True
                break
            if not (f.bitfield or f.size or self.zeroes):
                continue  # a member of no size (a flexible array, an empty struct): nothing to show or count
            zero = bytes(f.size)
            if isinstance(child, Leaf):
                before, after = self.styles.string if child.meaning is Meaning.TEXT else self.styles.value
                head = pad + prefix + self.label(child.type_id) + before
                # An int, pointer, enum, bool or char is zero exactly when its bytes are.
                how = _ZERO_VALUE if f.bitfield or (child.meaning in _ZERO_IS_FALSE and not child.raw) else _ZERO_BYTES
                steps.append(
                    (
                        how,
                        child.index,
                        f.offset,
                        f.offset + f.size,
                        zero,
                        head,
                        self.leaf_text(child, f.name),
                        after + ",",
                        None,
                    )
                )
            else:
                steps.append((_NESTED, 0, f.offset, f.offset + f.size, zero, prefix, str, "", self.node(child, level)))
        cut_line = pad + "..." if ended else None
        zeroes = self.zeroes
        # Members left out for being zero are counted, so that nothing is hidden without a word.
        left_out = [
            pad + self.style(self.styles.note, f"/* {n} zero member{'' if n == 1 else 's'} */")
            for n in range(len(steps) + 1)
        ]

        def emit(values: Sequence[Any], data: Any, lines: List[str]) -> None:
            append = lines.append
            zero_members = 0
            for how, index, start, end, zero, head, text, tail, nested in steps:
                if how == _ZERO_VALUE:
                    value = values[index]
                    if value or zeroes:
                        append(head + text(value) + tail)
                    else:
                        zero_members += 1
                    continue
                if not zeroes and data[start:end] == zero:
                    zero_members += 1
                    continue
                if nested is None:
                    append(head + text(values[index]) + tail)
                else:
                    nested(values, data, head, lines)
                    lines[-1] += ","
            if zero_members:
                append(left_out[zero_members])
            if cut_line is not None:
                append(cut_line)

        return emit

    def elements(self, node: Elements, level: int) -> Emit:
        pad = self.indent * level
        label = self.label(node.type_id)
        shown = min(node.count, self.max_elems)
        items = [self.node(item, level + 1) for item in node.items[:shown]]
        cut = len(node.items) < shown
        tail = [pad + self.indent + "..."] if cut else []
        if node.count > shown:
            tail.append(f"{pad}{self.indent}... {node.count - shown} more")
        tail.append(pad + "]")

        def emit(values: Sequence[Any], data: Any, prefix: str, lines: List[str]) -> None:
            lines.append(pad + prefix + label + "[")
            for item in items:
                item(values, data, "", lines)
                lines[-1] += ","
            lines.extend(tail)

        return emit


_ZERO_VALUE = 0  # a scalar line, left out when its value is 0
_ZERO_BYTES = 1  # a scalar line, left out when its bytes are all 0 (a float: -0.0 is not all zero)
_NESTED = 2  # a struct or array's lines, left out when its bytes are all 0
_ZERO_IS_FALSE = (Meaning.INT, Meaning.PTR, Meaning.FUNC_PTR, Meaning.ENUM, Meaning.BOOL, Meaning.CHAR)
# (how, leaf index, first byte, end, zero bytes, line head, value text, line tail, nested emitter)
_Step = Tuple[int, int, int, int, bytes, str, Callable[[Any], str], str, Optional["Emit"]]


# Members whose name says they are sets of bits: shown in hex (flags, priv_flags, gfp_mask, features).
HEX_NAMES = re.compile(r"(flags|mask|features)$")
# The lowest kernel address of 64-bit architectures' kernel halves (arm64's; x86-64's is above it).
_KERNEL_ADDRESSES = 0xFFFF000000000000


def number_text(size: int, signed: bool, foreign: bool, name: str) -> Optional[Callable[[int], str]]:
    """How an integer of `size` bytes named `name` reads where not as its plain number (None): in its
    own byte order (`foreign`, a __be16...) in hex, an IPv4 *addr with its dotted quad; a set of
    bits (*flags, *mask, *features) in hex; an unsigned 64-bit kernel address in hex. Struct members
    and trace's values alike follow these rules from here."""
    if foreign:
        if size == 4 and name.endswith("addr"):  # an IPv4 address, in network order
            return ipv4_text
        digits = 2 * size
        return lambda v: f"0x{v:0{digits}x}"
    if HEX_NAMES.search(name):
        bits = (1 << (8 * size)) - 1
        return lambda v: f"0x{v & bits:x}"
    if size == 8 and not signed:  # a kernel address kept in an unsigned long
        return address_or_number
    return None


def ipv4_text(v: int) -> str:
    """A __be32 IPv4 address (as a number in network order): `0x7f000001 /* 127.0.0.1 */`."""
    return f"0x{v:08x} /* {v >> 24}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255} */"


def address_or_number(v: int) -> str:
    """An unsigned 64-bit value: in hex where it is a kernel address, else its number."""
    return f"0x{v:x}" if v >= _KERNEL_ADDRESSES else str(v)


def char_array_literal(data: bytes) -> str:
    """A char array in C: its string as a literal, or, when it holds no string, every byte escaped."""
    return string_literal(data) if is_string(data) else '"' + escape_bytes(data) + '"'


def function_text(symbol: Optional[Callable[[int], Optional[str]]]) -> Callable[[int], str]:
    """A function pointer's text: the function's name where `symbol` knows the address (C writes a
    function's address as its name), else the address; NULL for 0."""
    if symbol is None:
        return pointer_text

    def text(v: int) -> str:
        return (symbol(v) or f"0x{v:x}") if v else "NULL"

    return text


def pointer_text(v: int) -> str:
    """An address in hex, or NULL."""
    return f"0x{v:x}" if v else "NULL"


def _bool_text(v: int) -> str:
    return "true" if v else "false"


def char_literal(value: int) -> str:
    """A char as C writes it (`'a'`), or its number when it is not printable or needs escaping."""
    if 0x20 <= value < 0x7F and value not in (0x27, 0x5C):
        return f"'{chr(value)}'"
    return str(value)


_ESCAPES = {ord("\\"): "\\\\", ord('"'): '\\"', ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"}


def string_literal(data: bytes) -> str:
    """A C string literal of the bytes up to the first NUL; anything unprintable as \\xNN."""
    end = data.find(b"\0")
    raw = data if end < 0 else data[:end]
    text = raw.decode("utf-8", "surrogateescape")
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code in _ESCAPES:
            out.append(_ESCAPES[code])
        elif code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
