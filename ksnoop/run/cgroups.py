# SPDX-License-Identifier: GPL-2.0-only
"""--cgroup PATH and --cgroup-id ID: the cgroup v2 directory they name, as the probes compare it
(its id, and its level below the cgroup2 root), found once at start from the mounted hierarchy.

A cgroup's id is its kernfs node id, which cgroup2 shows as the directory's inode number (what
bpf_get_current_cgroup_id and bpf_get_current_ancestor_cgroup_id return, and what
name_to_handle_at gives systemd); its level is how many directories it is below the root.
"""

from __future__ import annotations

import os
from typing import List, Optional, Tuple

from bpf.plan import CgroupFilter

from ksnoop.errors import RuntimeFailure, UsageError

MOUNTINFO = "/proc/self/mountinfo"


def cgroup2_mounts(mountinfo: str = MOUNTINFO) -> List[str]:
    """Where cgroup2 hierarchies are mounted (its root, or a part of it), as mountinfo lists them."""
    mounts = []
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            if " - " not in line:
                continue
            after = line.split(" - ", 1)[1].split()
            if after and after[0] == "cgroup2" and fields[3] == "/":  # fields[3]: the mount's root
                mounts.append(fields[4].replace("\\040", " "))
    return mounts


def _mount_of(path: str, mounts: List[str]) -> Optional[str]:
    best = None
    for mount in mounts:
        if (path == mount or path.startswith(mount.rstrip("/") + "/")) and (best is None or len(mount) > len(best)):
            best = mount
    return best


def cgroup_by_path(path: str, mounts: Optional[List[str]] = None) -> CgroupFilter:
    """The cgroup v2 directory at `path`: UsageError when it is none (or a v1 one), RuntimeFailure
    when no cgroup2 hierarchy is mounted at all."""
    mounts = cgroup2_mounts() if mounts is None else mounts
    if not mounts:
        raise RuntimeFailure(_NO_CGROUP2)
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError as error:
        raise UsageError(f"--cgroup {path}: {error.strerror or error}") from None
    if not os.path.isdir(real):
        raise UsageError(f"--cgroup {path}: not a directory (a cgroup v2 directory, under {mounts[0]})")
    mount = _mount_of(real, mounts)
    if mount is None:
        raise UsageError(f"--cgroup {path}: not in a cgroup v2 hierarchy (cgroup2 is mounted at {', '.join(mounts)})")
    relative = os.path.relpath(real, mount)
    level = 0 if relative == "." else len(relative.split(os.sep))
    return CgroupFilter(id=st.st_ino, level=level)


def cgroup_by_id(cgroup_id: int, mounts: Optional[List[str]] = None) -> Tuple[str, CgroupFilter]:
    """The cgroup v2 directory whose id is `cgroup_id`, and its filter: UsageError when none is."""
    mounts = cgroup2_mounts() if mounts is None else mounts
    if not mounts:
        raise RuntimeFailure(_NO_CGROUP2)
    for mount in mounts:
        for directory, _subdirs, _files in os.walk(mount):
            try:
                if os.stat(directory).st_ino == cgroup_id:
                    return directory, cgroup_by_path(directory, mounts)
            except OSError:  # removed while walking
                continue
    raise UsageError(f"--cgroup-id {cgroup_id}: no cgroup v2 directory has that id (under {', '.join(mounts)})")


_NO_CGROUP2 = (
    "--cgroup: this machine has no cgroup v2 hierarchy mounted, only cgroup v1 if any "
    "(mount one: mount -t cgroup2 none /sys/fs/cgroup/unified)"
)
