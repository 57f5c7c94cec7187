# SPDX-License-Identifier: GPL-2.0-only
"""--uid, --cgroup and --cgroup-id on this machine's kernel: children the test starts exec a copy
of true(1) as another user or from a cgroup it makes, and `tp:sched_process_exec` must show
exactly those the filter keeps, by pid.

Each child waits on its stdin before it execs, so the test can move it into a cgroup first and
start it only once ksnoop says every probe is attached."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

from ksnoop.run.cgroups import cgroup2_mounts
from tests.kernel.test_trace_cli import nothing_left_loaded  # noqa: F401  (a fixture)
from tests.support.ready import wait_ready

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_kernel", "nothing_left_loaded")]

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60.0
NOBODY = 65534
SPEC = "tp:sched_process_exec(p->pid)"


class Child:
    """`sh -c 'read x; exec TRUE'`: started now, exec'd by go()."""

    def __init__(self, true: str, uid: Optional[int] = None) -> None:
        def drop() -> None:
            if uid is not None:
                os.setgid(uid)
                os.setuid(uid)

        self.proc = subprocess.Popen(
            ["sh", "-c", f"read x; exec {true}"], stdin=subprocess.PIPE, preexec_fn=drop if uid is not None else None
        )
        self.pid = self.proc.pid

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"\n")
        self.proc.stdin.close()
        assert self.proc.wait(timeout=TIMEOUT) == 0


@pytest.fixture
def true_copy(tmp_path: Path) -> str:
    """A copy of true(1) others may run: the tmp dir is root's, so put it where nobody can read it."""
    target = Path("/tmp") / f"ksnoop-true-{os.getpid()}"
    shutil.copy(shutil.which("true") or "/bin/true", target)
    target.chmod(0o755)
    yield str(target)
    target.unlink()


def _trace(*args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ksnoop", "trace", "-o", "json", *args, SPEC],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    wait_ready(proc.stderr)
    return proc


def _execs(proc: subprocess.Popen) -> List[int]:
    proc.send_signal(2)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    return [json.loads(line)["args"]["p->pid"] for line in out.splitlines()]


def test_uid_keeps_only_that_users_tasks(true_copy: str) -> None:
    nobody, root = Child(true_copy, uid=NOBODY), Child(true_copy)
    trace = _trace("--uid", str(NOBODY))
    nobody.go()
    root.go()
    execs = _execs(trace)
    assert nobody.pid in execs and root.pid not in execs, (execs, nobody.pid, root.pid)


@contextlib.contextmanager
def _cgroup(parent: str, name: str) -> Iterator[str]:
    path = os.path.join(parent, name)
    os.mkdir(path)
    try:
        yield path
    finally:
        for _ in range(100):  # the exec'd children leave it as they are reaped
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.05)


@pytest.fixture
def cgroup2() -> str:
    mounts = cgroup2_mounts()
    if not mounts:
        pytest.skip("no cgroup2 hierarchy is mounted (this machine mounts one at /sys/fs/cgroup/unified)")
    return mounts[0]


@pytest.mark.parametrize("by", ["path", "id"])
def test_cgroup_keeps_its_tasks_and_those_below_it(true_copy: str, cgroup2: str, by: str) -> None:
    with _cgroup(cgroup2, f"ksnoop-test-{os.getpid()}") as outer, _cgroup(outer, "inner") as inner:
        inside, below, outside = Child(true_copy), Child(true_copy), Child(true_copy)
        Path(outer, "cgroup.procs").write_text(str(inside.pid))
        Path(inner, "cgroup.procs").write_text(str(below.pid))
        option = ["--cgroup", outer] if by == "path" else ["--cgroup-id", str(os.stat(outer).st_ino)]
        trace = _trace(*option)
        for child in (inside, below, outside):
            child.go()
        execs = _execs(trace)
    assert inside.pid in execs and below.pid in execs and outside.pid not in execs, (execs, inside.pid)


def test_a_cgroup_that_is_not_one_says_so(cgroup2: str, tmp_path: Path) -> None:
    for option, value, says in (
        ("--cgroup", str(tmp_path), f"--cgroup {tmp_path}: not in a cgroup v2 hierarchy (cgroup2 is mounted at"),
        ("--cgroup", "/nonexistent", "--cgroup /nonexistent: No such file or directory"),
        ("--cgroup-id", "999999999", "--cgroup-id 999999999: no cgroup v2 directory has that id"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "ksnoop", "trace", option, value, SPEC],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert (result.returncode, result.stdout) == (2, ""), result.stderr
        assert result.stderr.startswith("ksnoop: error: " + says) and result.stderr.count("\n") == 1, result.stderr
