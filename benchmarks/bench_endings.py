# SPDX-License-Identifier: GPL-2.0-only
"""endings: fault injection. `--runs` runs (default 200) of ksnoop, each sent a signal (INT, TERM,
HUP or KILL, in turn) at a uniformly random moment in its first 3 s, the commands in turn:
`trace --summary tp:sched_switch tp:sys_enter`, `trace 'tp:sched_*'`, `trace -o json tp:sys_enter`
and `dump task_file` (stdout to /dev/null). Counted: tracebacks (and Python's own "Exception
ignored" / "Fatal Python error"), exit statuses other than the one the moment calls for, runs that
did not end within 30 s of their signal, and ksnoop_* programs, links and maps left loaded once the
process is gone and the kernel has had a second to free them (tests/support/kernel_objects.py).

The status a moment calls for: 0 once the ready line is out (drained and summarised) or once the
process has ended on its own (a dump done); before that, 128 + the signal, or the signal itself
where it arrives while Python is starting, before ksnoop's first line has set a handler (INT then
raises KeyboardInterrupt in Python's start-up: counted as a traceback, "in start-up"); -9 for KILL.

`python3 benchmarks/run.py endings [--runs N] [--seed S]` prints the figures as JSON;
`python3 benchmarks/bench_endings.py [--runs N] [--seed S] [--json]` prints a table, and exits 1
when a run left a traceback or something loaded.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Tuple

from common import ROOT, environment, require_bpf

COMMANDS = [
    ["trace", "--summary", "tp:sched_switch", "tp:sys_enter"],
    ["trace", "tp:sched_*"],
    ["trace", "-o", "json", "tp:sys_enter"],
    ["dump", "task_file"],
]
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL]
WINDOW_S = 3.0
ENDS_WITHIN_S = 30.0  # after its signal; a glob's 35 links detach in well under a second
FREED_WITHIN_S = 1.0  # the kernel frees programs and maps through RCU, a moment after the fds close
KINDS = ("prog", "link", "map")


def _traceback(stderr: str) -> bool:
    return any(t in stderr for t in ("Traceback", "Exception ignored", "Fatal Python error"))


def _phase(stderr: str, signalled: bool) -> str:
    """Where the signal found ksnoop: "ended first" (before it was sent), "attached" (the ready line
    or a summary is out: a trace drains, a dump was done), else "starting"."""
    from tests.support.ready import split_ready

    if not signalled:
        return "ended first"
    ready, rest = split_ready(stderr)
    return "attached" if ready or rest.endswith((" records\n", " record\n")) else "starting"


def _expected(sig: int, phase: str, returncode: int, stderr: str) -> bool:
    if phase == "ended first":
        return returncode == 0
    if sig == signal.SIGKILL:
        return returncode in (-signal.SIGKILL, 0)  # 0: it ended between the look and the kill
    if phase == "attached":
        return returncode in (0, -sig)  # -sig: it found Python finishing, the handlers gone
    from tests.support.ready import split_ready

    # -sig: Python was starting, before ksnoop's handler (INT: a KeyboardInterrupt, counted apart).
    # Quietly: at most the resolver's notes ("tracing 35 tracepoints matching ...") came before it.
    return returncode in (128 + sig, -sig) and ("error" not in split_ready(stderr)[1] or _traceback(stderr))


def one_run(command: List[str], sig: int, delay: float) -> Dict[str, Any]:
    """Start `ksnoop COMMAND`, send `sig` after `delay` s (unless it ended), wait for its end and
    for the kernel to free what it held; what happened."""
    from tests.support.kernel_objects import ksnoop_objects, leftovers_within

    before = ksnoop_objects()
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ksnoop", *command],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        time.sleep(delay)
        signalled = proc.poll() is None
        if signalled:
            proc.send_signal(sig)
        hung = False
        try:
            proc.wait(timeout=ENDS_WITHIN_S)
        except subprocess.TimeoutExpired:
            hung = True
            proc.kill()
            proc.wait()
        err.seek(0)
        stderr = err.read()
    left = leftovers_within(before, FREED_WITHIN_S)
    late = {}
    if any(left.values()):  # left after a second: gone later (slow to free), or leaked?
        late = leftovers_within(before, 10.0)
    phase = _phase(stderr, signalled)
    traceback = _traceback(stderr)
    return {
        "command": " ".join(command),
        "signal": signal.Signals(sig).name,
        "delay_s": round(delay, 3),
        "phase": phase,
        "returncode": proc.returncode,
        "hung": hung,
        "traceback": traceback,
        # No frame of ksnoop's own: Python's start-up, before ksnoop's first line runs.
        "traceback_in_startup": traceback and "/ksnoop/" not in stderr,
        "as_expected": not hung and _expected(sig, phase, proc.returncode, stderr),
        "left": {kind: sorted(ids) for kind, ids in left.items() if ids},
        "left_after_10s": {kind: sorted(ids) for kind, ids in late.items() if ids},
        "stderr": stderr[-600:],
    }


def run(args: argparse.Namespace) -> Dict[str, Any]:
    return figures_of(args, measure(args))


def measure(args: argparse.Namespace) -> List[Dict[str, Any]]:
    """`args.runs` runs, the moments drawn from `args.seed`."""
    require_bpf()
    rng = random.Random(args.seed)
    runs: List[Dict[str, Any]] = []
    for n in range(args.runs):
        # Every command meets every signal: the signal turns once per round of the commands.
        command, sig = COMMANDS[n % len(COMMANDS)], SIGNALS[(n // len(COMMANDS)) % len(SIGNALS)]
        runs.append(one_run(command, sig, rng.uniform(0.0, WINDOW_S)))
    return runs


def figures_of(args: argparse.Namespace, runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The totals, and every run that went wrong with the end of its stderr."""
    bad = [r for r in runs if r["traceback"] or not r["as_expected"] or r["left"]]
    return {
        "benchmark": "endings",
        "runs": len(runs),
        "seed": args.seed,
        "by_phase": {p: sum(r["phase"] == p for r in runs) for p in ("starting", "attached", "ended first")},
        "by_status": {str(s): sum(r["returncode"] == s for r in runs) for s in sorted({r["returncode"] for r in runs})},
        "tracebacks": sum(r["traceback"] for r in runs),
        "tracebacks_in_startup": sum(r["traceback_in_startup"] for r in runs),
        "unexpected_status": sum(not r["as_expected"] for r in runs),
        "hung": sum(r["hung"] for r in runs),
        "left_loaded": {k: sum(len(r["left"].get(k, [])) for r in runs) for k in KINDS},
        "left_after_10s": {k: sum(len(r["left_after_10s"].get(k, [])) for r in runs) for k in KINDS},
        "bad_runs": bad,
        "target": "0 tracebacks, 0 unexpected statuses, 0 programs, links or maps left",
    }


