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


BENCHMARKS: Dict[str, Callable[[argparse.Namespace], Dict[str, Any]]] = {
    "info": bench_info,
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
