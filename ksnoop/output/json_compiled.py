# SPDX-License-Identifier: GPL-2.0-only
"""JSON written by generated functions: a struct's text from its compiled reader's tree, and a
whole record's line straight from the record's bytes (one unpack per lane into locals, one
%-format), so a stream of big records costs what its values' text costs, not a walk per value.

The rules for each kind of value (NULL as null, wide integers as strings, enums by name, char
arrays as btf.values says) are the leaf rules below; output_json's converters for decoded values
follow the same ones, and tests check that both give the same bytes.
"""

from __future__ import annotations

import json
import math
import struct
from json.encoder import encode_basestring_ascii
from typing import Any, Callable, Dict, List, Optional, Tuple

from bpf.plan import Capture, Probe
from btf import BTF, Array, BTFError, Enum, Enum64, Float, Int, Ptr, Struct, Union
from btf.compiled import (
    BitfieldUnit,
    CompiledType,
    Elements,
    Leaf,
    Meaning,
    Missing,
    Node,
    Record,
    compile_bitfield,
    compile_type,
    is_cut,
)
from btf.pysource import PySource
from btf.values import TRUNCATED, escape_bytes, is_string, leaf_value, text_from

from ksnoop.output.decode import RecordFields, head_source

_KEPT_TEXTS = 4096  # distinct strings (comms, names) whose JSON one table keeps
POINTER = '"0x%x"'  # a pointer not followed; NULL is null


def json_string(text: str) -> str:
    """A JSON string literal, pure ASCII: no control or escape byte reaches a terminal."""
    return encode_basestring_ascii(text)


TRUNCATED_JSON = json_string(TRUNCATED)


def pct(text: str) -> str:
    """Constant text for a %-template."""
    return text.replace("%", "%%")


def is_wide(size: int, bitfield_size: int = 0) -> bool:
    """Is an integer of this size (bytes) or bitfield width (bits) written as a string? Integers of
    more than 32 bits are, by type, whatever their value: jq 1.6 reads numbers as doubles and
    rounds past 2**53, and the proto3 JSON mapping (Tetragon's, for one) does the same for int64."""
    return bitfield_size > 32 if bitfield_size else size > 4


def pointer_json(v: int) -> str:
    return POINTER % v if v else "null"


def float_json(v: float) -> str:
    # JSON has no NaN or infinities; json.dumps would write the invalid `NaN`/`Infinity`.
    return repr(v) if math.isfinite(v) else json_string(repr(v))


def bytes_json(v: Any) -> str:
    """Bytes no type explains."""
    return '{"bytes": "%s"}' % bytes(v).hex()


def dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=True, allow_nan=False)
    except ValueError:  # a NaN or infinity somewhere inside
        return json.dumps(finite(value), ensure_ascii=True, allow_nan=False)


def finite(value: Any) -> Any:
    """`value` with NaNs and infinities (which JSON lacks) as their repr strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


# Each byte of a char array that is not a string, as JSON writes its C-escaped text.
_BYTE_JSON = [encode_basestring_ascii(escape_bytes(bytes([b])))[1:-1] for b in range(256)]


def char_array_json(raw: bytes) -> str:
    """A char array's JSON: its text if it holds a string, else every byte C-escaped (btf.values)."""
    if is_string(raw):
        return json_string(text_from(raw))
    table = _BYTE_JSON
    return '"' + "".join([table[b] for b in raw]) + '"'


class KeptJson(dict):  # type: ignore[type-arg]
    """Raw value -> its JSON text, computed by `convert` the first time and kept (up to a limit)."""

    def __init__(self, convert: Callable[[Any], str]):
        super().__init__()
        self.convert = convert

    def __missing__(self, raw: Any) -> str:
        text = self.convert(raw)
        if len(self) < _KEPT_TEXTS:
            self[raw] = text
        return text


