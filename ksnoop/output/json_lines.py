# SPDX-License-Identifier: GPL-2.0-only
"""Events and records -> JSON lines: one object per record, for jq and friends.

Each probe's line is compiled once into a %-template whose constant parts (func, probe kind,
argument keys) are already encoded. A record straight from the ring or an iterator is turned into
its line by a function written for its probe (json_compiled.record_liner); an Event (held, or
given a duration later) fills the same template through a converter chosen per capture, also once.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from bpf.plan import Capture, Probe, ProbeKind
from btf import BTF, Array, BTFError, Enum, Enum64, Float, Int, Ptr, Struct, Union
from btf.values import is_char

from ksnoop.output.decode import READ_FAILED, Decoder, Event, RawValue, RecordFields
from ksnoop.output.formatter import each_record
from ksnoop.output.json_compiled import (
    KeptJson,
    bytes_json,
    dumps,
    float_json,
    is_wide,
    json_string,
    pct,
    pointer_json,
    record_liner,
    struct_encoder,
)
from ksnoop.output.kallsyms import Symbolizer
from ksnoop.spec.resolve import ResolvedTrace
from ksnoop.spec.targets import Target

# The "probe" field: what kind of record this is.
PROBE_KINDS = {
    ProbeKind.FENTRY: "entry",
    ProbeKind.FEXIT: "return",
    ProbeKind.KPROBE: "entry",  # the same records, whichever probe took them
    ProbeKind.KRETPROBE: "return",
    ProbeKind.TP_BTF: "tracepoint",
    ProbeKind.ITER: "iter",
}
READ_FAILED_JSON = '{"error": "read failed"}'
_KSTACK_CACHE_SIZE = 4096  # distinct stacks whose JSON is kept

Converter = Callable[[Any], str]  # a value (never READ_FAILED) -> its JSON text


class _ProbeFormat:
    """One probe's compiled line: the templates and, per capture, how its value becomes JSON."""

    __slots__ = (
        "direct",
        "direct_template",
        "direct_duration_template",
        "template",
        "duration_template",
        "converters",
        "mixed",
        "taskless",
        "head",
        "keys",
    )

    def __init__(self, target: Target, probe: Probe, with_comm: bool):
        btf = target.btf
        comm = ', "comm": %s' if with_comm else "%.0s"  # without: the (empty) comm prints as nothing
        # An iterator's program runs in the reader's task: pid and tid would be ksnoop's own.
        self.taskless = probe.kind is ProbeKind.ITER
        task = "%.0s%.0s" if self.taskless else ', "pid": %d, "tid": %d'
        head = (
            '{"ts": %d, "cpu": %d'
            + task
            + comm
            + ', "func": '
            + pct(json_string(target.name if self.taskless else target.label))  # dump's specs name no dump:
            + ', "probe": '
            + json_string(PROBE_KINDS[probe.kind])
            + ', "args": {'
        )
        self.head = head  # takes ts, cpu, pid, tid and the comm's JSON
        self.keys = [pct(json_string(capture.label)) + ": " for capture in probe.captures]
        direct_parts: List[str] = []
        parts: List[str] = []
        converters: List[Converter] = []
        # Captures with no %-code of their own (strings, enums, structs): (position, converter). The
        # direct templates take these as converted text and every other value as it is.
        mixed: List[Tuple[int, Converter]] = []
        for n, (capture, key) in enumerate(zip(probe.captures, self.keys)):
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
    "probe": "entry", "args": {"skb->len": 228}, "duration_ns": 1234}`. "func" names the
    function or tracepoint as a spec does (`ip_send_skb`, `tp:net_dev_queue`), and as --summary's
    JSON does; "probe" says which record: "entry", "return" or "tracepoint". Argument keys are
    the capture labels, the return value's is "return". Values: integers and floats as numbers
    (NaN and infinities as strings, which JSON lacks), bools, enumerator names, strings,
    pointers not followed as "0x..." strings (inside structs too), structs as objects keyed by
    member name (anonymous members flattened, "...": "truncated" when cut), an unreadable value
    as {"error": "read failed"}. Output is pure ASCII. `duration_ns` appears only on records
    that have one (passed, or the Event's); "comm" only when the plan copies it. A record with a kernel stack ends with
    `"kstack": ["ip_send_skb+0x1d", "ipt_do_table+0x2c1 [ip_tables]", ...]`, innermost first, named by
    `symbolizer` ("0x..." addresses without one); [] when it could not be read.
    """

    def __init__(self, resolved: ResolvedTrace, *, symbolizer: Optional[Symbolizer] = None):
        self._symbolizer = symbolizer
        self._kstacks: Dict[Tuple[int, ...], str] = {}
        plan = self._plan = resolved.plan
        self._btfs = tuple(target.btf for target in resolved.targets)
        self._probes = tuple(
            _ProbeFormat(target, probe, plan.with_comm) for target, probe in zip(resolved.targets, plan.probes)
        )
        self._comms = KeptJson(json_string)  # a process's comm rarely changes

    def format(self, event: Event, duration_ns: Optional[int] = None) -> str:
        """The event's line, without a newline. `duration_ns` defaults to the event's own."""
        ts, pid, tid, cpu, probe, comm, values, event_duration_ns, kstack = event
        if kstack is not None:
            line = self.format(event._replace(kstack=None), duration_ns)
            return line[:-1] + ', "kstack": ' + self._kstack(kstack) + "}"
        if duration_ns is None:
            duration_ns = event_duration_ns
        fmt = self._probes[probe]
        comm_json = self._comms[comm]
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
        texts = tuple(
            READ_FAILED_JSON if v is READ_FAILED else convert(v) for convert, v in zip(fmt.converters, values)
        )
        if duration_ns is None:
            return fmt.template % (head + texts)
        return fmt.duration_template % (head + texts + (int(duration_ns),))

    def header(self) -> str:
        """JSON lines have no header."""
        return ""

    def record(self, probe_index: int, fields: RecordFields, decode: Decoder) -> Callable[[Any], str]:
        """A function from one record of probe `probe_index` to its line, as format(decode(record))
        would give it: from the record's bytes where the probe's line has a compiled function."""
        line, decoded_line = self._liner(probe_index, fields, decode)
        return decoded_line if line is None else line

    def batch(self, probe_index: int, fields: RecordFields, decode: Decoder) -> Callable[[Any], List[str]]:
        """For a buffer of whole records of one probe (an iterator's stream): their lines."""
        line, decoded_line = self._liner(probe_index, fields, decode)
        size = fields.unpacker.size
        if line is None:
            return each_record(decoded_line, size)
        compiled_line = line

        def lines(buffer: Any) -> List[str]:
            return [compiled_line(buffer, offset) for offset in range(0, len(buffer), size)]

        return lines

    def _liner(
        self, probe_index: int, fields: RecordFields, decode: Decoder
    ) -> Tuple[Optional[Callable[..., str]], Callable[[Any], str]]:
        # The probe's generated line function (None where it has none), and the line through the
        # Event that it falls back on for a record with a failed read.
        slow = self.format

        def decoded_line(record: Any) -> str:
            return slow(decode(record))

        fmt = self._probes[probe_index]
        line = record_liner(
            self._btfs[probe_index],
            self._plan.probes[probe_index],
            fields,
            fmt.head,
            fmt.keys,
            fmt.taskless,
            decoded_line,
        )
        return line, decoded_line

    def _kstack(self, kstack: Tuple[int, ...]) -> str:
        """The JSON list of the frames; kept per stack, since the same ones recur."""
        text = self._kstacks.get(kstack)
        if text is None:
            if self._symbolizer is None:
                frames = ['"0x%x"' % address for address in kstack]
            else:
                frames = [json_string(frame) for frame in self._symbolizer.frames(kstack)]
            if len(self._kstacks) >= _KSTACK_CACHE_SIZE:
                self._kstacks.clear()
            text = self._kstacks[kstack] = "[" + ", ".join(frames) + "]"
        return text


# ---- per-capture choice ---------------------------------------------------------------------------


def value_json(btf: BTF, capture: Capture) -> Converter:
    """A decoded value of `capture` (READ_FAILED too) as JSON text, as in records: an aggregation key's value."""
    return _capture_format(btf, capture)[1]


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
        if is_wide(typ.size, capture.bitfield.bit_size if capture.bitfield else 0):
            return '"%d"', _wide_int_or(generic)
        return "%d", _int_or(generic)
    if isinstance(typ, (Enum, Enum64)):
        return None, _enum_or(generic, is_wide(typ.size, capture.bitfield.bit_size if capture.bitfield else 0))
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
        return pointer_json(v) if type(v) is int else generic(v)

    return convert


def _wide_int_or(generic: Converter) -> Converter:
    def convert(v: Any) -> str:
        return '"%d"' % v if type(v) is int else generic(v)

    return convert


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
                text = names[v] = json_string(v)
            return text
        if wide and type(v) is int:  # a value no enumerator has, of a 64-bit enum
            return '"%d"' % v
        return generic(v)

    return convert


def _float_or(generic: Converter) -> Converter:
    def convert(v: Any) -> str:
        return float_json(v) if type(v) is float else generic(v)

    return convert


def _str_or(generic: Converter) -> Converter:
    def convert(v: Any) -> str:
        return json_string(v) if type(v) is str else generic(v)

    return convert


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
            return float_json(v)
        if isinstance(v, str):
            return json_string(v)
        if isinstance(v, RawValue):
            raw = raw_converters.get(v.type_id)
            if raw is None:
                raw = raw_converters[v.type_id] = _raw_converter(btf, v.type_id, convert)
            return raw(v)
        if isinstance(v, (bytes, bytearray, memoryview)):
            return bytes_json(v)
        if v is None:
            return "null"
        return dumps(v)

    return convert


def _raw_converter(btf: BTF, type_id: int, generic: Converter, size: int = -1, truncated: bool = False) -> Converter:
    """A struct, union or array copied whole or in part: the JSON text of its type's compiled
    reader's tree (pointers as "0x..." strings, the cut marked), built once per size. A capture's
    own (`size` bytes of `type_id`, `truncated` or not) is built up front: its every record takes it."""
    texts: Dict[Tuple[int, int, bool], Converter] = {}
    expected: Optional[Converter] = None
    if size >= 0:
        try:
            expected = texts[(type_id, size, truncated)] = struct_encoder(btf, type_id, size, truncated)
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
                text = texts[key] = struct_encoder(btf, v.type_id, len(v.data), v.truncated)
            except BTFError as err:
                message = '{"error": %s}' % json_string(f"cannot decode: {err}")
                text = texts[key] = lambda data: message
        return text(v.data)

    return convert
