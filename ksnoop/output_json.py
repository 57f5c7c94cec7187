"""Events -> JSON lines: one object per record, for jq and friends.

Each probe's line is compiled once into a %-template whose constant parts (func, probe kind,
argument keys) are already encoded; a record of plain integers and pointers fills it in one
`%` call. Anything else goes through a converter chosen per capture, also once.
"""
from __future__ import annotations

import json
import math
import struct
from json.encoder import encode_basestring_ascii
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from bpf.plan import Capture, Probe, ProbeKind
from btf import BTF, Array, BTFError, Enum, Enum64, Float, Int, Ptr, Struct, Union
from btf.values import TRUNCATED, TRUNCATED_KEY, is_char, text_from

from .decode import READ_FAILED, Event, RawValue, RecordFields
from .kallsyms import Symbolizer
from .resolve import ResolvedTrace
from .targets import Target

# The "probe" field: what kind of record this is.
PROBE_KINDS = {ProbeKind.FENTRY: "entry", ProbeKind.FEXIT: "return", ProbeKind.TP_BTF: "tracepoint",
               ProbeKind.ITER: "iter"}
READ_FAILED_JSON = '{"error": "read failed"}'
# A process's comm rarely changes; their encodings are kept, up to this many.
_COMM_CACHE_SIZE = 4096
_KSTACK_CACHE_SIZE = 4096  # distinct stacks whose JSON is kept
# Typedef/struct nesting deeper than this only comes from loops in corrupt BTF.
_MAX_DEPTH = 64

Converter = Callable[[Any], str]  # a value (never READ_FAILED) -> its JSON text


def _enc(text: str) -> str:
    """A JSON string literal, pure ASCII: no control or escape byte reaches a terminal."""
    return encode_basestring_ascii(text)


class _ProbeFormat:
    """One probe's compiled line: the templates and, per capture, how its value becomes JSON."""

    __slots__ = ("direct", "direct_template", "direct_duration_template", "template", "duration_template",
                 "converters", "mixed", "taskless")

    def __init__(self, target: Target, probe: Probe, with_comm: bool):
        btf = target.btf
        comm = ', "comm": %s' if with_comm else "%.0s"  # without: the (empty) comm prints as nothing
        # An iterator's program runs in the reader's task: pid and tid would be ksnoop's own.
        self.taskless = probe.kind is ProbeKind.ITER
        task = "%.0s%.0s" if self.taskless else ', "pid": %d, "tid": %d'
        head = ('{"ts": %d, "cpu": %d' + task + comm + ', "func": '
                + _pct(_enc(target.name)) + ', "probe": ' + _enc(PROBE_KINDS[probe.kind]) + ', "args": {')
        direct_parts: List[str] = []
        parts: List[str] = []
        converters: List[Converter] = []
        # Captures with no %-code of their own (strings, enums, structs): (position, converter). The
        # direct templates take these as converted text and every other value as it is.
        mixed: List[Tuple[int, Converter]] = []
        for n, capture in enumerate(probe.captures):
            key = _pct(_enc(capture.label)) + ": "
            code, convert = _capture_format(btf, capture)
            if code is None:
                mixed.append((n, convert))
                code = "%s"
            direct_parts.append(key + code)
            parts.append(key + "%s")
            converters.append(convert)
        self.direct = not mixed
        self.mixed = tuple(mixed)
        self.direct_template = head + ", ".join(direct_parts) + "}}"
        self.direct_duration_template = head + ", ".join(direct_parts) + '}, "duration_ns": %d}'
        self.template = head + ", ".join(parts) + "}}"
        self.duration_template = head + ", ".join(parts) + '}, "duration_ns": %d}'
        self.converters = tuple(converters)


