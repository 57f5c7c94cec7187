# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop's benchmarks: `python benchmarks/run.py NAME` prints one JSON object of figures.

Timings on a shared 2-core machine are noisy, so every benchmark measures ksnoop and its
reference side by side, alternating runs, and reports medians and their ratio. Each benchmark
lives in benchmarks/bench_NAME.py as `run(args) -> dict`; this file picks one and prints its
figures with where they were measured ("measured_on": kernel, CPU, Python, commit).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from common import ROOT, environment, python_speed_ns

# name -> default --runs: 21, fewer where a round takes seconds (the kernel benchmarks) or a minute
# and a half (the VM's).
BENCHMARKS = {
    "info": 21,
    "format": 21,
    "overhead": 11,
    "consume": 5,
    "trace": 5,
    "vm": 4,
    "dump": 5,
    "dump_struct": 5,
    "endings": 200,
    "aggregate": 7,
    "metrics": 21,
    "graph": 11,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=sorted(BENCHMARKS))
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="rounds to take medians over (default 21; "
        + ", ".join(f"{name} {runs}" for name, runs in BENCHMARKS.items() if runs != 21)
        + ": they take seconds per round)",
    )
    parser.add_argument(
        "--scale",
        dest="scales",
        action="append",
        metavar="TASKS,FILES",
        help="dump: tasks and open files per task (default 100,100 1000,100 1000,1000); repeatable",
    )
    parser.add_argument("--seed", type=int, default=1, help="endings: the seed of the random moments")
    args = parser.parse_args()
    if args.runs is None:
        args.runs = BENCHMARKS[args.name]
    sys.path.insert(0, ROOT)  # ksnoop, bpf, btf and tests, from this checkout
    benchmark = importlib.import_module(f"bench_{args.name}")
    measured_on = environment()  # before the run: the commit measured, should the checkout change meanwhile
    speed_before = python_speed_ns()
    figures = benchmark.run(args)
    figures.setdefault("measured_on", measured_on)  # unless the benchmark knows better (vm: the guest)
    figures["python_speed_ns"] = {
        "before": speed_before,
        "after": python_speed_ns(),
        "what": "ns per '%d' of a 64-bit int, median of 7 rounds: how fast this machine ran Python then",
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
