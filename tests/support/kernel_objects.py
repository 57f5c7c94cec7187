# SPDX-License-Identifier: GPL-2.0-only
"""What ksnoop holds in the kernel, seen from outside: the ids of ksnoop_* programs and maps and of
the links to them, and those that live processes hold, so a test or a benchmark can tell what a
ksnoop that ended left loaded.

The kernel is asked directly, read only: BPF_{PROG,LINK,MAP}_GET_NEXT_ID walk every id, and
BPF_*_GET_FD_BY_ID with BPF_OBJ_GET_INFO_BY_FD give each one's name, a link's program and a
program's maps (CAP_SYS_ADMIN). No bpftool: nothing to install, and no listing that fails when an
object goes away between its walk and its open (here such an object is simply gone).

Other processes load and unload programs meanwhile (other tests, other ksnoops), so an object
counts as left over only if it is new since a snapshot, ksnoop's (named ksnoop_*, or a link to
such a program), and held by no live process; and freeing one (a program's maps go after an RCU
grace period) takes a moment after the last fd closes, so `leftovers_within` asks again.
"""

from __future__ import annotations

import ctypes
import os
import re
import time
from typing import Dict, Iterator, List, Optional, Sequence, Set, Union

from bpf import syscall
from bpf.uapi import Cmd

KINDS = ("prog", "link", "map")
PREFIX = b"ksnoop_"  # every program and map ksnoop makes is named so (bpf/codegen.py, bpf/features.py)

Objects = Dict[str, Set[int]]

_NEXT_ID = {"prog": Cmd.PROG_GET_NEXT_ID, "link": Cmd.LINK_GET_NEXT_ID, "map": Cmd.MAP_GET_NEXT_ID}
_FD_BY_ID = {"prog": Cmd.PROG_GET_FD_BY_ID, "link": Cmd.LINK_GET_FD_BY_ID, "map": Cmd.MAP_GET_FD_BY_ID}
_MAX_MAP_IDS = 64  # more maps than any program uses
_Info = Union[syscall.bpf_prog_info, syscall.bpf_link_info, syscall.bpf_map_info]


def iter_ids(kind: str) -> Iterator[int]:
    """The ids of every "prog", "link" or "map" loaded now, ascending."""
    attr = syscall.bpf_attr()
    while True:
        try:
            syscall.bpf(_NEXT_ID[kind], attr)
        except FileNotFoundError:  # ENOENT: past the last one
            return
        yield int(attr.get_id.next_id)
        attr.get_id.start_id = attr.get_id.next_id


def _info(kind: str, obj_id: int, map_ids: Optional[List[int]] = None) -> Optional[_Info]:
    # Its bpf_*_info, None if it went away since it was listed (or is not whole yet); a program's
    # map ids into `map_ids`.
    attr = syscall.bpf_attr()
    attr.get_id.start_id = obj_id
    try:
        fd = syscall.bpf(_FD_BY_ID[kind], attr)
    except (FileNotFoundError, BlockingIOError):  # ENOENT: freed; EAGAIN: a link still being made
        return None
    try:
        info: _Info
        if kind == "prog":
            info = syscall.bpf_prog_info()
            ids = (ctypes.c_uint32 * _MAX_MAP_IDS)()
            info.nr_map_ids, info.map_ids = _MAX_MAP_IDS, ctypes.addressof(ids)
            syscall.obj_get_info_by_fd(fd, info)
            if map_ids is not None:
                map_ids.extend(ids[: min(info.nr_map_ids, _MAX_MAP_IDS)])
        else:
            info = syscall.bpf_link_info() if kind == "link" else syscall.bpf_map_info()
            syscall.obj_get_info_by_fd(fd, info)
        return info
    finally:
        os.close(fd)


def _named_ksnoop(kind: str, obj_id: int) -> bool:
    info = _info(kind, obj_id)
    return info is not None and bytes(getattr(info, "name")).startswith(PREFIX)


def ksnoop_objects() -> Objects:
    """ids of the ksnoop_* programs and maps loaded now, and of the links to those programs."""
    progs = {i for i in iter_ids("prog") if _named_ksnoop("prog", i)}
    links = set()
    for link_id in iter_ids("link"):
        link = _info("link", link_id)
        if isinstance(link, syscall.bpf_link_info) and link.prog_id in progs:
            links.add(link_id)
    maps = {i for i in iter_ids("map") if _named_ksnoop("map", i)}
    return {"prog": progs, "link": links, "map": maps}


def held_ids(pids: Optional[Sequence[int]] = None) -> Objects:
    """The BPF programs, links and maps that live processes (or these ones) hold: by an fd of
    their own (/proc/PID/fdinfo), a program through a link held, a map through a program held."""
    held: Objects = {kind: set() for kind in KINDS}
    if pids is None:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # gone, or not ours to look at
        for fd in fds:
            try:
                if not os.readlink(f"/proc/{pid}/fd/{fd}").startswith("anon_inode:bpf"):
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    fdinfo = f.read()
            except OSError:
                continue
            for key, kind in (("prog_id", "prog"), ("link_id", "link"), ("map_id", "map")):
                m = re.search(rf"^{key}:\s*(\d+)$", fdinfo, re.M)
                if m:
                    held[kind].add(int(m[1]))
    for link_id in held["link"]:
        link = _info("link", link_id)
        if isinstance(link, syscall.bpf_link_info) and link.prog_id:
            held["prog"].add(int(link.prog_id))
    for prog_id in held["prog"]:
        map_ids: List[int] = []
        _info("prog", prog_id, map_ids)
        held["map"].update(map_ids)
    return held


def leftovers(before: Objects) -> Objects:
    """ksnoop's objects loaded now that were not in `before` (a `ksnoop_objects()`) and that no
    live process holds."""
    new = {kind: ids - before[kind] for kind, ids in ksnoop_objects().items()}
    if not any(new.values()):
        return new
    held = held_ids()
    return {kind: new[kind] - held[kind] for kind in KINDS}


def leftovers_within(before: Objects, seconds: float) -> Objects:
    """`leftovers(before)`, asked again every 20 ms until there are none or `seconds` have passed
    (freeing goes through RCU and workqueues: a moment after the fds close); what is left then."""
    deadline = time.monotonic() + seconds
    while True:
        left = leftovers(before)
        if not any(left.values()) or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


def wait_until_gone(before: Objects) -> None:
    """Assert that, within 5 s, nothing new of ksnoop's since `before` stays loaded unheld."""
    left = leftovers_within(before, 5.0)
    assert not any(left.values()), f"ksnoop objects left loaded and held by no process: {left}"
