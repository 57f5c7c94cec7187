# SPDX-License-Identifier: GPL-2.0-only
"""Per-call cost of tracing a kernel function in the VM: ksnoop against bpftrace 0.17, side by side.

`python3 benchmarks/vm_percall.py` (or `python3 benchmarks/run.py vm`) boots one guest of
tests/vm/harness.py (Debian's 6.1 kernel under qemu TCG: this machine's kernel refuses fentry) and
runs this same file there with --guest. The guest side times a tight loop of close(-1)
(benchmarks/syscall_loop.c built with -DCLOSE_LOOP: one call of `int close_fd(unsigned int fd)`
per iteration) untraced and under each tracer below, one after another in an order that rotates every round:

  ksnoop trace --summary close_fd        vs  bpftrace 'kfunc:close_fd { @c = count(); }'
                                         and a bpftrace script counting what --summary counts
  ksnoop trace --count-by comm           vs  bpftrace 'kfunc:close_fd { @s[tid] = nsecs; }
    --hist duration close_fd                 kretfunc:close_fd /@s[tid]/ { @[comm] = hist(nsecs - @s[tid]);
                                             delete(@s[tid]); }'
  ksnoop trace -o json 'close_fd(fd)'    vs  bpftrace 'kfunc:close_fd { printf("%d\\n", args->fd); }'
                                         and a bpftrace printf of the fields a ksnoop record holds

Each tracer is started, waited for until it holds its BPF links (read from /proc/PID/fdinfo: the
trampoline is in place from then on), and the loop then runs CALLS iterations at a time, CHUNKS
times, with the tracer's reader given time to catch up between chunks (its CPU time stops rising),
so every record is delivered and the figure is the cost of a delivered record; the buffers hold a
chunk (ksnoop's default 4 MiB ring; bpftrace's per-CPU perf buffers raised to the same 1024 pages).
Two more runs, "saturated", let the loop run flat out with default buffers: the readers fall behind
and most records are lost, as when tracing a hot function for real. Then SIGINT, and each tool's
own account of events seen and lost is read back.

The figure is the loop's wall time per iteration (its vCPU does nothing else; CPU time is reported
beside it). TCG inflates absolute figures: compare within a run. The guest boots with
tsc=reliable by default, so that clock reads (bpf_ktime_get_ns, bpftrace's nsecs) go to the TSC as
on real machines: without it the kernel finds the TSCs of TCG's vCPUs unsynchronised and falls back
to the HPET, an emulated device. `--clock hpet` measures that case; its figures came out within
about 30% of the TSC's, and no ksnoop/bpftrace ratio changed side of 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # both sides: the guest runs this file from the shared checkout

from common import environment, machine  # noqa: E402 (this file's directory: both sides run it as a script)
from tests.vm.trace_driver import links_held  # noqa: E402 (after the path it needs)

# The function close(-1) calls once: close_fd on 6.1; 6.11 and later call file_close_fd instead
# (close_fd is still there, for other callers, so tracing it there counts nothing).
FUNC, ARG = "close_fd", "fd"
LOOP_SOURCE = ROOT / "benchmarks" / "syscall_loop.c"
LOOP_CPU, TRACER_CPU = 0, 1  # the guest has two vCPUs: the loop alone on one, the tracer's reader on the other
# trace -g on 6.12: the exit hook (tp_btf), the callees' kprobe session, the root's kprobe and kretprobe.
GRAPH_LINKS = 4
ATTACH_TIMEOUT_S = 240.0  # ksnoop attaches in ~5-11 s under TCG, several times that on a busy host
EXIT_TIMEOUT_S = 60.0
# Between chunks the reader has caught up once its CPU time rises by at most IDLE_TICKS clock ticks
# (1/100 s) over IDLE_WINDOW_S: ksnoop idles at ~0.5 tick per 0.1 s (its 50 ms poll), a busy reader
# takes 10 per 0.1 s.
IDLE_WINDOW_S, IDLE_TICKS, CATCH_UP_TIMEOUT_S = 0.3, 2, 60.0
BIG_PERF_BUFFER = {"BPFTRACE_PERF_RB_PAGES": "1024"}  # per CPU; ksnoop's ring is 1024 pages in all
# 5-6 minutes on this 2-core machine; a chunk's records (50000 x 72 bytes) fit ksnoop's 4 MiB ring.
DEFAULT_ROUNDS, DEFAULT_CALLS, DEFAULT_CHUNKS, DEFAULT_FLAT_OUT_S = 4, 50000, 4, 0.5


@dataclasses.dataclass(frozen=True)
class Tracer:
    """One configuration to time: a command (empty: untraced) and how to read its account."""

    name: str
    tool: str  # "ksnoop", "bpftrace" or "" for the untraced loop
    argv: Tuple[str, ...]
    # BPF links it holds once attached: one per fentry, fexit, kprobe or kretprobe program of ksnoop's;
    # 0: it holds none to count (bpftrace 0.17's kprobes are perf events with a program set by ioctl),
    # so it is taken as attached once it has said "Attaching" and its CPU time has stopped rising.
    links: int
    shows: str  # the information it gives, for the reader of the results
    env: Tuple[Tuple[str, str], ...] = ()
    flat_out: bool = False  # the loop runs flat out ("saturated") instead of in chunks
    # It tells nothing of the calls by design (an empty kprobe; a graph callee outside any root
    # call): what its program costs is the point, so no account is asked of it.
    silent: bool = False


def tracers() -> List[Tracer]:
    ksnoop = ("python3", "-m", "ksnoop", "trace")
    fields = f'printf("%llu %d %d %d %s %d\\n", nsecs, pid, tid, cpu, comm, args->{ARG});'

    # What ksnoop --summary counts, written the way bpftrace users write it.
    def counters(entry: str, ret: str) -> str:
        return (
            f"{entry}:{FUNC} {{ @start[tid] = nsecs; }} "
            f"{ret}:{FUNC} /@start[tid]/ {{ @calls = count(); if (retval < 0) {{ @errors = count(); }} "
            f"@ns = hist(nsecs - @start[tid]); delete(@start[tid]); }}"
        )

    # What ksnoop --count-by comm --hist duration counts, as bpftrace users write it.
    per_comm_hist = (
        f"kfunc:{FUNC} {{ @s[tid] = nsecs; }} "
        f"kretfunc:{FUNC} /@s[tid]/ {{ @[comm] = hist(nsecs - @s[tid]); delete(@s[tid]); }}"
    )
    big = tuple(BIG_PERF_BUFFER.items())
    return [
        Tracer("untraced", "", (), 0, "nothing"),
        Tracer(
            "ksnoop_summary",
            "ksnoop",
            (*ksnoop, "--summary", FUNC),
            2,
            "calls, errors, log2 latency histogram (fentry + fexit)",
        ),
        Tracer(
            "ksnoop_calls",
            "ksnoop",
            (*ksnoop, "--summary", "--calls-only", FUNC),
            1,
            "calls (fentry), as bpftrace's count()",
        ),
        Tracer(
            "bpftrace_count", "bpftrace", ("bpftrace", "-e", f"kfunc:{FUNC} {{ @c = count(); }}"), 1, "calls (fentry)"
        ),
        Tracer(
            "bpftrace_summary",
            "bpftrace",
            ("bpftrace", "-e", counters("kfunc", "kretfunc")),
            2,
            "calls, errors, log2 latency histogram (fentry + fexit, as ksnoop --summary)",
        ),
        Tracer(
            "ksnoop_count_by_hist",
            "ksnoop",
            (*ksnoop, "--count-by", "comm", "--hist", "duration", FUNC),
            2,
            "a log2 latency histogram per comm (fentry + fexit, a per-CPU hash)",
        ),
        Tracer(
            "bpftrace_count_by_hist",
            "bpftrace",
            ("bpftrace", "-e", per_comm_hist),
            2,
            "a log2 latency histogram per comm (fentry + fexit, as ksnoop --count-by comm --hist duration)",
        ),
        Tracer(
            "ksnoop_kprobe_summary",
            "ksnoop",
            (*ksnoop, "--backend", "kprobe", "--summary", FUNC),
            2,
            "calls, errors, log2 latency histogram (kprobe + kretprobe)",
        ),
        Tracer(
            "ksnoop_kprobe_calls",
            "ksnoop",
            (*ksnoop, "--backend", "kprobe", "--summary", "--calls-only", FUNC),
            1,
            "calls (kprobe), as bpftrace's count()",
        ),
        Tracer(
            "bpftrace_kprobe_count",
            "bpftrace",
            ("bpftrace", "-e", f"kprobe:{FUNC} {{ @c = count(); }}"),
            0,
            "calls (kprobe)",
        ),
        Tracer(
            "bpftrace_kprobe_summary",
            "bpftrace",
            ("bpftrace", "-e", counters("kprobe", "kretprobe")),
            0,
            "calls, errors, log2 latency histogram (kprobe + kretprobe, as ksnoop --summary --backend kprobe)",
        ),
        Tracer(
            "ksnoop_graph_callee",
            "ksnoop",
            (*ksnoop, "-g", "--graph-include", FUNC, "ip_send_skb"),
            GRAPH_LINKS,
            f"{FUNC} as a function-graph callee (ip_send_skb's graph, --graph-include), called outside any "
            "root call: one lookup (a kprobe session, 6.12)",
            silent=True,
        ),
        Tracer(
            "bpftrace_kprobe_empty",
            "bpftrace",
            ("bpftrace", "-e", f"kprobe:{FUNC} {{ }}"),
            0,
            "an empty kprobe",
            silent=True,
        ),
        Tracer(
            "ksnoop_records",
            "ksnoop",
            (*ksnoop, "-o", "json", f"{FUNC}({ARG})"),
            1,
            f"a JSON line per call: ts, cpu, pid, tid, comm, {ARG}",
        ),
        Tracer(
            "bpftrace_printf",
            "bpftrace",
            ("bpftrace", "-e", f'kfunc:{FUNC} {{ printf("%d\\n", args->{ARG}); }}'),
            1,
            f"a line per call: {ARG}",
            env=big,
        ),
        Tracer(
            "bpftrace_printf_fields",
            "bpftrace",
            ("bpftrace", "-e", f"kfunc:{FUNC} {{ {fields} }}"),
            1,
            f"a line per call: ts, pid, tid, cpu, comm, {ARG} (what a ksnoop record holds)",
            env=big,
        ),
        Tracer(
            "ksnoop_records_saturated",
            "ksnoop",
            (*ksnoop, "-o", "json", f"{FUNC}({ARG})"),
            1,
            "as ksnoop_records, loop flat out, default 4 MiB ring",
            flat_out=True,
        ),
        Tracer(
            "bpftrace_printf_saturated",
            "bpftrace",
            ("bpftrace", "-e", f'kfunc:{FUNC} {{ printf("%d\\n", args->{ARG}); }}'),
            1,
            "as bpftrace_printf, loop flat out, default 64 pages per CPU",
            flat_out=True,
        ),
    ]


# The pairs that give the same information (or the pair the comparison is usually made with).
PAIRS = [
    ("ksnoop_calls", "bpftrace_count", "--summary --calls-only vs count(): calls alone, each"),
    ("ksnoop_summary", "bpftrace_count", "--summary vs count(): ksnoop also counts errors and latency"),
    ("ksnoop_summary", "bpftrace_summary", "--summary vs bpftrace counting the same (calls, errors, latency)"),
    ("ksnoop_count_by_hist", "bpftrace_count_by_hist", "--count-by comm --hist duration vs @[comm] = hist(latency)"),
    ("ksnoop_records", "bpftrace_printf", "a JSON record vs printf of the argument"),
    ("ksnoop_records", "bpftrace_printf_fields", "a JSON record vs printf of the same fields"),
    ("ksnoop_records_saturated", "bpftrace_printf_saturated", "flat out, readers behind, records lost"),
    ("ksnoop_kprobe_calls", "bpftrace_kprobe_count", "kprobes: --summary --calls-only vs count(): calls alone"),
    ("ksnoop_kprobe_summary", "bpftrace_kprobe_summary", "kprobes: --summary vs bpftrace counting the same"),
    ("ksnoop_kprobe_summary", "ksnoop_summary", "ksnoop --summary by kprobe + kretprobe vs by fentry + fexit"),
    ("ksnoop_graph_callee", "bpftrace_kprobe_empty", "-g: a callee outside any root call vs an empty kprobe"),
]


# ---- guest side: run with --guest PLAN inside the VM; stdlib only -------------------------------------


class CloseLoop:
    """close_loop in serve mode, pinned to its own vCPU."""

    def __init__(self, exe: str) -> None:
        self.proc = subprocess.Popen(
            [exe, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        os.sched_setaffinity(self.proc.pid, {LOOP_CPU})

    def run(self, command: str) -> Dict[str, int]:
        """`n COUNT` or `t SECONDS`: {calls, wall_ns, cpu_ns}."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"close_loop died (status {self.proc.wait()})")
        calls, wall, cpu = (int(x) for x in line.split())
        return {"calls": calls, "wall_ns": wall, "cpu_ns": cpu}

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def cpu_ticks(pid: int) -> int:
    """utime + stime of process `pid` (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), counted after the comm


def wait_until_idle(pid: int) -> float:
    """Seconds until the tracer's CPU time stops rising: its reader has written what it was behind on."""
    start = time.monotonic()
    before = cpu_ticks(pid)
    while time.monotonic() - start < CATCH_UP_TIMEOUT_S:
        time.sleep(IDLE_WINDOW_S)
        now = cpu_ticks(pid)
        if now - before <= IDLE_TICKS:
            break
        before = now
    return time.monotonic() - start


