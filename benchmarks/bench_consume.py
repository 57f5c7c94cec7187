# SPDX-License-Identifier: GPL-2.0-only
"""consume: records drained from the ring and decoded into Events per second, small and large
records of tp:sys_enter from the getpid() loop: from a prefilled ring, and live with the session's
ring while the loop runs."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import mmap
import os
import select
import statistics
import struct
import sys
import time
from typing import Any, Dict, List, Tuple

from bpf.codegen import MapRole
from bpf.plan import COMM_SIZE, HEADER, Filters, RecordLayout
from bpf.ringbuf import RingBuffer
from ksnoop.output.decode import build_decoder
from ksnoop.spec.language import parse_spec
from ksnoop.spec.resolve import resolve
from ksnoop.spec.targets import KernelBTF

from common import (
    GetpidLoop,
    attach_generated,
    count_drops,
    getpid_loop_program,
    pin_this_thread,
    pt_regs_members,
    require_bpf,
    two_cpus,
)

_CONSUME_FILL_RING = 1 << 25


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Records drained from the ring and decoded into Events (ksnoop.output.decode.build_decoder), per
    second, for ~64-byte and ~300-byte records of tp:sys_enter filtered on the getpid loop's pid.

    "prefilled": the loop fills a 32 MiB ring with nobody reading, then one drain empties it,
    timed, with each callback in turn: nothing (the raw drain), a precompiled struct.Struct
    unpack (the floor for decoding in Python), the decoder, and the decoder reached as the
    session's reader reaches it (probe index from the record, then the decoder). "live": the
    loop runs for a second while this process, on the other CPU, polls and decodes as the
    session does, with the session's default ring (1024 pages): records decoded per second,
    the producer's rate, and records lost when it outruns the reader; once with the shipped
    wake-up threshold, once with programs that never wake the reader (it polls). Prefilled
    rates are given per wall second and per second of the reader's CPU time (the machine may
    be shared)."""

    require_bpf()
    regs = pt_regs_members()
    specs = {
        "small": "tp:sys_enter(id)",
        "large": "tp:sys_enter(regs, id, " + ", ".join(f"regs->{r}" for r in regs[:8]) + ")",
    }
    live_ring = 1024 * mmap.PAGESIZE
    live_seconds = 1.0
    kernel = KernelBTF.load()
    loop_cpu, reader_cpu = two_cpus()
    pin_this_thread(reader_cpu)
    byteorder = sys.byteorder
    results: Dict[str, Any] = {}
    with contextlib.ExitStack() as outer:
        argv, _, note = outer.enter_context(getpid_loop_program())
        loop = outer.enter_context(GetpidLoop(argv, loop_cpu))
        for size_name, spec in specs.items():
            resolved = resolve([parse_spec(spec)], kernel, Filters(pid=loop.pid), ringbuf_size=_CONSUME_FILL_RING)
            layout = RecordLayout.of(resolved.plan.probes[0], resolved.plan.with_comm)
            decode = build_decoder(resolved.plan, 0, resolved.targets[0].btf)
            decoders = [decode]
            unpack = struct.Struct(HEADER.format + f"{COMM_SIZE}s{layout.size - HEADER.size - COMM_SIZE}s").unpack_from

            def raw(record: memoryview) -> None:
                pass

            def unpacked(record: memoryview) -> None:
                unpack(record)

            def decoded(record: memoryview) -> None:
                decode(record)

            def as_session(record: memoryview) -> None:
                decoders[int.from_bytes(record[20:24], byteorder)](record)

            callbacks = {
                "raw_drain": raw,
                "struct_unpack": unpacked,
                "decoded": decoded,
                "decoded_session_dispatch": as_session,
            }
            rates: Dict[str, List[float]] = {name: [] for name in callbacks}
            cpu_rates: Dict[str, List[float]] = {name: [] for name in callbacks}
            fill = int(0.9 * _CONSUME_FILL_RING / (layout.size + 8))
            with contextlib.ExitStack() as stack:
                maps = attach_generated(stack, resolved.plan)  # its ring: _CONSUME_FILL_RING bytes
                drops = maps.shared(MapRole.DROPS)
                ring = stack.enter_context(RingBuffer(maps.shared(MapRole.EVENTS).fd, _CONSUME_FILL_RING))
                names = list(callbacks)
                counts = []
                for round_ in range(args.runs + 1):
                    for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                        loop.count(fill)
                        start, cpu_start = time.perf_counter(), time.thread_time()
                        count = ring.drain(callbacks[name])
                        elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu_start
                        if round_:
                            rates[name].append(count / elapsed)
                            cpu_rates[name].append(count / cpu)
                            counts.append(count)
                prefill_lost = count_drops(drops)
            # live: the session's ring size; the reader polls and drains as the session's does. With
            # the shipped wake-up threshold, and with it out of reach (programs never wake the reader).
            live_plans = {
                "shipped_wakeup": dataclasses.replace(resolved.plan, ringbuf_size=live_ring),
                "no_wakeup": dataclasses.replace(resolved.plan, ringbuf_size=live_ring, wakeup_bytes=live_ring),
            }
            live_configs = [(policy, name) for policy in live_plans for name in ("decoded", "raw_drain")]
            live: Dict[Tuple[str, str], Dict[str, List[float]]] = {
                c: {"per_s": [], "lost_fraction": [], "producer_per_s": [], "lost": []} for c in live_configs
            }
            assert loop.proc.stdout is not None
            loop_out = loop.proc.stdout
            for round_ in range(args.runs + 1):
                for policy, name in live_configs[round_ % 4 :] + live_configs[: round_ % 4]:
                    callback = callbacks[name]
                    with contextlib.ExitStack() as stack:
                        maps = attach_generated(stack, live_plans[policy])  # its ring: live_ring bytes
                        drops = maps.shared(MapRole.DROPS)
                        ring = stack.enter_context(RingBuffer(maps.shared(MapRole.EVENTS).fd, live_ring))
                        ring.drain(raw)
                        loop.start(f"t {live_seconds}")
                        start = time.perf_counter()
                        count = 0
                        while not select.select([loop_out], [], [], 0)[0]:
                            count += ring.poll(callback, 0.05)
                        produced, loop_wall, _ = loop.result()
                        count += ring.drain(callback)
                        elapsed = time.perf_counter() - start
                        lost = count_drops(drops)
                    if round_:
                        figures = live[(policy, name)]
                        figures["per_s"].append(count / elapsed)
                        figures["producer_per_s"].append(produced / (loop_wall / 1e9))
                        figures["lost_fraction"].append(lost / max(produced, 1))
                        figures["lost"].append(lost)
            live_results = {
                f"live_{policy}_{name}": {
                    "records_per_s": round(statistics.median(f["per_s"])),
                    "producer_events_per_s": round(statistics.median(f["producer_per_s"])),
                    "lost_fraction": round(statistics.median(f["lost_fraction"]), 3),
                    "lost_median": round(statistics.median(f["lost"])),
                }
                for (policy, name), f in live.items()
            }
            results[size_name] = {
                "spec": spec,
                "record_bytes": layout.size,
                "prefilled_records_per_drain": statistics.median(counts),
                **{f"prefilled_{name}_per_s": round(statistics.median(v)) for name, v in rates.items()},
                "prefilled_lost": prefill_lost,
                **{f"prefilled_{name}_per_cpu_s": round(statistics.median(v)) for name, v in cpu_rates.items()},
                **live_results,
            }
    return {
        "benchmark": "consume",
        "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
        "runs": args.runs,
        "event_source": f"{note}, pinned to CPU {loop_cpu}; the reader on CPU {reader_cpu}",
        "prefilled_ring_bytes": _CONSUME_FILL_RING,
        "live_ring_bytes": live_ring,
        "live_seconds": live_seconds,
        **results,
        "target": "small prefilled_decoded_per_s >= 1000000",
    }
