# SPDX-License-Identifier: GPL-2.0-only
"""A type's bytes, compiled once: every leaf value's offset, struct code and meaning, and the tree
of structs and arrays they hang in, for a given number of bytes available.

In: a BTF, a type id and how many bytes of it there are. Out: a CompiledType whose `read(data)`
unpacks every leaf at once (a few precompiled struct.Structs, bitfields cut from their storage
units) and whose `root` says what the values mean. Renderers (decode and text in btf/values.py,
JSON in ksnoop) walk the tree, never the BTF, so a type's bytes are interpreted here alone.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Literal, Optional, Sequence, Tuple, Union

from . import types as t
from .errors import BTFError
from .pysource import PySource

if TYPE_CHECKING:
    from .btf import BTF

# Typedef/struct nesting deeper than this only comes from loops in corrupt BTF.
MAX_DEPTH = 64
# Leaves one type may have; more than this is a type no record holds (a 2 GB array, say).
MAX_LEAVES = 1 << 18
_UNSIGNED_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}
_SIGNED_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}
_FLOAT_CODES = {4: "f", 8: "d"}


class Meaning(enum.Enum):
    """What a leaf's raw value (int, float or bytes from read()) stands for."""

    INT = "int"  # an int (bytes for sizes without a struct code: read with int.from_bytes)
    BOOL = "bool"
    CHAR = "char"  # a one-byte char: a number, shown as a character literal in text
    ENUM = "enum"  # an int whose enumerator names are in `Leaf.names`
    PTR = "ptr"  # an address
    FUNC_PTR = "func_ptr"  # the address of a function (a pointer to a FUNC_PROTO)
    FLOAT = "float"  # a float (bytes for sizes other than 4 and 8: shown as hex)
    TEXT = "text"  # a char array's bytes: text up to the first NUL


@dataclass(frozen=True)
class Leaf:
    """One value read from the bytes."""

    index: int  # its position in CompiledType.read()'s result
    type_id: int  # as declared (typedefs and qualifiers kept, for labels)
    meaning: Meaning
    offset: int  # bytes from the start of the data
    size: int  # bytes read (a bitfield's storage span)
    signed: bool = False
    bitfield_size: int = 0  # bits, for a bitfield (then `bit_offset` counts from `offset`)
    bit_offset: int = 0
    names: Optional[Dict[int, str]] = None  # enumerator names by value (the first of aliases)
    raw: bool = False  # the value arrives as bytes (no struct code fits its size)
    foreign: bool = False  # stored in the other byte order than the BTF's (__be16 on x86), read as such


@dataclass(frozen=True)
class Field:
    """A struct or union member, named (anonymous members' fields are flattened into the parent)."""

    name: str
    node: "Node"
    offset: int  # bytes from the start of the data, of the member's first byte
    size: int  # bytes the member covers (its storage span for a bitfield)
    bitfield: bool = False


@dataclass(frozen=True)
class Record:
    """A struct or union: its fields in order, as far as the data goes. `cut`: the data ended
    inside it (the fields after the cut are left out; the last one may be cut itself)."""

    type_id: int
    fields: Tuple[Field, ...]
    cut: bool


@dataclass(frozen=True)
class Elements:
    """An array (not of char): the whole elements the data holds, `count` the array's length.
    `cut`: the data ended before the last element (a cut element is left out)."""

    type_id: int
    elem_type_id: int
    items: Tuple["Node", ...]
    count: int
    cut: bool
    scalar: bool  # elements are leaves (one line each in text), not structs or arrays


@dataclass(frozen=True)
class Missing:
    """A scalar the data does not hold, whole or in part."""

    type_id: int


@dataclass(frozen=True)
class Nothing:
    """A value with no bytes to show: void, a function, a forward declaration."""

    type_id: int


Node = Union[Leaf, Record, Elements, Missing, Nothing]


def is_char(typ: t.Type) -> bool:
    """A `char` (or signed/unsigned char) element, whose arrays read as text."""
    return isinstance(typ, t.Int) and typ.size == 1 and (typ.is_char or typ.name in ("char", "signed char"))


def enum_names(typ: Union[t.Enum, t.Enum64]) -> Dict[int, str]:
    """Value -> name; of two enumerators with one value the first wins."""
    names: Dict[int, str] = {}
    for e in typ.values:
        names.setdefault(e.value, e.name)
    return names


