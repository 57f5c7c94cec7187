# SPDX-License-Identifier: GPL-2.0-only
"""Maps on the running kernel: hash and array element operations, per-CPU values, a program's counter."""

from __future__ import annotations

import errno
import os
import struct

import pytest

from bpf import uapi
from bpf.loader import attach_raw_tracepoint, attach_tracing, load_program
from bpf.maps import Map, possible_cpus
from tests.kernel.programs import sys_enter_count, syscall_nr, vmlinux_type_id

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_kernel")]

u32 = struct.Struct("I")
u64 = struct.Struct("Q")


def test_hash_update_lookup_delete_iterate() -> None:
    with Map(uapi.MapType.HASH, 4, 8, 16, name="t_hash") as m:
        assert m.lookup(u32.pack(1)) is None
        for k in (1, 2, 3):
            m.update(u32.pack(k), u64.pack(k * 100))
        assert m.lookup(u32.pack(2)) == u64.pack(200)
        assert sorted(u32.unpack(k)[0] for k in m.iter_keys()) == [1, 2, 3]
        with pytest.raises(FileExistsError):
            m.update(u32.pack(1), u64.pack(0), uapi.BPF_NOEXIST)
        with pytest.raises(FileNotFoundError):
            m.update(u32.pack(9), u64.pack(0), uapi.BPF_EXIST)
        assert m.delete(u32.pack(2)) is True
        assert m.delete(u32.pack(2)) is False
        assert m.lookup(u32.pack(2)) is None
        assert sorted(u32.unpack(k)[0] for k in m.iter_keys()) == [1, 3]
        with pytest.raises(ValueError, match="key is 8 bytes"):
            m.lookup(u64.pack(1))
    assert m.closed
    with pytest.raises(ValueError, match="closed"):
        m.fd  # noqa: B018


def test_array_starts_zeroed_and_refuses_delete() -> None:
    with Map(uapi.MapType.ARRAY, 4, 8, 4) as m:
        assert m.lookup(u32.pack(3)) == bytes(8)
        assert m.lookup(u32.pack(4)) is None
        m.update(u32.pack(3), u64.pack(7))
        assert m.lookup(u32.pack(3)) == u64.pack(7)
        assert len(list(m.iter_keys())) == 4
        with pytest.raises(OSError) as e:
            m.delete(u32.pack(3))
        assert e.value.errno == errno.EINVAL


def test_percpu_array_has_a_value_per_possible_cpu() -> None:
    ncpus = len(possible_cpus())
    with Map(uapi.MapType.PERCPU_ARRAY, 4, 12, 2) as m:
        values = m.lookup_percpu(u32.pack(1))
        assert values == [bytes(12)] * ncpus
        m.update(u32.pack(1), b"abcdefghijkl")
        assert m.lookup_percpu(u32.pack(1)) == [b"abcdefghijkl"] * ncpus
        with pytest.raises(TypeError):
            m.lookup(u32.pack(1))


@pytest.mark.parametrize("map_type", [uapi.MapType.PERCPU_ARRAY, uapi.MapType.PERCPU_HASH])
def test_lookup_all_percpu_reads_what_lookup_percpu_reads(map_type: uapi.MapType) -> None:
    """One batch lookup for every key, as a glob's summary reads its counters: the same keys and
    per-CPU values as a lookup of each key, values that differ by key."""
    ncpus = len(possible_cpus())
    entries = 700
    array = map_type is uapi.MapType.PERCPU_ARRAY
    written = range(0, entries, 1 if array else 3)  # an array has every key; the hash, those written
    with Map(map_type, 4, 12, entries) as m:
        for key in written:
            m.update(u32.pack(key), struct.pack("<IQ", key, key * 7919))
        every = m.lookup_all_percpu()
        assert sorted(every) == sorted(u32.pack(k) for k in written)
        for key in written:
            expected = [struct.pack("<IQ", key, key * 7919)] * ncpus
            assert every[u32.pack(key)] == m.lookup_percpu(u32.pack(key)) == expected
    with Map(uapi.MapType.ARRAY, 4, 8, 1) as plain, pytest.raises(TypeError):
        plain.lookup_all_percpu()


@pytest.mark.parametrize("map_type", [uapi.MapType.PERCPU_ARRAY, uapi.MapType.PERCPU_HASH])
def test_sum_all_percpu_adds_each_keys_cpus(map_type: uapi.MapType) -> None:
    """A map of u64 counters summed over the CPUs, as a --metrics scrape reads the counts: what
    lookup_percpu reads of each key, added up (an array's unwritten keys 0)."""
    ncpus = len(possible_cpus())
    entries = 10_000
    with Map(map_type, 4, 8, entries) as m:
        for key in range(0, entries, 7):
            m.update(u32.pack(key), struct.pack("=Q", key * 7919 + 1))
        sums = m.sum_all_percpu()
        every_key = range(entries) if map_type is uapi.MapType.PERCPU_ARRAY else range(0, entries, 7)
        assert sorted(sums) == sorted(u32.pack(k) for k in every_key)
        assert sum(sums.values()) == ncpus * sum(k * 7919 + 1 for k in range(0, entries, 7))
        for key in range(0, entries, 7):
            each = m.lookup_percpu(u32.pack(key))
            assert sums[u32.pack(key)] == sum(struct.unpack("=Q", v)[0] for v in each) == ncpus * (key * 7919 + 1)
    with Map(uapi.MapType.PERCPU_ARRAY, 4, 12, 1) as wide, pytest.raises(TypeError):
        wide.sum_all_percpu()


def test_bad_map_is_refused_with_einval() -> None:
    with pytest.raises(OSError) as e:
        Map(uapi.MapType.RINGBUF, 0, 0, 1000)  # not a power of 2
    assert e.value.errno == errno.EINVAL
    assert "bpf(MAP_CREATE)" in str(e.value)


def test_program_counts_into_percpu_array() -> None:
    getpid = syscall_nr("getpid")
    btf_id = vmlinux_type_id("btf_trace_sys_enter")
    with Map(uapi.MapType.PERCPU_ARRAY, 4, 8, 1, name="t_count") as counter:
        insns = sys_enter_count(counter.fd, os.getpid(), getpid)
        prog = load_program(insns, uapi.ProgType.TRACING, uapi.AttachType.TRACE_RAW_TP, btf_id)
        with prog, attach_tracing(prog):
            for _ in range(300):
                os.getpid()
        per_cpu = counter.lookup_percpu(u32.pack(0))
    assert per_cpu is not None
    assert sum(u64.unpack(v)[0] for v in per_cpu) >= 300


def test_raw_tracepoint_program_counts_too() -> None:
    # BPF_PROG_TYPE_RAW_TRACEPOINT sees the same u64 argument array, attached by name.
    getpid = syscall_nr("getpid")
    with Map(uapi.MapType.PERCPU_ARRAY, 4, 8, 1) as counter:
        prog = load_program(sys_enter_count(counter.fd, os.getpid(), getpid), uapi.ProgType.RAW_TRACEPOINT)
        with prog, attach_raw_tracepoint(prog, "sys_enter") as link:
            assert link.info().type == uapi.LinkType.RAW_TRACEPOINT
            for _ in range(100):
                os.getpid()
        per_cpu = counter.lookup_percpu(u32.pack(0))
    assert per_cpu is not None
    assert sum(u64.unpack(v)[0] for v in per_cpu) >= 100
