# SPDX-License-Identifier: GPL-2.0-only
"""tp_btf programs on this machine's kernel: sys_enter events for our own process, read from a ringbuf."""

from __future__ import annotations

import contextlib
import mmap
import os
import platform
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bpf import loader, syscall, uapi
from bpf.loader import attach_tracing, load_program
from bpf.maps import Map
from bpf.ringbuf import DEFAULT_FENCE, RingBuffer, membarrier_fence
from tests.kernel.programs import SYS_ENTER_RECORD, sys_enter_to_ringbuf, syscall_nr, vmlinux_type_id

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_kernel")]

RING_SIZE = 1 << 16
_record = struct.Struct(SYS_ENTER_RECORD)


@pytest.fixture
def sys_enter_id() -> int:
    return vmlinux_type_id("btf_trace_sys_enter")


@contextlib.contextmanager
def _loaded(
    tgid: int, btf_id: int, size: int = RING_SIZE, fence: Any = DEFAULT_FENCE, **kwargs: int
) -> Iterator[tuple[RingBuffer, loader.LoadedProgram]]:
    """A ringbuf map, the sys_enter program writing to it (not attached) and its reader."""
    with Map.ringbuf(size) as rb:
        insns = sys_enter_to_ringbuf(rb.fd, tgid, **kwargs)
        prog = load_program(insns, uapi.ProgType.TRACING, uapi.AttachType.TRACE_RAW_TP, btf_id, name="t_sys_enter")
        with prog, RingBuffer(rb.fd, size, fence) as ring:
            yield ring, prog


def _drain(ring: RingBuffer) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    ring.drain(lambda m: out.append(_record.unpack(m)))
    return out


def test_sys_enter_sees_our_getpid_calls_until_detached(sys_enter_id: int) -> None:
    getpid, tgid = syscall_nr("getpid"), os.getpid()
    with _loaded(tgid, sys_enter_id) as (ring, prog):
        with attach_tracing(prog) as link:
            assert link.via == "LINK_CREATE"
            assert link.info().prog_id == prog.prog_id
            for _ in range(100):
                os.getpid()
            attached = _drain(ring)
        for _ in range(100):
            os.getpid()
        detached = _drain(ring)
    assert [r[2] for r in attached].count(getpid) >= 100
    assert {r[1] for r in attached} == {tgid}
    times = [r[0] for r in attached]
    assert times == sorted(times) and times[0] > 0
    # Records made while link.close() ran may trail in; no getpid after it.
    assert getpid not in [r[2] for r in detached]


def test_pid_filter_drops_other_processes(sys_enter_id: int) -> None:
    getpid, tgid = syscall_nr("getpid"), os.getpid()
    child_code = "import os\nfor _ in range(200): os.getpid()\nprint(os.getpid())"
    with _loaded(tgid, sys_enter_id) as (ring, prog), attach_tracing(prog):
        child = subprocess.run([sys.executable, "-c", child_code], capture_output=True, text=True, check=True)
        os.getpid()
        records = _drain(ring)
    child_pid = int(child.stdout)
    assert child_pid != tgid
    assert records and {r[1] for r in records} == {tgid}
    assert getpid in [r[2] for r in records]


def test_raw_tracepoint_open_fallback_attaches(sys_enter_id: int, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> int:
        raise OSError(22, os.strerror(22), "bpf(LINK_CREATE)")

    monkeypatch.setattr(syscall, "link_create", refuse)
    getpid, tgid = syscall_nr("getpid"), os.getpid()
    with _loaded(tgid, sys_enter_id) as (ring, prog), attach_tracing(prog) as link:
        assert link.via == "RAW_TRACEPOINT_OPEN"
        assert link.info().type == uapi.LinkType.RAW_TRACEPOINT
        for _ in range(20):
            os.getpid()
        records = _drain(ring)
    assert [r[2] for r in records].count(getpid) >= 20


def test_discarded_records_are_skipped(sys_enter_id: int) -> None:
    getpid, getppid, tgid = syscall_nr("getpid"), syscall_nr("getppid"), os.getpid()
    with _loaded(tgid, sys_enter_id, discard_id=getppid) as (ring, prog), attach_tracing(prog):
        for _ in range(50):
            os.getpid()
            os.getppid()
        start = ring.consumer_pos
        records = _drain(ring)
        consumed = ring.consumer_pos - start
    ids = [r[2] for r in records]
    assert ids.count(getpid) >= 50
    assert getppid not in ids
    # The consumer also walked past the 50 discarded 24-byte records.
    assert consumed >= 24 * (len(records) + 50)


@pytest.mark.parametrize("fenced", [False, True], ids=["default", "membarrier"])
def test_small_ring_wraps_many_times(sys_enter_id: int, fenced: bool) -> None:
    getpid, tgid = syscall_nr("getpid"), os.getpid()
    size = mmap.PAGESIZE  # 24-byte records do not divide it: some straddle the end
    seen = 0
    times: list[int] = []
    fence = membarrier_fence() if fenced else DEFAULT_FENCE
    if fence is None:
        pytest.skip(f"no membarrier(2) number for {platform.machine()}")
    with _loaded(tgid, sys_enter_id, size, fence=fence) as (ring, prog), attach_tracing(prog):
        for _ in range(100):
            for _ in range(40):
                os.getpid()
            for ktime, pid, nr in _drain(ring):
                assert pid == tgid
                seen += nr == getpid
                times.append(ktime)
        laps = ring.consumer_pos // size
    assert seen >= 4000
    assert laps >= 20
    assert times == sorted(times)


def _sleepy_child(delay: float) -> subprocess.Popen[str]:
    # Says "ready", sleeps `delay` seconds, then calls getpid() 10 times.
    code = f"import os, time\nprint('ready', flush=True)\ntime.sleep({delay})\nfor _ in range(10): os.getpid()\n"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    return child


@pytest.mark.parametrize(("flags", "woken"), [(0, True), (uapi.BPF_RB_NO_WAKEUP, False)])
def test_epoll_wakes_only_when_the_program_asks(sys_enter_id: int, flags: int, woken: bool) -> None:
    getpid = syscall_nr("getpid")
    child = _sleepy_child(1.5)
    try:
        with _loaded(child.pid, sys_enter_id, submit_flags=flags) as (ring, prog), attach_tracing(prog):
            time.sleep(0.3)  # the child is asleep by now; drop what it did before
            _drain(ring)
            start = time.monotonic()
            assert ring.wait(4.0)
            elapsed = time.monotonic() - start
            child.wait(timeout=30)
            records = _drain(ring)
    finally:
        child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    assert [r[2] for r in records].count(getpid) >= 10
    if woken:
        assert elapsed < 3.5
    else:
        assert elapsed >= 3.5  # only the timeout ended the wait; the records were there all the same


def _bpf_map_mappings() -> int:
    with open("/proc/self/maps") as f:
        return sum("bpf-map" in line for line in f)


def test_close_unmaps_even_when_a_record_view_escaped(sys_enter_id: int) -> None:
    before = _bpf_map_mappings()
    kept: list[memoryview] = []
    with _loaded(os.getpid(), sys_enter_id) as (ring, prog), attach_tracing(prog):
        assert _bpf_map_mappings() == before + 2
        os.getpid()
        ring.drain(kept.append)
        assert kept
    assert ring.closed
    assert _bpf_map_mappings() == before + 1  # the data pages, still exported to `kept`
    for view in kept:
        view.release()
    kept.clear()
    assert _bpf_map_mappings() == before
