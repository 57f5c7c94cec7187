# SPDX-License-Identifier: GPL-2.0-only
"""bpf.iter without the kernel: link-info packing, record size limits, argument checks."""

from __future__ import annotations

import struct

import pytest

from bpf import iter as bpf_iter
from bpf.loader import LoadedProgram
from bpf.uapi import AttachType, CgroupIterOrder, ProgType


def test_link_info_members_are_packed_as_the_uapi_lays_them_out() -> None:
    assert bpf_iter.link_info_map(5) == struct.pack("=I", 5)
    assert bpf_iter.link_info_task(pid=42) == struct.pack("=III", 0, 42, 0)
    assert bpf_iter.link_info_task(tid=43) == struct.pack("=III", 43, 0, 0)
    assert bpf_iter.link_info_cgroup(CgroupIterOrder.DESCENDANTS_PRE, cgroup_id=1 << 40) == struct.pack(
        "=IIQ", 2, 0, 1 << 40
    )
    # Every member fits union bpf_iter_link_info's 16 bytes.
    assert max(s.size for s in (bpf_iter.LINK_INFO_MAP, bpf_iter.LINK_INFO_CGROUP, bpf_iter.LINK_INFO_TASK)) == 16


@pytest.mark.parametrize("page_size,expected", [(4096, 32760), (16384, 32768), (65536, 32768)])
def test_a_record_fits_the_seq_buffer_and_a_per_cpu_value(page_size: int, expected: int) -> None:
    # seq_write() takes len only while count + len < size; a per-CPU value is at most 32 KiB.
    assert bpf_iter.seq_buffer_size(page_size) == 8 * page_size
    assert bpf_iter.max_record_size(page_size) == expected
    assert bpf_iter.max_record_size(page_size) % 8 == 0


def test_attach_iter_wants_an_iterator_program() -> None:
    prog = LoadedProgram.__new__(LoadedProgram)
    prog.prog_type, prog.expected_attach_type = ProgType.TRACING, AttachType.TRACE_RAW_TP
    with pytest.raises(ValueError, match="TRACE_RAW_TP"):
        bpf_iter.attach_iter(prog)
