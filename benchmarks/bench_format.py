# SPDX-License-Identifier: GPL-2.0-only
"""format: Events and records into JSON and text lines, in-process, against a dict per record and
json.dumps; a few scalars, and a whole struct sk_buff (random bytes, and where BPF is to be had,
sk_buffs read from this kernel)."""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import socket
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from bpf.codegen import MapRole
from bpf.features import check_privileges
from bpf.ringbuf import RingBuffer
from btf import BTF, BTFError
from btf.compiled import compile_type
from ksnoop.output.decode import build_decoder, record_fields
from ksnoop.output.json_lines import JsonFormatter
from ksnoop.output.text import TextFormatter
from ksnoop.spec.language import parse_spec
from ksnoop.spec.resolve import resolve
from ksnoop.spec.targets import KernelBTF
from tests.support import records

from common import attach_generated


def _lines_per_s(format_one: Callable[[Any], str], events: Sequence[Any], rounds: int) -> float:
    """Format `events` `rounds` times over; lines formatted per second."""
    start = time.perf_counter()
    for _ in range(rounds):
        for event in events:
            format_one(event)
    return rounds * len(events) / (time.perf_counter() - start)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Events -> lines in-process: JSON and text for a few scalars, JSON and text for a whole
    struct sk_buff (this kernel's BTF if readable, else the mini kernel's). The reference is a
    dict per record plus json.dumps, the obvious way to write the JSON formatter."""

    rng = random.Random(0)

    def events(resolved: Any, count: int) -> List[Any]:
        decode = build_decoder(resolved.plan, 0, resolved.targets[0].btf)
        out = []
        for n in range(count):
            values = [
                rng.getrandbits(8 * c.size - 1) if c.size <= 8 else rng.randbytes(c.size)
                for c in resolved.plan.probes[0].captures
            ]
            out.append(decode(records.record(resolved, 0, *values, ts=records.TS + n)))
        return out

    scalars = records.trace("seven_args(a, b, g)")
    scalar_events = events(scalars, 1000)
    try:
        kernel, struct_btf = KernelBTF(BTF.vmlinux(), []), "vmlinux"
    except BTFError:
        kernel, struct_btf = records.kernel(), "minikernel"
    whole = resolve([parse_spec("ip_send_skb(skb)")], kernel)
    struct_values = [[rng.randbytes(c.size) for c in whole.plan.probes[0].captures] for _ in range(50)]
    struct_records = [records.record(whole, 0, *values, ts=records.TS + n) for n, values in enumerate(struct_values)]
    decode_struct = build_decoder(whole.plan, 0, whole.targets[0].btf)
    struct_events = [decode_struct(r) for r in struct_records]
    scalar_json = JsonFormatter(scalars).format
    scalar_text = TextFormatter(scalars, color=False).format
    scalar_color = TextFormatter(scalars, color=True).format
    struct_json = JsonFormatter(whole).format
    struct_text = TextFormatter(whole, color=False).format
    # What trace does with each record it reads: its line straight from its bytes.
    struct_json_record = JsonFormatter(whole).record(
        0, record_fields(whole.plan, 0, whole.targets[0].btf), decode_struct
    )
    kernel_skbs = _kernel_sk_buffs(kernel, 50) if struct_btf == "vmlinux" else None
    plan = scalars.plan

    def reference(event: Any) -> str:
        probe = plan.probes[event.probe]
        return json.dumps(
            {
                "ts": event.ts_ns,
                "cpu": event.cpu,
                "pid": event.pid,
                "tid": event.tid,
                "comm": event.comm,
                "func": probe.target,
                "probe": "entry",
                "args": {c.label: v for c, v in zip(probe.captures, event.values)},
            }
        )

    figures: Dict[str, List[float]] = {
        name: []
        for name in (
            "json_scalars",
            "dict_json_dumps_scalars",
            "text_scalars",
            "text_color_scalars",
            "json_struct",
            "json_struct_record",
            "text_struct",
        )
    }
    if kernel_skbs is not None:
        figures.update(
            {"json_struct_kernel_bytes": [], "json_struct_record_kernel_bytes": [], "text_struct_kernel_bytes": []}
        )
    reader_ms: List[float] = []
    for _ in range(args.runs):
        if struct_btf == "vmlinux":
            reader_ms.append(_reader_build_ms("struct task_struct"))
        figures["json_scalars"].append(_lines_per_s(scalar_json, scalar_events, 20))
        figures["dict_json_dumps_scalars"].append(_lines_per_s(reference, scalar_events, 20))
        figures["text_scalars"].append(_lines_per_s(scalar_text, scalar_events, 20))
        figures["text_color_scalars"].append(_lines_per_s(scalar_color, scalar_events, 20))
        figures["json_struct"].append(_lines_per_s(struct_json, struct_events, 10))
        figures["json_struct_record"].append(_lines_per_s(struct_json_record, struct_records, 10))
        figures["text_struct"].append(_lines_per_s(struct_text, struct_events, 1))
        if kernel_skbs is not None:
            skb_records, skb_events, skb_json, skb_json_record, skb_text = kernel_skbs
            figures["json_struct_kernel_bytes"].append(_lines_per_s(skb_json, skb_events, 10))
            figures["json_struct_record_kernel_bytes"].append(_lines_per_s(skb_json_record, skb_records, 10))
            figures["text_struct_kernel_bytes"].append(_lines_per_s(skb_text, skb_events, 1))
    medians = {name: round(statistics.median(values)) for name, values in figures.items()}
    struct_size = whole.plan.probes[0].captures[0].size
    return {
        "benchmark": "format",
        "runs": args.runs,
        "scalars": "seven_args(a, b, g): int, long, u32 (minikernel)",
        "struct": f"ip_send_skb(skb): struct sk_buff, {struct_size} random bytes ({struct_btf}); "
        "json_struct formats the Event, json_struct_record the record's bytes (what trace does)",
        "struct_kernel_bytes": (
            "tp:net_dev_queue(skb) records of UDP datagrams sent over loopback, read from this kernel"
            if kernel_skbs is not None
            else "not measured: needs BPF"
        ),
        **{f"{name}_lines_per_s": value for name, value in medians.items()},
        "reader_task_struct_ms": round(statistics.median(reader_ms), 1)
        if reader_ms
        else "not measured: no vmlinux BTF",
        "reader": "building the compiled reader of a whole struct task_struct, on a BTF just read (nothing cached)",
        "json_scalars_vs_dict_json_dumps": round(medians["json_scalars"] / medians["dict_json_dumps_scalars"], 2),
        "target": "json_scalars >= 1.2 M lines/s; whole struct sk_buff: JSON >= 100 k/s, text >= 20 k/s; "
        "the reader of struct task_struct built in <= 20 ms (issue 13)",
    }


def _reader_build_ms(name: str) -> float:
    """Milliseconds to build the compiled reader of the whole type `name`, on vmlinux BTF just read."""
    btf = BTF.vmlinux()
    typ = btf.find(name)
    assert typ is not None, name
    start = time.perf_counter()
    compile_type(btf, typ.id, btf.resolve_size(typ.id))
    return (time.perf_counter() - start) * 1000


def _kernel_sk_buffs(kernel: Any, count: int) -> Optional[Tuple[List[bytes], List[Any], Any, Any, Any]]:
    """Real sk_buffs for the format benchmark: `count` records of tp:net_dev_queue(skb) for UDP
    datagrams this process sends over loopback, read from this kernel's ring; with their Events
    and the JSON (Event and record) and text formatters. None where BPF or the tracepoint is not
    to be had."""

    if not check_privileges():
        return None
    resolved = resolve([parse_spec("tp:net_dev_queue(skb)")], kernel)
    captured: List[bytes] = []
    try:
        with contextlib.ExitStack() as stack:
            maps = attach_generated(stack, resolved.plan)
            ring = stack.enter_context(RingBuffer(maps.shared(MapRole.EVENTS).fd, resolved.plan.ringbuf_size))
            receiver = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            receiver.bind(("127.0.0.1", 0))
            sender = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            for n in range(4 * count):
                sender.sendto(bytes(64 + n % 1000), receiver.getsockname())
                if n % 64 == 63:
                    ring.drain(lambda record: captured.append(bytes(record)) or None)
            ring.drain(lambda record: captured.append(bytes(record)) or None)
    except OSError:
        return None
    if len(captured) < count:
        return None
    captured = captured[:count]
    btf = resolved.targets[0].btf
    decode = build_decoder(resolved.plan, 0, btf)
    record_line = JsonFormatter(resolved).record(0, record_fields(resolved.plan, 0, btf), decode)
    return (
        captured,
        [decode(r) for r in captured],
        JsonFormatter(resolved).format,
        record_line,
        TextFormatter(resolved, color=False).format,
    )
