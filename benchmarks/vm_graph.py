# SPDX-License-Identifier: GPL-2.0-only
"""What `trace -g` costs to start and stop, in the VM (this machine's kernel refuses fentry and has
no kprobes): `python3 benchmarks/vm_graph.py [--kernel 6.12] [--rounds N] [ROOT]` (default
ip_send_skb at depth 3, and 6.12: the kernel with kprobe sessions).

In one guest (tests/vm/harness.py, qemu TCG), whole processes side by side, alternating:
`ksnoop trace -g --duration 1 ROOT` and `ksnoop trace --duration 1 ROOT`. What the graph adds above
tracing its root alone is reading and decoding the kernel's code (discovery), resolving, loading
and attaching its functions, and detaching them: Python's own start under emulation (several
seconds) is in both and cancels. Each run also times its ready line (from the start of the process),
which a workload waits for: nothing of a root call is missed after it. The figure is the median of
the rounds' differences (graph minus root alone, run next to each other), with each round's shown.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import compileall
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from common import environment, machine  # this file's directory: both sides run it as a script

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 2.0  # the graph's cost above one function, whole process, under TCG


def timed(argv: List[str]) -> Dict[str, float]:
    """One whole process: seconds to its ready line and to its exit."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stderr is not None
    ready = None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if ready is None and "Ctrl-C" in line:
            ready = time.perf_counter() - start
    if proc.wait() != 0 or ready is None:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {''.join(lines)[-2000:]}")
    return {"ready_s": ready, "total_s": time.perf_counter() - start}


def guest(root: str, depth: int, rounds: int) -> Dict[str, Any]:
    ksnoop = [sys.executable, "-m", "ksnoop", "trace", "--duration", "1"]
    argvs = {
        "graph": [*ksnoop, "-g", "--graph-depth", str(depth), root],
        "one": [*ksnoop, root],
    }
    functions = json.loads(
        subprocess.run(
            [sys.executable, "-m", "ksnoop", "info", "-g", "-o", "json", "--graph-depth", str(depth), root],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        ).stdout
    )["functions"]
    runs: Dict[str, List[Dict[str, float]]] = {name: [] for name in argvs}
    names = list(argvs)
    for round_ in range(rounds):
        for name in names[round_ % 2 :] + names[: round_ % 2]:
            runs[name].append(timed(argvs[name]))
    median = {
        name: {key: round(statistics.median(r[key] for r in values), 2) for key in ("ready_s", "total_s")}
        for name, values in runs.items()
    }
    # Each round's two runs side by side: their difference drifts less than the two medians' do
    # (the emulated guest slows and speeds up over a run by more than the figure sought).
    paired = [g["total_s"] - o["total_s"] for g, o in zip(runs["graph"], runs["one"])]
    paired_ready = [g["ready_s"] - o["ready_s"] for g, o in zip(runs["graph"], runs["one"])]
    above = round(statistics.median(paired), 2)
    return {
        "root": root,
        "depth": depth,
        "functions": len(functions),
        "rounds": rounds,
        "whole_process_median_s": median,
        "graph_above_one_function_s": above,  # the median of the rounds' differences
        "ready_above_one_function_s": round(statistics.median(paired_ready), 2),
        "above_per_round_s": [round(d, 2) for d in paired],
        "target_s": TARGET_S,
        "machine": machine(),
    }


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", default="ip_send_skb", help="the graph's root (default ip_send_skb)")
    parser.add_argument("--depth", type=int, default=3, help="--graph-depth (default 3)")
    parser.add_argument("--kernel", default="6.12", help="the VM kernel to boot (tests/vm/harness.py's names)")
    parser.add_argument("--rounds", type=int, default=9, help="whole-process runs of each command (default 9)")
    parser.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)  # the side that runs in the VM
    args = parser.parse_args(argv)
    if args.guest:
        print(json.dumps(guest(args.root, args.depth, args.rounds)))
        return 0
    sys.path.insert(0, str(REPO))
    from tests.vm import harness

    host = environment()  # before the run: the commit the guest runs, from the shared checkout
    # The guest sees this checkout read-only, where Python cannot write its bytecode cache: compile
    # it here, as an installed package comes, or each guest process compiles every module again.
    for package in ("bpf", "btf", "ksnoop"):
        compileall.compile_dir(str(REPO / package), quiet=1)
    with harness.VM(kernel=args.kernel) as vm:
        command = ["python3", str(Path(__file__).resolve()), "--guest", "--rounds", str(args.rounds)]
        result = vm.run([*command, "--depth", str(args.depth), args.root], timeout=7200, cwd=str(REPO))
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        return 1
    figures: Dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    figures["benchmark"] = "vm_graph"
    figures["measured_on"] = {**figures.pop("machine", {}), "commit": host["commit"], "kernel_booted": args.kernel}
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