class JsonFormatter:
    """Turns Events of one ResolvedTrace into JSON lines.

    `{"ts": ns, "cpu": 1, "pid": 2813, "tid": 2813, "comm": "curl", "func": "ip_send_skb",
    "probe": "entry", "args": {"skb->len": 228}, "duration_ns": 1234}`. "func" is the kernel's
    name of the function or tracepoint (`net_dev_queue`, without `tp:`); "probe" says which:
    "entry", "return" or "tracepoint". Argument keys are the capture labels, the return value's
    is "return". Values: integers and floats as numbers (NaN and infinities as strings, which
    JSON lacks), bools, enumerator names, strings, pointers not followed as "0x..." strings
    (inside structs too), structs as objects keyed by member name (anonymous members flattened,
    "...": "truncated" when cut), an unreadable value as {"error": "read failed"}. Output is
    pure ASCII. `duration_ns` appears only on records that have one (passed, or the Event's);
    "comm" only when the plan copies it. A record with a kernel stack ends with
    `"kstack": ["ip_send_skb+0x1d", "ipt_do_table+0x2c1 [ip_tables]", ...]`, innermost first, named by
    `symbolizer` ("0x..." addresses without one); [] when it could not be read.
    """

    def __init__(self, resolved: ResolvedTrace, *, symbolizer: Optional[Symbolizer] = None):
        self._symbolizer = symbolizer
        self._kstacks: Dict[Tuple[int, ...], str] = {}
        plan = resolved.plan
        self._probes = tuple(_ProbeFormat(target, probe, plan.with_comm)
                             for target, probe in zip(resolved.targets, plan.probes))
        self._comms: Dict[str, str] = {}

    def format(self, event: Event, duration_ns: Optional[int] = None) -> str:
        """The event's line, without a newline. `duration_ns` defaults to the event's own."""
        ts, pid, tid, cpu, probe, comm, values, event_duration_ns, kstack = event
        if kstack is not None:
            line = self.format(event._replace(kstack=None), duration_ns)
            return line[:-1] + ', "kstack": ' + self._kstack(kstack) + "}"
        if duration_ns is None:
            duration_ns = event_duration_ns
        fmt = self._probes[probe]
        comm_json = self._comms.get(comm)
        if comm_json is None:
            comm_json = self._comm(comm)
        head = (ts, cpu, pid, tid, comm_json)
        if fmt.direct:
            # Plain integers and pointers fill %d/%x directly; anything else there (READ_FAILED,
            # bytes of an odd-sized int) raises TypeError and takes the converters below.
            try:
                if duration_ns is None:
                    return fmt.direct_template % (head + values)
                return fmt.direct_duration_template % (head + values + (duration_ns,))
            except TypeError:
                pass
        else:
            # Convert only what has no %-code; a READ_FAILED or odd value elsewhere raises TypeError.
            mixed = list(values)
            for n, convert in fmt.mixed:
                mixed[n] = convert(mixed[n])
            try:
                if duration_ns is None:
                    return fmt.direct_template % (head + tuple(mixed))
                return fmt.direct_duration_template % (head + tuple(mixed) + (duration_ns,))
            except TypeError:
                pass
        texts = tuple(READ_FAILED_JSON if v is READ_FAILED else convert(v)
                      for convert, v in zip(fmt.converters, values))
        if duration_ns is None:
            return fmt.template % (head + texts)
        return fmt.duration_template % (head + texts + (int(duration_ns),))

    def batch(self, probe_index: int, fields: RecordFields,
              decode: Callable[[Any], Event]) -> Optional[Callable[[Any], List[str]]]:
        """For a buffer of whole records of one probe (an iterator's stream): a function giving their
        lines, each as format(decode(record)) would, unpacking the buffer in one pass and filling the
        template straight from the unpacked fields. None where that shortcut does not apply (a comm,
        a kernel stack or a duration in the records, or a task's pid and tid to show); a record with
        a failed read, or a value the template does not take, goes the per-record way."""
        fmt = self._probes[probe_index]
        if not fmt.taskless or fields.with_comm or fields.kstack_depth or fields.is_return:
            return None
        json_of = dict(fmt.mixed)
        steps: List[Tuple[int, Callable[[Any], Any]]] = []
        for n, decoded in enumerate(fields.converters):
            encoded = json_of.get(n)
            if decoded is text_from and encoded is not None:  # names recur: keep their JSON by raw bytes
                steps.append((n, _remembered(_then(decoded, encoded))))
            elif decoded is not None and encoded is not None:
                steps.append((n, _then(decoded, encoded)))
            elif decoded is not None or encoded is not None:
                steps.append((n, decoded or encoded))  # type: ignore[arg-type]
        first, end = fields.first_value, fields.first_value + len(fields.converters)
        template, size, slow = fmt.direct_template, fields.unpacker.size, self.format
        iter_unpack = fields.unpacker.iter_unpack

        def lines(buffer: Any) -> List[str]:
            out: List[str] = []
            append = out.append
            for n, f in enumerate(iter_unpack(buffer)):
                if not f[4]:  # no failed read
                    values = list(f[first:end])
                    for k, convert in steps:
                        values[k] = convert(values[k])
                    try:
                        # ts, cpu, then pid, tid and comm, which an iterator's template prints as nothing
                        append(template % ((f[0], f[2], 0, 0, "") + tuple(values)))
                        continue
                    except TypeError:
                        pass
                append(slow(decode(buffer[n * size:(n + 1) * size])))
            return out

        return lines

    def _kstack(self, kstack: Tuple[int, ...]) -> str:
        """The JSON list of the frames; kept per stack, since the same ones recur."""
        text = self._kstacks.get(kstack)
        if text is None:
            if self._symbolizer is None:
                frames = ['"0x%x"' % address for address in kstack]
            else:
                frames = [_enc(frame) for frame in self._symbolizer.frames(kstack)]
            if len(self._kstacks) >= _KSTACK_CACHE_SIZE:
                self._kstacks.clear()
            text = self._kstacks[kstack] = "[" + ", ".join(frames) + "]"
        return text

    def _comm(self, comm: str) -> str:
        if len(self._comms) >= _COMM_CACHE_SIZE:
            self._comms.clear()
        # A %-argument, not template text: no %-escaping.
        encoded = self._comms[comm] = _enc(comm)
        return encoded


