# SPDX-License-Identifier: GPL-2.0-only
"""BPF iterators: link an iterator program to its target, then read what it writes.

`attach_iter(prog, iter_info)` is BPF_LINK_CREATE with BPF_TRACE_ITER and an optional packed
union bpf_iter_link_info (a map, a task or a cgroup to walk); `IterLink.open()` is
BPF_ITER_CREATE, and each read() of the IterReader it returns runs the program over the next
objects and returns the bytes it gave bpf_seq_write, until EOF. Links and readers own their fds.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from . import syscall
from .fd import FdOwner
from .loader import LoadedProgram
from .uapi import AttachType, CgroupIterOrder, ProgType

# bpf_seq_read gives every iterator a seq_file buffer of PAGE_SIZE << 3 and never grows it.
SEQ_BUFFER_PAGES = 8
# A read returns at most one buffer: asking for twice that never cuts one short.
READ_SIZE = 2 * SEQ_BUFFER_PAGES * mmap.PAGESIZE

# union bpf_iter_link_info's members, host order (include/uapi/linux/bpf.h).
LINK_INFO_MAP = struct.Struct("=I")  # map: __u32 map_fd
LINK_INFO_CGROUP = struct.Struct("=IIQ")  # cgroup: enum bpf_cgroup_iter_order order; __u32 cgroup_fd; __u64 cgroup_id
LINK_INFO_TASK = struct.Struct("=III")  # task: __u32 tid; __u32 pid; __u32 pid_fd


def seq_buffer_size(page_size: int = mmap.PAGESIZE) -> int:
    """The bytes an iterator's seq_file buffer holds (bpf_seq_read in kernel/bpf/bpf_iter.c, since
    v5.8): everything one object's program run writes must fit in it."""
    return SEQ_BUFFER_PAGES * page_size


def max_record_size(page_size: int = mmap.PAGESIZE) -> int:
    """The largest 8-byte-aligned record one bpf_seq_write can put in an empty seq_file buffer
    (seq_write() copies only while count + len < size, so the last byte is never used), and that
    a per-CPU scratch value holds."""
    return min((seq_buffer_size(page_size) - 1) & ~7, PERCPU_VALUE_MAX)


# The largest value a per-CPU map takes (PCPU_MIN_UNIT_SIZE): a record is built in one before it is
# written, so this bounds it too where pages are large.
PERCPU_VALUE_MAX = 32768

# struct bpf_link_info's `iter` member: its offsets from the start of the struct (after type, id,
# prog_id and the padding the union's u64s align it to).
_INFO_TARGET_NAME = 16  # __aligned_u64 target_name (in: a buffer)
_INFO_TARGET_NAME_LEN = 24  # __u32 target_name_len (in: the buffer's size; out: the name's, NUL included)
_INFO_MAP_ID = 28  # __u32 map.map_id
_INFO_CGROUP_ID = 32  # __u64 cgroup.cgroup_id, sharing its place with...
_INFO_TASK_TID, _INFO_TASK_PID = 32, 36  # ...__u32 task.tid, task.pid
_INFO_CGROUP_ORDER = 40  # __u32 cgroup.order
_TARGET_NAME_MAX = 64


def link_info_map(map_fd: int) -> bytes:
    """bpf_iter_link_info for an iterator over one map's elements (bpf_map_elem, sockmap...)."""
    return LINK_INFO_MAP.pack(map_fd)


def link_info_task(*, tid: int = 0, pid: int = 0, pid_fd: int = 0) -> bytes:
    """bpf_iter_link_info for task iterators (task, task_file, task_vma): one thread (`tid`), one
    process (`pid`, or a pidfd), or 0s for every task. The kernel takes at most one (v6.1)."""
    return LINK_INFO_TASK.pack(tid, pid, pid_fd)


def link_info_cgroup(order: CgroupIterOrder, *, cgroup_fd: int = 0, cgroup_id: int = 0) -> bytes:
    """bpf_iter_link_info for the cgroup iterator: where to start (an fd or an id of a cgroup; 0s for
    the default hierarchy's root) and which way to walk (v6.1)."""
    return LINK_INFO_CGROUP.pack(int(order), cgroup_fd, cgroup_id)