class EnumJson(dict):  # type: ignore[type-arg]
    """An enum's value -> its name's JSON, or its number where no enumerator has it (a string for
    a 64-bit enum)."""

    def __init__(self, names: Dict[int, str], wide: bool):
        super().__init__((value, json_string(name)) for value, name in names.items())
        self.number = '"%d"' if wide else "%d"

    def __missing__(self, value: int) -> str:
        return str(self.number % value)


# ---- a tree's JSON -------------------------------------------------------------------------------


def _record_items(record: Record) -> List[Tuple[str, Node]]:
    """A struct's members as its JSON object has them: a dict's rule for a name given twice (first
    place, last value)."""
    fields: Dict[str, Node] = {}
    for f in record.fields:
        fields[f.name] = f.node
    return list(fields.items())


def _runs_of_units(compiled: CompiledType) -> Dict[int, BitfieldUnit]:
    """The bitfield units whose bitfields are, all and in order, one run of members of one struct:
    by their first bitfield's leaf index. Their members' JSON is written a unit value at a time."""
    by_first = {unit.first: unit for unit in compiled.units}
    runs: Dict[int, BitfieldUnit] = {}
    stack: List[Node] = [compiled.root]
    while stack:
        node = stack.pop()
        if isinstance(node, Record):
            items = _record_items(node)
            for n, (_, child) in enumerate(items):
                unit = by_first.get(child.index) if isinstance(child, Leaf) else None
                if unit is not None and [
                    c.index if isinstance(c, Leaf) else -1 for _, c in items[n : n + unit.count]
                ] == list(range(unit.first, unit.first + unit.count)):
                    runs[unit.first] = unit
                stack.append(child)
        elif isinstance(node, Elements):
            stack.extend(node.items)
    return runs


