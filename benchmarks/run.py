"""ksnoop's benchmarks: `python benchmarks/run.py NAME` prints one JSON object of figures.

Timings on a shared 2-core machine are noisy, so every benchmark measures ksnoop and its
reference side by side, alternating runs, and reports medians and their ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

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
    from ksnoop.decode import build_decoder
    from ksnoop.output_json import JsonFormatter
    from ksnoop.output_text import TextFormatter
    from ksnoop.resolve import resolve
    from ksnoop.spec import parse_spec
    from ksnoop.targets import KernelBTF
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
    struct_events = events(whole, 50)
    scalar_json = JsonFormatter(scalars).format
    scalar_text = TextFormatter(scalars, color=False).format
    scalar_color = TextFormatter(scalars, color=True).format
    struct_json = JsonFormatter(whole).format
    struct_text = TextFormatter(whole, color=False).format
    plan = scalars.plan

    def reference(event: Any) -> str:
        probe = plan.probes[event.probe]
        return json.dumps({"ts": event.ts_ns, "cpu": event.cpu, "pid": event.pid, "tid": event.tid,
                           "comm": event.comm, "func": probe.target, "probe": "entry",
                           "args": {c.label: v for c, v in zip(probe.captures, event.values)}})

    figures: Dict[str, List[float]] = {name: [] for name in (
        "json_scalars", "dict_json_dumps_scalars", "text_scalars", "text_color_scalars", "json_struct",
        "text_struct")}
    for _ in range(args.runs):
        figures["json_scalars"].append(_lines_per_s(scalar_json, scalar_events, 20))
        figures["dict_json_dumps_scalars"].append(_lines_per_s(reference, scalar_events, 20))
        figures["text_scalars"].append(_lines_per_s(scalar_text, scalar_events, 20))
        figures["text_color_scalars"].append(_lines_per_s(scalar_color, scalar_events, 20))
        figures["json_struct"].append(_lines_per_s(struct_json, struct_events, 10))
        figures["text_struct"].append(_lines_per_s(struct_text, struct_events, 1))
    medians = {name: round(statistics.median(values)) for name, values in figures.items()}
    struct_size = whole.plan.probes[0].captures[0].size
    return {
        "benchmark": "format",
        "runs": args.runs,
        "scalars": "seven_args(a, b, g): int, long, u32 (minikernel)",
        "struct": f"ip_send_skb(skb): struct sk_buff, {struct_size} bytes ({struct_btf})",
        **{f"{name}_lines_per_s": value for name, value in medians.items()},
        "json_scalars_vs_dict_json_dumps": round(
            medians["json_scalars"] / medians["dict_json_dumps_scalars"], 2),
        "target": "json_scalars >= 300000 lines/s",
    }


BENCHMARKS: Dict[str, Callable[[argparse.Namespace], Dict[str, Any]]] = {
    "info": bench_info,
    "format": bench_format,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=sorted(BENCHMARKS))
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    print(json.dumps(BENCHMARKS[args.name](args)))


if __name__ == "__main__":
    main()
