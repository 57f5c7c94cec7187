# SPDX-License-Identifier: GPL-2.0-only
"""Records -> Events: read a record's header, failed-read mask and values by the plan's layout.

A decoder is built once per probe from its RecordLayout: one struct.Struct unpacks the header
and every scalar value in a single call, and only values that need BTF (structs, arrays,
bitfields, enums) get a converter, so a stream of small records decodes at C speed.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, TypeVar

from bpf.plan import (
    AGGREGATE_BUCKET_OFFSET,
    AGGREGATE_FAILED_OFFSET,
    AGGREGATE_FUNCTION_OFFSET,
    COMM_SIZE,
    HEADER,
    HEADER_SIZE,
    PROBE_OFFSET,
    Aggregate,
    AggregateLayout,
    Bitfield,
    Builtin,
    Capture,
    Plan,
    RecordLayout,
)
from btf import BTF, Array, Enum, Enum64, Float, Int, Ptr, Struct, Union
from btf.compiled import compile_bitfield, enum_names
from btf.pysource import PySource
from btf.values import char_array_text, is_char, leaf_value, text_from


class ReadFailed:
    """Stands in for a value the program could not read (a bad pointer on the way, say)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<read failed>"


READ_FAILED = ReadFailed()


class RawValue(NamedTuple):
    """A struct, union or non-char array as copied: its bytes, for the output to decode or render."""

    type_id: int
    data: bytes
    truncated: bool  # the type is bigger than what was copied
    address: Optional[int] = None  # where it was, when it was followed from a pointer


class Event(NamedTuple):
    ts_ns: int
    pid: int  # the process (tgid)
    tid: int
    cpu: int
    probe: int  # index into plan.probes
    comm: str
    values: Tuple[Any, ...]  # one per capture: int, bool, str, RawValue, or READ_FAILED
    duration_ns: Optional[int] = None  # return records whose entry was seen
    # Return addresses, innermost first, when the probe captures the kernel stack; () if
    # bpf_get_stack failed.
    kstack: Optional[Tuple[int, ...]] = None


Decoder = Callable[[Any], Event]
_SCALAR_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}
_COMM_CACHE_SIZE = 4096
_SIGNED_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}


_PROBE_INDEX = struct.Struct("=I").unpack_from
T = TypeVar("T")


def record_head(record: Any) -> Tuple[int, int, int, int]:
    """(ts_ns, tid, probe, entry_ts_ns) from a record's header: what a function graph's reader
    orders records by (an entry record's entry time is set only where a root call begins)."""
    ts, pid_tgid, _cpu, probe, _failed, entry_ts = HEADER.unpack_from(record)
    return ts, pid_tgid & 0xFFFFFFFF, probe, entry_ts


def probe_of(record: Any, offset: int = 0) -> int:
    """Which of the plan's probes wrote the record at `offset` in `record`."""
    index: int = _PROBE_INDEX(record, offset + PROBE_OFFSET)[0]
    return index


def by_probe(functions: Sequence[Callable[[Any], T]]) -> Callable[[Any], T]:
    """One function of a record that calls the one of `functions` for the probe that wrote it:
    the only one itself where the plan has one probe, so no record pays for a dispatch."""
    if len(functions) == 1:
        return functions[0]
    table = list(functions)
    offset = PROBE_OFFSET

    def dispatch(record: Any) -> T:
        index: int = _PROBE_INDEX(record, offset)[0]
        return table[index](record)

    return dispatch


@dataclass(frozen=True)
class RecordFields:
    """How one probe's records unpack: `unpacker` (as long as a record) gives the header fields, the
    comm if the plan copies it, the values from `first_value` on (each then through its converter,
    if any), then bpf_get_stack's result and the frames if the probe takes a kernel stack."""

    unpacker: struct.Struct
    first_value: int
    converters: Tuple[Optional[Callable[[Any], Any]], ...]
    with_comm: bool
    kstack_depth: int
    is_return: bool
    capture_offsets: Tuple[int, ...]  # where each capture's bytes start in the record


@dataclass(frozen=True)
class HeadNames:
    """The locals holding one record's header fields in a function being written (head_source)."""

    ts: str
    cpu: str
    pid: str  # expressions: the process and thread ids from pid_tgid
    tid: str
    failed: str  # the failed-read mask: nonzero where a capture could not be read
    entry_ts: str  # a return record's entry time, 0 if unknown
    comm: Optional[str]  # the comm's raw bytes, when the plan copies it


