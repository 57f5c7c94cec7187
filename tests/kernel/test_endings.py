# SPDX-License-Identifier: GPL-2.0-only
"""How `ksnoop trace` and `ksnoop dump` end, on this machine's kernel: by a signal before or after
everything is attached, by an output that fails, by a reader that goes away. Each ends with no
traceback, the status it should, and nothing of ksnoop's left loaded in the kernel.

Synchronisation: the ready line on stderr says every probe is attached."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

from tests.kernel.test_trace_cli import nothing_left_loaded  # noqa: F401  (a fixture)
from tests.support.ready import READY, split_ready, wait_ready

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_kernel", "nothing_left_loaded")]

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60.0
STOP = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP}


def _start(*args: str, stdout: object = subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ksnoop", *args],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )


def _ready(proc: subprocess.Popen) -> str:
    assert proc.stderr is not None
    return wait_ready(proc.stderr)[0]


def _no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr


@pytest.mark.parametrize("name", list(STOP))
def test_a_signal_after_attaching_drains_summarises_and_exits_0(name: str) -> None:
    proc = _start("trace", "-o", "json", "tp:sys_enter(id)")
    assert _ready(proc) == "ksnoop: tracing 1 tracepoint; Ctrl-C to stop"
    proc.send_signal(STOP[name])
    _, rest = proc.communicate(timeout=TIMEOUT)
    _no_traceback(rest)
    assert proc.returncode == 0, rest
    assert rest.startswith("ksnoop: ") and rest.endswith(" records\n") and rest.count("\n") == 1, rest


@pytest.mark.parametrize("name", list(STOP))
def test_a_signal_after_attaching_a_summary_still_prints_it(name: str) -> None:
    proc = _start("trace", "--summary", "tp:sys_enter", stdout=subprocess.PIPE)
    assert _ready(proc).startswith("ksnoop: counting calls of 1 tracepoint; ")
    proc.send_signal(STOP[name])
    out, rest = proc.communicate(timeout=TIMEOUT)
    _no_traceback(rest)
    assert proc.returncode == 0 and out.startswith("tp:sys_enter: ") and rest.endswith(" counted\n"), (out, rest)


def _catches(pid: int, sig: int) -> bool:
    """Whether the process has a handler for `sig` (its SigCgt mask in /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(caught >> (sig - 1) & 1)


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.3])
@pytest.mark.parametrize("name", list(STOP))
@pytest.mark.parametrize("command", [["trace", "tp:sched_*"], ["dump", "task_file"]], ids=["trace", "dump"])
def test_a_signal_while_starting_ends_quietly_with_128_plus_its_number(
    command: List[str], name: str, delay: float
) -> None:
    # `delay` from ksnoop's first line, which sets the handlers: before it, Python is still starting
    # (its site imports) and a signal does what it does to any Python program (bench_endings counts
    # those apart).
    proc = _start(*command)
    deadline = time.monotonic() + TIMEOUT
    while not _catches(proc.pid, signal.SIGTERM) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(delay)
    proc.send_signal(STOP[name])
    _, stderr = proc.communicate(timeout=TIMEOUT)
    _no_traceback(stderr)
    ready, rest = split_ready(stderr)
    if ready or rest.endswith(" records\n"):
        # Quicker than the signal: attached (so it drained and summarised), or a dump done; the
        # signal may even find Python finishing, its handlers gone, and end it as it would.
        assert proc.returncode in (0, -STOP[name]), stderr
    else:  # quietly: at most the resolver's notes ("tracing 35 tracepoints matching ...") before it
        assert proc.returncode == 128 + STOP[name] and "error" not in rest, stderr


def test_signals_all_through_the_end_leave_one_summary_and_no_traceback() -> None:
    # INT, TERM and HUP every 5 ms from the ready line on: through draining, detaching a glob's 35
    # links, summarising and Python's own finishing.
    proc = _start("trace", "tp:sched_*")
    _ready(proc)
    signals = list(STOP.values())
    sent = 0
    deadline = time.monotonic() + TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        proc.send_signal(signals[sent % len(signals)])
        sent += 1
        time.sleep(0.005)
    _, rest = proc.communicate(timeout=TIMEOUT)
    _no_traceback(rest)
    summaries = [line for line in rest.splitlines() if re.fullmatch(r"ksnoop: \d+ records?(, .*)?", line)]
    assert len(summaries) == 1 and rest.endswith(summaries[0] + "\n"), (proc.returncode, rest)
    # 0; or, from a signal after the summary, 128 + it (ksnoop's first handler back) or the signal
    # itself (Python finishing, its handlers gone).
    assert proc.returncode == 0 or abs(proc.returncode) % 128 in signals, (proc.returncode, rest)


def test_ready_line_once_before_any_record_and_q_leaves_it_out() -> None:
    for quiet, expected in (([], 1), (["-q"], 0)):
        # stderr into stdout's pipe: the lines come in the order ksnoop wrote them.
        result = subprocess.run(
            [sys.executable, "-m", "ksnoop", "trace", *quiet, "-n", "3", "-o", "json", "tp:sys_enter(id)"],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=TIMEOUT,
        )
        lines = result.stdout.splitlines()
        assert result.returncode == 0, result.stdout
        ready = [n for n, line in enumerate(lines) if READY.fullmatch(line)]
        records = [n for n, line in enumerate(lines) if line.startswith("{")]
        assert ready == list(range(expected)) and len(records) == 3, lines  # once, before any record
        assert lines[expected:] == [lines[n] for n in records] + ["ksnoop: 3 records"], lines


def test_dump_says_no_ready_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ksnoop", "dump", "-n", "2", "task"], cwd=REPO, capture_output=True, text=True
    )
    assert (result.returncode, result.stderr) == (0, "ksnoop: 2 records\n"), result.stderr


def test_a_full_disk_is_one_line_and_exit_1() -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "ksnoop", "trace", "-q", "-n", "1000", "tp:sys_enter(id)"],
            cwd=REPO,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=TIMEOUT,
        )
    _no_traceback(result.stderr)
    assert (result.returncode, result.stderr) == (1, "ksnoop: error: writing output: No space left on device\n")


def test_a_closed_stdout_is_one_line_and_exit_1_before_attaching() -> None:
    result = subprocess.run(
        ["sh", "-c", '"$@" >&-', "sh", sys.executable, "-m", "ksnoop", "trace", "tp:sys_enter(id)"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    _no_traceback(result.stderr)
    assert result.returncode == 1
    assert result.stderr == "ksnoop: error: writing output: standard output is closed\n"


def test_a_reader_that_goes_away_ends_it_quietly() -> None:
    proc = _start("trace", "-o", "json", "tp:sys_enter(id)", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    _ready(proc)
    assert proc.stdout.readline()  # a record; then the reader goes, as `| head -1` does
    proc.stdout.close()
    proc.wait(timeout=TIMEOUT)
    rest = proc.stderr.read() if proc.stderr else ""
    _no_traceback(rest)
    assert proc.returncode == 1 and rest == "", rest
