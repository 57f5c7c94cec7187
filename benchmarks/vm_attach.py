# SPDX-License-Identifier: GPL-2.0-only
"""Where the time goes when ksnoop attaches to many functions, in the VM (this machine's kernel
refuses fentry and has no kprobes): `python3 benchmarks/vm_attach.py [GLOB] [--kernel 6.12]`
(default `tcp_*`, and the harness's default kernel).

In one guest (tests/vm/harness.py, under qemu TCG) it measures, for every function GLOB matches:

- steps, in this process, the way `ksnoop trace` takes them, per backend: fentry (a program and
  a link per function and side), kprobe (one kprobe_multi link a side where the kernel has them,
  else a kprobe each): preparing (resolving and generating, Python), loading (the verifier),
  attaching, detaching (closing the links). The kernel's part is loading + attaching + detaching.
- whole processes, side by side, alternating: `ksnoop trace --backend B --summary --calls-only
  --duration 1 GLOB` and the same on one function (ONE, tcp_sendmsg), and bpftrace's
  `kprobe:GLOB { @c = count(); } interval:s:1 { exit(); }` and the same on ONE. What a glob costs
  above one function takes Python's own start under emulation (8-13 s) out of the comparison.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from common import environment, load_generated, machine  # this file's directory: both sides run it as a script

REPO = Path(__file__).resolve().parents[1]
ONE = "tcp_sendmsg"


def steps(glob: str, backend: str) -> Dict[str, Any]:
    """The guest side, one backend: every step timed once, in this process."""
    sys.path.insert(0, str(REPO))
    from bpf.codegen import generate, generate_multi
    from bpf.loader import attach_kprobe, attach_kprobe_multi, attach_tracing
    from bpf.maps import create_maps
    from ksnoop.run.runner import ftrace_functions
    from ksnoop.run.trace import RunOptions, prepare

    start = time.perf_counter()
    resolved, programs = prepare(RunOptions(specs=(glob,), max_probes=10000, backend=backend))
    prepared = time.perf_counter()
    plan = resolved.plan
    load_s = attach_s = 0.0
    loaded = attached = 0

    with contextlib.ExitStack() as stack:
        maps = create_maps(stack, programs)
        links = contextlib.ExitStack()
        in_multi: "set[int]" = set()
        hookable = ftrace_functions()
        for index, multi in enumerate(plan.multi):
            branches = [i for i in multi.probes if hookable is None or plan.probes[i].target.encode() in hookable]
            t0 = time.perf_counter()
            program = generate_multi(plan, index, only=branches, programs=programs)
            fds = maps.fds_of(branches)
            t1 = time.perf_counter()
            prog = load_generated(stack, program, fds)
            t2 = time.perf_counter()
            links.enter_context(
                attach_kprobe_multi(prog, program.multi_functions, program.retprobe, program.multi_cookies)
            )
            t3 = time.perf_counter()
            prepared += t1 - t0  # generating the dispatch is Python's part
            load_s += t2 - t1
            attach_s += t3 - t2
            loaded += 1
            attached += len(branches)
            in_multi.update(branches)
        for index, program in enumerate(programs):
            if index in in_multi:
                continue
            t0 = time.perf_counter()
            if program.branch:  # a function ftrace cannot hook: its own kprobe, as ksnoop does
                program = generate(plan, index)
            try:
                prog = load_generated(stack, program, maps.fds(index))
            except OSError:
                continue  # a function the verifier refuses: ksnoop leaves it out too
            t1 = time.perf_counter()
            loaded += 1
            try:
                if program.kprobe_function:
                    links.enter_context(attach_kprobe(prog, program.kprobe_function, program.retprobe))
                else:
                    links.enter_context(attach_tracing(prog))
                attached += 1
            except OSError:
                pass
            load_s += t1 - t0
            attach_s += time.perf_counter() - t1
        t2 = time.perf_counter()
        links.close()
        detach_s = time.perf_counter() - t2
    functions = len({(p.target, p.module) for p in plan.probes})
    return {
        "backend": backend,
        "functions": functions,
        "programs_loaded": loaded,
        "probes_attached": attached,
        "multi_links": len(plan.multi),
        "prepare_s": round(prepared - start, 3),
        "load_s": round(load_s, 3),
        "attach_s": round(attach_s, 3),
        "detach_s": round(detach_s, 3),
        "kernel_s": round(load_s + attach_s + detach_s, 3),
    }


def whole(argv: List[str]) -> float:
    """Seconds for the command, start to exit (its output discarded); it must exit 0."""
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True, cwd=REPO)
    return time.perf_counter() - start


def commands(glob: str, backends: List[str]) -> Dict[str, List[str]]:
    ksnoop = [sys.executable, "-m", "ksnoop", "trace", "--summary", "--calls-only", "--duration", "1"]
    bpftrace = ["bpftrace", "-e"]
    count = "{ @c = count(); } interval:s:1 { exit(); }"
    out: Dict[str, List[str]] = {}
    for backend in backends:
        out[f"ksnoop_{backend}_glob"] = [*ksnoop, "--backend", backend, "--max-probes", "10000", glob]
        out[f"ksnoop_{backend}_one"] = [*ksnoop, "--backend", backend, ONE]
    out["bpftrace_glob"] = [*bpftrace, f"kprobe:{glob} {count}"]
    out["bpftrace_one"] = [*bpftrace, f"kprobe:{ONE} {count}"]
    return out


def guest(glob: str, rounds: int, backends: List[str]) -> Dict[str, Any]:
    results: Dict[str, Any] = {"glob": glob, "steps": {b: steps(glob, b) for b in backends}}
    argvs = commands(glob, backends)
    times: Dict[str, List[float]] = {name: [] for name in argvs}
    names = list(times)
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            times[name].append(whole(argvs[name]))
    medians = {name: statistics.median(values) for name, values in times.items()}
    results["whole_process_s"] = {name: round(value, 2) for name, value in medians.items()}
    tools = [f"ksnoop_{backend}" for backend in backends] + ["bpftrace"]
    above = {tool: medians[f"{tool}_glob"] - medians[f"{tool}_one"] for tool in tools}
    results["glob_above_one_function_s"] = {tool: round(value, 2) for tool, value in above.items()}
    ratios: Dict[str, Any] = {}
    if "kprobe" in backends:
        ratios["ksnoop_kprobe/bpftrace (glob above one)"] = (
            round(above["ksnoop_kprobe"] / above["bpftrace"], 2) if above["bpftrace"] > 0 else None
        )
    if {"kprobe", "fentry"} <= set(backends):
        ratios["ksnoop_kprobe/ksnoop_fentry (glob above one)"] = round(
            above["ksnoop_kprobe"] / above["ksnoop_fentry"], 3
        )
        ratios["kernel time, kprobe/fentry"] = round(
            results["steps"]["kprobe"]["kernel_s"] / results["steps"]["fentry"]["kernel_s"], 3
        )
    results["ratios"] = ratios
    results["rounds"] = rounds
    results["machine"] = machine()
    return results


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("glob", nargs="?", default="tcp_*", help="the functions to attach (default tcp_*)")
    parser.add_argument("--kernel", default=None, help="the VM kernel to boot (tests/vm/harness.py's names)")
    parser.add_argument("--rounds", type=int, default=3, help="whole-process runs of each command (default 3)")
    parser.add_argument(
        "--backends",
        default="kprobe,fentry",
        help="ksnoop's backends to measure, by commas (default kprobe,fentry; the fentry glob takes minutes under TCG)",
    )
    parser.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)  # the side that runs in the VM
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or not set(backends) <= {"kprobe", "fentry"}:
        parser.error(f"--backends {args.backends}: kprobe, fentry or both, by commas")
    if args.guest:
        print(json.dumps(guest(args.glob, args.rounds, backends)))
        return 0
    sys.path.insert(0, str(REPO))
    from tests.vm import harness

    host = environment()  # before the run: the commit the guest runs, from the shared checkout
    # The guest sees this checkout read-only, where Python cannot write its bytecode cache: compile
    # it here, as an installed package comes, or each guest process compiles every module again.
    for package in ("bpf", "btf", "ksnoop"):
        compileall.compile_dir(str(REPO / package), quiet=1)
    with harness.VM(kernel=args.kernel or harness.DEFAULT_KERNEL) as vm:
        result = vm.run(
            [
                "python3",
                str(Path(__file__).resolve()),
                "--guest",
                "--rounds",
                str(args.rounds),
                "--backends",
                ",".join(backends),
                args.glob,
            ],
            timeout=7200,
            cwd=str(REPO),
        )
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        return 1
    figures: Dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    figures["benchmark"] = "vm_attach"
    # Measured in the guest (its kernel, its emulated CPU, its Python) from this checkout; qemu ran here.
    figures["measured_on"] = {**figures.pop("machine", {}), "commit": host["commit"]}
    figures["host"] = {k: v for k, v in host.items() if k != "commit"}
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
