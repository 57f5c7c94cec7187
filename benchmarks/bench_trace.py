# SPDX-License-Identifier: GPL-2.0-only
"""trace: `python -m ksnoop trace` as a whole process against the getpid() loop running flat
out: records written per second and lost, the loop's slowdown, ksnoop's CPU time; scalars and a
whole struct pt_regs, JSON and text."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

from tests.vm.trace_driver import links_held  # the benchmark waits until ksnoop holds its links

from common import ROOT, GetpidLoop, getpid_loop_program, pt_regs_members, require_bpf, two_cpus


# `ksnoop` whose programs never wake the reader (wake-up threshold out of reach; it polls every
# 50 ms and drains while records are there): what the reader can do when the producer is not
# slowed by wake-ups. For diagnosis only: the trace benchmark reports it beside the real thing.
_KSNOOP_NEVER_WAKE = (
    "import sys, ksnoop.spec.resolve as r; from bpf.plan import Plan; "
    "r.Plan = lambda **kw: Plan(wakeup_bytes=0x7FFFFFFF, **kw); "
    "from ksnoop.cli import run; sys.argv[0] = 'ksnoop'; run()"
)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """`python -m ksnoop trace -p PID --duration D SPEC` as a whole process, stdout to /dev/null,
    while the getpid loop (pid PID) runs flat out on the other CPU: records written per second,
    records lost, the loop's slowdown against an untraced run beside it, and ksnoop's CPU time.
    The loop starts once ksnoop holds its BPF link and runs for the trace's duration, so the
    records/s is the reader's rate whenever it cannot keep up (records are then lost)."""

    require_bpf()
    regs = pt_regs_members()
    duration = 2.0
    loop_cpu, reader_cpu = two_cpus()
    summary = re.compile(r"ksnoop: (\d+) records(?:, (\d+) lost)?")
    with contextlib.ExitStack() as outer:
        argv, nr, note = outer.enter_context(getpid_loop_program())
        loop = outer.enter_context(GetpidLoop(argv, loop_cpu))
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
            name: {
                "records_per_s": [],
                "lost": [],
                "lost_fraction": [],
                "loop_cpu_ns": [],
                "loop_wall_ns": [],
                "ksnoop_cpu_s": [],
                "records": [],
            }
            for name in configs
        }
        names = list(configs)
        for round_ in range(args.runs + 1):  # round 0 warms the page cache and is not counted
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
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
                argv_ksnoop = [
                    sys.executable,
                    *entry,
                    "trace",
                    "-o",
                    output,
                    spec,
                    "-p",
                    str(loop.pid),
                    "--duration",
                    str(run_for),
                ]
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
                            raise SystemExit(
                                f"ksnoop did not attach: {' '.join(argv_ksnoop)}\n{err.read().decode(errors='replace')}"
                            )
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
            "records_per_reading_cpu_s": round(
                statistics.median(r / max(c - startup_cpu, 1e-3) for r, c in zip(f["records"], f["ksnoop_cpu_s"]))
            ),
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
