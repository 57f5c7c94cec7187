# SPDX-License-Identifier: GPL-2.0-only
"""What more than one benchmark uses: timing a child process, the getpid() loop that drives
tp_btf/sys_enter for the kernel benchmarks (with CPU pinning), loading and attaching a generated
program, and where figures were measured (`environment`). Imports only the standard library until
a function needs more: vm_percall.py imports it in the guest too.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

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


# ---- where the figures were measured -----------------------------------------------------------------


def environment() -> Dict[str, Any]:
    """Where figures are measured, for every benchmark's JSON: machine() and the commit()."""
    return {**machine(), "commit": commit()}


def python_speed_ns() -> float:
    """This machine's speed for Python now: ns per "%d" of a 64-bit integer, the costliest step of
    a JSON line, median of 7 rounds. The 2-core machine the figures come from runs 15-40% faster
    or slower from one hour to the next, so every benchmark reports this before and after its
    run: two figures measured at different times compare only once divided by it."""
    values = [0xFFFF_8880_0000_0000 + 4099 * n for n in range(2000)]
    rounds = []
    for _ in range(7):
        start = time.perf_counter()
        for value in values:
            "%d" % value
        rounds.append((time.perf_counter() - start) / len(values) * 1e9)
    return round(statistics.median(rounds), 1)


def machine() -> Dict[str, Any]:
    """This machine: kernel release, CPU model and count (/proc/cpuinfo), Python version."""
    models: List[str] = []
    cpus = 0
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "processor":
                    cpus += 1
                elif key.strip() == "model name":
                    models.append(value.strip())
    except OSError:
        pass
    # Some architectures (arm64) give no model name; a hybrid CPU gives more than one.
    model = " / ".join(dict.fromkeys(models)) or f"unknown ({platform.machine()})"
    return {
        "kernel": os.uname().release,
        "cpu_model": model,
        "cpus": cpus or os.cpu_count(),
        "python": platform.python_version(),
    }


