# SPDX-License-Identifier: GPL-2.0-only
"""endings: fault injection. `--runs` runs (default 200) of ksnoop, each sent a signal (INT, TERM,
HUP or KILL, in turn) at a uniformly random moment in its first 3 s, the commands in turn:
`trace --summary tp:sched_switch tp:sys_enter`, `trace 'tp:sched_*'`, `trace -o json tp:sys_enter`
and `dump task_file`. Counted: tracebacks (and Python's own "Exception ignored" / "Fatal Python
error"), exit statuses other than the one the moment calls for (128 + the signal before
everything is attached, 0 after it, or the signal itself for KILL), and ksnoop_* programs, links
and maps left loaded once the process is gone and the kernel has had a moment to free them."""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import time
from typing import Any, Dict, List

from common import ROOT
from tests.support.kernel_objects import BPFTOOL, ksnoop_objects, leftovers
from tests.support.ready import split_ready

COMMANDS = [
    ["trace", "--summary", "tp:sched_switch", "tp:sys_enter"],
    ["trace", "tp:sched_*"],
    ["trace", "-o", "json", "tp:sys_enter"],
    ["dump", "task_file"],
]
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL]
WINDOW_S = 3.0
FREED_WITHIN_S = 2.0  # the kernel frees programs and maps through RCU, a moment after the fds close


def _expected(sig: int, stderr: str, returncode: int) -> bool:
    if sig == signal.SIGKILL:
        return returncode == -signal.SIGKILL or returncode == 0  # a dump may finish first
    ready, rest = split_ready(stderr)
    finished = bool(ready) or rest.endswith((" records\n", " record\n"))
    if finished:  # attached (so it drained and summarised), or a dump done before the signal
        return returncode in (0, -sig)  # -sig: it found Python finishing, the handlers gone
    return returncode == 128 + sig and rest == ""


def run(args: argparse.Namespace) -> Dict[str, Any]:
    if BPFTOOL is None:
        raise SystemExit("bpftool not found: apt-get install bpftool")
    rng = random.Random(args.seed)
    runs: List[Dict[str, Any]] = []
    for n in range(args.runs):
        # Every command meets every signal: the signal turns once per round of the commands.
        command, sig = COMMANDS[n % len(COMMANDS)], SIGNALS[(n // len(COMMANDS)) % len(SIGNALS)]
        delay = rng.uniform(0.0, WINDOW_S)
        before = ksnoop_objects()
        proc = subprocess.Popen(
            [sys.executable, "-m", "ksnoop", *command],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(delay)
        signalled = proc.poll() is None
        if signalled:
            proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
        deadline = time.monotonic() + FREED_WITHIN_S
        left = leftovers(before)
        while any(left.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
            left = leftovers(before)
        runs.append(
            {
                "command": " ".join(command),
                "signal": signal.Signals(sig).name,
                "delay_s": round(delay, 3),
                "signalled": signalled,
                "returncode": proc.returncode,
                "traceback": any(t in stderr for t in ("Traceback", "Exception ignored", "Fatal Python error")),
                "as_expected": not signalled or _expected(sig, stderr, proc.returncode),
                "left": {kind: sorted(ids) for kind, ids in left.items() if ids},
                "stderr": stderr[-400:] if "Traceback" in stderr or "Fatal" in stderr else "",
            }
        )
    bad = [r for r in runs if r["traceback"] or not r["as_expected"] or r["left"]]
    return {
        "benchmark": "endings",
        "runs": len(runs),
        "signalled": sum(r["signalled"] for r in runs),
        "by_signal": {s.name: sum(r["signal"] == s.name and r["signalled"] for r in runs) for s in SIGNALS},
        "ended_before_attaching": sum(r["signalled"] and r["returncode"] > 128 for r in runs),
        "drained_and_summarised": sum(r["signalled"] and r["returncode"] == 0 for r in runs),
        "killed": sum(r["signalled"] and r["returncode"] < 0 for r in runs),
        "tracebacks": sum(r["traceback"] for r in runs),
        "unexpected_status": sum(not r["as_expected"] for r in runs),
        "left_loaded": {k: sum(len(r["left"].get(k, [])) for r in runs) for k in ("prog", "link", "map")},
        "bad_runs": bad,
        "seed": args.seed,
        "target": "0 tracebacks, 0 unexpected statuses, 0 programs, links or maps left",
    }