_REMEMBERED_TEXTS = 4096  # distinct strings whose JSON one batch converter keeps


def _remembered(convert: Converter) -> Converter:
    texts: Dict[Any, str] = {}

    def remembered(raw: Any) -> str:
        text = texts.get(raw)
        if text is None:
            if len(texts) >= _REMEMBERED_TEXTS:
                texts.clear()
            text = texts[raw] = convert(raw)
        return text
    return remembered


def _then(first: Callable[[Any], Any], second: Converter) -> Converter:
    def both(v: Any) -> str:
        return second(first(v))
    return both


def _pct(text: str) -> str:
    """Constant text for a %-template."""
    return text.replace("%", "%%")


# ---- per-capture choice ---------------------------------------------------------------------------

def _capture_format(btf: BTF, capture: Capture) -> Tuple[Optional[str], Converter]:
    """(the %-code that takes the decoded value as is, or None; the converter for any value)."""
    generic = _generic_converter(btf)
    if capture.string:
        return None, _str_or(generic)
    typ = btf.skip_modifiers(capture.type_id) if capture.type_id else None
    if isinstance(typ, Ptr):
        return '"0x%x"', _ptr_or(generic)
    if isinstance(typ, Int):
        if typ.is_bool:
            return None, _bool_or(generic)
        return "%d", _int_or(generic)
    if isinstance(typ, (Enum, Enum64)):
        return None, _enum_or(generic)
    if isinstance(typ, Float):
        return None, _float_or(generic)
    if isinstance(typ, Array) and is_char(btf.skip_modifiers(typ.type_id)):
        return None, _str_or(generic)
    if isinstance(typ, (Struct, Union, Array)):
        return None, _raw_converter(btf, capture.type_id, generic)
    return None, generic


def _int_or(generic: Converter) -> Converter:
    def convert(v: Any) -> str:
        return str(v) if type(v) is int else generic(v)
    return convert