class CompiledType:
    """The compiled reader of one (BTF, type id, bytes available). Build it with `compile_type`."""

    def __init__(self, btf: "BTF", type_id: int, available: int, bitfield: Optional[Tuple[int, int]] = None):
        self.btf = btf
        self.type_id = type_id
        self.available = available
        self.leaves: List[Leaf] = []
        self._little = btf.byteorder == "little"
        # Fixed reads: (offset, size, struct code, leaf index or -1 - unit, struct byte-order prefix).
        self._pending: List[Tuple[int, int, str, int, str]] = []
        self._prefix = "<" if self._little else ">"
        self._units: Dict[Tuple[int, int], int] = {}  # (offset, span) of a bitfield's storage -> unit
        self._bitfield_leaves: List[Tuple[int, int, int, int, bool]] = []  # (unit, leaf, shift, bits, signed)
        self._enum_names: Dict[int, Dict[int, str]] = {}
        self._unit_list: Optional[Tuple[BitfieldUnit, ...]] = None  # made by `units` when asked
        if bitfield is None:
            self.root: Node = self._value(type_id, 0, available, 0)
        else:  # one bitfield, `bitfield` = (bit offset, bits), alone in `available` bytes
            self.root = self._bitfield_member(type_id, 0, available, *bitfield)
        self._assemble()
        if len(self._unpackers) == 1 and not self._bitfields:
            # One struct.Struct reads everything: read() is that Struct's own unpack_from.
            self.read = self._unpackers[0]  # type: ignore[method-assign, assignment]

    # ---- reading ---------------------------------------------------------------------------------
    def read(self, data: Union[bytes, bytearray, memoryview]) -> Sequence[Any]:
        """Every leaf's raw value, by Leaf.index: ints, floats, and bytes for TEXT and `raw` leaves.
        `data` must hold `available` bytes."""
        values: Tuple[Any, ...] = ()
        for unpack in self._unpackers:
            values += unpack(data)
        if not self._bitfields:
            return values
        out = list(values)
        extend = out.extend
        for unit, table in self._bitfields:
            extend(table[out[unit]])
        return out

    @property
    def units(self) -> Tuple["BitfieldUnit", ...]:
        """The storage units bitfields are cut from, in read()'s order."""
        if self._unit_list is None:
            units, first = [], self._values - sum(len(table.cuts) for _, table in self._bitfields)
            for position, table in self._bitfields:
                units.append(BitfieldUnit(position, first, table.cuts))
                first += len(table.cuts)
            self._unit_list = tuple(units)
        return self._unit_list

    def read_source(self, source: PySource, data: str, offset: str, uncut: Sequence["BitfieldUnit"] = ()) -> List[str]:
        """Add to `source` the statements that read, from `data` at byte `offset` (names in the
        function being written), the values read() gives into locals; return their local names,
        by position in read()'s result (a leaf's is names[leaf.index]). The bitfields of the units
        in `uncut` are left unread (their unit's value is read: see cut_source)."""
        names = [source.local() for _ in range(self._values)]
        first = 0
        for unpack, count in zip(self._lane_unpackers, self._lane_counts):
            targets = "".join(name + ", " for name in names[first : first + count])
            source.add(f"{targets}= {source.bind(unpack, 'unpack')}({data}, {offset})")
            first += count
        if self._wide_units:
            from_bytes = source.bind(int.from_bytes, "from_bytes")
            order = "'little'" if self._little else "'big'"
            for p in self._wide_units:
                source.add(f"{names[p]} = {from_bytes}({names[p]}, {order})")
        for unit in self.units:
            if unit not in uncut:
                for name, statement in zip(names[unit.first :], self._cuts(unit, names[unit.position])):
                    source.add(f"{name} = {statement}")
        return names

    def cut_source(self, unit: "BitfieldUnit", value: str) -> List[str]:
        """Expressions, of the unit's value named `value`, for each of its bitfields in order."""
        return list(self._cuts(unit, value))

    @staticmethod
    def _cuts(unit: "BitfieldUnit", value: str) -> Iterator[str]:
        # Cut inline, not looked up in the unit's table: values that do not repeat (counters,
        # random bytes) would each cost the table a call of its own.
        for shift, mask, sign in unit.cuts:
            bits = f"({value} >> {shift}) & {mask:#x}" if shift else f"{value} & {mask:#x}"
            yield f"(({bits}) ^ {sign:#x}) - {sign:#x}" if sign else bits

    # ---- compiling -------------------------------------------------------------------------------
    def _leaf(
        self,
        type_id: int,
        meaning: Meaning,
        offset: int,
        size: int,
        code: str,
        *,
        signed: bool = False,
        names: Optional[Dict[int, str]] = None,
    ) -> Leaf:
        if len(self.leaves) >= MAX_LEAVES:
            raise BTFError(f"type has more than {MAX_LEAVES} values to read", type_id=self.type_id)
        # __be16 and its kind are numbers in their own byte order, whatever the machine's.
        foreign = meaning is Meaning.INT and self.btf.value_byteorder(type_id) != self.btf.byteorder
        leaf = Leaf(
            len(self.leaves),
            type_id,
            meaning,
            offset,
            size,
            signed,
            names=names,
            raw=code.endswith("s"),
            foreign=foreign,
        )
        self.leaves.append(leaf)
        prefix = ("<" if self._prefix == ">" else ">") if foreign else self._prefix
        # A read of nothing (a flexible array's text) may sit past the data's end: read it at 0.
        self._pending.append((offset if size else 0, size, code, leaf.index, prefix))
        return leaf

    def _bitfield(
        self,
        type_id: int,
        meaning: Meaning,
        offset: int,
        span: int,
        bit_offset: int,
        bitfield_size: int,
        signed: bool,
        names: Optional[Dict[int, str]] = None,
    ) -> Leaf:
        """A value of `bitfield_size` bits, `bit_offset` bits into the `span` bytes from `offset`, read
        as one unsigned storage unit shared with the other bitfields in those bytes. BTF counts bits
        from the first byte's least significant bit on little-endian targets and from its most
        significant on big-endian ones, as compilers lay bitfields out."""
        if len(self.leaves) >= MAX_LEAVES:
            raise BTFError(f"type has more than {MAX_LEAVES} values to read", type_id=self.type_id)
        key = (offset, span)
        unit = self._units.get(key)
        if unit is None:
            unit = self._units[key] = len(self._units)
            self._pending.append((offset, span, "", -1 - unit, self._prefix))
        shift = bit_offset if self._little else 8 * span - bit_offset - bitfield_size
        leaf = Leaf(len(self.leaves), type_id, meaning, offset, span, signed, bitfield_size, bit_offset, names)
        self.leaves.append(leaf)
        self._bitfield_leaves.append((unit, leaf.index, shift, bitfield_size, signed))
        return leaf

    def _bitfield_member(self, type_id: int, offset: int, span: int, bit_offset: int, bitfield_size: int) -> Leaf:
        """A bitfield member of `type_id` (an int, bool, char or enum), meaning what its type says."""
        target = self.btf.skip_modifiers(type_id)
        meaning, names = Meaning.INT, None
        if isinstance(target, t.Int) and target.is_bool:
            meaning = Meaning.BOOL
        elif isinstance(target, t.Int) and is_char(target):
            meaning = Meaning.CHAR
        elif isinstance(target, (t.Enum, t.Enum64)):
            meaning, names = Meaning.ENUM, self._names(target)
        signed = isinstance(target, (t.Int, t.Enum, t.Enum64)) and target.signed
        return self._bitfield(type_id, meaning, offset, span, bit_offset, bitfield_size, signed, names)

    def _names(self, typ: Union[t.Enum, t.Enum64]) -> Dict[int, str]:
        names = self._enum_names.get(typ.id)
        if names is None:
            names = self._enum_names[typ.id] = enum_names(typ)
        return names

    def _value(self, type_id: int, offset: int, limit: int, depth: int) -> Node:
        """The node of a value of `type_id` at `offset`, of which the bytes before `limit` exist."""
        if depth > MAX_DEPTH:
            raise BTFError("type nests too deeply to decode", type_id=type_id)
        btf = self.btf
        typ = btf.skip_modifiers(type_id)
        available = limit - offset
        if isinstance(typ, (t.Struct, t.Union)):
            fields: List[Field] = []
            complete = self._members(typ, offset * 8, limit, depth, fields)
            return Record(type_id, tuple(fields), not complete)
        if isinstance(typ, t.Array):
            elem = btf.skip_modifiers(typ.type_id)
            if is_char(elem):
                size = max(0, min(typ.nelems, available))
                return self._leaf(type_id, Meaning.TEXT, offset, size, f"{size}s")
            size = btf.resolve_size(typ.type_id)
            scalar = not isinstance(elem, (t.Struct, t.Union, t.Array))
            if size == 0:  # elements without size hold no data, and the count alone could be 2**32
                return Elements(type_id, typ.type_id, (), 0, False, scalar)
            whole = min(typ.nelems, max(0, available) // size)
            items = tuple(
                self._value(typ.type_id, offset + i * size, offset + (i + 1) * size, depth + 1) for i in range(whole)
            )
            return Elements(type_id, typ.type_id, items, typ.nelems, whole < typ.nelems, scalar)
        if isinstance(typ, t.Int):
            if available < typ.size:
                return Missing(type_id)
            meaning = Meaning.BOOL if typ.is_bool else Meaning.CHAR if is_char(typ) else Meaning.INT
            if typ.bits < 8 * typ.size or typ.bit_offset:
                if typ.bits == 0:  # an INT of 0 bits: the kernel's btf_int_check_meta lets it through
                    return self._leaf(type_id, meaning, offset, 0, "0s")
                # An INT's own bit offset counts within its bytes, over all of them.
                return self._bitfield(type_id, meaning, offset, typ.size, typ.bit_offset, typ.bits, typ.signed)
            codes = _SIGNED_CODES if typ.signed else _UNSIGNED_CODES
            code = codes.get(typ.size, f"{typ.size}s")
            return self._leaf(type_id, meaning, offset, typ.size, code, signed=typ.signed)
        if isinstance(typ, t.Ptr):
            size = btf.pointer_size
            if available < size:
                return Missing(type_id)
            meaning = Meaning.FUNC_PTR if isinstance(btf.skip_modifiers(typ.type_id), t.FuncProto) else Meaning.PTR
            return self._leaf(type_id, meaning, offset, size, _UNSIGNED_CODES.get(size, f"{size}s"))
        if isinstance(typ, (t.Enum, t.Enum64)):
            if available < typ.size:
                return Missing(type_id)
            codes = _SIGNED_CODES if typ.signed else _UNSIGNED_CODES
            return self._leaf(
                type_id,
                Meaning.ENUM,
                offset,
                typ.size,
                codes.get(typ.size, f"{typ.size}s"),
                signed=typ.signed,
                names=self._names(typ),
            )
        if isinstance(typ, t.Float):
            if available < typ.size:
                return Missing(type_id)
            return self._leaf(type_id, Meaning.FLOAT, offset, typ.size, _FLOAT_CODES.get(typ.size, f"{typ.size}s"))
        return Nothing(type_id)

    def _members(self, typ: t.Composite, base_bit: int, limit: int, depth: int, fields: List[Field]) -> bool:
        """Append the fields of `typ` (anonymous members flattened); False once the data ran out."""
        if depth > MAX_DEPTH:
            raise BTFError("type nests too deeply to decode", type_id=typ.id)
        btf = self.btf
        for m in typ.members:
            bit = base_bit + m.bit_offset
            target = btf.skip_modifiers(m.type_id)
            if not m.name and isinstance(target, t.Union) and is_struct_group(btf, target):
                # The kernel's struct_group(): the same members twice, as an anonymous struct and a
                # named one over the same bytes. Shown once, as the first.
                target = _first_member_only(target)
            if not m.name and isinstance(target, (t.Struct, t.Union)):
                if not self._members(target, bit, limit, depth + 1, fields):
                    return False
                continue
            bitfield_size = m.bitfield_size
            if not bitfield_size and isinstance(target, t.Int) and target.bits < 8 * target.size:
                bitfield_size, bit = target.bits, bit + target.bit_offset
            if bitfield_size:
                start, span = bit // 8, (bit % 8 + bitfield_size + 7) // 8
                if start + span > limit:
                    return False
                leaf = self._bitfield_member(m.type_id, start, span, bit % 8, bitfield_size)
                fields.append(Field(m.name, leaf, start, span, bitfield=True))
                continue
            start = bit // 8
            try:
                size = btf.resolve_size(m.type_id)
            except BTFError:
                size = 0
            if not size and isinstance(target, t.Array):
                continue  # a zero-length array (a flexible array, a cacheline marker) holds no bytes
            if start >= limit and size:
                return False
            # A member of no size past the data's end still holds its nothing whole.
            node = self._value(m.type_id, start, max(start, min(limit, start + size)), depth + 1)
            if isinstance(node, Missing):
                return False
            fields.append(Field(m.name, node, start, size))
            if (size and start + size > limit) or is_cut(node):  # a member of no size is never cut
                return False
        return True

    def _assemble(self) -> None:
        """One struct.Struct per lane of reads that do not overlap (a union's members, a bitfield's
        storage units next to the bitfields' neighbours); leaves then renumbered in read order."""
        lanes: List[List[Tuple[int, int, str, int, str]]] = []
        ends: List[int] = []
        prefixes: List[str] = []
        for pending in sorted(self._pending, key=lambda r: (r[0], r[1])):
            start, prefix = pending[0], pending[4]
            lane = next((n for n, end in enumerate(ends) if end <= start and prefixes[n] == prefix), len(lanes))
            if lane == len(lanes):
                lanes.append([])
                ends.append(0)
                prefixes.append(prefix)
            lanes[lane].append(pending)
            ends[lane] = start + pending[1]
        position: Dict[int, int] = {}  # leaf index (>= 0) or -1 - unit -> position in the unpacked tuple
        unpackers: List[Callable[[Any], Tuple[Any, ...]]] = []
        counts: List[int] = []
        for reads, prefix in zip(lanes, prefixes):
            codes = [prefix]
            cursor = 0
            for offset, size, code, key, _ in reads:
                if offset > cursor:
                    codes.append(f"{offset - cursor}x")
                codes.append(code or _UNSIGNED_CODES.get(size, f"{size}s"))
                cursor = offset + size
                position[key] = len(position)
            unpackers.append(struct.Struct("".join(codes)).unpack_from)
            counts.append(len(reads))
        self._unpackers = tuple(unpackers)
        self._lane_counts = tuple(counts)
        # Units that are not 1, 2, 4 or 8 bytes arrive as bytes: make them ints as they arrive.
        wide_units = [
            position[-1 - unit] for (offset, span), unit in self._units.items() if span not in _UNSIGNED_CODES
        ]
        self._lane_unpackers = self._unpackers
        self._wide_units = tuple(wide_units)
        if wide_units:
            order: Literal["little", "big"] = "little" if self._little else "big"
            plain = self._unpackers

            def unpack_wide(data: Any) -> Tuple[Any, ...]:
                values: List[Any] = []
                for unpack in plain:
                    values.extend(unpack(data))
                for p in wide_units:
                    values[p] = int.from_bytes(values[p], order)
                return tuple(values)

            self._unpackers = (unpack_wide,)
        # Each storage unit's bitfields come from a table of the unit's values met so far, one lookup
        # a unit, not a shift per field.
        by_unit: Dict[int, List[Tuple[int, int, int, int, bool]]] = {}
        for bitfield in self._bitfield_leaves:
            by_unit.setdefault(bitfield[0], []).append(bitfield)
        bitfields: List[Tuple[int, Any]] = []  # (unit's position, its table)
        renumber: Dict[int, int] = {}
        next_index = len(position)
        self._values = len(position) + len(self._bitfield_leaves)  # how many read() gives
        for unit, members in by_unit.items():
            cuts = []
            for _, leaf_index, shift, bits, signed in members:
                renumber[leaf_index] = next_index
                next_index += 1
                cuts.append((shift, (1 << bits) - 1, (1 << (bits - 1)) if signed else 0))
            bitfields.append((position[-1 - unit], _BitTable(tuple(cuts))))
        self._bitfields = tuple(bitfields)
        for leaf_index in range(len(self.leaves)):
            if leaf_index not in renumber:
                renumber[leaf_index] = position[leaf_index]
        self.leaves = [_renumbered(leaf, renumber[leaf.index]) for leaf in self.leaves]
        self.root = _renumber_node(self.root, renumber)


@dataclass(frozen=True)
class BitfieldUnit:
    """Bytes that bitfields share: read()'s value at `position`; its bitfields are the leaves
    `first` .. `first + count - 1`, in the order they are cut."""

    position: int
    first: int
    cuts: Tuple[Tuple[int, int, int], ...]  # per bitfield: (shift, mask, sign bit or 0)

    @property
    def count(self) -> int:
        return len(self.cuts)


class _BitTable(dict):  # type: ignore[type-arg]
    """Unit value -> the tuple of its bitfields' values, each computed the first time it is asked
    for and kept (up to _BIT_TABLE_LIMIT values: a byte's 256 all fit)."""

    def __init__(self, cuts: Tuple[Tuple[int, int, int], ...]):
        super().__init__()
        self.cuts = cuts

    def _cut(self, value: int) -> Tuple[int, ...]:
        out = []
        for shift, mask, sign in self.cuts:
            v = (value >> shift) & mask
            out.append(v - (sign << 1) if sign and v & sign else v)
        return tuple(out)

    def __missing__(self, value: int) -> Tuple[int, ...]:
        if len(self) >= _BIT_TABLE_LIMIT:
            return self._cut(value)
        cut = self[value] = self._cut(value)
        return cut


# Values a unit keeps in its table (a byte's 256 all fit; flags words repeat, counters do not).
_BIT_TABLE_LIMIT = 4096


def _renumbered(leaf: Leaf, index: int) -> Leaf:
    # The constructor, not dataclasses.replace: this runs for every leaf of every compiled type.
    return Leaf(
        index,
        leaf.type_id,
        leaf.meaning,
        leaf.offset,
        leaf.size,
        leaf.signed,
        leaf.bitfield_size,
        leaf.bit_offset,
        leaf.names,
        leaf.raw,
        leaf.foreign,
    )


def _renumber_node(node: Node, renumber: Dict[int, int]) -> Node:
    if isinstance(node, Leaf):
        return _renumbered(node, renumber[node.index])
    if isinstance(node, Record):
        return Record(
            node.type_id,
            tuple(Field(f.name, _renumber_node(f.node, renumber), f.offset, f.size, f.bitfield) for f in node.fields),
            node.cut,
        )
    if isinstance(node, Elements):
        return Elements(
            node.type_id,
            node.elem_type_id,
            tuple(_renumber_node(n, renumber) for n in node.items),
            node.count,
            node.cut,
            node.scalar,
        )
    return node


def is_struct_group(btf: "BTF", union: t.Union) -> bool:
    """Is `union` what the kernel's struct_group() makes (include/linux/stddef.h): structs, all at
    its start, with the same members at the same places, so that they name the same bytes twice?"""
    if len(union.members) < 2 or any(m.bit_offset for m in union.members):
        return False
    structs = [btf.skip_modifiers(m.type_id) for m in union.members]
    if not all(isinstance(s, t.Struct) and s.members for s in structs):
        return False
    layouts = {
        tuple((m.name, m.bit_offset, m.bitfield_size, m.type_id) for m in s.members)  # type: ignore[union-attr]
        for s in structs
    }
    return len(layouts) == 1


def _first_member_only(union: t.Union) -> t.Union:
    return dataclasses.replace(union, members=union.members[:1])


def is_cut(node: Node) -> bool:
    """Did the data end inside this value?"""
    if isinstance(node, (Record, Elements)):
        return node.cut
    return isinstance(node, Missing)


_VALUE_TYPES = (t.Struct, t.Union, t.Array, t.Int, t.Ptr, t.Enum, t.Enum64, t.Float)


def compile_type(btf: "BTF", type_id: int, available: int) -> CompiledType:
    """The compiled reader of `type_id` over `available` bytes of it, built once per BTF and cached.

    Raises BTFError for a type id that is not a value type (void, a function...), for more bytes
    than the type has, and for BTF that nests or loops past what real C can.
    """
    key = ("reader", type_id, available)
    compiled: Optional[CompiledType] = btf.compiled.get(key)
    if compiled is None:
        typ = btf.skip_modifiers(type_id)
        if not isinstance(typ, _VALUE_TYPES):
            raise BTFError(f"{type(typ).__name__.lower()} is not a type that values have", type_id=type_id)
        size = btf.resolve_size(type_id)
        if not 0 <= available <= size:
            raise BTFError(f"{available} bytes of a {size}-byte type", type_id=type_id)
        compiled = btf.compiled[key] = CompiledType(btf, type_id, available)
    return compiled


def compile_bitfield(btf: "BTF", type_id: int, span: int, bit_offset: int, bitfield_size: int) -> CompiledType:
    """The compiled reader of one bitfield of `type_id` (an int or enum type), `bitfield_size` bits
    at `bit_offset` bits into `span` bytes (a struct member's storage, copied alone), cached."""
    key = ("bitfield", type_id, span, bit_offset, bitfield_size)
    compiled: Optional[CompiledType] = btf.compiled.get(key)
    if compiled is None:
        if not isinstance(btf.skip_modifiers(type_id), (t.Int, t.Enum, t.Enum64)):
            raise BTFError("a bitfield's type must be an integer or enum", type_id=type_id)
        if not (0 < bitfield_size and bit_offset + bitfield_size <= 8 * span and span <= 16):
            raise BTFError(
                f"a {bitfield_size}-bit field at bit {bit_offset} does not fit {span} bytes", type_id=type_id
            )
        compiled = btf.compiled[key] = CompiledType(btf, type_id, span, (bit_offset, bitfield_size))
    return compiled