def commit() -> str:
    """The checkout's commit (`git rev-parse --short HEAD`), "-dirty" when `git status --porcelain`
    lists anything; "unknown" outside git (or without it)."""

    def git(*argv: str) -> str:
        # --no-optional-locks: status must not take index.lock from under someone committing.
        return subprocess.run(
            ["git", "--no-optional-locks", *argv], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout

    try:
        head = git("rev-parse", "--short", "HEAD").strip()
        dirty = bool(git("status", "--porcelain").strip())
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


# ---- the kernel benchmarks' event source: a getpid() loop driving tp_btf/sys_enter -----------------
# overhead, consume and trace need root and a kernel that attaches tp_btf programs. The event
# source is a tight loop of getpid() system calls (benchmarks/syscall_loop.c, compiled now with
# cc -O2), pinned to one CPU while the reader runs on another; its cost is the loop's own CPU time
# per iteration (CLOCK_THREAD_CPUTIME_ID), which a BPF program on sys_enter adds to and other
# tasks on a busy machine do not.

# getpid's number where no compiler can say (the number tp:sys_enter reports as `id`).
_GETPID_NR = {"x86_64": 39, "aarch64": 172, "riscv64": 172, "loongarch64": 172, "s390x": 20, "ppc64le": 20, "ppc64": 20}
# struct pt_regs members that hold syscall arguments and registers, to capture by name.
_REGS = {
    "x86_64": ("di", "si", "dx", "r10", "r8", "r9", "ax", "orig_ax", "cx"),
    "aarch64": tuple(f"regs[{n}]" for n in range(9)),
}

# The fallback event source: the same protocol as syscall_loop.c, in Python.
_PY_GETPID_LOOP = r"""
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
"""


@contextlib.contextmanager
def getpid_loop_program() -> Iterator[Tuple[List[str], int, str]]:
    """(argv of the getpid loop, SYS_getpid, a note on what the loop is), for the `with` block."""
    cc = shutil.which("cc") or shutil.which("gcc")
    with tempfile.TemporaryDirectory(prefix="ksnoop-bench-") as tmp:
        if cc:
            exe = os.path.join(tmp, "getpid_loop")
            subprocess.run([cc, "-O2", "-o", exe, os.path.join(ROOT, "benchmarks", "syscall_loop.c")], check=True)
            nr = int(subprocess.run([exe, "nr"], check=True, capture_output=True, text=True).stdout)
            yield [exe], nr, f"C getpid loop ({os.path.basename(cc)} -O2)"
            return
        machine = platform.machine()
        if machine not in _GETPID_NR:
            raise SystemExit(f"no C compiler and no getpid number for {machine}")
        script = os.path.join(tmp, "getpid_loop.py")
        with open(script, "w") as f:
            f.write(_PY_GETPID_LOOP)
        yield (
            [sys.executable, script],
            _GETPID_NR[machine],
            "no C compiler: a Python os.getpid loop; it adds interpreter time to every iteration, "
            "so the per-event figures hold but slowdown ratios are diluted",
        )


class GetpidLoop:
    """The loop in serve mode: its pid is known before it starts, so programs can filter on it."""

    def __init__(self, argv: List[str], cpu: Optional[int]) -> None:
        self.proc = subprocess.Popen(
            argv + ["serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.pid = self.proc.pid
        if cpu is not None:
            os.sched_setaffinity(self.pid, {cpu})

    def __enter__(self) -> "GetpidLoop":
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


def two_cpus() -> Tuple[Optional[int], Optional[int]]:
    """(the loop's CPU, the reader's CPU), or (None, None) with fewer than two CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) > 1 else (None, None)


def pin_this_thread(cpu: Optional[int]) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # on Linux, the calling thread only


def pt_regs_members() -> Tuple[str, ...]:
    """Names of struct pt_regs members holding syscall arguments and registers on this machine,
    to capture by name; SystemExit where they are not known."""
    regs = _REGS.get(platform.machine())
    if regs is None:
        raise SystemExit(f"no pt_regs member names for {platform.machine()} in benchmarks/common.py")
    return regs


# ---- BPF ------------------------------------------------------------------------------------------


def require_bpf() -> None:
    from bpf.features import check_privileges

    privileges = check_privileges()
    if not privileges:
        raise SystemExit(f"this benchmark loads BPF programs: {privileges.reason}")


def attach_generated(stack: contextlib.ExitStack, plan: Any) -> Any:
    """Generate probe 0 of `plan`, create the maps its Program declares (bpf.maps.create_maps: the
    ring of plan.ringbuf_size bytes, the drop counter), load and attach it; all closed with `stack`.
    The ProgramMaps: `.shared(MapRole.EVENTS)` is the ring to read."""
    from bpf.codegen import generate
    from bpf.maps import create_maps

    program = generate(plan, 0)
    maps = create_maps(stack, [program])
    load_and_attach(stack, program, maps.fds(0))
    return maps


def load_generated(stack: contextlib.ExitStack, program: Any, fds: Dict[Any, int]) -> Any:
    """Load a generated `program` with its maps' `fds` (role -> fd); unloaded when `stack` closes.
    OSError as the kernel says."""
    from bpf.loader import load_program

    return stack.enter_context(
        load_program(
            program.bind_maps(fds),
            program.prog_type,
            program.expected_attach_type,
            program.attach_btf_id,
            name=program.name,
        )
    )


def load_and_attach(stack: contextlib.ExitStack, program: Any, fds: Dict[Any, int]) -> None:
    """Load a generated `program` with its maps' `fds` (role -> fd) and attach it; detached and
    unloaded when `stack` closes."""
    from bpf.loader import attach_tracing

    stack.enter_context(attach_tracing(load_generated(stack, program, fds)))


def count_drops(drops: Any) -> int:
    """Records lost to a full ring so far: the drop counter map (one u64 per CPU), summed."""
    return sum(int.from_bytes(v[:8], sys.byteorder) for v in drops.lookup_percpu(b"\0\0\0\0") or [])