def _ptr_or(generic: Converter) -> Converter:
    def convert(v: Any) -> str:
        return '"0x%x"' % v if type(v) is int else generic(v)
    return convert


def _bool_or(generic: Converter) -> Converter:
    def convert(v: Any) -> str:
        if v is True:
            return "true"
        if v is False:
            return "false"
        return generic(v)
    return convert


def _enum_or(generic: Converter) -> Converter:
    names: Dict[str, str] = {}

    def convert(v: Any) -> str:
        if type(v) is str:
            text = names.get(v)
            if text is None:
                text = names[v] = _enc(v)
            return text
        return generic(v)
    return convert


def _float_or(generic: Converter) -> Converter:
    def convert(v: Any) -> str:
        return _float_json(v) if type(v) is float else generic(v)
    return convert


def _str_or(generic: Converter) -> Converter:
    def convert(v: Any) -> str:
        return _enc(v) if type(v) is str else generic(v)
    return convert


def _float_json(v: float) -> str:
    # JSON has no NaN or infinities; json.dumps would write the invalid `NaN`/`Infinity`.
    return repr(v) if math.isfinite(v) else _enc(repr(v))


def _generic_converter(btf: BTF) -> Converter:
    """Any decoded value, whatever the capture's type said: the fallback of every converter."""
    raw_converters: Dict[int, Converter] = {}

    def convert(v: Any) -> str:
        if v is READ_FAILED:
            return READ_FAILED_JSON
        if v is True:
            return "true"
        if v is False:
            return "false"
        if isinstance(v, int):
            return str(int(v))
        if isinstance(v, float):
            return _float_json(v)
        if isinstance(v, str):
            return _enc(v)
        if isinstance(v, RawValue):
            raw = raw_converters.get(v.type_id)
            if raw is None:
                raw = raw_converters[v.type_id] = _raw_converter(btf, v.type_id, convert)
            return raw(v)
        if isinstance(v, (bytes, bytearray, memoryview)):
            return '{"bytes": "%s"}' % bytes(v).hex()
        if v is None:
            return "null"
        return _dumps(v)

    return convert


def _raw_converter(btf: BTF, type_id: int, generic: Converter) -> Converter:
    """A struct, union or array copied whole: btf.decode, pointers made hex, the cut marked.

    Whole copies take the compiled encoder, whose text is the same; cut ones take btf.decode,
    which owns what truncation looks like.
    """
    fix = _pointer_fixer(btf, type_id, {}, 0)
    compiled = _compile(btf, type_id)

    def convert(v: Any) -> str:
        if not isinstance(v, RawValue):
            return generic(v)
        if compiled is not None and not v.truncated and v.type_id == type_id and len(v.data) == compiled.size:
            return compiled.encode(v.data)
        try:
            value = btf.decode(v.type_id, v.data)
        except BTFError as err:
            return '{"error": %s}' % _enc(f"cannot decode: {err}")
        if fix is not None:
            value = fix(value)
        if v.truncated:
            if isinstance(value, dict):
                value.setdefault(TRUNCATED_KEY, TRUNCATED)
            elif isinstance(value, list) and (not value or value[-1] != TRUNCATED):
                value.append(TRUNCATED)
        return _dumps(value)

    return convert


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=True, allow_nan=False)
    except ValueError:  # a NaN or infinity somewhere inside
        return json.dumps(_finite(value), ensure_ascii=True, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


Fixer = Callable[[Any], Any]


def _hex(v: Any) -> Any:
    return "0x%x" % v if type(v) is int else v


def _pointer_fixer(btf: BTF, type_id: int, memo: Dict[int, Optional[Fixer]], depth: int) -> Optional[Fixer]:
    """What turns the pointers in btf.decode's value of `type_id` into "0x..." strings; None if none."""
    if type_id in memo:
        return memo[type_id]
    if depth > _MAX_DEPTH:
        return None
    typ = btf.skip_modifiers(type_id) if type_id else None
    fixer: Optional[Fixer] = None
    if isinstance(typ, Ptr):
        fixer = _hex
    elif isinstance(typ, Array) and not is_char(btf.skip_modifiers(typ.type_id)):
        elem = _pointer_fixer(btf, typ.type_id, memo, depth + 1)
        if elem is not None:
            fixer = _list_fixer(elem)
    elif isinstance(typ, (Struct, Union)):
        members: List[Tuple[str, Fixer]] = []
        _member_fixers(btf, typ, memo, depth + 1, members)
        if members:
            fixer = _dict_fixer(tuple(members))
    memo[type_id] = fixer
    return fixer


def _member_fixers(btf: BTF, typ: Any, memo: Dict[int, Optional[Fixer]], depth: int,
                   out: List[Tuple[str, Fixer]]) -> None:
    if depth > _MAX_DEPTH:
        return
    for m in typ.members:
        if m.bitfield_size:
            continue
        if not m.name:
            inner = btf.skip_modifiers(m.type_id)
            if isinstance(inner, (Struct, Union)):  # flattened by btf.decode, so here too
                _member_fixers(btf, inner, memo, depth + 1, out)
            continue
        fixer = _pointer_fixer(btf, m.type_id, memo, depth + 1)
        if fixer is not None:
            out.append((m.name, fixer))


def _list_fixer(elem: Fixer) -> Fixer:
    def fix(value: Any) -> Any:
        return [elem(v) for v in value] if isinstance(value, list) else value
    return fix


def _dict_fixer(members: Tuple[Tuple[str, Fixer], ...]) -> Fixer:
    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            for name, member in members:
                if name in value:
                    value[name] = member(value[name])
        return value
    return fix


# ---- whole structs, compiled ----------------------------------------------------------------------

class _Unsupported(Exception):
    """Something in the type the compiled encoder leaves to btf.decode."""


# Types with more leaves than this (huge arrays) are left to btf.decode.
_MAX_LEAVES = 1 << 16
_INT_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}


