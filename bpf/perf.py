# SPDX-License-Identifier: GPL-2.0-only
"""Kprobes as perf events: perf_event_open(2) of the kernel's "kprobe" PMU on a function by name,
the way libbpf attaches a kprobe when it can (no text written to tracefs's kprobe_events, so
nothing is left behind when the process dies: the probe goes with the last fd).

The PMU's type number and the config bit that makes a kretprobe are read from sysfs
(/sys/bus/event_source/devices/kprobe/{type,format/retprobe}); a kernel built without kprobes
has no such directory.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
from dataclasses import dataclass

from .fd import FdOwner

KPROBE_PMU = "/sys/bus/event_source/devices/kprobe"
PERF_FLAG_FD_CLOEXEC = 1 << 3
# _IO('$', 0) and _IOW('$', 8, __u32) from include/uapi/linux/perf_event.h.
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_SET_BPF = 0x40042408
# __NR_perf_event_open: x86, and asm-generic (arm64, riscv64, loongarch64).
_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "arm64": 241, "riscv64": 241, "loongarch64": 241}

_u32, _u64 = ctypes.c_uint32, ctypes.c_uint64


class perf_event_attr(ctypes.Structure):
    """struct perf_event_attr up to config2 (PERF_ATTR_SIZE_VER1, 72 bytes): all a kprobe needs."""

    _fields_ = [
        ("type", _u32),
        ("size", _u32),
        ("config", _u64),
        ("sample_period", _u64),
        ("sample_type", _u64),
        ("read_format", _u64),
        ("flags", _u64),  # the bitfield word: disabled, inherit, ...; 0 = enabled at once
        ("wakeup_events", _u32),
        ("bp_type", _u32),
        ("config1", _u64),  # kprobe_func: a pointer to the function's name
        ("config2", _u64),  # probe_offset: bytes into the function
    ]


@dataclass(frozen=True)
class KprobePmu:
    type: int  # perf_event_attr.type for a kprobe
    retprobe_bit: int  # the config bit that asks for a kretprobe


class NoKprobes(OSError):
    """This kernel has no kprobe PMU: built without CONFIG_KPROBES (or without perf events)."""


def kprobe_pmu(root: str = KPROBE_PMU) -> KprobePmu:
    """The kprobe PMU's type and retprobe bit, from sysfs; NoKprobes where there is none."""
    try:
        with open(os.path.join(root, "type")) as f:
            pmu_type = int(f.read().strip())
    except FileNotFoundError:
        raise NoKprobes(errno.ENOENT, f"no kprobe PMU: {root} is missing") from None
    except (OSError, ValueError) as error:
        raise NoKprobes(errno.EIO, f"cannot read {root}/type: {error}") from None
    bit = 0
    try:
        with open(os.path.join(root, "format", "retprobe")) as f:
            # "config:0": the bit of perf_event_attr.config that makes the probe a return probe.
            field, _, number = f.read().strip().partition(":")
            if field == "config" and number.isdigit():
                bit = int(number)
    except OSError:
        pass  # every kernel so far uses bit 0
    return KprobePmu(pmu_type, bit)


class PerfEvent(FdOwner):
    """An open perf event; closing its fd (and every link holding it) removes the probe."""

    _what = "perf event"

    def __init__(self, fd: int, function: str, retprobe: bool) -> None:
        self._fd = fd
        self.function = function
        self.retprobe = retprobe

    def __repr__(self) -> str:
        kind = "kretprobe" if self.retprobe else "kprobe"
        return f"<PerfEvent {kind}:{self.function} {self._state}>"

    def enable(self) -> None:
        fcntl.ioctl(self.fd, PERF_EVENT_IOC_ENABLE, 0)

    def set_bpf(self, prog_fd: int) -> None:
        """Attach a BPF program the old way (PERF_EVENT_IOC_SET_BPF, kernels before BPF_PERF_EVENT links)."""
        fcntl.ioctl(self.fd, PERF_EVENT_IOC_SET_BPF, prog_fd)


def open_kprobe(function: str, retprobe: bool, pmu: KprobePmu | None = None) -> PerfEvent:
    """A kprobe (or kretprobe) on `function`, as a perf event counting on every CPU.

    Raises NoKprobes where the kernel has none, and OSError from perf_event_open: ENOENT for a
    name not in kallsyms, EINVAL for a function kprobes may not probe (the kprobe blacklist,
    notrace code), EILSEQ for an address not on an instruction boundary.
    """
    pmu = pmu or kprobe_pmu()
    name = ctypes.create_string_buffer(function.encode())
    attr = perf_event_attr()
    attr.type = pmu.type
    attr.size = ctypes.sizeof(perf_event_attr)
    attr.config = (1 << pmu.retprobe_bit) if retprobe else 0
    attr.config1 = ctypes.addressof(name)
    attr.config2 = 0
    # pid -1 with cpu 0: the event is system-wide; a kprobe fires on every CPU whatever the cpu.
    fd = _perf_event_open(attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
    return PerfEvent(fd, function, retprobe)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _perf_event_open(attr: perf_event_attr, pid: int, cpu: int, group_fd: int, flags: int) -> int:
    machine = platform.machine()
    nr = _NR_PERF_EVENT_OPEN.get(machine)
    if nr is None:
        raise OSError(errno.ENOSYS, f"perf_event_open(2) syscall number unknown for machine {machine!r}")
    ret: int = _libc.syscall(
        ctypes.c_long(nr),
        ctypes.byref(attr),
        ctypes.c_int(pid),
        ctypes.c_int(cpu),
        ctypes.c_int(group_fd),
        ctypes.c_ulong(flags),
    )
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), "perf_event_open")
    return ret
