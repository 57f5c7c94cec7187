# SPDX-License-Identifier: GPL-2.0-only
"""Where the time goes when ksnoop attaches to many functions, in the VM (this machine's kernel
refuses fentry): `python3 benchmarks/vm_attach.py [GLOB]` (default `tcp_*`).

In the guest (tests/vm/harness.py: Debian 6.1 under qemu TCG) it times, for every function GLOB
matches: preparing (resolving and generating the programs, in Python), loading them (the
verifier), attaching them (a trampoline and an ftrace update per link) and detaching them (closing
the links), one step after another, the way `ksnoop trace` does them. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from common import environment, machine  # this file's directory: both sides run it as a script

REPO = Path(__file__).resolve().parents[1]


def measure(glob: str) -> Dict[str, Any]:
    """The guest side: every step timed once, in this process."""
    sys.path.insert(0, str(REPO))
    from bpf.loader import attach_tracing, load_program
    from bpf.maps import create_maps
    from ksnoop.run.trace import RunOptions, prepare

    start = time.perf_counter()
    resolved, programs = prepare(RunOptions(specs=(glob,), max_probes=10000))
    prepared = time.perf_counter()
    load_s = attach_s = 0.0
    loaded = attached = 0
    with contextlib.ExitStack() as stack:
        maps = create_maps(stack, programs)
        links = contextlib.ExitStack()
        for index, program in enumerate(programs):
            fds = maps.fds(index)
            t0 = time.perf_counter()
            try:
                prog = stack.enter_context(
                    load_program(
                        program.bind_maps(fds),
                        program.prog_type,
                        program.expected_attach_type,
                        program.attach_btf_id,
                        name=program.name,
                    )
                )
            except OSError:
                continue  # a function the verifier refuses: ksnoop leaves it out too
            t1 = time.perf_counter()
            loaded += 1
            try:
                links.enter_context(attach_tracing(prog))
                attached += 1
            except OSError:
                pass
            load_s += t1 - t0
            attach_s += time.perf_counter() - t1
        t2 = time.perf_counter()
        links.close()
        detach_s = time.perf_counter() - t2
    functions = len({(p.target, p.module) for p in resolved.plan.probes})
    return {
        "glob": glob,
        "functions": functions,
        "programs": len(programs),
        "loaded": loaded,
        "attached": attached,
        "prepare_s": round(prepared - start, 3),
        "load_s": round(load_s, 3),
        "attach_s": round(attach_s, 3),
        "detach_s": round(detach_s, 3),
        "load_and_attach_s_per_100_functions": round((load_s + attach_s) / functions * 100, 2),
        "with_prepare_s_per_100_functions": round((prepared - start + load_s + attach_s) / functions * 100, 2),
        "machine": machine(),
    }


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("glob", nargs="?", default="tcp_*", help="the functions to attach (default tcp_*)")
    parser.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)  # the side that runs in the VM
    args = parser.parse_args(argv)
    if args.guest:
        print(json.dumps(measure(args.glob)))
        return 0
    sys.path.insert(0, str(REPO))
    from tests.vm import harness

    glob = args.glob
    host = environment()  # before the run: the commit the guest runs, from the shared checkout
    with harness.VM() as vm:
        result = vm.run(["python3", str(Path(__file__).resolve()), "--guest", glob], timeout=1800, cwd=str(REPO))
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
