"""Events -> JSON lines: one object per record, for jq and friends.

Each probe's line is compiled once into a %-template whose constant parts (func, probe kind,
argument keys) are already encoded; a record of plain integers and pointers fills it in one
`%` call. Anything else goes through a converter chosen per capture, also once.
"""
from __future__ import annotations

import json
import math
import operator
from json.encoder import encode_basestring_ascii
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from bpf.plan import Capture, Probe, ProbeKind
from btf import BTF, Array, BTFError, Enum, Enum64, Float, Int, Ptr, Struct, Union
from btf.compiled import Elements, Leaf, Meaning, Missing, Node, Record, compile_type, is_cut
from btf.values import TRUNCATED, char_array_text, is_char, leaf_value, text_from

from .decode import READ_FAILED, Decoder, Event, RawValue, RecordFields, batch_reader, per_record
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

    def header(self) -> str:
        """JSON lines have no header."""
        return ""

    def batch(self, probe_index: int, fields: RecordFields, decode: Decoder) -> Callable[[Any], List[str]]:
        """For a buffer of whole records of one probe (an iterator's stream): a function giving their
        lines, each as format(decode(record)) would. Where the records have no comm, kernel stack,
        duration or task to show, the template is filled straight from the batch's unpacked values;
        a record with a failed read, or a value the template does not take, goes the per-record way."""
        fmt = self._probes[probe_index]
        if not fmt.taskless or fields.with_comm or fields.kstack_depth or fields.is_return:
            return per_record(fields, decode, self.format)
        json_of = dict(fmt.mixed)
        steps: List[Tuple[int, Callable[[Any], Any]]] = []
        for n, decoded in enumerate(fields.converters):
            encoded = json_of.get(n)
            if decoded in (text_from, char_array_text) and encoded is not None:  # names recur: keep their JSON
                steps.append((n, _remembered(_then(decoded, encoded))))
            elif decoded is not None and encoded is not None:
                steps.append((n, _then(decoded, encoded)))
            elif decoded is not None or encoded is not None:
                steps.append((n, decoded or encoded))  # type: ignore[arg-type]
        template, size, slow = fmt.direct_template, fields.unpacker.size, self.format
        read = batch_reader(fields)

        def lines(buffer: Any) -> List[str]:
            out: List[str] = []
            append = out.append
            for n, (ts, cpu, unpacked) in enumerate(read(buffer)):
                if unpacked is not None:  # no failed read
                    values = list(unpacked)
                    for k, convert in steps:
                        values[k] = convert(values[k])
                    try:
                        # ts, cpu, then pid, tid and comm, which an iterator's template prints as nothing
                        append(template % ((ts, cpu, 0, 0, "") + tuple(values)))
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
        return None, _ptr_or(generic)
    if isinstance(typ, Int):
        if typ.is_bool:
            return None, _bool_or(generic)
        if _wide(typ.size, capture.bitfield.bit_size if capture.bitfield else 0):
            return '"%d"', _wide_int_or(generic)
        return "%d", _int_or(generic)
    if isinstance(typ, (Enum, Enum64)):
        return None, _enum_or(generic, _wide(typ.size, capture.bitfield.bit_size if capture.bitfield else 0))
    if isinstance(typ, Float):
        return None, _float_or(generic)
    if isinstance(typ, Array) and is_char(btf.skip_modifiers(typ.type_id)):
        return None, _str_or(generic)
    if isinstance(typ, (Struct, Union, Array)):
        return None, _raw_converter(btf, capture.type_id, generic, capture.size, capture.truncated)
    return None, generic


def _int_or(generic: Converter) -> Converter:
    def convert(v: Any) -> str:
        return str(v) if type(v) is int else generic(v)
    return convert


def _ptr_or(generic: Converter) -> Converter:
    def convert(v: Any) -> str:
        return _ptr_json(v) if type(v) is int else generic(v)
    return convert


def _wide_int_or(generic: Converter) -> Converter:
    def convert(v: Any) -> str:
        return '"%d"' % v if type(v) is int else generic(v)
    return convert


