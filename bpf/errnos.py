# SPDX-License-Identifier: GPL-2.0-only
"""Errno names as the kernel spells them: the C library's, plus the kernel-internal ones
(include/linux/errno.h, 512 and up) that leak out of some kernel functions' return values and
some bpf(2) paths. In: a positive errno. Out: its name, or None where none is known."""

from __future__ import annotations

import errno

# include/linux/errno.h: never seen by user space through a system call, but returned by kernel
# functions a tracer watches (ENOTSUPP from bpf paths, ERESTARTSYS from sleeping calls).
KERNEL_INTERNAL = {
    512: "ERESTARTSYS",
    513: "ERESTARTNOINTR",
    514: "ERESTARTNOHAND",
    515: "ENOIOCTLCMD",
    516: "ERESTART_RESTARTBLOCK",
    517: "EPROBE_DEFER",
    518: "EOPENSTALE",
    519: "ENOPARAM",
    521: "EBADHANDLE",
    522: "ENOTSYNC",
    523: "EBADCOOKIE",
    524: "ENOTSUPP",
    525: "ETOOSMALL",
    526: "ESERVERFAULT",
    527: "EBADTYPE",
    528: "EJUKEBOX",
    529: "EIOCBQUEUED",
    530: "ERECALLCONFLICT",
    531: "ENOGRACE",
}
ENOTSUPP = 524
# The kernel's error returns lie in -MAX_ERRNO..-1 (include/linux/err.h).
MAX_ERRNO = 4095


def find_errno_name(code: int) -> str | None:
    """`EBADF` for 9, `ENOTSUPP` for 524; None for a number no errno has."""
    return errno.errorcode.get(code) or KERNEL_INTERNAL.get(code)


def errno_name(code: int) -> str:
    """find_errno_name(), or the number itself as text."""
    return find_errno_name(code) or str(code)
