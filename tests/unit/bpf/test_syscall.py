# SPDX-License-Identifier: GPL-2.0-only
"""bpf.syscall: bpf_attr pieces sit at the offsets include/uapi/linux/bpf.h gives them; syscall numbers."""

from __future__ import annotations

import ctypes
import sys

import pytest

from bpf import syscall


@pytest.mark.parametrize(
    ("struct", "field", "offset"),
    [
        (syscall.map_create_attr, "map_flags", 16),
        (syscall.map_create_attr, "map_name", 28),
        (syscall.map_create_attr, "map_ifindex", 44),
        (syscall.map_create_attr, "map_extra", 64),
        (syscall.map_elem_attr, "key", 8),
        (syscall.map_elem_attr, "value", 16),
        (syscall.map_elem_attr, "flags", 24),
        (syscall.prog_load_attr, "insns", 8),
        (syscall.prog_load_attr, "log_buf", 32),
        (syscall.prog_load_attr, "prog_name", 48),
        (syscall.prog_load_attr, "expected_attach_type", 68),
        (syscall.prog_load_attr, "attach_btf_id", 108),
        (syscall.prog_load_attr, "attach_btf_obj_fd", 112),
        (syscall.prog_load_attr, "fd_array", 120),
        (syscall.prog_load_attr, "log_true_size", 140),
        (syscall.obj_info_attr, "info", 8),
        (syscall.raw_tracepoint_attr, "prog_fd", 8),
        (syscall.raw_tracepoint_attr, "cookie", 16),
        (syscall.link_create_attr, "attach_type", 8),
        (syscall.link_create_attr, "target_btf_id", 16),
        (syscall.link_create_attr, "iter", 16),
        (syscall.bpf_prog_info, "xlated_prog_insns", 32),
        (syscall.bpf_prog_info, "name", 64),
        (syscall.bpf_prog_info, "btf_id", 128),
        (syscall.bpf_prog_info, "run_time_ns", 192),
        (syscall.bpf_prog_info, "attach_btf_id", 224),
        (syscall.bpf_map_info, "name", 24),
        (syscall.bpf_map_info, "btf_vmlinux_id", 76),
        (syscall.bpf_map_info, "map_extra", 80),
        (syscall.get_id_attr, "next_id", 4),
        (syscall.get_id_attr, "open_flags", 8),
        (syscall.bpf_btf_info, "btf_size", 8),
        (syscall.bpf_btf_info, "id", 12),
        (syscall.bpf_btf_info, "name", 16),
        (syscall.bpf_btf_info, "name_len", 24),
        (syscall.bpf_btf_info, "kernel_btf", 28),
    ],
)
def test_field_offsets_follow_the_uapi(struct: type[ctypes.Structure], field: str, offset: int) -> None:
    assert getattr(struct, field).offset == offset


def test_sizes() -> None:
    assert ctypes.sizeof(syscall.prog_load_attr) == 144
    assert ctypes.sizeof(syscall.bpf_prog_info) == 232
    assert ctypes.sizeof(syscall.bpf_map_info) == 88
    assert ctypes.sizeof(syscall.bpf_btf_info) == 32  # __attribute__((aligned(8))), no tail padding
    assert ctypes.sizeof(syscall.bpf_attr) == syscall.BPF_ATTR_SIZE
    assert syscall.link_create_attr.iter.offset + 8 == 24  # iter_info_len follows iter_info


def test_link_create_union_overlays_target_btf_id_on_iter_info() -> None:
    attr = syscall.bpf_attr()
    attr.link_create.target_btf_id = 0x1234
    assert attr.link_create.tracing.target_btf_id == 0x1234
    assert bytes(attr)[16:20] == (0x1234).to_bytes(4, sys.byteorder)


@pytest.mark.parametrize(
    ("machine", "nr"),
    [
        ("x86_64", 321),
        ("aarch64", 280),
        ("riscv64", 280),
        ("i686", 357),
        ("armv7l", 386),
        ("ppc64le", 361),
        ("s390x", 351),
    ],
)
def test_syscall_numbers(machine: str, nr: int) -> None:
    assert syscall.syscall_number(machine) == nr


def test_unknown_machine_is_enosys() -> None:
    with pytest.raises(OSError) as e:
        syscall.syscall_number("pdp11")
    assert e.value.errno == 38


def test_object_names_are_cut_and_cleaned() -> None:
    assert syscall._name_bytes("ksnoop_tp_sys_enter_long") == b"ksnoop_tp_sys_e"
    assert syscall._name_bytes("a-b:c.d") == b"a_b_c.d"
    assert syscall._name_bytes("née") == b"n_e"