def _wide(size: int, bitfield_size: int = 0) -> bool:
    """Is an integer of this size (bytes) or bitfield width (bits) written as a string? Integers of
    more than 32 bits are, by type, whatever their value: jq 1.6 reads numbers as doubles and
    rounds past 2**53, and the proto3 JSON mapping (Tetragon's, for one) does the same for int64."""
    return bitfield_size > 32 if bitfield_size else size > 4


def _ptr_json(v: int) -> str:
    return '"0x%x"' % v if v else "null"


def _bool_or(generic: Converter) -> Converter:
    def convert(v: Any) -> str:
        if v is True:
            return "true"
        if v is False:
            return "false"
        return generic(v)
    return convert


def _enum_or(generic: Converter, wide: bool = False) -> Converter:
    names: Dict[str, str] = {}

    def convert(v: Any) -> str:
        if type(v) is str:
            text = names.get(v)
            if text is None:
                text = names[v] = _enc(v)
            return text
        if wide and type(v) is int:  # a value no enumerator has, of a 64-bit enum
            return '"%d"' % v
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


def _raw_converter(btf: BTF, type_id: int, generic: Converter, size: int = -1, truncated: bool = False) -> Converter:
    """A struct, union or array copied whole or in part: the JSON text of its type's compiled
    reader's tree (pointers as "0x..." strings, the cut marked), built once per size. A capture's
    own (`size` bytes of `type_id`, `truncated` or not) is built up front: its every record takes it."""
    texts: Dict[Tuple[int, int, bool], Converter] = {}
    expected: Optional[Converter] = None
    if size >= 0:
        try:
            expected = texts[(type_id, size, truncated)] = _CompiledJson(btf, type_id, size, truncated).encode
        except BTFError:
            pass  # said when a value comes, below

    def convert(v: Any) -> str:
        if type(v) is not RawValue:
            return generic(v)
        data = v.data
        if expected is not None and v.type_id == type_id and len(data) == size and v.truncated == truncated:
            return expected(data)
        key = (v.type_id, len(data), v.truncated)
        text = texts.get(key)
        if text is None:
            try:
                text = texts[key] = _CompiledJson(btf, v.type_id, len(v.data), v.truncated).encode
            except BTFError as err:
                message = '{"error": %s}' % _enc(f"cannot decode: {err}")
                text = texts[key] = lambda data: message
        return text(v.data)

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


# ---- whole structs, over the compiled reader --------------------------------------------------------

_TRUNCATED_JSON = _enc(TRUNCATED)


