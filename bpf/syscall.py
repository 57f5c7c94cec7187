# SPDX-License-Identifier: GPL-2.0-only
"""The only caller of bpf(2): ctypes bpf_attr pieces in uapi field order and one wrapper per command.

Wrappers take plain ints and bytes and return what the kernel returns (an fd, a count);
a failure raises OSError (PermissionError, FileNotFoundError... by errno) naming the command.
Fds returned here belong to the caller; maps.py and loader.py wrap them in owners.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import platform
import resource
from collections.abc import Sequence
from typing import Union

from .uapi import BPF_OBJ_NAME_LEN, BPF_TAG_SIZE, Cmd

log = logging.getLogger(__name__)

# __NR_bpf per architecture (platform.machine() names). The asm-generic table (aarch64,
# riscv64, loongarch64) gives 280.
_NR_BPF = {
    "x86_64": 321,
    "amd64": 321,
    "i386": 357,
    "i686": 357,
    "aarch64": 280,
    "arm64": 280,
    "riscv64": 280,
    "loongarch64": 280,
    "armv7l": 386,
    "armv6l": 386,
    "ppc64le": 361,
    "ppc64": 361,
    "s390x": 351,
    "sparc64": 349,
}

# The kernel accepts any attr size up to a page as long as the bytes it does not know are
# zero (bpf_check_uarg_tail_zero), so every command gets the same zeroed buffer, larger
# than any bpf_attr member we fill in: fields a newer kernel adds after ours stay zero.
BPF_ATTR_SIZE = 256

_u32 = ctypes.c_uint32
_s32 = ctypes.c_int32
_u64 = ctypes.c_uint64


class map_create_attr(ctypes.Structure):
    """bpf_attr for BPF_MAP_CREATE."""

    _fields_ = [
        ("map_type", _u32),
        ("key_size", _u32),
        ("value_size", _u32),
        ("max_entries", _u32),
        ("map_flags", _u32),
        ("inner_map_fd", _u32),
        ("numa_node", _u32),
        ("map_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("map_ifindex", _u32),
        ("btf_fd", _u32),
        ("btf_key_type_id", _u32),
        ("btf_value_type_id", _u32),
        ("btf_vmlinux_value_type_id", _u32),
        ("map_extra", _u64),
    ]


class map_elem_attr(ctypes.Structure):
    """bpf_attr for BPF_MAP_*_ELEM and BPF_MAP_GET_NEXT_KEY (`value` doubles as next_key)."""

    _fields_ = [
        ("map_fd", _u32),
        ("_pad0", _u32),
        ("key", _u64),
        ("value", _u64),
        ("flags", _u64),
    ]


class map_batch_attr(ctypes.Structure):
    """bpf_attr for BPF_MAP_*_BATCH (v5.6): `count` elements in and out."""

    _fields_ = [
        ("in_batch", _u64),
        ("out_batch", _u64),
        ("keys", _u64),
        ("values", _u64),
        ("count", _u32),
        ("map_fd", _u32),
        ("elem_flags", _u64),
        ("flags", _u64),
    ]


class prog_load_attr(ctypes.Structure):
    """bpf_attr for BPF_PROG_LOAD, up to log_true_size (v6.4)."""

    _fields_ = [
        ("prog_type", _u32),
        ("insn_cnt", _u32),
        ("insns", _u64),
        ("license", _u64),
        ("log_level", _u32),
        ("log_size", _u32),
        ("log_buf", _u64),
        ("kern_version", _u32),
        ("prog_flags", _u32),
        ("prog_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("prog_ifindex", _u32),
        ("expected_attach_type", _u32),
        ("prog_btf_fd", _u32),
        ("func_info_rec_size", _u32),
        ("func_info", _u64),
        ("func_info_cnt", _u32),
        ("line_info_rec_size", _u32),
        ("line_info", _u64),
        ("line_info_cnt", _u32),
        ("attach_btf_id", _u32),
        # union { attach_prog_fd; attach_btf_obj_fd; }
        ("attach_btf_obj_fd", _u32),
        ("core_relo_cnt", _u32),
        ("fd_array", _u64),
        ("core_relos", _u64),
        ("core_relo_rec_size", _u32),
        ("log_true_size", _u32),
    ]


class get_id_attr(ctypes.Structure):
    """bpf_attr for BPF_*_GET_NEXT_ID and BPF_*_GET_FD_BY_ID (start_id shares its slot with btf_id...)."""

    _fields_ = [("start_id", _u32), ("next_id", _u32), ("open_flags", _u32)]


class obj_info_attr(ctypes.Structure):
    """bpf_attr.info for BPF_OBJ_GET_INFO_BY_FD."""

    _fields_ = [("bpf_fd", _u32), ("info_len", _u32), ("info", _u64)]


class raw_tracepoint_attr(ctypes.Structure):
    """bpf_attr.raw_tracepoint for BPF_RAW_TRACEPOINT_OPEN (cookie from v6.10)."""

    _fields_ = [("name", _u64), ("prog_fd", _u32), ("_pad0", _u32), ("cookie", _u64)]


class _link_create_iter(ctypes.Structure):
    _fields_ = [("iter_info", _u64), ("iter_info_len", _u32)]


class _link_create_tracing(ctypes.Structure):
    _fields_ = [("target_btf_id", _u32), ("_pad0", _u32), ("cookie", _u64)]


class _link_create_kprobe_multi(ctypes.Structure):
    _fields_ = [("flags", _u32), ("cnt", _u32), ("syms", _u64), ("addrs", _u64), ("cookies", _u64)]


class _link_create_target(ctypes.Union):
    _fields_ = [
        ("target_btf_id", _u32),
        ("iter", _link_create_iter),
        ("tracing", _link_create_tracing),
        ("kprobe_multi", _link_create_kprobe_multi),
    ]


class link_create_attr(ctypes.Structure):
    """bpf_attr.link_create for BPF_LINK_CREATE, with its target_btf_id / iter_info / tracing union."""

    _anonymous_ = ("target",)
    _fields_ = [
        ("prog_fd", _u32),
        ("target_fd", _u32),
        ("attach_type", _u32),
        ("flags", _u32),
        ("target", _link_create_target),
    ]


class iter_create_attr(ctypes.Structure):
    """bpf_attr.iter_create for BPF_ITER_CREATE."""

    _fields_ = [("link_fd", _u32), ("flags", _u32)]


class enable_stats_attr(ctypes.Structure):
    """bpf_attr.enable_stats for BPF_ENABLE_STATS."""

    _fields_ = [("type", _u32)]


class test_run_attr(ctypes.Structure):
    """bpf_attr.test for BPF_PROG_TEST_RUN."""

    _fields_ = [
        ("prog_fd", _u32),
        ("retval", _u32),
        ("data_size_in", _u32),
        ("data_size_out", _u32),
        ("data_in", _u64),
        ("data_out", _u64),
        ("repeat", _u32),
        ("duration", _u32),
        ("ctx_size_in", _u32),
        ("ctx_size_out", _u32),
        ("ctx_in", _u64),
        ("ctx_out", _u64),
        ("flags", _u32),
        ("cpu", _u32),
    ]


class bpf_attr(ctypes.Union):
    """union bpf_attr, padded to BPF_ATTR_SIZE zeroed bytes."""

    _fields_ = [
        ("map_create", map_create_attr),
        ("map_elem", map_elem_attr),
        ("batch", map_batch_attr),
        ("prog_load", prog_load_attr),
        ("get_id", get_id_attr),
        ("info", obj_info_attr),
        ("raw_tracepoint", raw_tracepoint_attr),
        ("link_create", link_create_attr),
        ("iter_create", iter_create_attr),
        ("enable_stats", enable_stats_attr),
        ("test", test_run_attr),
        ("_bytes", ctypes.c_uint8 * BPF_ATTR_SIZE),
    ]


class bpf_prog_info(ctypes.Structure):
    """struct bpf_prog_info, up to attach_btf_id (v6.0); the kernel fills min(its size, ours)."""

    _fields_ = [
        ("type", _u32),
        ("id", _u32),
        ("tag", ctypes.c_uint8 * BPF_TAG_SIZE),
        ("jited_prog_len", _u32),
        ("xlated_prog_len", _u32),
        ("jited_prog_insns", _u64),
        ("xlated_prog_insns", _u64),
        ("load_time", _u64),
        ("created_by_uid", _u32),
        ("nr_map_ids", _u32),
        ("map_ids", _u64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", _u32),
        ("gpl_compatible", _u32),
        ("netns_dev", _u64),
        ("netns_ino", _u64),
        ("nr_jited_ksyms", _u32),
        ("nr_jited_func_lens", _u32),
        ("jited_ksyms", _u64),
        ("jited_func_lens", _u64),
        ("btf_id", _u32),
        ("func_info_rec_size", _u32),
        ("func_info", _u64),
        ("nr_func_info", _u32),
        ("nr_line_info", _u32),
        ("line_info", _u64),
        ("jited_line_info", _u64),
        ("nr_jited_line_info", _u32),
        ("line_info_rec_size", _u32),
        ("jited_line_info_rec_size", _u32),
        ("nr_prog_tags", _u32),
        ("prog_tags", _u64),
        ("run_time_ns", _u64),
        ("run_cnt", _u64),
        ("recursion_misses", _u64),
        ("verified_insns", _u32),
        ("attach_btf_obj_id", _u32),
        ("attach_btf_id", _u32),
        ("_pad1", _u32),
    ]


class bpf_map_info(ctypes.Structure):
    """struct bpf_map_info, up to map_extra (v5.16)."""

    _fields_ = [
        ("type", _u32),
        ("id", _u32),
        ("key_size", _u32),
        ("value_size", _u32),
        ("max_entries", _u32),
        ("map_flags", _u32),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", _u32),
        ("btf_vmlinux_value_type_id", _u32),
        ("netns_dev", _u64),
        ("netns_ino", _u64),
        ("btf_id", _u32),
        ("btf_key_type_id", _u32),
        ("btf_value_type_id", _u32),
        ("btf_vmlinux_id", _u32),
        ("map_extra", _u64),
    ]


class bpf_link_info(ctypes.Structure):
    """struct bpf_link_info: type, id, prog_id, then a per-type union kept as raw words."""

    _fields_ = [
        ("type", _u32),
        ("id", _u32),
        ("prog_id", _u32),
        ("_pad0", _u32),
        ("extra", _u64 * 8),
    ]


class bpf_btf_info(ctypes.Structure):
    """struct bpf_btf_info with name and kernel_btf (v5.11): `name` points at a buffer of `name_len` bytes."""

    _fields_ = [
        ("btf", _u64),
        ("btf_size", _u32),
        ("id", _u32),
        ("name", _u64),
        ("name_len", _u32),
        ("kernel_btf", _u32),
    ]


InfoStruct = Union[bpf_prog_info, bpf_map_info, bpf_link_info, bpf_btf_info]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_memlock_raised = False


def syscall_number(machine: str | None = None) -> int:
    """__NR_bpf for `machine` (default: this one); raises OSError(ENOSYS) for an unknown one."""
    machine = machine or platform.machine()
    try:
        return _NR_BPF[machine]
    except KeyError:
        raise OSError(errno.ENOSYS, f"bpf(2) syscall number unknown for machine {machine!r}") from None


@functools.cache
def _this_machine_nr() -> ctypes.c_long:
    return ctypes.c_long(syscall_number())


def bpf(cmd: Cmd, attr: bpf_attr) -> int:
    """Call bpf(cmd, &attr, sizeof attr); returns the kernel's non-negative result.

    Raises OSError with the errno (so PermissionError for EPERM, etc.), whose filename
    names the command: `[Errno 1] Operation not permitted: 'bpf(PROG_LOAD)'`.
    """
    ret: int = _libc.syscall(
        _this_machine_nr(),
        ctypes.c_long(int(cmd)),
        ctypes.byref(attr),
        ctypes.c_ulong(ctypes.sizeof(attr)),
    )
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), f"bpf({cmd.name})")
    return ret


def raise_memlock_limit() -> None:
    """Lift RLIMIT_MEMLOCK once, best effort; never raises.

    Kernels before v5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones charge the memory
    cgroup, so failing here (no CAP_SYS_RESOURCE) is harmless on them.
    """
    global _memlock_raised
    if _memlock_raised:
        return
    _memlock_raised = True
    infinity = resource.RLIM_INFINITY
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (infinity, infinity))
        return
    except (ValueError, OSError):
        pass
    try:
        _soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
        log.debug("RLIMIT_MEMLOCK raised only to the hard limit %s", hard)
    except (ValueError, OSError) as e:
        log.debug("RLIMIT_MEMLOCK left as it is: %s", e)


def _addr(buf: ctypes.Array[ctypes.c_char] | None) -> int:
    return ctypes.addressof(buf) if buf is not None else 0


def _name_bytes(name: str) -> bytes:
    # The kernel takes [A-Za-z0-9_.] and at most BPF_OBJ_NAME_LEN - 1 of them (bpf_obj_name_cpy).
    clean = "".join(c if c.isascii() and (c.isalnum() or c in "_.") else "_" for c in name)
    return clean[: BPF_OBJ_NAME_LEN - 1].encode()


def map_create(
    map_type: int,
    key_size: int,
    value_size: int,
    max_entries: int,
    map_flags: int = 0,
    name: str = "",
) -> int:
    """BPF_MAP_CREATE; returns the new map fd (the caller closes it)."""
    raise_memlock_limit()
    attr = bpf_attr()
    a = attr.map_create
    a.map_type = map_type
    a.key_size = key_size
    a.value_size = value_size
    a.max_entries = max_entries
    a.map_flags = map_flags
    a.map_name = _name_bytes(name)
    return bpf(Cmd.MAP_CREATE, attr)


def _map_elem(
    cmd: Cmd,
    map_fd: int,
    key: ctypes.Array[ctypes.c_char] | None,
    value: ctypes.Array[ctypes.c_char] | None,
    flags: int = 0,
) -> None:
    attr = bpf_attr()
    a = attr.map_elem
    a.map_fd = map_fd
    a.key = _addr(key)
    a.value = _addr(value)
    a.flags = flags
    bpf(cmd, attr)


def map_lookup_elem(map_fd: int, key: ctypes.Array[ctypes.c_char], value: ctypes.Array[ctypes.c_char]) -> None:
    """BPF_MAP_LOOKUP_ELEM into `value`; raises FileNotFoundError (ENOENT) for a missing key."""
    _map_elem(Cmd.MAP_LOOKUP_ELEM, map_fd, key, value)


def map_update_elem(
    map_fd: int, key: ctypes.Array[ctypes.c_char], value: ctypes.Array[ctypes.c_char], flags: int = 0
) -> None:
    """BPF_MAP_UPDATE_ELEM with flags BPF_ANY / BPF_NOEXIST / BPF_EXIST."""
    _map_elem(Cmd.MAP_UPDATE_ELEM, map_fd, key, value, flags)


def map_delete_elem(map_fd: int, key: ctypes.Array[ctypes.c_char]) -> None:
    """BPF_MAP_DELETE_ELEM; raises FileNotFoundError (ENOENT) for a missing key."""
    _map_elem(Cmd.MAP_DELETE_ELEM, map_fd, key, None)


def map_get_next_key(
    map_fd: int, key: ctypes.Array[ctypes.c_char] | None, next_key: ctypes.Array[ctypes.c_char]
) -> None:
    """BPF_MAP_GET_NEXT_KEY: the key after `key` (the first for None) into `next_key`; ENOENT at the end."""
    _map_elem(Cmd.MAP_GET_NEXT_KEY, map_fd, key, next_key)


def map_lookup_batch(
    map_fd: int,
    in_batch: ctypes.Array[ctypes.c_char] | None,
    out_batch: ctypes.Array[ctypes.c_char],
    keys: ctypes.Array[ctypes.c_char],
    values: ctypes.Array[ctypes.c_char],
    count: int,
) -> tuple[int, bool]:
    """BPF_MAP_LOOKUP_BATCH: up to `count` elements after the position `in_batch` holds (None: the
    first) into `keys` and `values`, the next position into `out_batch`. (elements read, whether
    the map is done): the kernel says done with ENOENT, after filling what it found."""
    attr = bpf_attr()
    a = attr.batch
    a.map_fd = map_fd
    a.in_batch = _addr(in_batch)
    a.out_batch = _addr(out_batch)
    a.keys = _addr(keys)
    a.values = _addr(values)
    a.count = count
    try:
        bpf(Cmd.MAP_LOOKUP_BATCH, attr)
    except FileNotFoundError:
        return a.count, True
    return a.count, False


class VerifierLog:
    """A user buffer for the verifier log (bpf_attr log_level/log_size/log_buf/log_true_size).

    `true_size` is what the kernel says the whole log needs, NUL included (0 before v6.4).
    """

    def __init__(self, size: int, level: int = 1) -> None:
        self.buf = ctypes.create_string_buffer(size)
        self.level = level
        self.true_size = 0

    @property
    def size(self) -> int:
        return len(self.buf)

    def text(self) -> str:
        """The log as written so far, up to its NUL."""
        return self.buf.value.decode(errors="replace")


def prog_load(
    prog_type: int,
    insns: bytes,
    *,
    license: str = "GPL",
    name: str = "",
    expected_attach_type: int = 0,
    attach_btf_id: int = 0,
    attach_btf_obj_fd: int = 0,
    prog_flags: int = 0,
    log: VerifierLog | None = None,
) -> int:
    """BPF_PROG_LOAD of encoded instructions; returns the program fd (the caller closes it).

    With `log`, the verifier writes its log there, also when the load fails (then the
    OSError comes after the log is filled in). `attach_btf_obj_fd` is a module BTF fd
    (0 = vmlinux).
    """
    raise_memlock_limit()
    insn_buf = ctypes.create_string_buffer(insns, len(insns))
    license_buf = ctypes.create_string_buffer(license.encode())
    attr = bpf_attr()
    a = attr.prog_load
    a.prog_type = prog_type
    a.insn_cnt = len(insns) // 8
    a.insns = ctypes.addressof(insn_buf)
    a.license = ctypes.addressof(license_buf)
    a.prog_name = _name_bytes(name)
    a.expected_attach_type = expected_attach_type
    a.attach_btf_id = attach_btf_id
    a.attach_btf_obj_fd = attach_btf_obj_fd
    a.prog_flags = prog_flags
    if log is not None:
        a.log_level = log.level
        a.log_size = log.size
        a.log_buf = ctypes.addressof(log.buf)
    try:
        return bpf(Cmd.PROG_LOAD, attr)
    finally:
        if log is not None:
            log.true_size = a.log_true_size


def obj_get_info_by_fd(fd: int, info: InfoStruct) -> int:
    """BPF_OBJ_GET_INFO_BY_FD into `info` (bpf_prog_info, bpf_map_info, bpf_link_info or bpf_btf_info).

    Pointer fields set in `info` beforehand (e.g. xlated_prog_insns) are filled as well.
    Returns the number of bytes the kernel wrote.
    """
    attr = bpf_attr()
    a = attr.info
    a.bpf_fd = fd
    a.info_len = ctypes.sizeof(info)
    a.info = ctypes.addressof(info)
    bpf(Cmd.OBJ_GET_INFO_BY_FD, attr)
    return int(a.info_len)


def btf_get_next_id(start_id: int) -> int:
    """BPF_BTF_GET_NEXT_ID: the id of the first BTF object after `start_id` (0 for the first one).

    Raises FileNotFoundError (ENOENT) past the last; needs CAP_SYS_ADMIN (PermissionError).
    """
    attr = bpf_attr()
    attr.get_id.start_id = start_id
    bpf(Cmd.BTF_GET_NEXT_ID, attr)
    return int(attr.get_id.next_id)


def btf_get_fd_by_id(btf_id: int) -> int:
    """BPF_BTF_GET_FD_BY_ID; returns an fd of that BTF object (the caller closes it).

    Raises FileNotFoundError (ENOENT) for an id that is gone (a module unloaded since the id was
    listed); needs CAP_SYS_ADMIN (PermissionError).
    """
    attr = bpf_attr()
    attr.get_id.start_id = btf_id
    return bpf(Cmd.BTF_GET_FD_BY_ID, attr)


def map_get_fd_by_id(map_id: int) -> int:
    """BPF_MAP_GET_FD_BY_ID; returns an fd of that map (the caller closes it).

    Raises FileNotFoundError (ENOENT) for an id no map has; needs CAP_SYS_ADMIN (PermissionError).
    """
    attr = bpf_attr()
    attr.get_id.start_id = map_id
    return bpf(Cmd.MAP_GET_FD_BY_ID, attr)


def raw_tracepoint_open(prog_fd: int, name: str | None = None) -> int:
    """BPF_RAW_TRACEPOINT_OPEN; returns a link fd. `name` is None for tp_btf and fentry/fexit,
    whose target came with the program's attach_btf_id."""
    name_buf = ctypes.create_string_buffer(name.encode()) if name is not None else None
    attr = bpf_attr()
    a = attr.raw_tracepoint
    a.name = _addr(name_buf)
    a.prog_fd = prog_fd
    return bpf(Cmd.RAW_TRACEPOINT_OPEN, attr)


