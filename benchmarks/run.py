"""ksnoop's benchmarks: `python benchmarks/run.py NAME` prints one JSON object of figures.

Timings on a shared 2-core machine are noisy, so every benchmark measures ksnoop and its
reference side by side, alternating runs, and reports medians and their ratio.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_child(argv: Sequence[str]) -> Tuple[float, int]:
    """Run one process to completion with stdout to /dev/null; (wall seconds, peak RSS in KiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise SystemExit(f"benchmark child failed ({proc.returncode}): {' '.join(argv)}\n{err}")
    if proc.stderr:
        proc.stderr.close()
    return elapsed, usage.ru_maxrss


def bench_info(args: argparse.Namespace) -> Dict[str, Any]:
    """`ksnoop info ip_send_skb` as a whole process vs `bpftool btf dump ... format raw`."""
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    if not os.path.exists(bpftool):
        raise SystemExit("bpftool not found: apt-get install bpftool")
    ksnoop = [sys.executable, "-m", "ksnoop", "info", "ip_send_skb"]
    reference = [bpftool, "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "raw"]
    ours: List[float] = []
    theirs: List[float] = []
    rss: List[int] = []
    run_child(ksnoop)  # warm the page cache for both
    run_child(reference)
    for _ in range(args.runs):
        seconds, peak = run_child(ksnoop)
        ours.append(seconds)
        rss.append(peak)
        theirs.append(run_child(reference)[0])
    median_ours, median_theirs = statistics.median(ours), statistics.median(theirs)
    return {
        "benchmark": "info",
        "runs": args.runs,
        "ksnoop_info_median_s": round(median_ours, 4),
        "bpftool_dump_raw_median_s": round(median_theirs, 4),
        "ratio": round(median_ours / median_theirs, 2),
        "ratios_per_pair_median": round(statistics.median(o / t for o, t in zip(ours, theirs)), 2),
        "ksnoop_peak_rss_mb": round(max(rss) / 1024, 1),
        "target": "ratio <= 2.0, peak RSS < 150 MB",
    }


def _lines_per_s(format_one: Callable[[Any], str], events: Sequence[Any], rounds: int) -> float:
    """Format `events` `rounds` times over; lines formatted per second."""
    start = time.perf_counter()
    for _ in range(rounds):
        for event in events:
            format_one(event)
    return rounds * len(events) / (time.perf_counter() - start)


def bench_format(args: argparse.Namespace) -> Dict[str, Any]:
    """Events -> lines in-process: JSON and text for a few scalars, JSON and text for a whole
    struct sk_buff (this kernel's BTF if readable, else the mini kernel's). The reference is a
    dict per record plus json.dumps, the obvious way to write the JSON formatter."""
    import random

    from btf import BTF, BTFError
    from ksnoop.output.decode import build_decoder, record_fields
    from ksnoop.output.json_lines import JsonFormatter
    from ksnoop.output.text import TextFormatter
    from ksnoop.spec.resolve import resolve
    from ksnoop.spec.language import parse_spec
    from ksnoop.spec.targets import KernelBTF
    from tests.support import records

    rng = random.Random(0)

    def events(resolved: Any, count: int) -> List[Any]:
        decode = build_decoder(resolved.plan, 0, resolved.targets[0].btf)
        out = []
        for n in range(count):
            values = [rng.getrandbits(8 * c.size - 1) if c.size <= 8 else rng.randbytes(c.size)
                      for c in resolved.plan.probes[0].captures]
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
    struct_json_record = JsonFormatter(whole).record(0, record_fields(whole.plan, 0, whole.targets[0].btf),
                                                     decode_struct)
    kernel_skbs = _kernel_sk_buffs(kernel, 50) if struct_btf == "vmlinux" else None
    plan = scalars.plan

    def reference(event: Any) -> str:
        probe = plan.probes[event.probe]
        return json.dumps({"ts": event.ts_ns, "cpu": event.cpu, "pid": event.pid, "tid": event.tid,
                           "comm": event.comm, "func": probe.target, "probe": "entry",
                           "args": {c.label: v for c, v in zip(probe.captures, event.values)}})

    figures: Dict[str, List[float]] = {name: [] for name in (
        "json_scalars", "dict_json_dumps_scalars", "text_scalars", "text_color_scalars", "json_struct",
        "json_struct_record", "text_struct")}
    if kernel_skbs is not None:
        figures.update({"json_struct_kernel_bytes": [], "json_struct_record_kernel_bytes": [],
                        "text_struct_kernel_bytes": []})
    for _ in range(args.runs):
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
        "struct_kernel_bytes": ("tp:net_dev_queue(skb) records of UDP datagrams sent over loopback, read "
                                "from this kernel" if kernel_skbs is not None else "not measured: needs BPF"),
        **{f"{name}_lines_per_s": value for name, value in medians.items()},
        "json_scalars_vs_dict_json_dumps": round(
            medians["json_scalars"] / medians["dict_json_dumps_scalars"], 2),
        "target": "json_scalars >= 300000 lines/s",
    }


def _kernel_sk_buffs(kernel: Any, count: int) -> Optional[Tuple[List[bytes], List[Any], Any, Any, Any]]:
    """Real sk_buffs for the format benchmark: `count` records of tp:net_dev_queue(skb) for UDP
    datagrams this process sends over loopback, read from this kernel's ring; with their Events
    and the JSON (Event and record) and text formatters. None where BPF or the tracepoint is not
    to be had."""
    import socket

    from bpf.codegen import MapRole
    from bpf.features import check_privileges
    from bpf.maps import Map
    from bpf.ringbuf import RingBuffer
    from bpf.uapi import MapType
    from ksnoop.output.decode import build_decoder, record_fields
    from ksnoop.output.json_lines import JsonFormatter
    from ksnoop.output.text import TextFormatter
    from ksnoop.spec.resolve import resolve
    from ksnoop.spec.language import parse_spec

    if not check_privileges():
        return None
    resolved = resolve([parse_spec("tp:net_dev_queue(skb)")], kernel)
    captured: List[bytes] = []
    try:
        with contextlib.ExitStack() as stack:
            events = stack.enter_context(Map.ringbuf(resolved.plan.ringbuf_size, name="bench_events"))
            drops = stack.enter_context(Map(MapType.PERCPU_ARRAY, 4, 8, 1, name="bench_drops"))
            _attach_generated(stack, resolved.plan, {MapRole.EVENTS: events.fd, MapRole.DROPS: drops.fd})
            ring = stack.enter_context(RingBuffer(events.fd, resolved.plan.ringbuf_size))
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
    return (captured, [decode(r) for r in captured], JsonFormatter(resolved).format, record_line,
            TextFormatter(resolved, color=False).format)


# ---- kernel benchmarks: a getpid() loop driving tp_btf/sys_enter ------------------------------
# They need root and a kernel that attaches tp_btf programs. The event source is a tight loop
# of getpid() system calls (benchmarks/syscall_loop.c, compiled now with cc -O2), pinned to one
# CPU while the reader runs on another; its cost is the loop's own CPU time per iteration
# (CLOCK_THREAD_CPUTIME_ID), which a BPF program on sys_enter adds to and other tasks on a busy
# machine do not.

# getpid's number where no compiler can say (the number tp:sys_enter reports as `id`).
_GETPID_NR = {"x86_64": 39, "aarch64": 172, "riscv64": 172, "loongarch64": 172, "s390x": 20,
              "ppc64le": 20, "ppc64": 20}
# struct pt_regs members that hold syscall arguments and registers, to capture by name.
_REGS = {"x86_64": ("di", "si", "dx", "r10", "r8", "r9", "ax", "orig_ax", "cx"),
         "aarch64": tuple(f"regs[{n}]" for n in range(9))}
_OVERHEAD_RING = 1 << 25  # holds every record of one measurement even if the reader stalls
_CONSUME_FILL_RING = 1 << 25

# The fallback event source: the same protocol as syscall_loop.c, in Python.
_PY_GETPID_LOOP = r'''
import os, sys, time
def count(n):
    getpid = os.getpid
    c, t = time.thread_time_ns(), time.perf_counter_ns()
    for _ in range(n):
        getpid()
    return n, time.perf_counter_ns() - t, time.thread_time_ns() - c
def timed(seconds):
    getpid = os.getpid
    c, t = time.thread_time_ns(), time.perf_counter_ns()
    stop, done, now = t + int(seconds * 1e9), 0, t
    while now < stop:
        for _ in range(1024):
            getpid()
        done += 1024
        now = time.perf_counter_ns()
    return done, now - t, time.thread_time_ns() - c
def command(mode, arg):
    return count(int(arg)) if mode == "n" else timed(float(arg))
if sys.argv[1] == "serve":
    for line in sys.stdin:
        print(*command(*line.split()), flush=True)
else:
    print(*command(sys.argv[1], sys.argv[2]), flush=True)
'''


@contextlib.contextmanager
def _getpid_loop_program() -> Iterator[Tuple[List[str], int, str]]:
    """(argv of the getpid loop, SYS_getpid, a note on what the loop is), for the `with` block."""
    cc = shutil.which("cc") or shutil.which("gcc")
    with tempfile.TemporaryDirectory(prefix="ksnoop-bench-") as tmp:
        if cc:
            exe = os.path.join(tmp, "getpid_loop")
            subprocess.run([cc, "-O2", "-o", exe, os.path.join(ROOT, "benchmarks", "syscall_loop.c")],
                           check=True)
            nr = int(subprocess.run([exe, "nr"], check=True, capture_output=True, text=True).stdout)
            yield [exe], nr, f"C getpid loop ({os.path.basename(cc)} -O2)"
            return
        machine = platform.machine()
        if machine not in _GETPID_NR:
            raise SystemExit(f"no C compiler and no getpid number for {machine}")
        script = os.path.join(tmp, "getpid_loop.py")
        with open(script, "w") as f:
            f.write(_PY_GETPID_LOOP)
        yield ([sys.executable, script], _GETPID_NR[machine],
               "no C compiler: a Python os.getpid loop; it adds interpreter time to every iteration, "
               "so the per-event figures hold but slowdown ratios are diluted")


class _GetpidLoop:
    """The loop in serve mode: its pid is known before it starts, so programs can filter on it."""

    def __init__(self, argv: List[str], cpu: Optional[int]) -> None:
        self.proc = subprocess.Popen(argv + ["serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.pid = self.proc.pid
        if cpu is not None:
            os.sched_setaffinity(self.pid, {cpu})

    def __enter__(self) -> "_GetpidLoop":
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()

    def start(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def result(self) -> Tuple[int, int, int]:
        """(iterations, wall ns, CPU ns) of the command started last."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the getpid loop died (status {self.proc.wait()})")
        iterations, wall, cpu = (int(x) for x in line.split())
        return iterations, wall, cpu

    def count(self, iterations: int) -> Tuple[int, int, int]:
        self.start(f"n {iterations}")
        return self.result()


def _two_cpus() -> Tuple[Optional[int], Optional[int]]:
    """(the loop's CPU, the reader's CPU), or (None, None) with fewer than two CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) > 1 else (None, None)


def _pin_this_thread(cpu: Optional[int]) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # on Linux, the calling thread only


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


def _require_bpf() -> None:
    from bpf.features import check_privileges

    privileges = check_privileges()
    if not privileges:
        raise SystemExit(f"this benchmark loads BPF programs: {privileges.reason}")


def _attach_generated(stack: contextlib.ExitStack, plan: Any, fds: Dict[Any, int]) -> Any:
    """Generate probe 0 of `plan`, load and attach it; detached when `stack` closes. The Program."""
    from bpf.codegen import generate
    from bpf.loader import attach_tracing, load_program

    program = generate(plan, 0)
    loaded = stack.enter_context(load_program(program.bind_maps(fds), program.prog_type,
                                              program.expected_attach_type, program.attach_btf_id,
                                              name=program.name))
    stack.enter_context(attach_tracing(loaded))
    return program


def _smallest_program(events_fd: int, drops_fd: int, pid: int, size: int, wakeup_bytes: int,
                      policy: str = "threshold") -> List[Any]:
    """The least a tracer can do per event, hand-assembled: the pid filter, reserve `size`
    bytes, stamp ktime, submit; a full ring counts a drop. `policy` is the wake-up policy:
    "threshold" is the generated programs' (BPF_RB_NO_WAKEUP until `wakeup_bytes` are pending,
    then BPF_RB_FORCE_WAKEUP on every submit), "never" always BPF_RB_NO_WAKEUP (the reader
    polls), "crossing" forces a wake-up only on the submit that takes the backlog past
    `wakeup_bytes` (the first record's worth of bytes above it)."""
    from bpf import insn as I
    from bpf import uapi
    from bpf.uapi import Helper

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


def _drops(drops: Any) -> int:
    return sum(int.from_bytes(v[:8], sys.byteorder) for v in drops.lookup_percpu(b"\0\0\0\0") or [])


class _Drainer:
    """A thread emptying the ring as the session's reader does (poll, drain), records untouched."""

    def __init__(self, ring: Any, cpu: Optional[int]) -> None:
        import threading

        self.ring, self.cpu, self.records = ring, cpu, 0
        self.paused = False  # while True the ring fills: the reader has fallen behind
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        _pin_this_thread(self.cpu)
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


def bench_overhead(args: argparse.Namespace) -> Dict[str, Any]:
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
    import dataclasses

    from bpf.codegen import MapRole
    from bpf.loader import attach_tracing, load_program
    from bpf.maps import Map
    from bpf.plan import Filters, RecordLayout
    from bpf.ringbuf import RingBuffer
    from bpf.uapi import AttachType, MapType, ProgType
    from ksnoop.spec.resolve import resolve
    from ksnoop.spec.language import parse_spec
    from ksnoop.spec.targets import KernelBTF

    _require_bpf()
    iterations = 200_000
    regs = _REGS.get(platform.machine())
    if regs is None:
        raise SystemExit(f"no pt_regs member names for {platform.machine()} in benchmarks/run.py")
    kernel = KernelBTF.load()
    loop_cpu, reader_cpu = _two_cpus()
    links_before = _bpf_links()
    quiet = _OVERHEAD_RING  # a threshold the backlog never reaches
    with contextlib.ExitStack() as outer:
        argv, _, note = outer.enter_context(_getpid_loop_program())
        loop = outer.enter_context(_GetpidLoop(argv, loop_cpu))
        filters = Filters(pid=loop.pid)

        def plan(spec: str, wakeup: int = quiet) -> Any:
            resolved = resolve([parse_spec(spec)], kernel, filters, ringbuf_size=_OVERHEAD_RING).plan
            return dataclasses.replace(resolved, wakeup_bytes=wakeup)

        def header_only(wakeup: int) -> Any:
            with_id = plan("tp:sys_enter(id)", wakeup)
            return dataclasses.replace(
                with_id, probes=(dataclasses.replace(with_id.probes[0], captures=(), tests=()),))

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
                "tp:sys_enter(" + ", ".join(f"regs->{r}" for r in regs[:n]) + ")")
        configs.update({
            "smallest_hand_64k_wakeup": ("threshold", shipped, False),
            "generated_header_only_64k_wakeup": header_only(shipped),
            "smallest_hand_64k_wake_on_crossing": ("crossing", shipped, False),
            "smallest_hand_no_query": ("never", quiet, False),
            # The reader paused for the measurement, as when it formats slower than events come:
            # the backlog stays past the threshold.
            "smallest_hand_64k_wakeup_reader_behind": ("threshold", shipped, True),
            "smallest_hand_64k_wake_on_crossing_reader_behind": ("crossing", shipped, True),
        })
        sizes = {name: header_size if not hasattr(p, "probes") else
                 RecordLayout.of(p.probes[0], p.with_comm).size for name, p in configs.items()}
        events = outer.enter_context(Map.ringbuf(_OVERHEAD_RING, name="bench_events"))
        drops = outer.enter_context(Map(MapType.PERCPU_ARRAY, 4, 8, 1, name="bench_drops"))
        fds = {MapRole.EVENTS: events.fd, MapRole.DROPS: drops.fd}
        ring = outer.enter_context(RingBuffer(events.fd, _OVERHEAD_RING))
        drainer = _Drainer(ring, reader_cpu)
        outer.callback(drainer.stop)

        cpu_ns: Dict[str, List[float]] = {name: [] for name in configs}
        wall_ns: Dict[str, List[float]] = {name: [] for name in configs}
        lost = {name: 0 for name in configs}
        received = {name: 0 for name in configs}
        names = list(configs)
        for round_ in range(args.runs + 1):  # round 0 warms up and is not counted
            order = names[round_ % len(names):] + names[: round_ % len(names)]
            for name in order:
                p = configs[name]
                with contextlib.ExitStack() as stack:
                    behind = isinstance(p, tuple) and p[2]
                    if isinstance(p, tuple):
                        policy, threshold, _ = p
                        hand = _smallest_program(events.fd, drops.fd, loop.pid, header_size, threshold, policy)
                        loaded = stack.enter_context(load_program(
                            hand, ProgType.TRACING, AttachType.TRACE_RAW_TP, attach_btf_id, name="bench_smallest"))
                        stack.enter_context(attach_tracing(loaded))
                    elif p is not None:
                        _attach_generated(stack, p, fds)
                    drainer.wait_empty()
                    drops_before, records_before = _drops(drops), drainer.records
                    drainer.paused = behind
                    done, wall, cpu = loop.count(iterations)
                    drainer.paused = False
                # detached
                drainer.wait_empty()
                time.sleep(0.015)  # the drainer's last poll returns
                if round_:
                    cpu_ns[name].append(cpu / done)
                    wall_ns[name].append(wall / done)
                    lost[name] += _drops(drops) - drops_before
                    received[name] += drainer.records - records_before
    base = cpu_ns["no_program"]
    per_event = {name: statistics.median(v - b for v, b in zip(values, base))
                 for name, values in cpu_ns.items() if name != "no_program"}
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
            per_event["generated_header_only_64k_wakeup"] / per_event["smallest_hand_64k_wake_on_crossing"], 2),
        "header_only_vs_smallest_64k_wakeup": round(
            per_event["generated_header_only_64k_wakeup"] / per_event["smallest_hand_64k_wakeup"], 2),
        "per_probe_read_ns_slope": round(_slope(probe_reads), 1),
        "register_capture_ns": round(per_event["generated_1_register"] - header, 1),
        "wakeup_policy_cost_ns": round(per_event["smallest_hand_64k_wakeup"] - smallest, 1),
        "wakeup_policy_cost_reader_behind_ns": round(per_event["smallest_hand_64k_wakeup_reader_behind"] - smallest, 1),
        "wake_on_crossing_cost_reader_behind_ns": round(
            per_event["smallest_hand_64k_wake_on_crossing_reader_behind"] - smallest, 1),
        "records_lost": lost,
        "records_received_per_iteration": {n: round(received[n] / (args.runs * iterations), 4)
                                           for n in configs},
        "other_bpf_links_at_start": links_before,
        "target": "header_only_vs_smallest <= 1.2; each captured value about one probe-read helper call",
    }


