# SPDX-License-Identifier: GPL-2.0-only
"""The kernel's side of the record loop in memory: a ring buffer that the test fills as
kernel/bpf/ringbuf.c does, and per-CPU arrays read back from interpreter runs, one VM per CPU.

`MemoryRing` is bpf.ringbuf's own consumer (`Ring.drain`, `RingBuffer.poll`) over bytearrays.
Only the wait differs: instead of epoll, each wait runs the next step the test scripted (a
program submitting records, a signal) or, when none is left, sleeps the timeout.
"""

from __future__ import annotations

import struct
import sys
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from bpf.codegen import MapRole
from bpf.ringbuf import Ring, RingBuffer
from bpf.uapi import BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ

from .bpfvm import _FDS, VM

_pos = struct.Struct("L")  # unsigned long, as the kernel keeps the positions
_hdr = struct.Struct("II")  # struct bpf_ringbuf_hdr {u32 len; u32 pg_off}


class MemoryRing(Ring):
    """A ring of `size` data bytes; `submit` plays bpf_ringbuf_reserve + submit, `waits` are what
    happens during each wait in turn. `timeouts` records each poll's timeout."""

    def __init__(self, size: int = 1 << 16, waits: Iterable[Callable[[], object]] = ()) -> None:
        self.consumer = bytearray(8)
        self.producer = bytearray(8)
        self.data = bytearray(2 * size)
        self.prod = 0
        self.waits: List[Callable[[], object]] = list(waits)
        self.timeouts: List[Optional[float]] = []
        super().__init__(memoryview(self.consumer), memoryview(self.producer), memoryview(self.data), size)

    def _write(self, pos: int, raw: bytes) -> None:
        # The data pages are mapped twice: a write shows in both halves.
        for start in range(0, len(raw)):
            j = (pos + start) % self.size
            self.data[j] = self.data[j + self.size] = raw[start]

    def reserve(self, length: int) -> int:
        """A busy header and producer_pos moved past the record; -1 when the ring is full."""
        total = (length + BPF_RINGBUF_HDR_SZ + 7) & ~7
        if self.prod + total - _pos.unpack_from(self.consumer)[0] > self.size:
            return -1
        pos = self.prod
        self._write(pos, _hdr.pack(length | BPF_RINGBUF_BUSY_BIT, 0))
        self.prod += total
        _pos.pack_into(self.producer, 0, self.prod)
        return pos

    def commit(self, pos: int, payload: bytes, discard: bool = False) -> None:
        """The record's bytes, then its header without the busy bit (with discard if asked)."""
        self._write(pos + BPF_RINGBUF_HDR_SZ, payload)
        self._write(pos, _hdr.pack(len(payload) | (BPF_RINGBUF_DISCARD_BIT if discard else 0), 0))

    def submit(self, *payloads: bytes) -> None:
        for payload in payloads:
            pos = self.reserve(len(payload))
            assert pos >= 0, "the test's ring is full"
            self.commit(pos, payload)

    def wait(self, timeout: Optional[float]) -> bool:
        if self.waits:
            self.waits.pop(0)()
        elif timeout:
            time.sleep(timeout)
        return self.available() > 0

    def poll(self, callback, timeout, limit=None):  # type: ignore[no-untyped-def]
        self.timeouts.append(timeout)
        return RingBuffer.poll(self, callback, timeout, limit)  # type: ignore[arg-type]


class PerCPUArray:
    """A PERCPU_ARRAY of one role as bpf.maps.Map.lookup_percpu reads it back: one value per CPU,
    each CPU a VM that ran the programs; a key no program on that CPU touched reads as zeros."""

    def __init__(self, vms: Sequence[VM], role: MapRole) -> None:
        self.vms, self.role = vms, role

    def lookup_percpu(self, key: bytes) -> List[bytes]:
        out = []
        for vm in self.vms:
            state = vm.maps[_FDS[self.role]]
            address = state.values.get(key)
            out.append(bytes(state.value_size) if address is None else vm._read(address, state.value_size))
        return out

    def lookup_all_percpu(self) -> Dict[bytes, List[bytes]]:
        """As Map.lookup_all_percpu, for the keys some program touched (the rest read as zeros)."""
        keys = {key for vm in self.vms for key in vm.maps[_FDS[self.role]].values}
        return {key: self.lookup_percpu(key) for key in sorted(keys)}

    def sum_all_percpu(self) -> Dict[bytes, int]:
        """As Map.sum_all_percpu: each key's u64 summed over the CPUs."""
        return {
            key: sum(int.from_bytes(v, sys.byteorder) for v in values)
            for key, values in self.lookup_all_percpu().items()
        }
