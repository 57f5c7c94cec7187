# SPDX-License-Identifier: GPL-2.0-only
"""The kernel's BTF objects (vmlinux's, and each loaded module's), opened by name through bpf(2).

In: a name as /sys/kernel/btf lists it ("vmlinux", "dummy"). Out: a KernelBTFObject owning an fd
of that object, which BPF_PROG_LOAD takes as attach_btf_obj_fd when attach_btf_id is an id in a
module's split BTF. Needs CAP_SYS_ADMIN: BPF_BTF_GET_NEXT_ID and BPF_BTF_GET_FD_BY_ID ask for it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
from collections.abc import Iterator

from . import syscall
from .fd import FdOwner

# At least the kernel's MODULE_NAME_LEN (64 - sizeof(long)), NUL included; libbpf uses 64 too.
BTF_NAME_BUF_LEN = 64


class KernelBTFObject(FdOwner):
    """An open kernel BTF object: `btf_obj_id` is its id (bpf_prog_info.attach_btf_obj_id refers to it)."""

    _what = "BTF object"

    def __init__(self, fd: int, btf_obj_id: int, name: str) -> None:
        self._fd = fd
        self.btf_obj_id = btf_obj_id
        self.name = name

    def __repr__(self) -> str:
        return f"<KernelBTFObject {self.name!r} id={self.btf_obj_id} {self._state}>"


def iter_btf_obj_ids() -> Iterator[int]:
    """Ids of the BTF objects the kernel holds now (vmlinux, modules, programs' own), ascending.

    Raises PermissionError without CAP_SYS_ADMIN.
    """
    btf_obj_id = 0
    while True:
        try:
            btf_obj_id = syscall.btf_get_next_id(btf_obj_id)
        except FileNotFoundError:
            return
        yield btf_obj_id


def btf_obj_info(fd: int, name_len: int = BTF_NAME_BUF_LEN) -> tuple[syscall.bpf_btf_info, str | None]:
    """struct bpf_btf_info of the BTF object `fd`, and its name (None if longer than `name_len` - 1 bytes).

    Kernels before v5.11 know no name or kernel_btf and refuse the larger struct (E2BIG).
    """
    buf = ctypes.create_string_buffer(name_len)
    info = syscall.bpf_btf_info()
    info.name = ctypes.addressof(buf)
    info.name_len = name_len
    try:
        syscall.obj_get_info_by_fd(fd, info)
    except OSError as e:
        # ENOSPC: the kernel filled everything in but cut the name to fit our buffer.
        if e.errno != errno.ENOSPC:
            raise
        return info, None
    return info, buf.value.decode(errors="replace")


def open_kernel_btf(name: str) -> KernelBTFObject:
    """Open the kernel BTF object called `name` ("vmlinux" or a loaded module's name).

    Walks BPF_BTF_GET_NEXT_ID, opens each object with BPF_BTF_GET_FD_BY_ID and keeps the one whose
    bpf_btf_info says kernel_btf with that name; the caller owns (closes) the result.
    Raises FileNotFoundError (ENOENT) when no kernel BTF object has that name: the module is not
    loaded, or was unloaded since its /sys/kernel/btf file was read. PermissionError without
    CAP_SYS_ADMIN; other OSErrors as bpf(2) gives them.
    """
    name_len = max(BTF_NAME_BUF_LEN, len(name.encode()) + 1)
    for btf_obj_id in iter_btf_obj_ids():
        try:
            fd = syscall.btf_get_fd_by_id(btf_obj_id)
        except FileNotFoundError:
            continue  # freed between the two calls: a module unloading, or a program's BTF going away
        try:
            info, found = btf_obj_info(fd, name_len)
            if info.kernel_btf and found == name:
                return KernelBTFObject(_above_zero(fd), int(info.id), found)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise FileNotFoundError(errno.ENOENT, f"no kernel BTF object named {name!r}")


def _above_zero(fd: int) -> int:
    # BPF_PROG_LOAD reads attach_btf_obj_fd 0 as "no object: vmlinux", so an fd 0 (stdin closed)
    # would look up the module's type id in vmlinux. libbpf moves such an fd too.
    if fd != 0:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 1)
    os.close(fd)
    return moved
