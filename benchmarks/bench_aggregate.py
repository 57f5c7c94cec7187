# SPDX-License-Identifier: GPL-2.0-only
"""aggregate: what counting calls per key in the kernel adds per call to a getpid() loop, with
the tracer a whole process tracing every task (no pid filter), side by side:

  untraced
  ksnoop trace --summary --calls-only tp:sys_enter    ksnoop's cheapest count: one per-CPU counter
  ksnoop trace --count-by comm tp:sys_enter           a count per comm in a PERCPU_HASH
  ksnoop trace --metrics 127.0.0.1:0 --count-by comm tp:sys_enter    the same, served to Prometheus
  bpftrace -e 'tracepoint:raw_syscalls:sys_enter { @[comm] = count(); }'

Each tracer is started on the other CPU, waited for until it is attached (ksnoop: its ready line
and a BPF link held; bpftrace: "Attaching" and its program on the tracepoint's perf event, as
`bpftool perf list` tells), the loop runs one chunk of ITERATIONS getpid() (about 0.75 s
untraced), and the tracer is stopped with SIGINT and waited for. The figure is the loop's CPU
time per iteration (CLOCK_THREAD_CPUTIME_ID: the programs run in its context), median over rounds
of each configuration minus the untraced chunk of the same round; the order rotates every round.

This machine's kernel may have no tracefs mounted (bpftrace's tracepoints need it): bpftrace then
runs in a mount namespace of its own with one mounted there, and nothing outside changes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tests.support.ready import split_ready
from tests.vm.trace_driver import links_held  # a BPF link held: ksnoop's programs are attached

from common import ROOT, GetpidLoop, getpid_loop_program, require_bpf, two_cpus

SPEC = "tp:sys_enter"
BPFTRACE_SCRIPT = "tracepoint:raw_syscalls:sys_enter { @[comm] = count(); }"
CHUNK_S = 0.75  # an untraced chunk's length, which sets ITERATIONS
ATTACH_TIMEOUT_S, EXIT_TIMEOUT_S = 60.0, 30.0
SETTLE_S = 0.1  # after attachment: bpftrace enables its perf event just after setting the program
TRACEFS = "/sys/kernel/tracing"
RINGBUF = 27  # BPF_MAP_TYPE_RINGBUF, as fdinfo's map_type says it


def _ksnoop(*args: str) -> List[str]:
    # sys.executable, not `python3` on PATH: a version manager's shim would add its start-up.
    return [sys.executable, "-m", "ksnoop", "trace", *args]


def _bpftrace(script: str) -> Tuple[List[str], str]:
    """(the argv that runs `bpftrace -e SCRIPT`, how it sees tracefs): in a mount namespace of
    its own with tracefs mounted there when this one has none."""
    bpftrace = shutil.which("bpftrace")
    if bpftrace is None:
        raise SystemExit("bpftrace not found: apt-get install bpftrace (or .ci/install-deps)")
    if os.path.isdir(f"{TRACEFS}/events"):
        return [bpftrace, "-e", script], f"{TRACEFS}, as mounted here"
    mount = f'mount -t tracefs tracefs {TRACEFS} && exec "$@"'
    return (
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", mount, "sh", bpftrace, "-e", script],
        f"none mounted here: bpftrace ran in a mount namespace of its own with tracefs on {TRACEFS}",
    )


def _tracers() -> Tuple[Dict[str, Optional[List[str]]], Dict[str, str], str]:
    """(name -> argv, None for the untraced loop; name -> the command as a user types it; how
    bpftrace sees tracefs)."""
    bpftrace, tracefs = _bpftrace(BPFTRACE_SCRIPT)
    argvs = {
        "untraced": None,
        "ksnoop_summary_calls_only": _ksnoop("--summary", "--calls-only", SPEC),
        "ksnoop_count_by_comm": _ksnoop("--count-by", "comm", SPEC),
        "ksnoop_count_by_comm_metrics": _ksnoop("--metrics", "127.0.0.1:0", "--count-by", "comm", SPEC),
        "bpftrace_count_by_comm": bpftrace,
    }
    shown = {
        name: shlex.join(["python3", *argv[1:]]) for name, argv in argvs.items() if argv and name.startswith("ksnoop")
    }
    shown.update(untraced="(none)", bpftrace_count_by_comm=shlex.join(["bpftrace", "-e", BPFTRACE_SCRIPT]))
    return argvs, shown, tracefs


def _ringbuf_maps_generated() -> int:
    """Ring buffers among the maps the --count-by program declares (none: no record leaves the kernel)."""
    from bpf.codegen import MapRole
    from ksnoop.run.options import RunOptions
    from ksnoop.run.trace import prepare

    _, programs = prepare(RunOptions(specs=(SPEC,), count_by="comm"))
    return sum(spec.role is MapRole.EVENTS for program in programs for spec in program.maps)


def _map_types_held(pid: int) -> List[int]:
    """The BPF_MAP_TYPE of every map process `pid` holds an fd of (fdinfo's map_type)."""
    types = []
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fdinfo"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/fdinfo/{fd}") as f:
                found = re.search(r"^map_type:\s*(\d+)$", f.read(), re.M)
                if found:
                    types.append(int(found.group(1)))
    return types


