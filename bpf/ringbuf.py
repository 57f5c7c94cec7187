# SPDX-License-Identifier: GPL-2.0-only
"""Consumer of a BPF_MAP_TYPE_RINGBUF: mmap its pages, wait with epoll, hand out records.

`Ring` walks records in any three buffers (consumer position, producer position, data
mapped twice), which lets tests play the producer with a bytearray; `RingBuffer` maps a
real ringbuf map's fd into those buffers. Records are memoryviews into the ring, no copies.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import platform
import select
from typing import Callable, Optional

from .fd import Closing
from .uapi import BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ

log = logging.getLogger(__name__)

RecordCallback = Callable[[memoryview], Optional[bool]]
Fence = Callable[[], None]

_LEN_MASK = ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT) & 0xFFFFFFFF

# Memory ordering. The kernel publishes a record by writing it, then storing its header
# with release semantics (xchg in bpf_ringbuf_commit), and moves producer_pos with
# smp_store_release; it reads consumer_pos with smp_load_acquire. libbpf pairs those with
# acquire loads of producer_pos and of each header and a release store of consumer_pos.
#
# Every position and header access below is a single aligned load or store: memoryview
# items of native format "L"/"I" go through one fixed-size memcpy, which compilers emit as
# one instruction, so no access is torn. (struct's "<Q" would read byte by byte.)
#
# On x86 (TSO) plain loads are not reordered with other loads, nor stores with earlier
# loads or stores, so plain accesses made in program order already are acquire loads and
# release stores; Python runs them in program order. The CPU can't reorder them and
# CPython's C code can't either: each access sits in a separate call the compiler can't
# see through.
#
# On weakly ordered CPUs (aarch64, riscv64, ppc64...) a later load may be satisfied before
# an earlier one, so the record body could be read before its header says it is complete.
# There we fence twice per batch instead of once per record: read producer_pos, fence,
# find how far records are committed by walking their headers, fence, then hand those
# records out, then fence and publish consumer_pos once for the batch (a release store).
# The fence is membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), whose kernel side runs
# smp_mb() on the calling CPU on entry and on exit.
_TSO_MACHINES = frozenset(("x86_64", "amd64", "i386", "i686"))
# __NR_membarrier: asm-generic (aarch64, riscv64, loongarch64) and x86.
_NR_MEMBARRIER = {"aarch64": 283, "arm64": 283, "riscv64": 283, "loongarch64": 283, "x86_64": 324}
_MEMBARRIER_CMD_PRIVATE_EXPEDITED = 1 << 3
_MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED = 1 << 4


def membarrier_fence(machine: str | None = None) -> Fence | None:
    """A full memory barrier for this thread through membarrier(2), or None where there is none."""
    nr = _NR_MEMBARRIER.get(machine or platform.machine())
    if nr is None:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    nr_c = ctypes.c_long(nr)
    if syscall(nr_c, ctypes.c_int(_MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED), ctypes.c_uint(0), 0) < 0:
        log.debug("membarrier registration failed: %s", errno.errorcode.get(ctypes.get_errno()))
        return None
    cmd = ctypes.c_int(_MEMBARRIER_CMD_PRIVATE_EXPEDITED)
    flags = ctypes.c_uint(0)

    def fence() -> None:
        syscall(nr_c, cmd, flags, 0)

    return fence


def default_fence() -> Fence | None:
    """None on x86, where plain loads and stores suffice; a membarrier fence elsewhere."""
    machine = platform.machine()
    if machine in _TSO_MACHINES:
        return None
    fence = membarrier_fence(machine)
    if fence is None:
        log.warning("no memory barrier available on %s: ringbuf records rely on program order", machine)
    return fence


class Ring:
    """Walks ringbuf records in three buffers, as libbpf's ringbuf_process_ring does.

    `consumer` and `producer` hold the kernel's `unsigned long` positions at offset 0;
    `data` is the 2*size data area, its second half mirroring the first so that a record
    that wraps is contiguous. `fence` is a full barrier for weakly ordered CPUs (None = no
    fences; see default_fence()).
    """

    def __init__(
        self,
        consumer: memoryview,
        producer: memoryview,
        data: memoryview,
        size: int,
        fence: Fence | None = None,
    ) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError(f"ring size {size} is not a power of 2")
        if len(data) < 2 * size:
            raise ValueError(f"data area is {len(data)} bytes, a {size}-byte ring maps {2 * size}")
        self.size = size
        self._mask = size - 1
        self._cons = consumer.cast("B").cast("L")
        self._prod = producer.cast("B").cast("L")
        self._data = data.cast("B")
        self._hdrs = self._data[: 2 * size].cast("I")
        self._fence = fence

    def _release(self) -> None:
        for view in (self._hdrs, self._data, self._cons, self._prod):
            view.release()

    @property
    def consumer_pos(self) -> int:
        return int(self._cons[0])

    @property
    def producer_pos(self) -> int:
        return int(self._prod[0])

    def available(self) -> int:
        """Bytes the producer has reserved that the consumer has not yet passed."""
        return int(self._prod[0]) - int(self._cons[0])

    def _committed_end(self, cons: int, prod: int) -> int:
        # Where the run of committed records starting at `cons` ends (weakly ordered CPUs).
        hdrs, mask = self._hdrs, self._mask
        while cons < prod:
            hdr = hdrs[(cons & mask) >> 2]
            if hdr & BPF_RINGBUF_BUSY_BIT:
                break
            cons += ((hdr & _LEN_MASK) + BPF_RINGBUF_HDR_SZ + 7) & ~7
        return cons

    def drain(self, callback: RecordCallback, limit: int | None = None) -> int:
        """Hand each committed record to `callback` as a memoryview; returns how many.

        Takes the records there when the drain starts; later ones wait for the next call,
        so a callback whose own syscalls are being traced can't keep one drain going for
        ever. Skips discarded records and stops at one still being written (busy). The
        view is valid only until the callback returns (then its space goes back to the
        kernel): copy what must outlive it. A callback returning a true value, or reaching
        `limit` records, stops the drain after that record; one that raises has its record
        consumed.
        """
        if limit is not None and limit <= 0:
            return 0
        cons_view, hdrs, data = self._cons, self._hdrs, self._data
        mask, fence = self._mask, self._fence
        busy_bit, discard_bit, len_mask = BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, _LEN_MASK
        count = 0
        cons = cons_view[0]
        end = self._prod[0]
        if fence is not None:
            fence()  # producer_pos was an acquire load
            end = self._committed_end(cons, end)
            fence()  # so were the headers up to `end`
        try:
            while cons < end:
                off = cons & mask
                hdr = hdrs[off >> 2]
                if hdr & busy_bit:
                    break
                length = hdr & len_mask
                cons += (length + 15) & ~7  # BPF_RINGBUF_HDR_SZ + length, rounded up to 8
                if hdr & discard_bit:
                    if fence is None:
                        cons_view[0] = cons
                    continue
                off += 8
                stop = callback(data[off : off + length])
                count += 1
                if fence is None:
                    cons_view[0] = cons
                if stop or count == limit:
                    break
        finally:
            # Reached at the end and on an exception from the callback. Without fences the
            # position is already published record by record; with them, once per drain,
            # after a fence that orders the reads of the records before the store.
            if cons != cons_view[0]:
                if fence is not None:
                    fence()
                cons_view[0] = cons
        return count


class _Default:
    """The type of DEFAULT_FENCE."""


DEFAULT_FENCE = _Default()  # RingBuffer's fence: default_fence() for this CPU


class RingBuffer(Ring, Closing):
    """A RINGBUF map's pages mapped for reading, plus an epoll fd to wait on.

    Owns the mappings and the epoll fd, not the map fd: close this before the map.
    `size` is the map's max_entries (its data size). Raises OSError from mmap/epoll.
    """

    def __init__(self, map_fd: int, size: int, fence: Fence | None | _Default = DEFAULT_FENCE) -> None:
        """Map `map_fd`'s consumer page read-write, its producer page and data read-only.

        `fence` defaults to default_fence() for this CPU; tests may pass their own.
        """
        page = mmap.PAGESIZE
        self._epoll: select.epoll | None = None
        self._maps: list[mmap.mmap] = []
        try:
            # The layout libbpf's ring_buffer__add maps: consumer page at offset 0; from
            # offset page_size, the producer page and the data pages twice over.
            self._maps.append(mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE))
            self._maps.append(mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page))
            self._epoll = select.epoll()
            self._epoll.register(map_fd, select.EPOLLIN)
        except BaseException:
            self._close_all()
            raise
        view = memoryview(self._maps[1])
        super().__init__(
            memoryview(self._maps[0]),
            view[:page],
            view[page:],
            size,
            default_fence() if isinstance(fence, _Default) else fence,
        )
        view.release()

    @property
    def closed(self) -> bool:
        return self._epoll is None

    def close(self) -> None:
        """Unmap and close the epoll fd. A record view a caller kept keeps its mapping alive."""
        if self._epoll is None:
            return
        self._release()
        self._close_all()

    def _close_all(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        for m in self._maps:
            try:
                m.close()
            except BufferError:
                # A record view escaped its callback; the mapping goes when that view does.
                log.debug("ringbuf mapping still exported; it is unmapped when the last view goes")
        self._maps = []

    def wait(self, timeout: float | None) -> bool:
        """Block until the kernel signals data or `timeout` seconds pass (None = forever).

        Records submitted with BPF_RB_NO_WAKEUP signal nothing, so call drain() after a
        timeout too. Returns True if data is available.
        """
        if self._epoll is None:
            raise ValueError("ring buffer is closed")
        if self.available():
            return True
        self._epoll.poll(-1 if timeout is None else timeout)
        return self.available() > 0

    def poll(self, callback: RecordCallback, timeout: float | None, limit: int | None = None) -> int:
        """drain(), and if nothing was there, wait() up to `timeout` seconds and drain again."""
        count = self.drain(callback, limit)
        if count or (limit is not None and limit <= 0):
            return count
        self.wait(timeout)
        return self.drain(callback, limit)
