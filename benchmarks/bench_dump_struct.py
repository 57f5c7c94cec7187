# SPDX-License-Identifier: GPL-2.0-only
"""dump_struct: `ksnoop dump 'task_file(file)'`, a whole struct file per open file, text and JSON
records per second, in-process."""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
from typing import Any, Dict, List

from ksnoop.run.dump import DumpOptions, run as run_dump

from bench_dump import FileForest
from common import require_bpf


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """`ksnoop dump 'task_file(file)'`: a whole struct file per open file of 100 tasks holding 100 files
    each (and every other task's), text and JSON written to a file, in-process (ksnoop.run.dump.run),
    alternating, medians. records_per_s counts what comes after the program is linked: the kernel's
    walk, splitting, decoding, formatting and writing."""

    require_bpf()
    figures: Dict[str, List[float]] = {"text": [], "json": []}
    records: Dict[str, List[int]] = {"text": [], "json": []}
    with contextlib.ExitStack() as stack:
        forest = FileForest(100, 100)
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
