# SPDX-License-Identifier: GPL-2.0-only
"""dump: every task's open files as (pid, fd, name), `ksnoop dump` against a Python walk of
/proc/*/fd, for N forked tasks holding M files each; and FileForest, those tasks (dump_struct
uses it too)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List

from ksnoop.run.dump import DumpOptions, run as run_dump

from common import require_bpf, run_child

DUMP_SPEC = "task_file(task->tgid, fd, file->f_path.dentry->d_name.name)"
DUMP_SCALES = ((100, 100), (1000, 100), (1000, 1000))  # (tasks, files each)


class FileForest:
    """`tasks` forked processes, each holding the same `files` files of a temporary directory open
    (distinct open files, distinct fds, shared dentries), until close(). Each child raises its soft
    RLIMIT_NOFILE as far as its hard limit allows; SystemExit if that or memory falls short."""

    def __init__(self, tasks: int, files: int) -> None:
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


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Every task's open files as (pid, fd, name), for N forked tasks holding M files each: `ksnoop
    dump` of DUMP_SPEC against a Python walk of /proc/*/fd with os.readlink, alternating, medians.
    In-process for both (ksnoop.run.dump.run, JSON lines to /dev/null), with ksnoop's time in read()
    (the kernel walking and running the program per file) apart from the rest (splitting, decoding,
    formatting, writing); and `python -m ksnoop dump` as a whole process."""

    require_bpf()
    options = DumpOptions(specs=(DUMP_SPEC,), output="json")
    scales = (
        DUMP_SCALES if args.scales is None else tuple(tuple(int(n) for n in scale.split(",")) for scale in args.scales)
    )
    results = []
    for tasks, files in scales:
        figures: Dict[str, List[float]] = {
            name: []
            for name in (
                "ksnoop_s",
                "ksnoop_prepare_s",
                "ksnoop_walk_s",
                "ksnoop_load_s",
                "ksnoop_read_s",
                "ksnoop_rest_s",
                "proc_walk_s",
                "ksnoop_process_s",
                "records",
                "proc_entries",
            )
        }
        with contextlib.ExitStack() as stack:
            forest = FileForest(tasks, files)
            stack.callback(forest.close)
            devnull = stack.enter_context(open(os.devnull, "w"))
            for round_ in range(args.runs + 1):  # round 0 warms caches and is not counted
                order = ["ksnoop", "proc", "process"]
                order = order[round_ % 3 :] + order[: round_ % 3]
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
        results.append(
            {
                "tasks": tasks,
                "files_per_task": files,
                "records_median": round(median["records"]),
                "proc_entries_median": round(median["proc_entries"]),
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
            }
        )
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