BPF_F_KPROBE_MULTI_RETURN = 1 << 0


def link_create_kprobe_multi(
    prog_fd: int, attach_type: int, functions: Sequence[str], retprobe: bool, cookies: Sequence[int]
) -> int:
    """BPF_LINK_CREATE of a kprobe_multi link (v5.18) on `functions`, by name, the cookie of
    function k being cookies[k]; returns a link fd. A return probe on each with `retprobe`."""
    if len(cookies) != len(functions):
        raise ValueError(f"{len(functions)} functions but {len(cookies)} cookies")
    names = [ctypes.create_string_buffer(name.encode()) for name in functions]
    syms = (ctypes.c_char_p * len(names))(*[ctypes.cast(n, ctypes.c_char_p) for n in names])
    cookie_array = (_u64 * len(names))(*cookies)
    attr = bpf_attr()
    a = attr.link_create
    a.prog_fd = prog_fd
    a.attach_type = attach_type
    m = a.kprobe_multi
    m.flags = BPF_F_KPROBE_MULTI_RETURN if retprobe else 0
    m.cnt = len(names)
    m.syms = ctypes.addressof(syms)
    m.cookies = ctypes.addressof(cookie_array)
    return bpf(Cmd.LINK_CREATE, attr)


def link_create(
    prog_fd: int,
    attach_type: int,
    *,
    target_fd: int = 0,
    target_btf_id: int = 0,
    iter_info: bytes | None = None,
    flags: int = 0,
) -> int:
    """BPF_LINK_CREATE; returns a link fd. `iter_info` is a packed union bpf_iter_link_info
    (TRACE_ITER only); `target_btf_id` and `iter_info` share storage, so give one at most."""
    if iter_info is not None and target_btf_id:
        raise ValueError("target_btf_id and iter_info share one union in bpf_attr")
    info_buf = ctypes.create_string_buffer(iter_info, len(iter_info)) if iter_info is not None else None
    attr = bpf_attr()
    a = attr.link_create
    a.prog_fd = prog_fd
    a.target_fd = target_fd
    a.attach_type = attach_type
    a.flags = flags
    if info_buf is not None:
        a.iter.iter_info = ctypes.addressof(info_buf)
        a.iter.iter_info_len = len(info_buf)
    else:
        a.target_btf_id = target_btf_id
    return bpf(Cmd.LINK_CREATE, attr)


def iter_create(link_fd: int) -> int:
    """BPF_ITER_CREATE; returns an fd whose read() runs the iterator program."""
    attr = bpf_attr()
    attr.iter_create.link_fd = link_fd
    return bpf(Cmd.ITER_CREATE, attr)


def prog_test_run(prog_fd: int, ctx_in: bytes) -> int:
    """BPF_PROG_TEST_RUN of a program that takes a context alone (a raw tracepoint's: its u64
    arguments); returns the program's return value, as the u32 the kernel hands back."""
    ctx = ctypes.create_string_buffer(ctx_in, len(ctx_in))
    attr = bpf_attr()
    attr.test.prog_fd = prog_fd
    attr.test.ctx_size_in = len(ctx_in)
    attr.test.ctx_in = _addr(ctx)
    bpf(Cmd.PROG_TEST_RUN, attr)
    return int(attr.test.retval)


def enable_stats(stats_type: int) -> int:
    """BPF_ENABLE_STATS; returns an fd that keeps run_time_ns/run_cnt counting until closed."""
    attr = bpf_attr()
    attr.enable_stats.type = stats_type
    return bpf(Cmd.ENABLE_STATS, attr)