def bench_consume(args: argparse.Namespace) -> Dict[str, Any]:
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
    import dataclasses
    import mmap
    import select
    import struct

    from bpf.codegen import MapRole
    from bpf.maps import Map
    from bpf.plan import HEADER, COMM_SIZE, Filters, RecordLayout
    from bpf.ringbuf import RingBuffer
    from bpf.uapi import MapType
    from ksnoop.output.decode import build_decoder
    from ksnoop.spec.resolve import resolve
    from ksnoop.spec.language import parse_spec
    from ksnoop.spec.targets import KernelBTF

    _require_bpf()
    regs = _REGS.get(platform.machine())
    if regs is None:
        raise SystemExit(f"no pt_regs member names for {platform.machine()} in benchmarks/run.py")
    specs = {"small": "tp:sys_enter(id)",
             "large": "tp:sys_enter(regs, id, " + ", ".join(f"regs->{r}" for r in regs[:8]) + ")"}
    live_ring = 1024 * mmap.PAGESIZE
    live_seconds = 1.0
    kernel = KernelBTF.load()
    loop_cpu, reader_cpu = _two_cpus()
    _pin_this_thread(reader_cpu)
    byteorder = sys.byteorder
    results: Dict[str, Any] = {}
    with contextlib.ExitStack() as outer:
        argv, _, note = outer.enter_context(_getpid_loop_program())
        loop = outer.enter_context(_GetpidLoop(argv, loop_cpu))
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

            callbacks = {"raw_drain": raw, "struct_unpack": unpacked, "decoded": decoded,
                         "decoded_session_dispatch": as_session}
            rates: Dict[str, List[float]] = {name: [] for name in callbacks}
            cpu_rates: Dict[str, List[float]] = {name: [] for name in callbacks}
            fill = int(0.9 * _CONSUME_FILL_RING / (layout.size + 8))
            with contextlib.ExitStack() as stack:
                events = stack.enter_context(Map.ringbuf(_CONSUME_FILL_RING, name="bench_events"))
                drops = stack.enter_context(Map(MapType.PERCPU_ARRAY, 4, 8, 1, name="bench_drops"))
                _attach_generated(stack, resolved.plan, {MapRole.EVENTS: events.fd, MapRole.DROPS: drops.fd})
                ring = stack.enter_context(RingBuffer(events.fd, _CONSUME_FILL_RING))
                names = list(callbacks)
                counts = []
                for round_ in range(args.runs + 1):
                    for name in names[round_ % len(names):] + names[: round_ % len(names)]:
                        loop.count(fill)
                        start, cpu_start = time.perf_counter(), time.thread_time()
                        count = ring.drain(callbacks[name])
                        elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu_start
                        if round_:
                            rates[name].append(count / elapsed)
                            cpu_rates[name].append(count / cpu)
                            counts.append(count)
                prefill_lost = _drops(drops)
            # live: the session's ring size; the reader polls and drains as the session's does. With
            # the shipped wake-up threshold, and with it out of reach (programs never wake the reader).
            live_plans = {"shipped_wakeup": dataclasses.replace(resolved.plan, ringbuf_size=live_ring),
                          "no_wakeup": dataclasses.replace(resolved.plan, ringbuf_size=live_ring,
                                                           wakeup_bytes=live_ring)}
            live_configs = [(policy, name) for policy in live_plans for name in ("decoded", "raw_drain")]
            live: Dict[Tuple[str, str], Dict[str, List[float]]] = {
                c: {"per_s": [], "lost_fraction": [], "producer_per_s": [], "lost": []} for c in live_configs}
            assert loop.proc.stdout is not None
            loop_out = loop.proc.stdout
            for round_ in range(args.runs + 1):
                for policy, name in live_configs[round_ % 4:] + live_configs[: round_ % 4]:
                    callback = callbacks[name]
                    with contextlib.ExitStack() as stack:
                        events = stack.enter_context(Map.ringbuf(live_ring, name="bench_events"))
                        drops = stack.enter_context(Map(MapType.PERCPU_ARRAY, 4, 8, 1, name="bench_drops"))
                        _attach_generated(stack, live_plans[policy], {MapRole.EVENTS: events.fd,
                                                                      MapRole.DROPS: drops.fd})
                        ring = stack.enter_context(RingBuffer(events.fd, live_ring))
                        ring.drain(raw)
                        loop.start(f"t {live_seconds}")
                        start = time.perf_counter()
                        count = 0
                        while not select.select([loop_out], [], [], 0)[0]:
                            count += ring.poll(callback, 0.05)
                        produced, loop_wall, _ = loop.result()
                        count += ring.drain(callback)
                        elapsed = time.perf_counter() - start
                        lost = _drops(drops)
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
                } for (policy, name), f in live.items()}
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


