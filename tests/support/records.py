# SPDX-License-Identifier: GPL-2.0-only
"""Records as a generated program writes them, for decoder and output tests.

`trace(*specs)` resolves specs against the mini kernel; `record(resolved, probe, *values)` packs
one record by bpf.plan's HEADER and RecordLayout; `event(...)` decodes it with ksnoop.output.decode.
"""

from __future__ import annotations

import dataclasses
import struct
import sys
from typing import Any

from bpf.plan import COMM_OFFSET, COMM_SIZE, HEADER, ProbeKind, RecordLayout
from btf import BTF
from ksnoop.output.decode import Event, build_decoder
from ksnoop.spec.resolve import ResolvedTrace, resolve
from ksnoop.spec.language import parse_spec
from ksnoop.spec.targets import KernelBTF

from . import minikernel

TS = 1_000_000_123
PID, TID, CPU = 2813, 2815, 1

_BLOB, IDS = minikernel.build()


def kernel() -> KernelBTF:
    return KernelBTF(BTF.from_bytes(_BLOB), [])


def path_kernel() -> KernelBTF:
    """The mini kernel with the sched_process_exit tracepoint call-path mode attaches to."""
    blob, _ = minikernel.build(task_exit=True)
    return KernelBTF(BTF.from_bytes(blob), [])


def trace(*specs: str, kstack_depth: int = 0) -> ResolvedTrace:
    return resolve([parse_spec(s) for s in specs], kernel(), kstack_depth=kstack_depth)


def with_captures(resolved: ResolvedTrace, probe_index: int, **changes: dict[str, Any]) -> ResolvedTrace:
    """`resolved` with some captures of one probe changed: label=dict(type_id=..., size=...)."""
    probe = resolved.plan.probes[probe_index]
    captures = tuple(dataclasses.replace(c, **changes.get(c.label, {})) for c in probe.captures)
    probes = list(resolved.plan.probes)
    probes[probe_index] = dataclasses.replace(probe, captures=captures)
    plan = dataclasses.replace(resolved.plan, probes=tuple(probes))
    return ResolvedTrace(plan, resolved.targets)


# Where a struct followed from a pointer was, unless a test gives (address, bytes) for it.
STRUCT_ADDRESS = 0xFFFF888000C0FFEE


def record(
    resolved: ResolvedTrace,
    probe_index: int,
    *values: int | bytes | tuple[int, bytes],
    failed: int = 0,
    comm: bytes = b"curl",
    ts: int = TS,
    entry_ts: int = 0,
    pid: int = PID,
    tid: int = TID,
    cpu: int = CPU,
    kstack: tuple[int, ...] = (),
    kstack_written: int | None = None,
) -> bytes:
    """One record: each value an int (packed into the capture's size, host order) or bytes (padded);
    a struct followed from a pointer is also at STRUCT_ADDRESS, or at `address` given as (address, bytes).
    A probe with a kernel stack gets `kstack`'s addresses and, as bpf_get_stack's result,
    `kstack_written` (default: their bytes)."""
    plan = resolved.plan
    probe = plan.probes[probe_index]
    layout = RecordLayout.of(probe, plan.with_comm)
    assert len(values) == len(probe.captures)
    out = bytearray(layout.size)
    HEADER.pack_into(out, 0, ts, pid << 32 | tid, cpu, probe_index, failed, entry_ts)
    if plan.with_comm:
        out[COMM_OFFSET : COMM_OFFSET + COMM_SIZE] = comm[:COMM_SIZE].ljust(COMM_SIZE, b"\0")
    for capture, offset, value in zip(probe.captures, layout.capture_offsets, values):
        if capture.address:  # a struct followed from a pointer: that pointer, then the struct's bytes
            address, value = value if isinstance(value, tuple) else (STRUCT_ADDRESS, value)
            out[offset : offset + 8] = address.to_bytes(8, sys.byteorder)
            offset += 8
        if isinstance(value, int):
            data = value.to_bytes(capture.size, sys.byteorder, signed=value < 0)
        else:
            data = value.ljust(capture.size, b"\0")
        assert len(data) == capture.size, (capture.label, len(data), capture.size)
        out[offset : offset + capture.size] = data
    if layout.kstack_depth:
        written = 8 * len(kstack) if kstack_written is None else kstack_written
        struct.pack_into(f"=q{len(kstack)}Q", out, layout.kstack_offset, written, *kstack)
    else:
        assert not kstack, "the probe captures no kernel stack"
    return bytes(out)


def event(resolved: ResolvedTrace, probe_index: int, *values: int | bytes, **header: Any) -> Event:
    """The Event the decoder makes of record(resolved, probe_index, *values, **header)."""
    btf = resolved.targets[probe_index].btf
    return build_decoder(resolved.plan, probe_index, btf)(record(resolved, probe_index, *values, **header))


def probe_index(resolved: ResolvedTrace, kind: ProbeKind, target: str | None = None) -> int:
    """The index of the (first) probe of this kind, on `target` if given."""
    for i, probe in enumerate(resolved.plan.probes):
        if probe.kind is kind and (target is None or probe.target == target):
            return i
    raise LookupError(f"no {kind} probe in {resolved.plan.probes}")


# ---- canned values ---------------------------------------------------------------------------------

NEXT, PREV, DEV, DATA = 0xFFFF888000001000, 0xFFFF888000002000, 0xFFFF888012345678, 0xFFFF8880DEADBEEF


def sk_buff_bytes(length: int = 228, name: bytes = b"hello") -> bytes:
    """The mini kernel's 104-byte sk_buff (layout comment in minikernel.py), little-endian."""
    data = bytearray(104)
    struct.pack_into("<QQQQ", data, 0, NEXT, PREV, 0, DEV)
    data[32 : 32 + len(name)] = name
    struct.pack_into("<I", data, 80, length)
    data[84] = 5 | 1 << 3  # pkt_type:3 = 5, ignore_df:1 = 1, cloned:1 = 0
    struct.pack_into("<HQQ", data, 86, 0x0800, 0, DATA)
    return bytes(data)


def golden_events() -> tuple[ResolvedTrace, list[Event]]:
    """(resolved trace, events) shown in tests/golden/output/trace.{txt,jsonl}: every kind of value."""
    t = trace("tp:net_dev_queue(skb->len, skb->dev->name, skb->pkt_type, skb->sk, skb)", "seven_args(a, c, f, return)")
    tp = probe_index(t, ProbeKind.TP_BTF)
    entry, ret = probe_index(t, ProbeKind.FENTRY), probe_index(t, ProbeKind.FEXIT)
    events = [
        event(t, tp, 228, b"lo", 5, 0, sk_buff_bytes()),
        event(
            t,
            tp,
            1500,
            b"eth0",
            0,
            0xFFFF888000ABC000,
            sk_buff_bytes(1500, b""),
            failed=0b00010,
            comm=b"\x1b]0;pwned\x07",
            cpu=0,
            pid=1,
            tid=1,
        ),
        event(
            t,
            entry,
            *[{"a": -1, "c": 65, "f": b"/etc/passwd"}[c.label] for c in t.plan.probes[entry].captures],
            ts=TS + 10,
        ),
        event(t, ret, 0, ts=TS + 5010, entry_ts=TS + 10),
    ]
    return t, events
