# SPDX-License-Identifier: GPL-2.0-only
"""overhead: what a program on tp_btf/sys_enter adds per event to a getpid() loop, for the
smallest hand-assembled program and for generated ones (header only, comm, captured values), and
what the ring buffer's wake-up policy costs with the reader keeping up and behind."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from bpf import insn as I
from bpf import uapi
from bpf.codegen import MapRole, generate
from bpf.loader import attach_tracing, load_program
from bpf.maps import create_maps
from bpf.plan import Filters, RecordLayout
from bpf.ringbuf import RingBuffer
from bpf.uapi import AttachType, Helper, MapType, ProgType
from ksnoop.spec.language import parse_spec
from ksnoop.spec.resolve import resolve
from ksnoop.spec.targets import KernelBTF

from common import (
    GetpidLoop,
    count_drops,
    getpid_loop_program,
    load_and_attach,
    pin_this_thread,
    pt_regs_members,
    require_bpf,
    two_cpus,
)

_OVERHEAD_RING = 1 << 25  # holds every record of one measurement even if the reader stalls


def _bpf_links() -> Optional[int]:
    """How many BPF links exist (other sessions' programs on sys_enter would slow the loop)."""
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    if not os.path.exists(bpftool):
        return None
    done = subprocess.run([bpftool, "-j", "link", "list"], capture_output=True, text=True)
    try:
        return len(json.loads(done.stdout or "[]"))
    except ValueError:
        return None


def _smallest_program(
    events_fd: int, drops_fd: int, pid: int, size: int, wakeup_bytes: int, policy: str = "threshold"
) -> List[Any]:
    """The least a tracer can do per event, hand-assembled: the pid filter, reserve `size`
    bytes, stamp ktime, submit; a full ring counts a drop. `policy` is the wake-up policy:
    "threshold" is the generated programs' (BPF_RB_NO_WAKEUP until `wakeup_bytes` are pending,
    then BPF_RB_FORCE_WAKEUP on every submit), "never" always BPF_RB_NO_WAKEUP (the reader
    polls), "crossing" forces a wake-up only on the submit that takes the backlog past
    `wakeup_bytes` (the first record's worth of bytes above it)."""

    if policy == "never":
        wake: List[Any] = [I.mov64_imm(2, uapi.BPF_RB_NO_WAKEUP)]
    else:
        wake = [
            *I.ld_map_fd(1, events_fd),
            I.mov64_imm(2, uapi.BPF_RB_AVAIL_DATA),
            I.call(Helper.ringbuf_query),
            I.mov64_imm(2, uapi.BPF_RB_NO_WAKEUP),
        ]
        if policy == "threshold":
            wake.append(I.jmp_imm(uapi.BPF_JLT, 0, wakeup_bytes, 1))
        else:
            wake.append(I.jmp_imm(uapi.BPF_JLT, 0, wakeup_bytes, 2))
            wake.append(I.jmp_imm(uapi.BPF_JGE, 0, wakeup_bytes + size + uapi.BPF_RINGBUF_HDR_SZ, 1))
        wake.append(I.mov64_imm(2, uapi.BPF_RB_FORCE_WAKEUP))
    items: List[Any] = [  # an Insn, a label (str), or (label, a jump to it)
        I.call(Helper.get_current_pid_tgid),
        I.alu64_imm(uapi.BPF_RSH, 0, 32),
        ("out", I.jmp_imm(uapi.BPF_JNE, 0, pid, 0)),
        *I.ld_map_fd(1, events_fd),
        I.mov64_imm(2, size),
        I.mov64_imm(3, 0),
        I.call(Helper.ringbuf_reserve),
        ("dropped", I.jmp_imm(uapi.BPF_JEQ, 0, 0, 0)),
        I.mov64_reg(7, 0),
        I.call(Helper.ktime_get_ns),
        I.stx_mem(8, 7, 0, 0),
        *wake,
        I.mov64_reg(1, 7),
        I.call(Helper.ringbuf_submit),
        "out",
        I.mov64_imm(0, 0),
        I.exit_(),
        "dropped",
        I.st_mem(4, 10, -8, 0),
        *I.ld_map_fd(1, drops_fd),
        I.mov64_reg(2, 10),
        I.alu64_imm(uapi.BPF_ADD, 2, -8),
        I.call(Helper.map_lookup_elem),
        I.jmp_imm(uapi.BPF_JEQ, 0, 0, 3),
        I.ldx_mem(8, 1, 0, 0),
        I.alu64_imm(uapi.BPF_ADD, 1, 1),
        I.stx_mem(8, 0, 1, 0),
        ("out", I.ja(0)),
    ]
    labels: Dict[str, int] = {}
    pc = 0
    for item in items:
        if isinstance(item, str):
            labels[item] = pc
        else:
            pc += 1
    out: List[Any] = []
    for item in items:
        if isinstance(item, str):
            continue
        if isinstance(item, tuple):
            label, jump = item
            item = I.Insn(jump.code, jump.dst, jump.src, labels[label] - len(out) - 1, jump.imm)
        out.append(item)
    return out


class _Drainer:
    """A thread emptying the ring as the session's reader does (poll, drain), records untouched."""

    def __init__(self, ring: Any, cpu: Optional[int]) -> None:
        self.ring, self.cpu, self.records = ring, cpu, 0
        self.paused = False  # while True the ring fills: the reader has fallen behind
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pin_this_thread(self.cpu)
        ignore = lambda record: None  # noqa: E731
        while not self._stop.is_set():
            if self.paused:
                time.sleep(0.005)
            else:
                self.records += self.ring.poll(ignore, 0.01)

    def wait_empty(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.ring.available() and time.monotonic() < deadline:
            time.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _slope(points: Sequence[Tuple[float, float]]) -> float:
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Per-event cost of a program on tp_btf/sys_enter: the getpid loop's CPU time per iteration
    with no program, with the smallest hand-assembled program, with a generated one capturing
    only the header, with 1, 2 and 4 captured values (each a probe read of a pt_regs member) and
    with one register argument (no probe read). All filter on the loop's pid and a thread drains
    the ring as the session's reader would. Every configuration runs once per round, in rotating
    order; figures are medians over rounds of each minus the no-program run of the same round.

    The wake-up policy (BPF_RB_FORCE_WAKEUP once the backlog passes wakeup_bytes) makes a
    program's cost depend on how far the reader lags, so the programs are compared with the
    threshold out of reach (the ring's size: same instructions, never a wake-up), and the
    as-shipped threshold (64 KiB) is measured apart: with the reader keeping up, and with it
    paused (behind), against waking only on the submit that crosses the threshold."""

    require_bpf()
    iterations = 200_000
    regs = pt_regs_members()
    kernel = KernelBTF.load()
    loop_cpu, reader_cpu = two_cpus()
    links_before = _bpf_links()
    quiet = _OVERHEAD_RING  # a threshold the backlog never reaches
    with contextlib.ExitStack() as outer:
        argv, _, note = outer.enter_context(getpid_loop_program())
        loop = outer.enter_context(GetpidLoop(argv, loop_cpu))
        filters = Filters(pid=loop.pid)

        def plan(spec: str, wakeup: int = quiet) -> Any:
            resolved = resolve([parse_spec(spec)], kernel, filters, ringbuf_size=_OVERHEAD_RING).plan
            return dataclasses.replace(resolved, wakeup_bytes=wakeup)

        def header_only(wakeup: int) -> Any:
            with_id = plan("tp:sys_enter(id)", wakeup)
            return dataclasses.replace(with_id, probes=(dataclasses.replace(with_id.probes[0], captures=(), tests=()),))

        shipped = header_only(0).__class__.__dataclass_fields__["wakeup_bytes"].default
        header_size = RecordLayout.of(header_only(quiet).probes[0], True).size
        attach_btf_id = header_only(quiet).probes[0].attach_btf_id
        # name -> None (no program), (policy, threshold, reader behind) for the hand-assembled
        # program, or a plan.
        configs: Dict[str, Any] = {
            "no_program": None,
            "smallest_hand": ("threshold", quiet, False),
            "generated_header_only": header_only(quiet),
            # The comm costs a helper call (~40 ns here): a plan can leave it out of the header.
            "generated_header_only_no_comm": dataclasses.replace(header_only(quiet), with_comm=False),
            "generated_1_register": plan("tp:sys_enter(id)"),
        }
        for n in (1, 2, 4):
            configs[f"generated_{n}_probe_read"] = plan(
                "tp:sys_enter(" + ", ".join(f"regs->{r}" for r in regs[:n]) + ")"
            )
        configs.update(
            {
                "smallest_hand_64k_wakeup": ("threshold", shipped, False),
                "generated_header_only_64k_wakeup": header_only(shipped),
                "smallest_hand_64k_wake_on_crossing": ("crossing", shipped, False),
                "smallest_hand_no_query": ("never", quiet, False),
                # The reader paused for the measurement, as when it formats slower than events come:
                # the backlog stays past the threshold.
                "smallest_hand_64k_wakeup_reader_behind": ("threshold", shipped, True),
                "smallest_hand_64k_wake_on_crossing_reader_behind": ("crossing", shipped, True),
            }
        )
        sizes = {
            name: header_size if not hasattr(p, "probes") else RecordLayout.of(p.probes[0], p.with_comm).size
            for name, p in configs.items()
        }
        # Every generated program shares one ring and one drop counter, as the maps they declare
        # say (each plan's ring is _OVERHEAD_RING bytes). The hand-assembled program writes to the
        # same two, so one reader drains every configuration.
        programs = {name: generate(p, 0) for name, p in configs.items() if hasattr(p, "probes")}
        maps = create_maps(outer, list(programs.values()))
        program_fds = {name: maps.fds(index) for index, name in enumerate(programs)}
        events, drops = maps.shared(MapRole.EVENTS), maps.shared(MapRole.DROPS)
        # What _smallest_program takes for granted of them.
        assert events.map_type is MapType.RINGBUF and events.max_entries == _OVERHEAD_RING
        assert drops.map_type is MapType.PERCPU_ARRAY and (drops.key_size, drops.value_size) == (4, 8)
        ring = outer.enter_context(RingBuffer(events.fd, _OVERHEAD_RING))
        drainer = _Drainer(ring, reader_cpu)
        outer.callback(drainer.stop)

        cpu_ns: Dict[str, List[float]] = {name: [] for name in configs}
        wall_ns: Dict[str, List[float]] = {name: [] for name in configs}
        lost = {name: 0 for name in configs}
        received = {name: 0 for name in configs}
        names = list(configs)
        for round_ in range(args.runs + 1):  # round 0 warms up and is not counted
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                p = configs[name]
                with contextlib.ExitStack() as stack:
                    behind = isinstance(p, tuple) and p[2]
                    if isinstance(p, tuple):
                        policy, threshold, _ = p
                        hand = _smallest_program(events.fd, drops.fd, loop.pid, header_size, threshold, policy)
                        loaded = stack.enter_context(
                            load_program(
                                hand, ProgType.TRACING, AttachType.TRACE_RAW_TP, attach_btf_id, name="bench_smallest"
                            )
                        )
                        stack.enter_context(attach_tracing(loaded))
                    elif p is not None:
                        load_and_attach(stack, programs[name], program_fds[name])
                    drainer.wait_empty()
                    drops_before, records_before = count_drops(drops), drainer.records
                    drainer.paused = behind
                    done, wall, cpu = loop.count(iterations)
                    drainer.paused = False
                # detached
                drainer.wait_empty()
                time.sleep(0.015)  # the drainer's last poll returns
                if round_:
                    cpu_ns[name].append(cpu / done)
                    wall_ns[name].append(wall / done)
                    lost[name] += count_drops(drops) - drops_before
                    received[name] += drainer.records - records_before
    base = cpu_ns["no_program"]
    per_event = {
        name: statistics.median(v - b for v, b in zip(values, base))
        for name, values in cpu_ns.items()
        if name != "no_program"
    }
    smallest, header = per_event["smallest_hand"], per_event["generated_header_only"]
    probe_reads = [(0, header)] + [(n, per_event[f"generated_{n}_probe_read"]) for n in (1, 2, 4)]
    return {
        "benchmark": "overhead",
        "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
        "runs": args.runs,
        "event_source": f"{note}, {iterations} getpid() per measurement, pinned to CPU {loop_cpu}; "
        f"a thread draining the ring on CPU {reader_cpu}",
        "metric": "the loop's own CPU time per iteration (CLOCK_THREAD_CPUTIME_ID); per-event cost = "
        "configuration minus the no-program run of the same round, median over rounds",
        "wakeup_bytes": {"compared": quiet, "shipped": shipped},
        "record_bytes": sizes,
        "loop_cpu_ns_per_iteration_median": {n: round(statistics.median(v), 1) for n, v in cpu_ns.items()},
        "loop_wall_ns_per_iteration_median": {n: round(statistics.median(v), 1) for n, v in wall_ns.items()},
        "per_event_ns": {n: round(v, 1) for n, v in per_event.items()},
        "header_only_vs_smallest": round(header / smallest, 2),
        "header_only_no_comm_vs_smallest": round(per_event["generated_header_only_no_comm"] / smallest, 2),
        "header_only_vs_smallest_wake_on_crossing": round(
            per_event["generated_header_only_64k_wakeup"] / per_event["smallest_hand_64k_wake_on_crossing"], 2
        ),
        "header_only_vs_smallest_64k_wakeup": round(
            per_event["generated_header_only_64k_wakeup"] / per_event["smallest_hand_64k_wakeup"], 2
        ),
        "per_probe_read_ns_slope": round(_slope(probe_reads), 1),
        "register_capture_ns": round(per_event["generated_1_register"] - header, 1),
        "wakeup_policy_cost_ns": round(per_event["smallest_hand_64k_wakeup"] - smallest, 1),
        "wakeup_policy_cost_reader_behind_ns": round(per_event["smallest_hand_64k_wakeup_reader_behind"] - smallest, 1),
        "wake_on_crossing_cost_reader_behind_ns": round(
            per_event["smallest_hand_64k_wake_on_crossing_reader_behind"] - smallest, 1
        ),
        "records_lost": lost,
        "records_received_per_iteration": {n: round(received[n] / (args.runs * iterations), 4) for n in configs},
        "other_bpf_links_at_start": links_before,
        "target": "header_only_vs_smallest <= 1.2; each captured value about one probe-read helper call",
    }