# `ksnoop` whose programs never wake the reader (wake-up threshold out of reach; it polls every
# 50 ms and drains while records are there): what the reader can do when the producer is not
# slowed by wake-ups. For diagnosis only: the trace benchmark reports it beside the real thing.
_KSNOOP_NEVER_WAKE = (
    "import sys, ksnoop.spec.resolve as r; from bpf.plan import Plan; "
    "r.Plan = lambda **kw: Plan(wakeup_bytes=0x7FFFFFFF, **kw); "
    "from ksnoop.cli import run; sys.argv[0] = 'ksnoop'; run()")


def bench_trace(args: argparse.Namespace) -> Dict[str, Any]:
    """`python -m ksnoop trace -p PID --duration D SPEC` as a whole process, stdout to /dev/null,
    while the getpid loop (pid PID) runs flat out on the other CPU: records written per second,
    records lost, the loop's slowdown against an untraced run beside it, and ksnoop's CPU time.
    The loop starts once ksnoop holds its BPF link and runs for the trace's duration, so the
    records/s is the reader's rate whenever it cannot keep up (records are then lost)."""
    from tests.vm.trace_driver import links_held  # the benchmark waits until ksnoop holds its links

    import re

    _require_bpf()
    regs = _REGS.get(platform.machine())
    if regs is None:
        raise SystemExit(f"no pt_regs member names for {platform.machine()} in benchmarks/run.py")
    duration = 2.0
    loop_cpu, reader_cpu = _two_cpus()
    summary = re.compile(r"ksnoop: (\d+) records(?:, (\d+) lost)?")
    with contextlib.ExitStack() as outer:
        argv, nr, note = outer.enter_context(_getpid_loop_program())
        loop = outer.enter_context(_GetpidLoop(argv, loop_cpu))
        scalar = f"tp:sys_enter(id == {nr})"
        scalars3 = f"tp:sys_enter(id == {nr}, regs->{regs[0]}, regs->{regs[1]})"
        whole = f"tp:sys_enter(regs, id == {nr})"
        configs: Dict[str, Optional[Tuple[str, str]]] = {
            "untraced": None,
            "startup": ("json", scalar),  # --duration 0 with the loop idle: ksnoop's fixed CPU cost
            "json_scalar": ("json", scalar),
            "text_scalar": ("text", scalar),
            "json_3_scalars": ("json", scalars3),
            "json_scalar_never_wake": ("json", scalar),
            "json_scalar_pythonunbuffered": ("json", scalar),
            "json_struct": ("json", whole),
            "text_struct": ("text", whole),
        }
        figures: Dict[str, Dict[str, List[float]]] = {
            name: {"records_per_s": [], "lost": [], "lost_fraction": [], "loop_cpu_ns": [],
                   "loop_wall_ns": [], "ksnoop_cpu_s": [], "records": []} for name in configs}
        names = list(configs)
        for round_ in range(args.runs + 1):  # round 0 warms the page cache and is not counted
            for name in names[round_ % len(names):] + names[: round_ % len(names)]:
                config = configs[name]
                f = figures[name]
                if config is None:
                    loop.start(f"t {duration}")
                    done, wall, cpu = loop.result()
                    if round_:
                        f["loop_cpu_ns"].append(cpu / done)
                        f["loop_wall_ns"].append(wall / done)
                    continue
                output, spec = config
                run_for = 0.0 if name == "startup" else duration + 0.1
                entry = ["-c", _KSNOOP_NEVER_WAKE] if name.endswith("never_wake") else ["-m", "ksnoop"]
                argv_ksnoop = [sys.executable, *entry, "trace", "-o", output, spec, "-p", str(loop.pid),
                               "--duration", str(run_for)]
                # PYTHONUNBUFFERED makes every write() of stdout a system call: as the user's
                # environment says, but the benchmark decides, and measures it apart.
                env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
                if name.endswith("pythonunbuffered"):
                    env["PYTHONUNBUFFERED"] = "1"
                with tempfile.TemporaryFile() as err:
                    proc = subprocess.Popen(argv_ksnoop, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT, env=env)
                    if reader_cpu is not None:
                        os.sched_setaffinity(proc.pid, {reader_cpu})
                    deadline = time.monotonic() + 60
                    while name != "startup" and not links_held(proc.pid):
                        if proc.poll() is not None or time.monotonic() > deadline:
                            proc.kill()
                            proc.wait()
                            err.seek(0)
                            raise SystemExit(f"ksnoop did not attach: {' '.join(argv_ksnoop)}\n"
                                             f"{err.read().decode(errors='replace')}")
                        time.sleep(0.005)
                    start = time.perf_counter()
                    if name != "startup":
                        loop.start(f"t {duration}")
                        done, wall, cpu = loop.result()
                    _, status, usage = os.wait4(proc.pid, 0)
                    elapsed = time.perf_counter() - start
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    err.seek(0)
                    stderr = err.read().decode(errors="replace")
                match = summary.search(stderr)
                if proc.returncode != 0 or match is None:
                    raise SystemExit(f"ksnoop failed ({proc.returncode}): {' '.join(argv_ksnoop)}\n{stderr}")
                records, lost = int(match.group(1)), int(match.group(2) or 0)
                if round_ and name == "startup":
                    f["ksnoop_cpu_s"].append(usage.ru_utime + usage.ru_stime)
                elif round_:
                    f["records"].append(records)
                    f["records_per_s"].append(records / elapsed)
                    f["lost"].append(lost)
                    f["lost_fraction"].append(lost / max(records + lost, 1))
                    f["loop_cpu_ns"].append(cpu / done)
                    f["loop_wall_ns"].append(wall / done)
                    f["ksnoop_cpu_s"].append(usage.ru_utime + usage.ru_stime)
    untraced_cpu = statistics.median(figures["untraced"]["loop_cpu_ns"])
    untraced_wall = statistics.median(figures["untraced"]["loop_wall_ns"])
    startup_cpu = statistics.median(figures["startup"]["ksnoop_cpu_s"])
    results: Dict[str, Any] = {}
    for name, config in configs.items():
        if config is None or name == "startup":
            continue
        f = figures[name]
        results[name] = {
            "spec": config[1],
            "records_per_s": round(statistics.median(f["records_per_s"])),
            "records_median": round(statistics.median(f["records"])),
            "lost_median": round(statistics.median(f["lost"])),
            "lost_fraction": round(statistics.median(f["lost_fraction"]), 3),
            "loop_slowdown_cpu": round(statistics.median(f["loop_cpu_ns"]) / untraced_cpu, 2),
            "loop_slowdown_wall": round(statistics.median(f["loop_wall_ns"]) / untraced_wall, 2),
            "loop_ns_per_getpid_wall": round(statistics.median(f["loop_wall_ns"]), 1),
            "ksnoop_cpu_s": round(statistics.median(f["ksnoop_cpu_s"]), 2),
            "records_per_reading_cpu_s": round(statistics.median(
                r / max(c - startup_cpu, 1e-3) for r, c in zip(f["records"], f["ksnoop_cpu_s"]))),
        }
    return {
        "benchmark": "trace",
        "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
        "runs": args.runs,
        "event_source": f"{note}, pinned to CPU {loop_cpu}; ksnoop pinned to CPU {reader_cpu}",
        "command": f"{sys.executable} -m ksnoop trace -o json|text SPEC -p PID --duration {duration + 0.1}",
        "duration_s": duration,
        "records_per_s": "records ksnoop reported / (loop start .. ksnoop exit)",
        "records_per_reading_cpu_s": "records / (ksnoop's CPU time - that of a --duration 0 run)",
        "ksnoop_startup_cpu_s": round(startup_cpu, 3),
        "untraced_loop_ns_per_getpid": {"cpu": round(untraced_cpu, 1), "wall": round(untraced_wall, 1)},
        **results,
        "target": "json_scalar records_per_s >= 300000",
    }


