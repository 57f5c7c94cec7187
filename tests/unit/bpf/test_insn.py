# SPDX-License-Identifier: GPL-2.0-only
"""bpf.insn: field range checks, constructor encodings, encode/decode round trips in both byte orders."""

from __future__ import annotations

import pytest

from bpf import insn as I
from bpf import uapi
from bpf.insn import Insn, decode, encode

EVERY_CONSTRUCTOR = [
    I.mov64_imm(1, -7),
    I.mov64_reg(6, 1),
    I.mov32_imm(2, 0x7FFFFFFF),
    I.mov32_reg(3, 4),
    I.alu64_imm(uapi.BPF_ADD, 1, -16),
    I.alu64_reg(uapi.BPF_SUB, 2, 3),
    I.alu32_imm(uapi.BPF_RSH, 0, 3),
    I.alu32_reg(uapi.BPF_ARSH, 9, 8),
    I.ldx_mem(1, 0, 1, -1),
    I.ldx_mem(2, 0, 1, 2),
    I.ldx_mem(4, 0, 1, 4),
    I.ldx_mem(8, 1, 6, 8),
    I.stx_mem(8, 10, 1, -8),
    I.st_mem(4, 10, -4, -1),
    I.atomic_add(8, 0, 1, 16),
    I.jmp_imm(uapi.BPF_JEQ, 0, 0, 3),
    I.jmp_reg(uapi.BPF_JSGT, 1, 2, -5),
    I.jmp32_imm(uapi.BPF_JSET, 3, 0x10, 1),
    I.jmp32_reg(uapi.BPF_JLE, 4, 5, 0),
    I.ja(-1),
    I.call(uapi.Helper.probe_read_kernel),
    *I.ld_imm64(2, 0x1122334455667788),
    *I.ld_map_fd(1, 5),
    I.exit_(),
]


@pytest.mark.parametrize(
    ("insn", "raw"),
    [
        (I.mov64_imm(1, 2), "b701000002000000"),
        (I.ldx_mem(8, 1, 6, 8), "7961080000000000"),
        (I.stx_mem(8, 10, 1, -8), "7b1af8ff00000000"),
        (I.alu64_imm(uapi.BPF_ADD, 1, -16), "07010000f0ffffff"),
        (I.jmp_imm(uapi.BPF_JEQ, 0, 0, 3), "1500030000000000"),
        (I.call(uapi.Helper.probe_read_kernel), "8500000071000000"),
        (I.exit_(), "9500000000000000"),
    ],
)
def test_little_endian_encoding(insn: Insn, raw: str) -> None:
    assert encode([insn], "little").hex() == raw


def test_big_endian_puts_dst_in_the_high_nibble() -> None:
    raw = encode([I.ldx_mem(8, 1, 6, 8)], "big")
    assert raw.hex() == "7916000800000000"


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_round_trip(byteorder: str) -> None:
    raw = encode(EVERY_CONSTRUCTOR, byteorder)
    assert len(raw) == 8 * len(EVERY_CONSTRUCTOR)
    assert decode(raw, byteorder) == EVERY_CONSTRUCTOR


def test_ld_imm64_splits_into_two_slots() -> None:
    lo, hi = I.ld_imm64(3, 0xFFFFFFFF80000000)
    assert lo.is_ld_imm64 and not hi.is_ld_imm64
    assert (lo.dst, lo.src, lo.imm, hi.code, hi.imm) == (3, 0, -(1 << 31), 0, -1)
    assert I.ld_imm64(0, -1) == I.ld_imm64(0, (1 << 64) - 1)
    fd_lo, _ = I.ld_map_fd(1, 7)
    assert (fd_lo.src, fd_lo.imm) == (uapi.BPF_PSEUDO_MAP_FD, 7)


@pytest.mark.parametrize(
    "fields",
    [
        {"code": 256},
        {"code": -1},
        {"code": 0xB7, "dst": 11},
        {"code": 0xB7, "src": -1},
        {"code": 0xB7, "off": 1 << 15},
        {"code": 0xB7, "off": -(1 << 15) - 1},
        {"code": 0xB7, "imm": 1 << 31},
        {"code": 0xB7, "imm": -(1 << 31) - 1},
    ],
)
def test_out_of_range_fields_are_refused(fields: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        Insn(**fields)


def test_range_edges_are_accepted() -> None:
    Insn(0xFF, 10, 10, (1 << 15) - 1, (1 << 31) - 1)
    Insn(0, 0, 0, -(1 << 15), -(1 << 31))


def test_constructors_check_their_arguments() -> None:
    with pytest.raises(ValueError, match="size 3"):
        I.ldx_mem(3, 0, 1, 0)
    with pytest.raises(ValueError, match="not an ALU operation"):
        I.alu64_imm(uapi.BPF_NEG, 0, 1)
    with pytest.raises(ValueError, match="not a conditional jump"):
        I.jmp_imm(uapi.BPF_CALL, 0, 0, 1)
    with pytest.raises(ValueError, match="64 bits"):
        I.ld_imm64(0, 1 << 64)
    with pytest.raises(ValueError, match="only 4 and 8"):
        I.atomic_add(2, 0, 1, 0)
    with pytest.raises(ValueError, match="s32"):
        I.mov64_imm(0, 0xFFFFFFFF)
    with pytest.raises(ValueError, match="r11"):
        I.mov64_reg(11, 0)


def test_decode_refuses_partial_and_impossible_instructions() -> None:
    with pytest.raises(ValueError, match="whole number"):
        decode(b"\x95" + bytes(8))
    with pytest.raises(ValueError, match="r15"):
        decode(bytes.fromhex("bf0f000000000000"), "little")


def test_insn_is_frozen() -> None:
    insn = I.exit_()
    with pytest.raises(AttributeError):
        insn.imm = 1  # type: ignore[misc]