def head_source(source: PySource, fields: RecordFields, record: str, offset: str) -> HeadNames:
    """Add to `source` the read of the header (and comm) of the record in `record` at `offset`."""
    head = struct.Struct(HEADER.format + (f"{COMM_SIZE}s" if fields.with_comm else ""))
    ts, pid_tgid, cpu, probe, failed, entry_ts = (source.local("h") for _ in range(6))
    comm = source.local("comm") if fields.with_comm else None
    targets = ", ".join([ts, pid_tgid, cpu, probe, failed, entry_ts] + ([comm] if comm else []))
    source.add(f"{targets} = {source.bind(head.unpack_from, 'head')}({record}, {offset})")
    return HeadNames(ts, cpu, f"({pid_tgid} >> 32)", f"({pid_tgid} & 0xFFFFFFFF)", failed, entry_ts, comm)


def record_fields(plan: Plan, probe_index: int, btf: BTF) -> RecordFields:
    probe = plan.probes[probe_index]
    layout = RecordLayout.of(probe, plan.with_comm)
    fmt = [HEADER.format]
    if plan.with_comm:
        fmt.append(f"{COMM_SIZE}s")
    cursor = HEADER_SIZE + (COMM_SIZE if plan.with_comm else 0)
    converters: List[Optional[Callable[[Any], Any]]] = []
    for capture, offset in zip(probe.captures, layout.capture_offsets):
        if offset > cursor:
            fmt.append(f"{offset - cursor}x")
        code, convert = _field(btf, capture)
        fmt.append(code)
        converters.append(convert)
        cursor = offset + struct.calcsize("=" + code)
    if layout.kstack_depth:
        if layout.kstack_offset > cursor:
            fmt.append(f"{layout.kstack_offset - cursor}x")
        fmt.append(f"q{layout.kstack_depth}Q")
        cursor = layout.size
    if layout.size > cursor:  # the record's tail padding: one Struct per record, for iter_unpack
        fmt.append(f"{layout.size - cursor}x")
    return RecordFields(
        struct.Struct("".join(fmt)),
        7 if plan.with_comm else 6,
        tuple(converters),
        plan.with_comm,
        layout.kstack_depth,
        probe.kind.is_return,
        layout.capture_offsets,
    )


