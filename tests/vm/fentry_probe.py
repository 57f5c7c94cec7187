# SPDX-License-Identifier: GPL-2.0-only
"""Guest-side check that fentry works: load `r0 = 0; exit` as fentry on ip_send_skb and attach it.

Test-only scaffolding with stdlib ctypes (the real loader lives in bpf/). Prints the link fd; exits 1 with
the errno and verifier log when a step fails.
"""

import ctypes
import os
import re
import struct
import subprocess
import sys

SYS_bpf = 321  # x86_64
BPF_PROG_LOAD = 5
BPF_LINK_CREATE = 28
BPF_PROG_TYPE_TRACING = 26
BPF_TRACE_FENTRY = 24
TARGET = "ip_send_skb"

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def bpf(cmd: int, attr: ctypes.Array) -> int:
    fd = libc.syscall(SYS_bpf, cmd, attr, ctypes.sizeof(attr))
    if fd < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return fd


def func_btf_id(name: str) -> int:
    dump = subprocess.run(
        ["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "raw"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(rf"^\[(\d+)\] FUNC '{name}' ", dump, re.MULTILINE)
    if match is None:
        sys.exit(f"FUNC {name} not found in /sys/kernel/btf/vmlinux")
    return int(match.group(1))


def main() -> None:
    btf_id = func_btf_id(TARGET)
    # struct bpf_insn {u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm}
    insns = struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)  # r0 = 0; exit
    insn_buf = ctypes.create_string_buffer(insns, len(insns))
    license_buf = ctypes.create_string_buffer(b"GPL")
    log_buf = ctypes.create_string_buffer(65536)

    # union bpf_attr for BPF_PROG_LOAD, by uapi offset; the kernel wants the bytes it doesn't know zeroed.
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<II", attr, 0, BPF_PROG_TYPE_TRACING, len(insns) // 8)  # prog_type, insn_cnt
    struct.pack_into("<Q", attr, 8, ctypes.addressof(insn_buf))  # insns
    struct.pack_into("<Q", attr, 16, ctypes.addressof(license_buf))  # license
    struct.pack_into("<IIQ", attr, 24, 1, len(log_buf), ctypes.addressof(log_buf))  # log_level, log_size, log_buf
    struct.pack_into("<16s", attr, 48, b"ksnoop_vm_probe")  # prog_name
    struct.pack_into("<I", attr, 68, BPF_TRACE_FENTRY)  # expected_attach_type
    struct.pack_into("<I", attr, 108, btf_id)  # attach_btf_id
    try:
        prog_fd = bpf(BPF_PROG_LOAD, attr)
    except OSError as error:
        sys.exit(f"BPF_PROG_LOAD fentry/{TARGET} [{btf_id}]: {error}\n{log_buf.value.decode()}")

    # link_create: prog_fd, target_fd, attach_type, flags
    attr = ctypes.create_string_buffer(64)
    struct.pack_into("<IIII", attr, 0, prog_fd, 0, BPF_TRACE_FENTRY, 0)
    try:
        link_fd = bpf(BPF_LINK_CREATE, attr)
    except OSError as error:
        sys.exit(f"BPF_LINK_CREATE fentry/{TARGET}: {error}")
    print(f"fentry {TARGET} btf_id {btf_id} prog_fd {prog_fd} link_fd {link_fd}")


if __name__ == "__main__":
    main()
