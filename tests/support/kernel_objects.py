# SPDX-License-Identifier: GPL-2.0-only
"""What ksnoop holds in the kernel, seen from outside: the ids of ksnoop_* programs and maps and of
the links to them (by bpftool), and those that live processes hold file descriptors of, so a test
or a benchmark can tell what a ksnoop that ended left loaded."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from typing import Any, Dict, Optional, Sequence, Set

BPFTOOL = next((p for p in ("/usr/sbin/bpftool", shutil.which("bpftool")) if p and os.access(p, os.X_OK)), None)


def _bpftool(*args: str) -> Any:
    # bpftool gives up when an object it has listed goes away before it opens it (other tests load
    # and unload programs all the time): ask again.
    for _ in range(20):
        result = subprocess.run([BPFTOOL, "-j", *args], capture_output=True, text=True, check=False, timeout=60)
        if result.returncode == 0:
            return json.loads(result.stdout or "[]")
        time.sleep(0.01)
    raise AssertionError(f"bpftool {' '.join(args)} failed: {result.stdout} {result.stderr}")


def ksnoop_objects() -> Dict[str, Set[int]]:
    """ids of the ksnoop_* programs and maps loaded now, and of the links to those programs."""
    progs = {p["id"] for p in _bpftool("prog", "show") if p.get("name", "").startswith("ksnoop_")}
    links = {link["id"] for link in _bpftool("link", "show") if link.get("prog_id") in progs}
    maps = {m["id"] for m in _bpftool("map", "show") if m.get("name", "").startswith("ksnoop_")}
    return {"prog": progs, "link": links, "map": maps}


def held_ids(pids: Optional[Sequence[int]] = None) -> Dict[str, Set[int]]:
    """The BPF programs, links and maps that live processes (or these ones) hold fds of."""
    out: Dict[str, Set[int]] = {"prog": set(), "link": set(), "map": set()}
    if pids is None:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if not os.readlink(f"/proc/{pid}/fd/{fd}").startswith("anon_inode:bpf"):
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    info = f.read()
            except OSError:
                continue
            for key, kind in (("prog_id", "prog"), ("link_id", "link"), ("map_id", "map")):
                m = re.search(rf"^{key}:\s*(\d+)$", info, re.M)
                if m:
                    out[kind].add(int(m[1]))
    return out


def leftovers(before: Dict[str, Set[int]]) -> Dict[str, Set[int]]:
    now = ksnoop_objects()
    held = held_ids()
    # A link held by a live process keeps its program (and that program its maps) loaded.
    return {kind: now[kind] - before[kind] - held[kind] for kind in now}


def wait_until_gone(before: Dict[str, Set[int]]) -> None:
    deadline = time.monotonic() + 5.0
    while True:
        left = leftovers(before)
        if not any(left.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # freeing goes through RCU and workqueues: a moment after the fds close
    assert not any(left.values()), f"ksnoop objects left loaded and held by no process: {left}"