def table(figures: Dict[str, Any], runs: List[Dict[str, Any]]) -> str:
    """One row per command and signal, a row of totals, then each run that went wrong."""
    head = ("command", "signal", "runs", "starting", "attached", "ended 1st", "tracebk", "status", "hung", "left")
    rows = []
    for command in [" ".join(c) for c in COMMANDS]:
        for sig in [s.name for s in SIGNALS]:
            these = [r for r in runs if r["command"] == command and r["signal"] == sig]
            if these:
                rows.append((command, sig, *_counts(these)))
    rows.append(("all", "", *_counts(runs)))
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(str(v).ljust(w) if i < 2 else str(v).rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
        for row in [head, *rows]
    ]
    left = figures["left_loaded"]
    lines.append(
        f"{figures['runs']} runs (seed {figures['seed']}): {figures['tracebacks']} tracebacks "
        f"({figures['tracebacks_in_startup']} in Python's start-up), {figures['unexpected_status']} wrong statuses "
        f"({figures['hung']} hung), left loaded: {left['prog']} programs, {left['link']} links, {left['map']} maps"
    )
    for r in figures["bad_runs"]:
        lines.append(
            f"\n{r['command']}: {r['signal']} at {r['delay_s']} s ({r['phase']}): status {r['returncode']}"
            + (", hung" if r["hung"] else "")
            + (f", left {r['left']}" if r["left"] else "")
            + (f" (still after 10 s: {r['left_after_10s']})" if r["left_after_10s"] else "")
            + "\n  "
            + "\n  ".join(r["stderr"].splitlines()[-8:])
        )
    return "\n".join(lines)


def _counts(runs: List[Dict[str, Any]]) -> Tuple[int, ...]:
    return (
        len(runs),
        sum(r["phase"] == "starting" for r in runs),
        sum(r["phase"] == "attached" for r in runs),
        sum(r["phase"] == "ended first" for r in runs),
        sum(r["traceback"] for r in runs),
        sum(not r["as_expected"] for r in runs),
        sum(r["hung"] for r in runs),
        sum(len(ids) for r in runs for ids in r["left"].values()),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="runs (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="the seed of the random moments (default 1)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    sys.path.insert(0, ROOT)  # ksnoop, bpf and tests, from this checkout
    measured_on = environment()
    runs = measure(args)
    figures = figures_of(args, runs)
    figures["measured_on"] = measured_on
    print(json.dumps(figures) if args.json else table(figures, runs))
    return 1 if figures["tracebacks"] or any(figures["left_loaded"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
