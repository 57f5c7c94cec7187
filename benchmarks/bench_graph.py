# SPDX-License-Identifier: GPL-2.0-only
"""graph: `ksnoop info -g ip_send_skb` (its static call graph to depth 3: the kernel's code read
through BPF and decoded by capstone) as a whole process, against `ksnoop info ip_send_skb` (its
signature alone), alternating runs: what discovering the graph adds to a start-up. Medians."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Any, Dict, List

from common import require_bpf, run_child

ROOT = "ip_send_skb"


def run(args: argparse.Namespace) -> Dict[str, Any]:
    require_bpf()
    graph = [sys.executable, "-m", "ksnoop", "info", "-g", "--graph-depth", "3", ROOT]
    signature = [sys.executable, "-m", "ksnoop", "info", ROOT]
    listed = subprocess.run([*graph[:3], "info", "-g", "-o", "json", ROOT], capture_output=True, text=True, check=True)
    functions = len(json.loads(listed.stdout)["functions"])
    run_child(graph)  # warm the page cache for both
    with_graph: List[float] = []
    alone: List[float] = []
    for _ in range(args.runs):
        with_graph.append(run_child(graph)[0])
        alone.append(run_child(signature)[0])
    median_graph, median_alone = statistics.median(with_graph), statistics.median(alone)
    return {
        "benchmark": "graph",
        "runs": args.runs,
        "functions": functions,
        "info_graph_median_s": round(median_graph, 3),
        "info_signature_median_s": round(median_alone, 3),
        "graph_adds_s": round(median_graph - median_alone, 3),
        "ratio": round(median_graph / median_alone, 2),
    }
