# SPDX-License-Identifier: GPL-2.0-only
"""bpf.ringbuf.Ring over bytearrays, with a fake kernel playing the producer: busy, discard, wrap-around."""

from __future__ import annotations

import struct

import pytest

from bpf.ringbuf import Ring
from bpf.uapi import BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT

_pos = struct.Struct("L")  # unsigned long, as the kernel keeps the positions
_hdr = struct.Struct("II")  # struct bpf_ringbuf_hdr {u32 len; u32 pg_off}


def _round8(n: int) -> int:
    return (n + 7) & ~7


class FakeKernel:
    """The producer side of kernel/bpf/ringbuf.c over bytearrays.

    `data` is 2*size bytes and every write lands in both halves, as the kernel's double
    mapping of the data pages makes it look to the consumer.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.consumer = bytearray(8)
        self.producer = bytearray(8)
        self.data = bytearray(2 * size)
        self.prod = 0

    def _write(self, pos: int, raw: bytes) -> None:
        for i, byte in enumerate(raw):
            j = (pos + i) % self.size
            self.data[j] = self.data[j + self.size] = byte

    def reserve(self, length: int) -> int:
        """bpf_ringbuf_reserve: a busy header, producer_pos moved past the record. -1 when full."""
        cons = _pos.unpack_from(self.consumer)[0]
        total = _round8(length + 8)
        if self.prod + total - cons > self.size:
            return -1
        pos = self.prod
        self._write(pos, _hdr.pack(length | BPF_RINGBUF_BUSY_BIT, 0))
        self.prod += total
        _pos.pack_into(self.producer, 0, self.prod)
        return pos

    def commit(self, pos: int, payload: bytes, discard: bool = False) -> None:
        """Fill the record, then clear busy (and set discard) in its header."""
        self._write(pos + 8, payload)
        self._write(pos, _hdr.pack(len(payload) | (BPF_RINGBUF_DISCARD_BIT if discard else 0), 0))

    def submit(self, payload: bytes, discard: bool = False) -> int:
        pos = self.reserve(len(payload))
        assert pos >= 0, "fake ring is full"
        self.commit(pos, payload, discard)
        return pos

    def ring(self, fence: object = None) -> Ring:
        return Ring(
            memoryview(self.consumer),
            memoryview(self.producer),
            memoryview(self.data),
            self.size,
            fence,  # type: ignore[arg-type]
        )


class CountingFence:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def _collect(ring: Ring, limit: int | None = None) -> list[bytes]:
    out: list[bytes] = []
    ring.drain(lambda m: out.append(bytes(m)), limit)
    return out


@pytest.fixture(params=["plain", "fenced"])
def fence(request: pytest.FixtureRequest) -> CountingFence | None:
    # Every behaviour must hold on both paths: x86 (no fences) and weakly ordered CPUs.
    return CountingFence() if request.param == "fenced" else None


def test_records_come_out_in_order_with_their_lengths(fence: CountingFence | None) -> None:
    k = FakeKernel(4096)
    payloads = [bytes([n]) * n for n in range(1, 20)]
    for p in payloads:
        k.submit(p)
    ring = k.ring(fence)
    assert _collect(ring) == payloads
    assert ring.consumer_pos == sum(_round8(len(p) + 8) for p in payloads) == k.prod
    assert _collect(ring) == []
    if fence is not None:
        assert fence.calls >= 3


def test_records_are_views_into_the_ring_not_copies() -> None:
    k = FakeKernel(4096)
    k.submit(b"hello")
    views: list[memoryview] = []
    k.ring().drain(lambda m: views.append(m))
    assert views[0].obj is k.data
    assert views[0].readonly is False and bytes(views[0]) == b"hello"


def test_busy_record_stops_the_drain_until_committed(fence: CountingFence | None) -> None:
    k = FakeKernel(4096)
    k.submit(b"first")
    busy = k.reserve(6)
    k.submit(b"third")
    ring = k.ring(fence)
    assert _collect(ring) == [b"first"]
    assert ring.consumer_pos == busy
    k.commit(busy, b"second")
    assert _collect(ring) == [b"second", b"third"]
    assert ring.consumer_pos == k.prod


def test_discarded_records_are_skipped_but_consumed(fence: CountingFence | None) -> None:
    k = FakeKernel(4096)
    k.submit(b"keep1")
    k.submit(b"drop" * 5, discard=True)
    k.submit(b"keep2")
    k.submit(b"drop", discard=True)
    ring = k.ring(fence)
    assert _collect(ring) == [b"keep1", b"keep2"]
    assert ring.consumer_pos == k.prod


def test_records_straddling_the_end_read_whole(fence: CountingFence | None) -> None:
    k = FakeKernel(64)  # 24-byte records (16 + header) don't divide 64: they straddle the end
    ring = k.ring(fence)
    got: list[bytes] = []
    sent: list[bytes] = []
    for n in range(60):
        for _ in range(2):
            payload = struct.pack("QQ", n, ~n & 0xFFFFFFFFFFFFFFFF)
            k.submit(payload)
            sent.append(payload)
        got += _collect(ring)
    assert got == sent
    assert ring.consumer_pos == 120 * 24 > 40 * k.size


def test_a_full_ring_drains_completely(fence: CountingFence | None) -> None:
    k = FakeKernel(256)
    n = 0
    while k.reserve(24) >= 0:  # 32 bytes each: exactly 8 fit
        n += 1
    assert n == 8 and ring_available(k) == 256
    # Those were left busy: commit them all, in reverse, as CPUs might.
    for pos in reversed(range(0, 256, 32)):
        k.commit(pos, bytes([pos]) * 24)
    ring = k.ring(fence)
    assert [r[0] for r in _collect(ring)] == list(range(0, 256, 32))
    assert k.reserve(24) == 256  # space came back


def ring_available(k: FakeKernel) -> int:
    return k.prod - int(_pos.unpack_from(k.consumer)[0])


def test_consumer_position_is_published_after_each_record() -> None:
    k = FakeKernel(4096)
    for _ in range(4):
        k.submit(b"x" * 8)  # 16 bytes each
    ring = k.ring()
    seen: list[int] = []
    ring.drain(lambda m: seen.append(_pos.unpack_from(k.consumer)[0]))
    assert seen == [0, 16, 32, 48]
    assert _pos.unpack_from(k.consumer)[0] == 64


def test_fenced_path_publishes_once_per_batch() -> None:
    k = FakeKernel(4096)
    for _ in range(4):
        k.submit(b"x" * 8)
    fence = CountingFence()
    ring = k.ring(fence)
    seen: list[int] = []
    ring.drain(lambda m: seen.append(_pos.unpack_from(k.consumer)[0]))
    assert seen == [0, 0, 0, 0]
    assert _pos.unpack_from(k.consumer)[0] == 64
    # producer_pos acquire, header acquire, consumer_pos release.
    assert fence.calls == 3


def test_callback_returning_true_and_limit_stop_after_that_record(fence: CountingFence | None) -> None:
    k = FakeKernel(4096)
    for n in range(6):
        k.submit(bytes([n]))
    ring = k.ring(fence)
    out: list[int] = []

    def stop_at_two(m: memoryview) -> bool:
        out.append(m[0])
        return m[0] == 2

    assert ring.drain(stop_at_two) == 3
    assert out == [0, 1, 2]
    assert _collect(ring, limit=2) == [b"\x03", b"\x04"]
    assert _collect(ring, limit=0) == []
    assert _collect(ring) == [b"\x05"]


def test_a_record_whose_callback_raises_is_consumed(fence: CountingFence | None) -> None:
    k = FakeKernel(4096)
    for n in range(3):
        k.submit(bytes([n]))
    ring = k.ring(fence)

    def boom(m: memoryview) -> None:
        if m[0] == 1:
            raise RuntimeError("decoder failed")

    with pytest.raises(RuntimeError):
        ring.drain(boom)
    assert _collect(ring) == [b"\x02"]


def test_sizes_are_checked() -> None:
    k = FakeKernel(64)
    with pytest.raises(ValueError, match="power of 2"):
        Ring(memoryview(k.consumer), memoryview(k.producer), memoryview(k.data), 48)
    with pytest.raises(ValueError, match="maps 256"):
        Ring(memoryview(k.consumer), memoryview(k.producer), memoryview(k.data), 128)


def test_records_arriving_during_a_drain_wait_for_the_next(fence: CountingFence | None) -> None:
    # A tracer whose callback makes traced syscalls feeds its own ring: one drain must end.
    k = FakeKernel(4096)
    k.submit(b"a")
    k.submit(b"b")
    ring = k.ring(fence)
    out: list[bytes] = []

    def echo(m: memoryview) -> None:
        out.append(bytes(m))
        k.submit(bytes(m).upper())

    assert ring.drain(echo) == 2
    assert out == [b"a", b"b"]
    assert _collect(ring) == [b"A", b"B"]