def build_decoder(plan: Plan, probe_index: int, btf: BTF) -> Decoder:
    """A function from one record (bytes or memoryview) of plan.probes[probe_index] to an Event."""
    fields_of = record_fields(plan, probe_index, btf)
    probe = plan.probes[probe_index]
    converters = fields_of.converters
    kstack_depth = fields_of.kstack_depth
    unpack = fields_of.unpacker.unpack_from
    first_value = fields_of.first_value
    kstack_written = first_value + len(probe.captures)  # the field of bpf_get_stack's result
    is_return = fields_of.is_return
    with_comm = fields_of.with_comm
    comm_cache: Dict[bytes, str] = {}
    indexed = tuple(enumerate(converters))
    # Only the captures with a converter are touched when no read failed: usually one or two.
    conversions = tuple((n, convert) for n, convert in indexed if convert is not None)

    def decode(record: Any) -> Event:
        fields = unpack(record)
        pid_tgid = fields[1]
        if with_comm:
            raw = fields[6]
            comm = comm_cache.get(raw)
            if comm is None:
                if len(comm_cache) >= _COMM_CACHE_SIZE:
                    comm_cache.clear()  # tasks come and go; keep the cache from growing forever
                comm = comm_cache[raw] = text_from(raw)
        else:
            comm = ""
        kstack = None
        if kstack_depth:
            values = fields[first_value:kstack_written]
            frames = min(max(0, fields[kstack_written]) // 8, kstack_depth)  # bytes written, or an error
            kstack = fields[kstack_written + 1 : kstack_written + 1 + frames]
        else:
            values = fields[first_value:]
        failed = fields[4]
        if failed:
            values = tuple(
                READ_FAILED if failed >> n & 1 else (v if convert is None else convert(v))
                for (n, convert), v in zip(indexed, values)
            )
        elif conversions:
            converted = list(values)
            for n, convert in conversions:
                converted[n] = convert(converted[n])
            values = tuple(converted)
        duration = fields[0] - fields[5] if is_return and fields[5] else None
        # tuple.__new__ skips the NamedTuple's keyword-handling __new__: half the cost per record.
        return new_tuple(
            Event,
            (fields[0], pid_tgid >> 32, pid_tgid & 0xFFFFFFFF, fields[2], fields[3], comm, values, duration, kstack),
        )

    new_tuple = tuple.__new__
    return decode


class AggregateKey(NamedTuple):
    """An aggregation key read back: the function's number, the log2 bucket and the parts' values
    (int, str, bool, RawValue, or READ_FAILED, as a record's)."""

    function: int
    bucket: int
    values: Tuple[Any, ...]


_KEY_HEAD = struct.Struct("=IHH")


def key_capture(capture: Capture) -> Capture:
    """The capture as the key holds it: a bitfield's value cut out by the program into the low
    bits of a u64 in host order, read back as a bitfield of those bits (sign and enum names as
    a record's)."""
    if capture.bitfield is None:
        return capture
    bits = capture.bitfield.bit_size
    low = 0 if sys.byteorder == "little" else 64 - bits  # big-endian compilers number bits from the top
    return Capture(
        label=capture.label, slot=capture.slot, size=8, type_id=capture.type_id, bitfield=Bitfield(low, bits)
    )


def build_key_decoder(layout: AggregateLayout, aggregate: Aggregate, btf: BTF) -> Callable[[bytes], AggregateKey]:
    """A function from one key of `aggregate`'s probe (its bytes, laid out by `layout`) to an
    AggregateKey; its parts' values read by the rules records' captures are read by."""
    readers: List[Callable[[bytes], Any]] = []
    for part, size in zip(aggregate.parts, layout.part_sizes):
        if part is Builtin.COMM:
            readers.append(text_from)
        elif isinstance(part, Builtin):
            readers.append(lambda raw: int.from_bytes(raw[:4], sys.byteorder))
        else:
            readers.append(value_reader(btf, key_capture(part)))
    spans = [(offset, offset + size) for offset, size in zip(layout.part_offsets, layout.part_sizes)]
    parts = tuple(zip(readers, spans))

    def decode(key: bytes) -> AggregateKey:
        function, failed, bucket = _KEY_HEAD.unpack_from(key, AGGREGATE_FUNCTION_OFFSET)
        values = tuple(
            READ_FAILED if failed >> n & 1 else read(key[start:end]) for n, (read, (start, end)) in enumerate(parts)
        )
        return AggregateKey(function, bucket, values)

    assert (AGGREGATE_FAILED_OFFSET, AGGREGATE_BUCKET_OFFSET) == (4, 6), "_KEY_HEAD reads the header in order"
    return decode


def value_reader(btf: BTF, capture: Capture) -> Callable[[bytes], Any]:
    """A function from a capture's bytes (at least its record_size) to its value, as in an Event."""
    code, convert = _field(btf, capture)
    unpack = struct.Struct("=" + code).unpack_from
    if convert is None:
        return lambda raw: unpack(raw)[0]
    return lambda raw: convert(unpack(raw)[0])


def _field(btf: BTF, capture: Capture) -> Tuple[str, Optional[Callable[[Any], Any]]]:
    """The struct code reading the capture's bytes, and what turns them into its value (None: as is)."""
    size = capture.size
    typ = btf.skip_modifiers(capture.type_id) if capture.type_id else None
    if capture.bitfield is not None and capture.bitfield.bit_size:
        bf = capture.bitfield
        compiled = compile_bitfield(btf, capture.type_id, size, bf.bit_offset, bf.bit_size)
        leaf, read, order = compiled.leaves[0], compiled.read, btf.byteorder
        return f"{size}s", lambda raw: leaf_value(leaf, read(raw)[leaf.index], order)
    if capture.bitfield is not None:  # an int of no bits (the kernel lets BTF have them) reads as 0
        return f"{size}s", lambda raw: 0
    if capture.string:
        return f"{size}s", text_from
    if isinstance(typ, Int) and size in _SCALAR_CODES and btf.value_byteorder(capture.type_id) != btf.byteorder:
        # __be16 and its kind: a number in its own byte order, whatever the machine's.
        foreign = btf.value_byteorder(capture.type_id)
        foreign_signed = typ.signed
        return f"{size}s", lambda raw: int.from_bytes(raw, foreign, signed=foreign_signed)  # type: ignore[arg-type]
    if isinstance(typ, (Int, Enum, Enum64, Ptr)) and size in _SCALAR_CODES and not capture.truncated:
        signed = isinstance(typ, (Int, Enum, Enum64)) and typ.signed
        code = (_SIGNED_CODES if signed else _SCALAR_CODES)[size]
        names = _enum_names(typ)
        if names:
            return code, lambda v: names.get(v, v)
        if _is_bool(typ):
            return code, bool
        return code, None
    if isinstance(typ, Float) and size in (4, 8):
        return ("f" if size == 4 else "d"), None
    if typ is None:
        return f"{size}s", None
    if isinstance(typ, (Struct, Union, Array)):
        type_id, truncated = capture.type_id, capture.truncated
        if isinstance(typ, Array) and is_char(btf.skip_modifiers(typ.type_id)):
            return f"{size}s", char_array_text
        if capture.address:  # the struct's address, then its bytes
            return f"{capture.record_size}s", lambda raw: RawValue(
                type_id, raw[8:], truncated, int.from_bytes(raw[:8], sys.byteorder)
            )
        return f"{size}s", lambda raw: RawValue(type_id, raw, truncated)
    return f"{size}s", None


def _enum_names(typ: Any) -> Dict[int, str]:
    return enum_names(typ) if isinstance(typ, (Enum, Enum64)) else {}


def _is_bool(typ: Any) -> bool:
    return isinstance(typ, Int) and typ.is_bool