def bench_vm(args: argparse.Namespace) -> Dict[str, Any]:
    """Per-call cost of close_fd traced by ksnoop and by bpftrace, in the qemu guest: vm_percall.py with
    its defaults (run it directly for its other options). Its table goes to stderr."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import vm_percall

    result = vm_percall.run_benchmark(rounds=args.runs)
    print(vm_percall.human_summary(result), file=sys.stderr)
    return result


# ---- dump: every task's open files, with an iterator and from /proc ------------------------------------
DUMP_SPEC = "task_file(task->tgid, fd, file->f_path.dentry->d_name.name)"
DUMP_SCALES = ((100, 100), (1000, 100), (1000, 1000))  # (tasks, files each)


class _FileForest:
    """`tasks` forked processes, each holding the same `files` files of a temporary directory open
    (distinct open files, distinct fds, shared dentries), until close(). Each child raises its soft
    RLIMIT_NOFILE as far as its hard limit allows; SystemExit if that or memory falls short."""

    def __init__(self, tasks: int, files: int) -> None:
        import resource

        self.directory = tempfile.mkdtemp(prefix="ksnoop-bench-files-")
        self.paths = [os.path.join(self.directory, f"f{i:05d}") for i in range(files)]
        for path in self.paths:
            with open(path, "w"):
                pass
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = files + 64
        if hard != resource.RLIM_INFINITY and hard < wanted:
            raise SystemExit(f"{files} open files per task need RLIMIT_NOFILE {wanted}; the hard limit is {hard}")
        self.pids: List[int] = []
        ready_r, ready_w = os.pipe()
        self._hold_r, self._hold_w = os.pipe()
        try:
            for _ in range(tasks):
                pid = os.fork()
                if pid == 0:  # the child: open, say so, wait for the parent to let go
                    try:
                        os.close(ready_r)
                        os.close(self._hold_w)
                        if soft != resource.RLIM_INFINITY and soft < wanted:
                            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
                        for path in self.paths:
                            os.open(path, os.O_RDONLY)
                        os.write(ready_w, b"r")
                        os.read(self._hold_r, 1)
                    finally:
                        os._exit(0)
                self.pids.append(pid)
            os.close(ready_w)
            got = 0
            while got < tasks:
                chunk = os.read(ready_r, tasks - got)
                if not chunk:
                    raise SystemExit(f"only {got} of {tasks} tasks opened their {files} files")
                got += len(chunk)
        except BaseException:
            self.close()
            raise
        finally:
            os.close(ready_r)

    def close(self) -> None:
        os.close(self._hold_w)  # every child's read returns: they exit
        for pid in self.pids:
            os.waitpid(pid, 0)
        os.close(self._hold_r)
        shutil.rmtree(self.directory, ignore_errors=True)


def _proc_walk() -> int:
    """Every (pid, fd, path) from /proc/*/fd with os.readlink: the reference. Returns how many."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        base = f"/proc/{pid}/fd/"
        try:
            fds = os.listdir(base)
        except OSError:
            continue
        for fd in fds:
            try:
                found.append((pid, fd, os.readlink(base + fd)))
            except OSError:
                pass
    return len(found)


def bench_dump(args: argparse.Namespace) -> Dict[str, Any]:
    """Every task's open files as (pid, fd, name), for N forked tasks holding M files each: `ksnoop
    dump` of DUMP_SPEC against a Python walk of /proc/*/fd with os.readlink, alternating, medians.
    In-process for both (ksnoop.run.dump.run, JSON lines to /dev/null), with ksnoop's time in read()
    (the kernel walking and running the program per file) apart from the rest (splitting, decoding,
    formatting, writing); and `python -m ksnoop dump` as a whole process."""

    from ksnoop.run.dump import DumpOptions, run as run_dump

    _require_bpf()
    options = DumpOptions(specs=(DUMP_SPEC,), output="json")
    scales = DUMP_SCALES if args.scales is None else tuple(
        tuple(int(n) for n in scale.split(",")) for scale in args.scales)
    results = []
    for tasks, files in scales:
        figures: Dict[str, List[float]] = {name: [] for name in (
            "ksnoop_s", "ksnoop_prepare_s", "ksnoop_walk_s", "ksnoop_load_s", "ksnoop_read_s", "ksnoop_rest_s",
            "proc_walk_s",
            "ksnoop_process_s", "records", "proc_entries")}
        with contextlib.ExitStack() as stack:
            forest = _FileForest(tasks, files)
            stack.callback(forest.close)
            devnull = stack.enter_context(open(os.devnull, "w"))
            for round_ in range(args.runs + 1):  # round 0 warms caches and is not counted
                order = ["ksnoop", "proc", "process"]
                order = order[round_ % 3:] + order[: round_ % 3]
                for what in order:
                    if what == "ksnoop":
                        start = time.perf_counter()
                        summary = run_dump(options, devnull, io.StringIO())
                        elapsed = time.perf_counter() - start
                        if round_:
                            figures["ksnoop_s"].append(elapsed)
                            figures["ksnoop_prepare_s"].append(elapsed - summary.total_s)
                            figures["ksnoop_walk_s"].append(summary.total_s)
                            figures["ksnoop_load_s"].append(summary.load_s)
                            figures["ksnoop_read_s"].append(summary.read_s)
                            figures["ksnoop_rest_s"].append(summary.total_s - summary.load_s - summary.read_s)
                            figures["records"].append(summary.records)
                    elif what == "proc":
                        start = time.perf_counter()
                        entries = _proc_walk()
                        elapsed = time.perf_counter() - start
                        if round_:
                            figures["proc_walk_s"].append(elapsed)
                            figures["proc_entries"].append(entries)
                    else:
                        seconds, _rss = run_child([sys.executable, "-m", "ksnoop", "dump", "-o", "json", DUMP_SPEC])
                        if round_:
                            figures["ksnoop_process_s"].append(seconds)
        median = {name: statistics.median(values) for name, values in figures.items()}
        if median["records"] < tasks * files:
            raise SystemExit(f"ksnoop dump saw {median['records']} files; the forest alone holds {tasks * files}")
        results.append({
            "tasks": tasks, "files_per_task": files,
            "records_median": round(median["records"]), "proc_entries_median": round(median["proc_entries"]),
            "ksnoop_in_process_s": round(median["ksnoop_s"], 3),
            "ksnoop_prepare_s": round(median["ksnoop_prepare_s"], 3),
            "ksnoop_load_link_s": round(median["ksnoop_load_s"], 3),
            "ksnoop_kernel_read_s": round(median["ksnoop_read_s"], 3),
            "ksnoop_decode_format_write_s": round(median["ksnoop_rest_s"], 3),
            "proc_walk_s": round(median["proc_walk_s"], 3),
            "speedup_vs_proc_walk": round(median["proc_walk_s"] / median["ksnoop_s"], 2),
            # Without the one-off start (reading BTF, resolving, generating): load, walk, decode, write.
            "ksnoop_walk_s": round(median["ksnoop_walk_s"], 3),
            "walk_speedup_vs_proc_walk": round(median["proc_walk_s"] / median["ksnoop_walk_s"], 2),
            "kernel_read_speedup_vs_proc_walk": round(median["proc_walk_s"] / median["ksnoop_read_s"], 2),
            "ksnoop_whole_process_s": round(median["ksnoop_process_s"], 3),
            "kernel_files_per_s": round(median["records"] / median["ksnoop_read_s"]),
            "ksnoop_records_per_s": round(median["records"] / median["ksnoop_s"]),
        })
    return {
        "benchmark": "dump",
        "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
        "runs": args.runs,
        "spec": DUMP_SPEC,
        "reference": "os.listdir('/proc'), then os.listdir and os.readlink of /proc/PID/fd/*, in-process",
        "ksnoop_in_process": "ksnoop.run.dump.run, -o json to /dev/null = prepare (BTF, resolve, generate) + load_link "
                             "+ kernel_read (time in read() of the iterator) + decode_format_write",
        "scales": results,
    }


def bench_dump_struct(args: argparse.Namespace) -> Dict[str, Any]:
    """`ksnoop dump 'task_file(file)'`: a whole struct file per open file of 100 tasks holding 100 files
    each (and every other task's), text and JSON written to a file, in-process (ksnoop.run.dump.run),
    alternating, medians. records_per_s counts what comes after the program is linked: the kernel's
    walk, splitting, decoding, formatting and writing."""
    from ksnoop.run.dump import DumpOptions, run as run_dump

    _require_bpf()
    figures: Dict[str, List[float]] = {"text": [], "json": []}
    records: Dict[str, List[int]] = {"text": [], "json": []}
    with contextlib.ExitStack() as stack:
        forest = _FileForest(100, 100)
        stack.callback(forest.close)
        out = stack.enter_context(tempfile.TemporaryFile("w+"))
        for round_ in range(args.runs + 1):  # round 0 warms caches and is not counted
            for output in ("text", "json") if round_ % 2 else ("json", "text"):
                out.seek(0)
                out.truncate()
                summary = run_dump(DumpOptions(specs=("task_file(file)",), output=output), out, io.StringIO())
                if round_:
                    figures[output].append(summary.records / (summary.total_s - summary.load_s))
                    records[output].append(summary.records)
    return {
        "benchmark": "dump_struct",
        "runs": args.runs,
        "spec": "task_file(file): a whole struct file per open file",
        "records_median": round(statistics.median(records["json"])),
        **{f"{output}_records_per_s": round(statistics.median(values)) for output, values in figures.items()},
        "target": "text >= 20000, json >= 150000 records/s (issue 13)",
    }


BENCHMARKS: Dict[str, Callable[[argparse.Namespace], Dict[str, Any]]] = {
    "info": bench_info,
    "format": bench_format,
    "overhead": bench_overhead,
    "consume": bench_consume,
    "trace": bench_trace,
    "vm": bench_vm,
    "dump": bench_dump,
    "dump_struct": bench_dump_struct,
}

# The kernel benchmarks take seconds per round, the VM's a minute and a half.
DEFAULT_RUNS = {"overhead": 11, "consume": 5, "trace": 5, "vm": 4, "dump": 5, "dump_struct": 5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=sorted(BENCHMARKS))
    parser.add_argument("--runs", type=int, default=None,
                        help="rounds to take medians over (default 21; overhead 11, consume 5, trace 5, vm 4, "
                        "dump 5: they take seconds per round)")
    parser.add_argument("--scale", dest="scales", action="append", metavar="TASKS,FILES",
                        help="dump: tasks and open files per task (default 100,100 1000,100 1000,1000); repeatable")
    args = parser.parse_args()
    if args.runs is None:
        args.runs = DEFAULT_RUNS.get(args.name, 21)
    sys.path.insert(0, ROOT)
    print(json.dumps(BENCHMARKS[args.name](args)))


if __name__ == "__main__":
    main()