def _compile(btf: BTF, type_id: int) -> Optional["_CompiledJson"]:
    try:
        return _CompiledJson(btf, type_id)
    except (_Unsupported, BTFError):
        return None


class _CompiledJson:
    """The JSON text of a struct, union or array's bytes, compiled once per type.

    Its output is exactly `_dumps` of btf.decode's value with pointers made hex, for data of
    the type's full size: the members become a str.format template, the scalars are read by a
    few struct.Structs (one per layer of overlapping union members), bitfields are cut from
    the bytes as one integer, and only bools, enums, floats and char arrays get a converter.
    """

    def __init__(self, btf: BTF, type_id: int):
        self._btf = btf
        self._little = btf.byteorder == "little"
        self.size = btf.resolve_size(type_id)
        self._fields: List[Tuple[int, int, str, int]] = []  # (offset, size, struct code, leaf)
        self._field_converters: Dict[int, Converter] = {}  # leaf -> converter
        self._bits: List[Tuple[int, Callable[[int], str]]] = []  # (leaf, the whole bytes as int -> text)
        self._leaves = 0
        parts: List[Any] = []  # constant JSON text, or (leaf, format spec)
        self._value(type_id, 0, self.size, 0, parts)

        lanes: List[List[Tuple[int, int, str, int]]] = []
        ends: List[int] = []
        for field in sorted(self._fields):
            offset, size = field[0], field[1]
            i = next((n for n, end in enumerate(ends) if end <= offset), len(lanes))
            if i == len(lanes):
                lanes.append([])
                ends.append(0)
            lanes[i].append(field)
            ends[i] = offset + size
        position: Dict[int, int] = {}
        unpackers = []
        prefix = "<" if self._little else ">"
        for lane in lanes:
            codes = [prefix]
            cursor = 0
            for offset, size, code, leaf in lane:
                if offset > cursor:
                    codes.append(f"{offset - cursor}x")
                codes.append(code)
                cursor = offset + size
                position[leaf] = len(position)
            unpackers.append(struct.Struct("".join(codes)).unpack_from)
        for leaf, _ in self._bits:
            position[leaf] = len(position)
        self._unpackers = tuple(unpackers)
        self._converters = tuple(sorted((position[leaf], f) for leaf, f in self._field_converters.items()))
        self._bit_readers = tuple(f for _, f in self._bits)
        self._template = "".join(
            part.replace("{", "{{").replace("}", "}}") if isinstance(part, str)
            else "{%d%s}" % (position[part[0]], part[1])
            for part in parts
        )

    def encode(self, data: bytes) -> str:
        values: Any = ()
        for unpack in self._unpackers:
            values += unpack(data)
        if self._converters or self._bit_readers:
            values = list(values)
            for i, convert in self._converters:
                values[i] = convert(values[i])
            if self._bit_readers:
                whole = int.from_bytes(data, "little" if self._little else "big")
                values.extend(read(whole) for read in self._bit_readers)
        return self._template.format(*values)

    # ---- compiling: each mirrors btf.values._decode for full-size data --------------------------
    def _leaf(self) -> int:
        self._leaves += 1
        if self._leaves > _MAX_LEAVES:
            raise _Unsupported("too many values")
        return self._leaves

    def _field(self, offset: int, size: int, code: str, limit: int, parts: List[Any], spec: str = "",
               converter: Optional[Converter] = None) -> None:
        if offset + size > limit:
            raise _Unsupported("a value outside its container")
        leaf = self._leaf()
        self._fields.append((offset, size, code, leaf))
        if converter is not None:
            self._field_converters[leaf] = converter
        parts.append((leaf, spec))

    def _value(self, type_id: int, offset: int, limit: int, depth: int, parts: List[Any]) -> None:
        if depth > _MAX_DEPTH:
            raise _Unsupported("nests too deeply")
        btf = self._btf
        typ = btf.skip_modifiers(type_id)
        if isinstance(typ, (Struct, Union)):
            pairs: List[Tuple[str, List[Any]]] = []
            self._members(typ, offset * 8, limit, depth, pairs, set())
            parts.append("{")
            for i, (key, sub) in enumerate(pairs):
                parts.append((", " if i else "") + key + ": ")
                parts.extend(sub)
            parts.append("}")
        elif isinstance(typ, Array):
            elem = btf.skip_modifiers(typ.type_id)
            if is_char(elem):
                n = typ.nelems
                if n:
                    self._field(offset, n, f"{n}s", limit, parts, converter=_char_array_json)
                else:
                    parts.append('""')
                return
            size = btf.resolve_size(typ.type_id)
            if size == 0 or typ.nelems == 0:
                parts.append("[]")
                return
            if typ.nelems > _MAX_LEAVES:
                raise _Unsupported("too many elements")
            parts.append("[")
            for i in range(typ.nelems):
                if i:
                    parts.append(", ")
                start = offset + i * size
                self._value(typ.type_id, start, min(limit, start + size), depth + 1, parts)
            parts.append("]")
        elif isinstance(typ, Int):
            if typ.bits < 8 * typ.size or typ.bit_offset or typ.size not in _INT_CODES:
                self._fallback(type_id, offset, typ.size, limit, parts)
                return
            code = _INT_CODES[typ.size] if typ.signed else _INT_CODES[typ.size].upper()
            self._field(offset, typ.size, code, limit, parts, converter=_bool_json if typ.is_bool else None)
        elif isinstance(typ, Ptr):
            size = btf.pointer_size
            self._field(offset, size, _INT_CODES[size].upper(), limit, parts, spec=":#x")
            parts[-1:] = ['"', parts[-1], '"']
        elif isinstance(typ, (Enum, Enum64)):
            if typ.size not in _INT_CODES:
                self._fallback(type_id, offset, typ.size, limit, parts)
                return
            code = _INT_CODES[typ.size] if typ.signed else _INT_CODES[typ.size].upper()
            self._field(offset, typ.size, code, limit, parts, converter=_enum_json(typ))
        elif isinstance(typ, Float):
            if typ.size not in (4, 8):
                self._fallback(type_id, offset, typ.size, limit, parts)
                return
            self._field(offset, typ.size, "f" if typ.size == 4 else "d", limit, parts, converter=_float_json)
        else:
            parts.append("null")  # void, functions, forward declarations, as btf.decode gives None

    def _members(self, typ: Any, base_bit: int, limit: int, depth: int, pairs: List[Tuple[str, List[Any]]],
                 keys: Set[str]) -> None:
        if depth > _MAX_DEPTH:
            raise _Unsupported("nests too deeply")
        btf = self._btf
        for m in typ.members:
            bit = base_bit + m.bit_offset
            target = btf.skip_modifiers(m.type_id)
            if not m.name and isinstance(target, (Struct, Union)):
                self._members(target, bit, limit, depth + 1, pairs, keys)
                continue
            if m.name in keys:  # a dict would keep one; never so in real C
                raise _Unsupported("duplicate member names")
            keys.add(m.name)
            sub: List[Any] = []
            bitfield_size = m.bitfield_size
            if not bitfield_size and isinstance(target, Int) and target.bits < 8 * target.size:
                bitfield_size, bit = target.bits, bit + target.bit_offset
            if bitfield_size:
                self._bitfield(target, bit, bitfield_size, limit, sub)
            else:
                start = bit // 8
                try:
                    size = btf.resolve_size(m.type_id)
                except BTFError:
                    size = 0
                if size == 0:  # a flexible array, say: its value does not depend on the data
                    sub.append(self._constant(m.type_id))
                    pairs.append((_enc(m.name), sub))
                    continue
                if start + size > limit:
                    raise _Unsupported("a member outside its container")
                self._value(m.type_id, start, start + size, depth + 1, sub)
            pairs.append((_enc(m.name), sub))

    def _bitfield(self, target: Any, bit: int, bit_size: int, limit: int, parts: List[Any]) -> None:
        if bit // 8 + (bit % 8 + bit_size + 7) // 8 > limit:
            raise _Unsupported("a bitfield outside its container")
        signed = isinstance(target, (Int, Enum, Enum64)) and target.signed
        shift = bit if self._little else 8 * self.size - bit - bit_size
        mask = (1 << bit_size) - 1
        sign = 1 << (bit_size - 1)
        text: Callable[[int], str] = str
        if isinstance(target, Int) and target.is_bool:
            text = _bool_json
        elif isinstance(target, (Enum, Enum64)):
            text = _enum_json(target)

        def read(whole: int) -> str:
            v = (whole >> shift) & mask
            if signed and v & sign:
                v -= sign << 1
            return text(v)

        leaf = self._leaf()
        self._bits.append((leaf, read))
        parts.append((leaf, ""))

    def _constant(self, type_id: int) -> str:
        value = self._btf.decode(type_id, b"")
        if value == TRUNCATED or (isinstance(value, dict) and TRUNCATED_KEY in value) or (
                isinstance(value, list) and TRUNCATED in value):
            raise _Unsupported("a member without size that btf.decode calls truncated")
        return _dumps(value)

    def _fallback(self, type_id: int, offset: int, size: int, limit: int, parts: List[Any]) -> None:
        """A scalar the compiler does not read itself (a 16-byte int, say): btf.decode it."""
        btf = self._btf
        fix = _pointer_fixer(btf, type_id, {}, 0)

        def convert(raw: bytes) -> str:
            value = btf.decode(type_id, raw)
            return _dumps(fix(value) if fix is not None else value)

        self._field(offset, size, f"{size}s", limit, parts, converter=convert)


def _char_array_json(raw: bytes) -> str:
    return _enc(text_from(raw))


def _bool_json(v: int) -> str:
    return "true" if v else "false"


def _enum_json(typ: Any) -> Converter:
    names: Dict[int, str] = {}
    for e in typ.values:
        names.setdefault(e.value, _enc(e.name))  # the first of aliases, as btf.values.enum_name

    def convert(v: int) -> str:
        text = names.get(v)
        return str(v) if text is None else text
    return convert
