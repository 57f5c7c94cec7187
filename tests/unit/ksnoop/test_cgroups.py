# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.run.cgroups without a kernel: where cgroup2 is mounted, from mountinfo text as the kernel
writes it, and a directory's id and level under such a mount (a tmp directory tree standing in
for the hierarchy: an id is an inode number, a level a count of directories)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ksnoop.errors import RuntimeFailure, UsageError
from ksnoop.run.cgroups import cgroup2_mounts, cgroup_by_id, cgroup_by_path

# This machine's, in part: a hybrid layout, cgroup v1 controllers and cgroup2 at .../unified;
# a second cgroup2 bind-mounted from a sub-cgroup (its root is not "/": not a hierarchy's root).
MOUNTINFO = """\
25 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 30 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,memory
40 25 0:27 /system.slice /mnt/slice rw,relatime - cgroup2 cgroup2 rw
41 25 0:40 / /mnt/with\\040space rw,relatime - cgroup2 cgroup2 rw
"""


def test_cgroup2_mounts_are_the_roots_of_cgroup2_hierarchies(tmp_path: Path) -> None:
    path = tmp_path / "mountinfo"
    path.write_text(MOUNTINFO)
    assert cgroup2_mounts(str(path)) == ["/sys/fs/cgroup/unified", "/mnt/with space"]


def test_a_directorys_level_is_its_depth_under_the_mount(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    (root / "a" / "b").mkdir(parents=True)
    mounts = [str(root)]
    assert cgroup_by_path(str(root), mounts).level == 0
    assert cgroup_by_path(str(root / "a"), mounts).level == 1
    deep = cgroup_by_path(str(root / "a" / "b") + "/", mounts)
    assert (deep.id, deep.level) == (os.stat(root / "a" / "b").st_ino, 2)
    assert cgroup_by_id(os.stat(root / "a").st_ino, mounts) == (
        str(root / "a"),
        cgroup_by_path(str(root / "a"), mounts),
    )


@pytest.mark.parametrize(
    "where, says",
    [
        ("outside", "not in a cgroup v2 hierarchy (cgroup2 is mounted at "),
        ("missing", "No such file or directory"),
        ("file", "not a directory"),
    ],
)
def test_what_is_no_cgroup_is_a_usage_error(tmp_path: Path, where: str, says: str) -> None:
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.procs").write_text("")
    path = {"outside": tmp_path, "missing": root / "nope", "file": root / "cgroup.procs"}[where]
    with pytest.raises(UsageError, match=re.escape(says)):
        cgroup_by_path(str(path), [str(root)])


def test_an_id_no_directory_has_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--cgroup-id 12345678: no cgroup v2 directory has that id"):
        cgroup_by_id(12345678, [str(tmp_path)])


def test_no_cgroup2_at_all_is_a_runtime_failure(tmp_path: Path) -> None:
    for lookup in (lambda: cgroup_by_path(str(tmp_path), []), lambda: cgroup_by_id(1, [])):
        with pytest.raises(RuntimeFailure, match="no cgroup v2 hierarchy mounted") as failed:
            lookup()
        assert failed.value.exit_status == 1