class _TreeJson:
    """The %-template text and arguments for the values of a compiled reader's tree, whose leaves
    the function being written has read into the locals `names` (by Leaf.index); the bitfields of
    the units in `runs` as one text per unit value, kept (flags words repeat)."""

    def __init__(
        self,
        source: PySource,
        byteorder: str,
        compiled: Optional[CompiledType] = None,
        runs: Optional[Dict[int, BitfieldUnit]] = None,
    ):
        self.source = source
        self.byteorder = byteorder
        self.compiled = compiled
        self.runs = runs or {}
        self.parts: List[str] = []
        self.args: List[str] = []

    def node(self, node: Node, names: List[str]) -> None:
        parts = self.parts
        if isinstance(node, Leaf):
            self.leaf(node, names[node.index])
        elif isinstance(node, Record):
            items = _record_items(node)
            parts.append("{")
            skip = 0
            for n, (name, child) in enumerate(items):
                if skip:
                    skip -= 1
                    continue
                unit = self.runs.get(child.index) if isinstance(child, Leaf) else None
                if unit is not None:
                    parts.append(", " if n else "")
                    self._run(unit, items[n : n + unit.count], names[unit.position])
                    skip = unit.count - 1
                    continue
                parts.append((", " if n else "") + pct(json_string(name)) + ": ")
                self.node(child, names)
            if node.cut:
                parts.append((", " if items else "") + '"...": ' + pct(TRUNCATED_JSON))
            parts.append("}")
        elif isinstance(node, Elements):
            parts.append("[")
            for n, item in enumerate(node.items):
                if n:
                    parts.append(", ")
                self.node(item, names)
            if node.cut:
                parts.append((", " if node.items else "") + pct(TRUNCATED_JSON))
            parts.append("]")
        elif isinstance(node, Missing):
            parts.append(pct(TRUNCATED_JSON))
        else:
            parts.append("null")

    def mark_truncated(self, root: Node, start: int) -> None:
        """A capture cut short where the tree itself is whole: its marker goes last inside it."""
        if is_cut(root) or not isinstance(root, (Record, Elements)):
            return
        empty = not (root.fields if isinstance(root, Record) else root.items)
        marker = ("" if empty else ", ") + ('"...": ' if isinstance(root, Record) else "") + pct(TRUNCATED_JSON)
        self.parts.insert(len(self.parts) - 1 if len(self.parts) > start else start, marker)

    def leaf(self, leaf: Leaf, name: str) -> None:
        meaning, bind = leaf.meaning, self.source.bind
        if leaf.raw and meaning is not Meaning.TEXT:
            order, wide = self.byteorder, meaning is Meaning.INT

            def convert(raw: Any) -> str:  # an int or float of a size struct has no code for
                value = leaf_value(leaf, raw, order)
                return '"%d"' % value if wide else dumps(value)

            self._slot("%s", f"{bind(convert, 'raw')}({name})")
        elif meaning is Meaning.INT:
            self._slot(
                '"%d"' if is_wide(leaf.size if not leaf.bitfield_size else 0, leaf.bitfield_size) else "%d", name
            )
        elif meaning is Meaning.CHAR:
            self._slot("%d", name)
        elif meaning is Meaning.PTR or meaning is Meaning.FUNC_PTR:
            self._slot("%s", f"({bind(POINTER, 'pointer')} % {name} if {name} else 'null')")
        elif meaning is Meaning.BOOL:
            self._slot("%s", f"('true' if {name} else 'false')")
        elif meaning is Meaning.ENUM:
            names = EnumJson(leaf.names or {}, is_wide(leaf.size, leaf.bitfield_size))
            self._slot("%s", f"{bind(names, 'enum')}[{name}]")
        elif meaning is Meaning.FLOAT:
            self._slot("%s", f"{bind(float_json, 'float')}({name})")
        else:  # TEXT
            self._slot("%s", f"{bind(char_array_json, 'chars')}({name})")

    def _run(self, unit: BitfieldUnit, members: List[Tuple[str, Node]], value: str) -> None:
        """One unit's bitfield members, keys and values, as one text per value of the unit."""
        assert self.compiled is not None
        source = PySource()
        run = _TreeJson(source, self.byteorder)
        for n, ((name, leaf), cut) in enumerate(zip(members, self.compiled.cut_source(unit, "unit"))):
            local = source.local()
            source.add(f"{local} = {cut}")
            run.parts.append((", " if n else "") + pct(json_string(name)) + ": ")
            run.leaf(leaf, local)  # type: ignore[arg-type]
        text = source.function("bitfields", "unit", run.result(source.bind("".join(run.parts), "template")))
        self._slot("%s", f"{self.source.bind(KeptJson(text), 'bitfields')}[{value}]")

    def _slot(self, code: str, arg: str) -> None:
        self.parts.append(code)
        self.args.append(arg)

    def result(self, template_name: str) -> str:
        """The expression giving the text: the template filled with this tree's arguments."""
        return _filled(template_name, self.args)


def _filled(template_name: str, args: List[str]) -> str:
    """The expression filling the template bound as `template_name` with the expressions `args`."""
    return f"{template_name} % ({''.join(a + ', ' for a in args)})"


def struct_encoder(btf: BTF, type_id: int, available: int, truncated: bool) -> Callable[[Any], str]:
    """The JSON of `available` bytes of a struct, union or array (`truncated`: the value was cut
    short, marked where the tree is whole): a function of the bytes, written once."""
    compiled = compile_type(btf, type_id, available)
    source = PySource()
    runs = _runs_of_units(compiled)
    names = compiled.read_source(source, "data", "0", uncut=list(runs.values()))
    tree = _TreeJson(source, btf.byteorder, compiled, runs)
    tree.node(compiled.root, names)
    if truncated:
        tree.mark_truncated(compiled.root, 0)
    template = source.bind("".join(tree.parts), "template")
    encode: Callable[[Any], str] = source.function("encode", "data", tree.result(template))
    return encode


# ---- a record's line -----------------------------------------------------------------------------


