"""Records -> Events: read a record's header, failed-read mask and values by the plan's layout.

A decoder is built once per probe from its RecordLayout: one struct.Struct unpacks the header
and every scalar value in a single call, and only values that need BTF (structs, arrays,
bitfields, enums) get a converter, so a stream of small records decodes at C speed.
"""
from __future__ import annotations

import struct
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from bpf.plan import COMM_SIZE, HEADER_SIZE, Capture, Plan, RecordLayout
from btf import BTF, Enum, Enum64, Int, Ptr
from btf.values import TRUNCATED_KEY, bitfield_from, text_from


class ReadFailed:
    """Stands in for a value the program could not read (a bad pointer on the way, say)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<read failed>"


READ_FAILED = ReadFailed()


class Event(NamedTuple):
    ts_ns: int
    pid: int  # the process (tgid)
    tid: int
    cpu: int
    probe: int  # index into plan.probes
    comm: str
    values: Tuple[Any, ...]  # one per capture, READ_FAILED where the read failed


Decoder = Callable[[Any], Event]
_SCALAR_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}
_SIGNED_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}


def build_decoder(plan: Plan, probe_index: int, btf: BTF) -> Decoder:
    """A function from one record (bytes or memoryview) of plan.probes[probe_index] to an Event."""
    probe = plan.probes[probe_index]
    layout = RecordLayout.of(probe, plan.with_comm)
    fmt = ["=QQIIQ"]
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
    unpack = struct.Struct("".join(fmt)).unpack_from
    first_value = 6 if plan.with_comm else 5
    with_comm = plan.with_comm
    comm_cache: Dict[bytes, str] = {}
    needs_conversion = any(c is not None for c in converters)
    indexed = tuple(enumerate(converters))

    def decode(record: Any) -> Event:
        fields = unpack(record)
        pid_tgid = fields[1]
        if with_comm:
            raw = fields[5]
            comm = comm_cache.get(raw)
            if comm is None:
                comm = comm_cache[raw] = text_from(raw)
        else:
            comm = ""
        values = fields[first_value:]
        failed = fields[4]
        if needs_conversion or failed:
            values = tuple(
                READ_FAILED if failed >> n & 1 else (v if convert is None else convert(v))
                for (n, convert), v in zip(indexed, values)
            )
        return Event(fields[0], pid_tgid >> 32, pid_tgid & 0xFFFFFFFF, fields[2], fields[3], comm, values)

    return decode


def _field(btf: BTF, capture: Capture) -> Tuple[str, Optional[Callable[[Any], Any]]]:
    """The struct code reading the capture's bytes, and what turns them into its value (None: as is)."""
    size = capture.size
    typ = btf.skip_modifiers(capture.type_id) if capture.type_id else None
    if capture.bitfield is not None:
        bf = capture.bitfield
        signed = isinstance(typ, (Int, Enum, Enum64)) and typ.signed
        order = btf.byteorder
        names = _enum_names(typ)

        def bitfield(raw: bytes) -> Any:
            value = bitfield_from(raw, bf.bit_offset, bf.bit_size, signed, order)
            return names.get(value, value) if names else (bool(value) if _is_bool(typ) else value)

        return f"{size}s", bitfield
    if capture.string:
        return f"{size}s", text_from
    if isinstance(typ, (Int, Enum, Enum64, Ptr)) and size in _SCALAR_CODES and not capture.truncated:
        signed = isinstance(typ, (Int, Enum, Enum64)) and typ.signed
        code = (_SIGNED_CODES if signed else _SCALAR_CODES)[size]
        names = _enum_names(typ)
        if names:
            return code, lambda v: names.get(v, v)
        if _is_bool(typ):
            return code, bool
        return code, None
    if typ is None:
        return f"{size}s", None
    type_id = capture.type_id
    truncated = capture.truncated

    def typed(raw: bytes) -> Any:
        value = btf.decode(type_id, raw)
        if truncated and isinstance(value, dict):
            value[TRUNCATED_KEY] = "truncated"
        return value

    return f"{size}s", typed


def _enum_names(typ: Any) -> Dict[int, str]:
    if isinstance(typ, (Enum, Enum64)):
        return {e.value: e.name for e in typ.values}
    return {}


def _is_bool(typ: Any) -> bool:
    return isinstance(typ, Int) and typ.is_bool
