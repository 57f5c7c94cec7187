# SPDX-License-Identifier: GPL-2.0-only
"""info: `ksnoop info ip_send_skb` as a whole process against bpftool dumping vmlinux BTF raw,
alternating runs; median times, their ratio and ksnoop's peak RSS."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from typing import Any, Dict, List

from common import run_child


def run(args: argparse.Namespace) -> Dict[str, Any]:
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