class _CompiledJson:
    """The JSON text of `available` bytes of a struct, union or array: a %-template made once from
    btf.compiled's tree, filled with the values its reader unpacks, gathered into the template's
    order by one itemgetter; only bools, enums, floats, text and odd-sized values get a converter.
    `truncated`: the capture was cut (the marker is added where the cut left the tree whole)."""

    def __init__(self, btf: BTF, type_id: int, available: int, truncated: bool):
        compiled = compile_type(btf, type_id, available)
        self._read = compiled.read
        self._order = btf.byteorder
        self._slots: List[int] = []  # leaf index of each %-slot, in template order
        self._nullable = False  # the template has pointers
        self._converters: List[Tuple[int, Callable[[Any], str]]] = []  # (slot, converter)
        parts: List[str] = []
        self._node(compiled.root, parts)
        if truncated and not is_cut(compiled.root):
            marker = _pct(_TRUNCATED_JSON)
            if isinstance(compiled.root, Record):
                parts.insert(len(parts) - 1, (", " if compiled.root.fields else "") + '"...": ' + marker)
            elif isinstance(compiled.root, Elements):
                parts.insert(len(parts) - 1, (", " if compiled.root.items else "") + marker)
        self._template = "".join(parts)
        self._convert = tuple(self._converters)
        slots = tuple(self._slots)
        if len(slots) > 1:
            self._gather: Callable[[Sequence[Any]], Tuple[Any, ...]] = operator.itemgetter(*slots)
        else:
            self._gather = lambda values: tuple(values[i] for i in slots)
        if slots == tuple(range(len(slots))) and not self._convert and not self._nullable:
            # The template takes the values as read, in the order read: one unpack and one %.
            read, template = self._read, self._template
            self.encode = lambda data: template % tuple(read(data))  # type: ignore[method-assign]

    def encode(self, data: Any) -> str:
        values = self._gather(self._read(data))
        if self._convert:
            converted = list(values)
            for slot, convert in self._convert:
                converted[slot] = convert(converted[slot])
            text = self._template % tuple(converted)
        else:
            text = self._template % values
        # A NULL pointer printed "0x0"; no other value's JSON holds that text (strings that would
        # are written with \u0078: _char_array_json), so one replace makes every one null.
        return text.replace(_NULL_POINTER, "null") if self._nullable else text

    def _node(self, node: Node, parts: List[str]) -> None:
        if isinstance(node, Leaf):
            self._leaf(node, parts)
        elif isinstance(node, Record):
            fields: Dict[str, Node] = {}
            for f in node.fields:  # a dict's rule for a name given twice: first place, last value
                fields[f.name] = f.node
            parts.append("{")
            for n, (name, child) in enumerate(fields.items()):
                parts.append((", " if n else "") + _pct(_enc(name)) + ": ")
                self._node(child, parts)
            if node.cut:
                parts.append((", " if fields else "") + '"...": ' + _pct(_TRUNCATED_JSON))
            parts.append("}")
        elif isinstance(node, Elements):
            parts.append("[")
            for n, item in enumerate(node.items):
                if n:
                    parts.append(", ")
                self._node(item, parts)
            if node.cut:
                parts.append((", " if node.items else "") + _pct(_TRUNCATED_JSON))
            parts.append("]")
        elif isinstance(node, Missing):
            parts.append(_pct(_TRUNCATED_JSON))
        else:
            parts.append("null")

    def _leaf(self, leaf: Leaf, parts: List[str]) -> None:
        slot = len(self._slots)
        self._slots.append(leaf.index)
        meaning = leaf.meaning
        code = "%d"
        if leaf.raw and meaning is not Meaning.TEXT:
            order = self._order
            if meaning is Meaning.INT:
                self._converters.append((slot, lambda raw: '"%d"' % leaf_value(leaf, raw, order)))
            else:
                self._converters.append((slot, lambda raw: _dumps(leaf_value(leaf, raw, order))))
            code = "%s"
        elif meaning is Meaning.INT and _wide(leaf.size if not leaf.bitfield_size else 0, leaf.bitfield_size):
            code = '"%d"'
        elif meaning is Meaning.PTR or meaning is Meaning.FUNC_PTR:
            code = _NULLABLE  # NULL is made null over the whole text at once: see encode
            self._nullable = True
        elif meaning is Meaning.BOOL:
            self._converters.append((slot, _bool_json))
            code = "%s"
        elif meaning is Meaning.ENUM:
            self._converters.append((slot, _enum_json(leaf.names or {}, _wide(leaf.size, leaf.bitfield_size))))
            code = "%s"
        elif meaning is Meaning.FLOAT:
            self._converters.append((slot, _float_json))
            code = "%s"
        elif meaning is Meaning.TEXT:
            self._converters.append((slot, _char_array_json))
            code = "%s"
        parts.append(code)


_NULLABLE = '"0x%x"'
_NULL_POINTER = _NULLABLE % 0


def _char_array_json(raw: bytes) -> str:
    text = _enc(char_array_text(raw))
    # Never the text a NULL pointer prints (see _CompiledJson.encode): its x as \u0078, same string.
    return text.replace("x", "\\u0078") if '0x0"' in text else text


def _bool_json(v: int) -> str:
    return "true" if v else "false"


def _enum_json(names: Dict[int, str], wide: bool = False) -> Converter:
    """An enum's name, or its number where no enumerator has it (a string for a 64-bit enum)."""
    encoded = {value: _enc(name) for value, name in names.items()}
    number = '"%d"' if wide else "%d"

    def convert(v: int) -> str:
        text = encoded.get(v)
        return number % v if text is None else text
    return convert