def _perf_programs_of(pid: int) -> int:
    """BPF programs on perf events (bpftrace 0.17's tracepoints) held by `pid`: `bpftool perf list`."""
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    done = subprocess.run([bpftool, "-j", "perf", "list"], capture_output=True, text=True)
    try:
        return sum(1 for entry in json.loads(done.stdout or "[]") if entry.get("pid") == pid)
    except ValueError:
        return 0


def _attached(name: str, pid: int, out: Path, err: Path) -> bool:
    if name.startswith("ksnoop"):
        return bool(split_ready(err.read_text(errors="replace"))[0]) and links_held(pid) >= 1
    said = out.read_bytes() + err.read_bytes()
    return b"Attaching" in said and (links_held(pid) >= 1 or _perf_programs_of(pid) >= 1)


def _start(
    name: str, argv: List[str], cpu: Optional[int], out: Path, err: Path
) -> Tuple[subprocess.Popen[bytes], float]:
    """Start a tracer on `cpu`, stdout and stderr to files; (process, seconds until attached)."""
    started = time.monotonic()
    with out.open("wb") as out_f, err.open("wb") as err_f:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out_f, stderr=err_f, cwd=ROOT)
    if cpu is not None:
        os.sched_setaffinity(proc.pid, {cpu})
    while not _attached(name, proc.pid, out, err):
        if proc.poll() is not None or time.monotonic() - started > ATTACH_TIMEOUT_S:
            _stop(proc)
            raise SystemExit(f"{name} did not attach: {' '.join(argv)}\n{err.read_text(errors='replace')[-2000:]}")
        time.sleep(0.02)
    attach_s = time.monotonic() - started
    time.sleep(SETTLE_S)
    return proc, attach_s


def _stop(proc: subprocess.Popen[bytes]) -> Tuple[float, bool]:
    """SIGINT, and wait for the exit: (seconds it took, whether it had to be killed)."""
    started = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=EXIT_TIMEOUT_S)
        return time.monotonic() - started, False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return time.monotonic() - started, True


def _counted(name: str, out: str, err: str, comm: str) -> Tuple[Optional[int], Optional[int]]:
    """(calls the tracer says it counted in all, those of the task named `comm`); None where not said."""
    if name.startswith("ksnoop"):
        total = re.search(r"ksnoop: (\d+) calls? counted", err)
        ours = re.search(rf'^\s*(\d+)\s+"{re.escape(comm)}"$', out, re.M)
        return (int(total.group(1)) if total else None), (int(ours.group(1)) if ours else None)
    counts = {key: int(n) for key, n in re.findall(r"^@\[(.*)\]: (\d+)$", out, re.M)}
    return (sum(counts.values()) if counts else None), counts.get(comm)


def _measure(
    name: str, argv: Optional[List[str]], loop: GetpidLoop, iterations: int, cpu: Optional[int], tmp: Path, comm: str
) -> Dict[str, Any]:
    """One chunk under one tracer, started and stopped around it: the loop's figures and the tracer's."""
    if argv is None:
        done, wall, cpu_ns = loop.count(iterations)
        return {"cpu_ns": cpu_ns / done, "wall_ns": wall / done}
    out, err = tmp / f"{name}.out", tmp / f"{name}.err"
    proc, attach_s = _start(name, argv, cpu, out, err)
    ringbufs = _map_types_held(proc.pid).count(RINGBUF)
    done, wall, cpu_ns = loop.count(iterations)
    exit_s, killed = _stop(proc)
    out_text, err_text = out.read_text(errors="replace"), err.read_text(errors="replace")
    total, ours = _counted(name, out_text, err_text, comm)
    if proc.returncode != 0 or killed or total is None:
        raise SystemExit(
            f"{name} failed (status {proc.returncode}{', killed' if killed else ''}): {' '.join(argv)}\n"
            f"{err_text[-2000:]}\n{out_text[-1000:]}"
        )
    return {
        "cpu_ns": cpu_ns / done,
        "wall_ns": wall / done,
        "attach_s": attach_s,
        "exit_s": exit_s,
        "ringbuf_maps_held": ringbufs,
        "counted": total,
        "loop_counted_per_iteration": None if ours is None else ours / done,
    }