def start_tracer(tracer: Tracer, out_dir: Path, tag: str) -> Tuple[subprocess.Popen[bytes], float]:
    """Start it on the reader's vCPU, stdout and stderr to files; (process, seconds until attached)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **dict(tracer.env)}
    with (out_dir / f"{tag}.out").open("wb") as out, (out_dir / f"{tag}.err").open("wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            tracer.argv,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
            preexec_fn=lambda: os.sched_setaffinity(0, {TRACER_CPU}),
        )

    def attached() -> bool:
        if tracer.links:
            return links_held(proc.pid) >= tracer.links
        said = (out_dir / f"{tag}.out").read_bytes() + (out_dir / f"{tag}.err").read_bytes()
        return b"Attaching" in said and wait_until_idle(proc.pid) >= 0

    while not attached():
        if proc.poll() is not None or time.monotonic() - started > ATTACH_TIMEOUT_S:
            stop_tracer(proc)
            raise SystemExit(
                f"{tracer.name} did not attach: {' '.join(tracer.argv)}\n"
                f"{(out_dir / f'{tag}.err').read_text(errors='replace')[-2000:]}"
            )
        time.sleep(0.05)
    return proc, time.monotonic() - started


def stop_tracer(proc: subprocess.Popen[bytes]) -> float:
    """SIGINT (both tools print their account and exit 0); seconds until it exited."""
    started = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return time.monotonic() - started


def tool_account(tracer: Tracer, out: str, err: str) -> Dict[str, Optional[int]]:
    """What the tool says it saw and lost: {events, lost}; None where it does not tell."""
    if tracer.tool == "ksnoop":
        counted = re.search(r"ksnoop: (\d+) calls? counted", err)
        if counted:
            return {"events": int(counted.group(1)), "lost": None}
        records = re.search(r"ksnoop: (\d+) records?(?:, (\d+) lost)?", err)
        if records:
            return {"events": int(records.group(1)), "lost": int(records.group(2) or 0)}
        return {"events": None, "lost": None}
    if tracer.tool == "bpftrace":
        counted = re.search(r"^@(?:c|calls): (\d+)$", out, re.M)
        if counted:  # count() maps; bpftrace tells no losses for them (there are none: no buffer)
            return {"events": int(counted.group(1)), "lost": None}
        buckets = re.findall(r"^\[[^])]*[])]\s+(\d+)\s+\|", out, re.M)
        if buckets:  # hist() maps alone: every bucket of every key ("[256, 512)   1234 |@@@@|")
            return {"events": sum(int(n) for n in buckets), "lost": None}
        lost = sum(int(n) for n in re.findall(r"^Lost (\d+) events$", out, re.M))
        lines = sum(1 for line in out.splitlines() if line and line[0] in "-0123456789")
        return {"events": lines, "lost": lost}
    return {"events": None, "lost": None}


def measure(tracer: Tracer, loop: CloseLoop, plan: Dict[str, Any], out_dir: Path, tag: str) -> Dict[str, Any]:
    """One attachment of `tracer`: its samples (one per chunk) and what it says it saw."""
    proc, attach_s = start_tracer(tracer, out_dir, tag) if tracer.argv else (None, 0.0)
    samples, catch_up = [], []
    for _ in range(plan["chunks"]):
        if tracer.flat_out:
            samples.append(loop.run(f"t {plan['flat_out_s']}"))
        else:
            samples.append(loop.run(f"n {plan['calls']}"))
        if proc is not None:
            catch_up.append(wait_until_idle(proc.pid))
    result: Dict[str, Any] = {"samples": samples, "catch_up_s": catch_up}
    if proc is not None:
        result["attach_s"] = attach_s
        result["exit_s"] = stop_tracer(proc)
        result["returncode"] = proc.returncode
        out = (out_dir / f"{tag}.out").read_text(errors="replace")
        err = (out_dir / f"{tag}.err").read_text(errors="replace")
        result.update(tool_account(tracer, out, err))
        result["loop_calls"] = sum(s["calls"] for s in samples)
        if tracer.silent:
            if proc.returncode != 0:
                raise SystemExit(f"{tracer.name} failed (status {proc.returncode}):\n{err[-2000:]}\n{out[-1000:]}")
        elif proc.returncode != 0 or result["events"] is None:
            raise SystemExit(f"{tracer.name} failed (status {proc.returncode}):\n{err[-2000:]}\n{out[-1000:]}")
        if not result["events"] and not tracer.silent:
            raise SystemExit(
                f"{tracer.name} saw no call of {FUNC}: does close(-1) call it on this kernel? (--function)"
            )
        (out_dir / f"{tag}.out").unlink()  # a records run leaves megabytes in the guest's tmpfs
    return result


def guest_main(plan_path: str) -> int:
    """Every round, every tracer, in an order rotated by one each round; results to PLAN_DIR/raw.json."""
    plan = json.loads(Path(plan_path).read_text())
    out_dir = Path("/tmp/vm_percall")  # the guest's own tmpfs: records never cross 9p
    out_dir.mkdir(exist_ok=True)
    os.sched_setaffinity(0, {TRACER_CPU})
    global FUNC
    FUNC = plan["function"]
    all_tracers = {t.name: t for t in tracers()}
    names = plan["tracers"]
    results: Dict[str, List[Dict[str, Any]]] = {name: [] for name in names}
    loop = CloseLoop(plan["loop"])
    try:
        loop.run(f"n {plan['calls']}")  # fault in the loop's pages before anything is timed
        for round_ in range(plan["rounds"]):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                result = measure(all_tracers[name], loop, plan, out_dir, f"{name}-{round_}")
                result["round"] = round_
                results[name].append(result)
                print(f"round {round_} {name}: {_median_ns(result['samples']):.0f} ns/call", flush=True)
    finally:
        loop.close()
    clock = Path("/sys/devices/system/clocksource/clocksource0/current_clocksource").read_text().strip()
    raw = {"kernel": os.uname().release, "clocksource": clock, "machine": machine(), "results": results}
    Path(plan_path).with_name("raw.json").write_text(json.dumps(raw))
    return 0


def _median_ns(samples: Sequence[Dict[str, int]], key: str = "wall_ns") -> float:
    return statistics.median(s[key] / s["calls"] for s in samples)


# ---- host side: boot the VM, run the guest side, summarise ---------------------------------------------


def bpftrace_version() -> str:
    try:
        return subprocess.run(["bpftrace", "--version"], capture_output=True, text=True).stdout.strip()
    except FileNotFoundError:
        raise SystemExit("bpftrace not found: apt-get install bpftrace (or .ci/install-deps)") from None


def run_benchmark(
    rounds: int = DEFAULT_ROUNDS,
    calls: int = DEFAULT_CALLS,
    chunks: int = DEFAULT_CHUNKS,
    flat_out_s: float = DEFAULT_FLAT_OUT_S,
    clock: str = "tsc",
    only: Optional[Sequence[str]] = None,
    kernel: Optional[str] = None,
) -> Dict[str, Any]:
    """Boot one VM, run every tracer there `rounds` times; the summarised figures."""
    from tests.vm import harness

    host = environment()  # before the run: the commit the guest runs, from the shared checkout
    version = bpftrace_version()
    names = [t.name for t in tracers() if only is None or t.name in only or t.name == "untraced"]
    kernel_args = ["tsc=reliable"] if clock == "tsc" else []
    started = time.monotonic()
    with harness.VM(kernel_args=kernel_args, kernel=kernel or harness.DEFAULT_KERNEL) as vm:
        loop = vm.shared_dir / "close_loop"  # compiled here: the guest runs this machine's binaries
        subprocess.run(["cc", "-O2", "-DCLOSE_LOOP", "-o", str(loop), str(LOOP_SOURCE)], check=True)
        plan = {
            "function": FUNC,
            "loop": str(loop),
            "rounds": rounds,
            "calls": calls,
            "chunks": chunks,
            "flat_out_s": flat_out_s,
            "tracers": names,
        }
        plan_path = vm.shared_dir / "plan.json"
        plan_path.write_text(json.dumps(plan))
        done = vm.run(
            ["python3", str(Path(__file__).resolve()), "--guest", str(plan_path)], timeout=3600, cwd=str(ROOT)
        )
        if done.returncode != 0:
            raise SystemExit(
                f"the guest side failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{done.console_log[-3000:]}"
            )
        raw = json.loads((vm.shared_dir / "raw.json").read_text())
        boot_s = vm.boot_seconds
    return summarise(raw, plan, version, boot_s, time.monotonic() - started, host)


def summarise(
    raw: Dict[str, Any],
    plan: Dict[str, Any],
    version: str,
    boot_s: float,
    total_s: float,
    host: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """The figures from the guest's raw samples. `host`: environment() of the machine running qemu;
    "measured_on" is the guest's machine with the host's commit, "host" the rest of `host`."""
    results = raw["results"]
    untraced = _median_ns([s for r in results["untraced"] for s in r["samples"]])
    figures: Dict[str, Any] = {}
    for tracer in tracers():
        if tracer.name not in results:
            continue
        runs = results[tracer.name]
        samples = [s for r in runs for s in r["samples"]]
        ns = _median_ns(samples)
        figure: Dict[str, Any] = {
            "command": " ".join(tracer.argv) or "(none)",
            "shows": tracer.shows,
            "ns_per_call": round(ns),
            "added_ns": round(ns - untraced),
            "cpu_ns_per_call": round(_median_ns(samples, "cpu_ns")),
            "round_medians_ns": [round(_median_ns(r["samples"])) for r in runs],
        }
        if tracer.argv:
            figure.update(
                {
                    "attach_s": round(statistics.median(r["attach_s"] for r in runs), 1),
                    "exit_s": round(statistics.median(r["exit_s"] for r in runs), 1),
                    "catch_up_s_per_chunk": round(statistics.median(c for r in runs for c in r["catch_up_s"]), 2),
                    "loop_calls_per_run": round(statistics.median(r["loop_calls"] for r in runs)),
                    "events_per_run": round(statistics.median(r["events"] for r in runs)),
                    "lost_per_run": (
                        None
                        if any(r["lost"] is None for r in runs)
                        else round(statistics.median(r["lost"] for r in runs))
                    ),
                }
            )
            if tracer.env:
                figure["env"] = dict(tracer.env)
        figures[tracer.name] = figure
    ratios = {}
    for ours, theirs, what in PAIRS:
        if ours in figures and theirs in figures:
            a, b = figures[ours], figures[theirs]
            ratios[f"{ours}/{theirs}"] = {
                "what": what,
                "per_call": round(a["ns_per_call"] / b["ns_per_call"], 2),
                "added": round(a["added_ns"] / b["added_ns"], 2) if b["added_ns"] > 0 else None,
            }
    return {
        "benchmark": "vm",
        "function": f"{plan['function']}(unsigned int {ARG}), called once per close(-1) of a C loop",
        "guest": f"Debian {raw['kernel']} under qemu TCG, 2 vCPUs (loop on 0, tracer on 1), "
        f"clocksource {raw['clocksource']}",
        "bpftrace": version,
        "rounds": plan["rounds"],
        "chunks": f"{plan['chunks']} of {plan['calls']} calls per run, the reader catching up between "
        f"(saturated: {plan['chunks']} x {plan['flat_out_s']} s flat out)",
        "figure": "median over rounds x chunks of the loop's wall ns per call; added_ns: minus untraced",
        "untraced_ns_per_call": round(untraced),
        **figures,
        "ratios_ksnoop_over_bpftrace": ratios,
        "boot_s": round(boot_s, 1),
        "total_s": round(total_s),
        "measured_on": {
            **raw.get("machine", {"kernel": raw["kernel"]}),
            "commit": (host or {}).get("commit", "unknown"),
        },
        "host": {k: v for k, v in (host or {}).items() if k != "commit"},
    }


def human_summary(result: Dict[str, Any]) -> str:
    lines = [
        f"{result['function']}; {result['guest']}; {result['bpftrace']}",
        f"{result['figure']} ({result['rounds']} rounds, {result['chunks']})",
        "",
        f"{'':28}{'ns/call':>9}{'added':>9}{'attach s':>10}{'events':>10}{'lost':>10}   loop calls",
    ]
    for tracer in tracers():
        f = result.get(tracer.name)
        if f is None:
            continue
        lost = f.get("lost_per_run")
        lines.append(
            f"{tracer.name:28}{f['ns_per_call']:>9}{f['added_ns']:>+9}{f.get('attach_s', ''):>10}"
            f"{f.get('events_per_run', ''):>10}{'' if lost is None else lost:>10}   "
            f"{f.get('loop_calls_per_run', '')}"
        )
    lines.append("")
    for pair, r in result["ratios_ksnoop_over_bpftrace"].items():
        lines.append(f"{pair}: {r['per_call']}x per call, {r['added']}x added ({r['what']})")
    lines.append(f"boot {result['boot_s']} s, total {result['total_s']} s")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    global FUNC
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help=f"rounds, each timing every tracer (default {DEFAULT_ROUNDS})",
    )
    parser.add_argument(
        "--calls", type=int, default=DEFAULT_CALLS, help=f"loop iterations per chunk (default {DEFAULT_CALLS})"
    )
    parser.add_argument(
        "--chunks", type=int, default=DEFAULT_CHUNKS, help=f"chunks per attachment (default {DEFAULT_CHUNKS})"
    )
    parser.add_argument(
        "--flat-out-s",
        type=float,
        default=DEFAULT_FLAT_OUT_S,
        help=f"seconds per saturated chunk (default {DEFAULT_FLAT_OUT_S})",
    )
    parser.add_argument(
        "--clock",
        choices=["tsc", "hpet"],
        default="tsc",
        help="the guest's clocksource: tsc (boots with tsc=reliable; default) or hpet (TCG's default)",
    )
    parser.add_argument("--only", nargs="+", choices=[t.name for t in tracers()], help="time only these tracers")
    parser.add_argument(
        "--function", default=FUNC, help=f"what close(-1) calls, traced (default {FUNC}; file_close_fd from 6.11)"
    )
    parser.add_argument(
        "--kernel", default=None, help="the VM kernel to boot (tests/vm/harness.py's names; default 6.1)"
    )
    parser.add_argument("--guest", metavar="PLAN", help=argparse.SUPPRESS)  # the side that runs in the VM
    args = parser.parse_args(argv)
    if args.guest:
        return guest_main(args.guest)
    FUNC = args.function
    result = run_benchmark(args.rounds, args.calls, args.chunks, args.flat_out_s, args.clock, args.only, args.kernel)
    print(human_summary(result), file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
