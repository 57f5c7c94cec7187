# SPDX-License-Identifier: GPL-2.0-only
"""Hand-assembled BPF programs for the kernel tests, and the BTF ids they attach to.

`assemble()` resolves jumps to named labels so the programs below read top to bottom.
`vmlinux_type_id()` asks bpftool for now; it becomes BTF.vmlinux().lookup(name).id later.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Union

import pytest

from bpf import insn as I
from bpf import uapi
from bpf.insn import Insn

# Syscall numbers the tests drive sys_enter with.
_SYSCALLS = {
    "x86_64": {"getpid": 39, "getppid": 110},
    "aarch64": {"getpid": 172, "getppid": 173},
}


def syscall_nr(name: str) -> int:
    table = _SYSCALLS.get(platform.machine())
    if table is None:
        pytest.skip(f"no syscall table for {platform.machine()} in tests/kernel/programs.py")
    return table[name]


@functools.cache
def _vmlinux_raw_dump() -> str:
    bpftool = shutil.which("bpftool") or next(
        (p for p in ("/usr/sbin/bpftool", "/sbin/bpftool") if os.path.exists(p)), None
    )
    if bpftool is None:
        pytest.skip("bpftool is not installed (needed to look up BTF ids)")
    return subprocess.run(
        [bpftool, "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "raw"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def vmlinux_type_id(name: str, kind: str = "TYPEDEF") -> int:
    """The id of the vmlinux BTF type `name` of `kind` (TYPEDEF for btf_trace_<tp>, FUNC for fentry)."""
    match = re.search(rf"^\[(\d+)\] {kind} '{re.escape(name)}'", _vmlinux_raw_dump(), re.MULTILINE)
    if match is None:
        pytest.skip(f"vmlinux BTF has no {kind} {name!r}")
    return int(match.group(1))


@dataclass(frozen=True)
class Jump:
    """A conditional jump (op, dst, imm) or, with op None, a goto, to `label`."""

    label: str
    op: int | None = None
    dst: int = 0
    imm: int = 0


Item = Union[Insn, Jump, str]  # a str is a label


def assemble(items: list[Item]) -> list[Insn]:
    slots: dict[str, int] = {}
    pc = 0
    for item in items:
        if isinstance(item, str):
            slots[item] = pc
        else:
            pc += 1
    out: list[Insn] = []
    for item in items:
        if isinstance(item, str):
            continue
        if isinstance(item, Jump):
            off = slots[item.label] - len(out) - 1
            out.append(I.ja(off) if item.op is None else I.jmp_imm(item.op, item.dst, item.imm, off))
        else:
            out.append(item)
    return out


# sys_enter record: u64 ktime_ns; u32 tgid; u32 syscall id. 16 bytes, 24 with the ringbuf
# header, so in a ring whose size 24 does not divide, records straddle the wrap.
SYS_ENTER_RECORD = "QII"
SYS_ENTER_RECORD_SIZE = 16


def sys_enter_to_ringbuf(ringbuf_fd: int, tgid: int, submit_flags: int = 0, discard_id: int = -1) -> list[Insn]:
    """tp_btf/sys_enter: for thread group `tgid`, write (ktime, tgid, id) to the ringbuf.

    r6 = ctx (u64 args: regs, id), r7 = tgid, r8 = syscall id, r9 = record.
    Records for syscall `discard_id` are reserved, filled and then discarded.
    """
    return assemble(
        [
            I.mov64_reg(6, 1),
            I.call(uapi.Helper.get_current_pid_tgid),
            I.alu64_imm(uapi.BPF_RSH, 0, 32),
            Jump("out", uapi.BPF_JNE, 0, tgid),
            I.mov64_reg(7, 0),
            I.ldx_mem(8, 8, 6, 8),
            *I.ld_map_fd(1, ringbuf_fd),
            I.mov64_imm(2, SYS_ENTER_RECORD_SIZE),
            I.mov64_imm(3, 0),
            I.call(uapi.Helper.ringbuf_reserve),
            Jump("out", uapi.BPF_JEQ, 0, 0),
            I.mov64_reg(9, 0),
            I.call(uapi.Helper.ktime_get_ns),
            I.stx_mem(8, 9, 0, 0),
            I.stx_mem(4, 9, 7, 8),
            I.stx_mem(4, 9, 8, 12),
            I.mov64_reg(1, 9),
            I.mov64_imm(2, submit_flags),
            Jump("discard", uapi.BPF_JEQ, 8, discard_id),
            I.call(uapi.Helper.ringbuf_submit),
            Jump("out"),
            "discard",
            I.call(uapi.Helper.ringbuf_discard),
            "out",
            I.mov64_imm(0, 0),
            I.exit_(),
        ]
    )


def sys_enter_count(counter_fd: int, tgid: int, syscall_id: int) -> list[Insn]:
    """tp_btf/sys_enter: add 1 to slot 0 of PERCPU_ARRAY `counter_fd` for `syscall_id` by `tgid`."""
    return assemble(
        [
            I.mov64_reg(6, 1),
            I.call(uapi.Helper.get_current_pid_tgid),
            I.alu64_imm(uapi.BPF_RSH, 0, 32),
            Jump("out", uapi.BPF_JNE, 0, tgid),
            I.ldx_mem(8, 1, 6, 8),
            Jump("out", uapi.BPF_JNE, 1, syscall_id),
            I.st_mem(4, 10, -4, 0),
            *I.ld_map_fd(1, counter_fd),
            I.mov64_reg(2, 10),
            I.alu64_imm(uapi.BPF_ADD, 2, -4),
            I.call(uapi.Helper.map_lookup_elem),
            Jump("out", uapi.BPF_JEQ, 0, 0),
            I.ldx_mem(8, 1, 0, 0),
            I.alu64_imm(uapi.BPF_ADD, 1, 1),
            I.stx_mem(8, 0, 1, 0),
            "out",
            I.mov64_imm(0, 0),
            I.exit_(),
        ]
    )