def capture_reader(btf: BTF, capture: Capture) -> Optional[CompiledType]:
    """The compiled reader of a capture's value as the record holds it, or None for the values
    decoded otherwise: strings followed from a pointer, bytes of no type, scalars of odd size."""
    if capture.string or not capture.type_id:
        return None
    typ = btf.skip_modifiers(capture.type_id)
    try:
        if capture.bitfield is not None:
            if not capture.bitfield.bit_size:
                return None
            return compile_bitfield(
                btf, capture.type_id, capture.size, capture.bitfield.bit_offset, capture.bitfield.bit_size
            )
        if isinstance(typ, (Struct, Union, Array)):
            return compile_type(btf, capture.type_id, capture.size)
        if isinstance(typ, (Int, Enum, Enum64, Ptr, Float)) and not capture.truncated:
            compiled = compile_type(btf, capture.type_id, capture.size)
            root = compiled.root
            return compiled if isinstance(root, Leaf) and not root.raw else None
    except BTFError:
        return None
    return None


def record_liner(
    btf: BTF,
    probe: Probe,
    fields: RecordFields,
    head: str,
    label_keys: List[str],
    taskless: bool,
    failed_line: Callable[[Any], str],
) -> Optional[Callable[..., str]]:
    """A function (buffer, offset=0) -> the JSON line of the record there; a record with a failed
    read goes to `failed_line` (which decodes it to show which), cut out of the buffer. `head` is
    the line's %-template up to its "args" object (taking ts, cpu, pid, tid and comm's JSON),
    `label_keys` each capture's key as template text. None when the probe's records need what
    only decoding gives (a kernel stack, a capture of a kind no reader covers)."""
    if fields.kstack_depth:
        return None
    source = PySource()
    h = head_source(source, fields, "record", "offset")
    cut = f"record[offset : offset + {fields.unpacker.size}]"
    source.add(f"if {h.failed}: return {source.bind(failed_line, 'failed_line')}({cut})")
    tree = _TreeJson(source, btf.byteorder)
    for n, (capture, offset, key) in enumerate(zip(probe.captures, fields.capture_offsets, label_keys)):
        tree.parts.append((", " if n else "") + key)
        at = f"offset + {offset + (8 if capture.address else 0)}"
        compiled = capture_reader(btf, capture)
        if compiled is not None:
            start = len(tree.parts)
            tree.compiled, tree.runs = compiled, _runs_of_units(compiled)
            tree.node(compiled.root, compiled.read_source(source, "record", at, uncut=list(tree.runs.values())))
            if capture.truncated and not isinstance(compiled.root, Leaf):
                tree.mark_truncated(compiled.root, start)
            continue
        if capture.bitfield is not None and not capture.bitfield.bit_size:
            tree.parts.append("0")  # an int of no bits
            continue
        if not capture.string and capture.type_id:
            return None  # a scalar of odd size, or a type no reader takes: decoded as bytes
        raw = source.local()
        source.add(f"{raw}, = {source.bind(struct.Struct(f'{capture.size}s').unpack_from, 'bytes')}(record, {at})")
        text = KeptJson(_string_json) if capture.string else KeptJson(bytes_json)
        tree.parts.append("%s")
        tree.args.append(f"{source.bind(text, 'text')}[{raw}]")
    comm = f"{source.bind(KeptJson(_string_json), 'comms')}[{h.comm}]" if h.comm else "''"
    pid, tid = ("0", "0") if taskless else (h.pid, h.tid)
    head_args = [h.ts, h.cpu, pid, tid, comm]
    values = "".join(tree.parts)
    template = source.bind(head + values + "}}", "template")
    args = head_args + tree.args
    if fields.is_return:
        with_duration = source.bind(head + values + '}, "duration_ns": %d}', "template")
        source.add(f"if {h.entry_ts}: return {_filled(with_duration, args + [f'{h.ts} - {h.entry_ts}'])}")
    function: Callable[..., str] = source.function("line", "record, offset=0", _filled(template, args))
    return function


def _string_json(raw: bytes) -> str:
    return json_string(text_from(raw))