@dataclass(frozen=True)
class IterLinkInfo:
    """struct bpf_link_info's `iter` member. tid/pid and cgroup_id/cgroup_order overlay each other:
    read the pair that fits the target."""

    target_name: str
    map_id: int
    tid: int
    pid: int
    cgroup_id: int
    cgroup_order: int


class IterLink(FdOwner):
    """An iterator program linked to its target; owns its fd. `open()` starts one walk."""

    _what = "iterator link"

    def __init__(self, fd: int, prog: LoadedProgram) -> None:
        self._fd = fd
        self.prog = prog

    def __repr__(self) -> str:
        return f"<IterLink {self.prog.name!r} {self._state}>"

    def info(self) -> IterLinkInfo:
        """What the kernel says this link walks (BPF_OBJ_GET_INFO_BY_FD): its target's name and the
        parameters it kept; a target that ignores a parameter reports 0 for it."""
        name = ctypes.create_string_buffer(_TARGET_NAME_MAX)
        info = syscall.bpf_link_info()
        base = ctypes.addressof(info)
        ctypes.memmove(base + _INFO_TARGET_NAME, struct.pack("=Q", ctypes.addressof(name)), 8)
        ctypes.memmove(base + _INFO_TARGET_NAME_LEN, struct.pack("=I", _TARGET_NAME_MAX), 4)
        syscall.obj_get_info_by_fd(self.fd, info)
        raw = bytes(info)

        def u32(offset: int) -> int:
            return int(struct.unpack_from("=I", raw, offset)[0])

        return IterLinkInfo(
            target_name=name.value.decode(errors="replace"),
            map_id=u32(_INFO_MAP_ID),
            tid=u32(_INFO_TASK_TID),
            pid=u32(_INFO_TASK_PID),
            cgroup_id=int(struct.unpack_from("=Q", raw, _INFO_CGROUP_ID)[0]),
            cgroup_order=u32(_INFO_CGROUP_ORDER),
        )

    def open(self) -> IterReader:
        """BPF_ITER_CREATE: a new walk over the target's objects, from the first. OSError on failure."""
        return IterReader(syscall.iter_create(self.fd))


class IterReader(FdOwner):
    """One walk of an iterator; owns its fd. Every read runs the program on the next objects."""

    _what = "iterator"

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __repr__(self) -> str:
        return f"<IterReader {self._state}>"

    def read(self, size: int = READ_SIZE) -> bytes:
        """The next bytes the program wrote (at most one seq_file buffer), b"" at the end.

        A read that visits a million objects without any output fails with EAGAIN, and the walk goes
        on from there: that is retried here. E2BIG means one object's output did not fit an empty
        buffer; other OSErrors come from the target (ENOMEM...).
        """
        while True:
            try:
                return os.read(self.fd, size)
            except BlockingIOError:  # EAGAIN: MAX_ITER_OBJECTS visited, nothing written yet
                continue

    def chunks(self, size: int = READ_SIZE) -> Iterator[bytes]:
        """read() until EOF, lazily."""
        while True:
            data = self.read(size)
            if not data:
                return
            yield data


def attach_iter(prog: LoadedProgram, iter_info: bytes | None = None) -> IterLink:
    """BPF_LINK_CREATE of a TRACING program loaded with BPF_TRACE_ITER for its bpf_iter_<target>.

    `iter_info` is a packed bpf_iter_link_info member (link_info_map/task/cgroup) or None. Targets
    that take no parameters ignore it; those that need one (a map's elements) fail with EBADF
    without it. Raises OSError.
    """
    if prog.prog_type != ProgType.TRACING or prog.expected_attach_type != AttachType.TRACE_ITER:
        raise ValueError(f"attach_iter() of a {prog.prog_type.name}/{prog.expected_attach_type.name} program")
    fd = syscall.link_create(prog.fd, int(AttachType.TRACE_ITER), iter_info=iter_info)
    return IterLink(fd, prog)


def is_iter_overflow(error: OSError) -> bool:
    """A read failed because one object's output was larger than the seq_file buffer."""
    return error.errno == errno.E2BIG