def _median(values: Sequence[float], digits: int = 1) -> float:
    return round(statistics.median(values), digits)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Per-call cost of each tracer on the getpid loop, medians over `args.runs` rounds (round 0
    warms up and is not counted), and the ratios the --count-by acceptance asks for."""
    from bpf.uapi import MapType

    require_bpf()
    assert MapType.RINGBUF == RINGBUF
    loop_cpu, tracer_cpu = two_cpus()
    configs, commands, tracefs = _tracers()
    names = list(configs)
    rounds: Dict[str, List[Dict[str, Any]]] = {name: [] for name in names}
    with contextlib.ExitStack() as outer:
        argv, _, note = outer.enter_context(getpid_loop_program())
        comm = os.path.basename(argv[0])[:15]  # the C loop's comm; the Python one's is python3's
        loop = outer.enter_context(GetpidLoop(argv, loop_cpu))
        tmp = Path(outer.enter_context(tempfile.TemporaryDirectory(prefix="ksnoop-bench-")))
        done, _, cpu_ns = loop.count(200_000)
        iterations = max(100_000, int(round(CHUNK_S * 1e9 / (cpu_ns / done), -4)))
        for round_ in range(args.runs + 1):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                result = _measure(name, configs[name], loop, iterations, tracer_cpu, tmp, comm)
                if round_:
                    rounds[name].append(result)
                time.sleep(0.05)  # the tracer's programs and maps freed
    base = [r["cpu_ns"] for r in rounds["untraced"]]
    added = {name: statistics.median(r["cpu_ns"] - b for r, b in zip(rounds[name], base)) for name in names[1:]}
    tracers: Dict[str, Any] = {}
    for name in names:
        these = rounds[name]
        figure: Dict[str, Any] = {
            "command": commands[name],
            "ns_per_call": _median([r["cpu_ns"] for r in these]),
            "wall_ns_per_call": _median([r["wall_ns"] for r in these]),
            "round_ns_per_call": [round(r["cpu_ns"], 1) for r in these],
        }
        if name != "untraced":
            per_iteration = [r["loop_counted_per_iteration"] for r in these]
            figure.update(
                {
                    "added_ns": round(added[name], 1),
                    "added_wall_ns": _median([r["wall_ns"] - b["wall_ns"] for r, b in zip(these, rounds["untraced"])]),
                    "attach_s": _median([r["attach_s"] for r in these], 2),
                    "exit_s": _median([r["exit_s"] for r in these], 2),
                    "counted_per_run": round(statistics.median(r["counted"] for r in these)),
                    "loop_calls_counted_per_iteration": None if None in per_iteration else _median(per_iteration, 4),
                    "ringbuf_maps_held": max(r["ringbuf_maps_held"] for r in these),
                }
            )
        tracers[name] = figure
    count_by = added["ksnoop_count_by_comm"]
    ringbufs = _ringbuf_maps_generated()
    return {
        "benchmark": "aggregate",
        "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
        "runs": args.runs,
        "event_source": f"{note}, {iterations} getpid() per chunk (~{CHUNK_S} s untraced), pinned to CPU "
        f"{loop_cpu}; each tracer a whole process on CPU {tracer_cpu}, tracing every task, started before "
        "the chunk and stopped (SIGINT) after it",
        "metric": "the loop's CPU time per iteration (CLOCK_THREAD_CPUTIME_ID); added_ns = configuration minus "
        "the untraced chunk of the same round, median over rounds",
        "bpftrace_tracefs": tracefs,
        **tracers,
        "count_by_over_summary_calls_only": round(count_by / added["ksnoop_summary_calls_only"], 2),
        "count_by_over_bpftrace": round(count_by / added["bpftrace_count_by_comm"], 2),
        # --metrics reads the same maps from userspace: the programs, and so the per-call cost, are --count-by's.
        "metrics_added_ns_over_count_by": round(added["ksnoop_count_by_comm_metrics"] / count_by, 2),
        # The program's maps as generated, and the maps the running process held: no ring either way.
        "count_by_ringbuf_maps_generated": ringbufs,
        "count_by_records_through_ringbuf": ringbufs + tracers["ksnoop_count_by_comm"]["ringbuf_maps_held"] > 0,
        "target": "count_by_over_summary_calls_only <= 2, count_by_over_bpftrace <= 0.5, no ring buffer",
    }
