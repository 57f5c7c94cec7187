# SPDX-License-Identifier: GPL-2.0-only
"""BPF instructions as values: `Insn(code, dst, src, off, imm)`, small constructors, encode/decode.

Every field is range-checked when an `Insn` is made, so a bad offset fails here and not in
the verifier. `encode()` packs struct bpf_insn in the host's byte order; `decode()` undoes it.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

from . import uapi

INSN_SIZE = 8

# struct bpf_insn: u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm. The register nibbles
# are C bitfields, so their placement follows the byte order: dst is the low nibble on
# little-endian machines and the high nibble on big-endian ones.
_LAYOUTS = {"little": struct.Struct("<BBhi"), "big": struct.Struct(">BBhi")}

_SIZE_CODES = {1: uapi.BPF_B, 2: uapi.BPF_H, 4: uapi.BPF_W, 8: uapi.BPF_DW}

_ALU_OPS = frozenset(
    (
        uapi.BPF_ADD,
        uapi.BPF_SUB,
        uapi.BPF_MUL,
        uapi.BPF_DIV,
        uapi.BPF_OR,
        uapi.BPF_AND,
        uapi.BPF_LSH,
        uapi.BPF_RSH,
        uapi.BPF_MOD,
        uapi.BPF_XOR,
        uapi.BPF_MOV,
        uapi.BPF_ARSH,
    )
)

_COND_JMP_OPS = frozenset(
    (
        uapi.BPF_JEQ,
        uapi.BPF_JGT,
        uapi.BPF_JGE,
        uapi.BPF_JSET,
        uapi.BPF_JNE,
        uapi.BPF_JSGT,
        uapi.BPF_JSGE,
        uapi.BPF_JLT,
        uapi.BPF_JLE,
        uapi.BPF_JSLT,
        uapi.BPF_JSLE,
    )
)


@dataclass(frozen=True)
class Insn:
    """One 8-byte struct bpf_insn. `off` is signed 16-bit, `imm` signed 32-bit."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.code <= 0xFF:
            raise ValueError(f"opcode {self.code:#x} is not a byte")
        for name, reg in (("dst", self.dst), ("src", self.src)):
            if not 0 <= reg < uapi.MAX_BPF_REG:
                raise ValueError(f"{name} register r{reg} is not r0..r10")
        if not -(1 << 15) <= self.off < (1 << 15):
            raise ValueError(f"offset {self.off} does not fit in s16")
        if not -(1 << 31) <= self.imm < (1 << 31):
            raise ValueError(f"immediate {self.imm} does not fit in s32")

    @property
    def is_ld_imm64(self) -> bool:
        """True for the first slot of a 16-byte BPF_LD | BPF_IMM | BPF_DW pair."""
        return self.code == uapi.BPF_LD | uapi.BPF_IMM | uapi.BPF_DW


class Insns(tuple):  # type: ignore[type-arg]
    """A program's instructions: a tuple of Insn whose hash is computed once. A kprobe_multi
    program tells hundreds of functions' branches apart by their instructions, and a tuple's
    hash (every Insn's fields, in Python) is otherwise computed again at each lookup."""

    def __hash__(self) -> int:
        cached: Optional[int] = self.__dict__.get("hash")
        if cached is None:
            cached = self.__dict__["hash"] = tuple.__hash__(self)
        return cached


def _size_code(size: int) -> int:
    try:
        return _SIZE_CODES[size]
    except KeyError:
        raise ValueError(f"memory access size {size} is not 1, 2, 4 or 8 bytes") from None


def _alu_op(op: int) -> int:
    if op not in _ALU_OPS:
        raise ValueError(f"{op:#x} is not an ALU operation with a source operand")
    return op


def _jmp_op(op: int) -> int:
    if op not in _COND_JMP_OPS:
        raise ValueError(f"{op:#x} is not a conditional jump")
    return op


def _s32(value: int) -> int:
    # Fold a u32 bit pattern into the signed form struct bpf_insn stores.
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def mov64_imm(dst: int, imm: int) -> Insn:
    """dst = imm (sign-extended to 64 bits)."""
    return Insn(uapi.BPF_ALU64 | uapi.BPF_MOV | uapi.BPF_K, dst, 0, 0, imm)


def mov64_reg(dst: int, src: int) -> Insn:
    """dst = src."""
    return Insn(uapi.BPF_ALU64 | uapi.BPF_MOV | uapi.BPF_X, dst, src)


def mov32_imm(dst: int, imm: int) -> Insn:
    """w(dst) = imm; the upper 32 bits of dst become zero."""
    return Insn(uapi.BPF_ALU | uapi.BPF_MOV | uapi.BPF_K, dst, 0, 0, imm)


def mov32_reg(dst: int, src: int) -> Insn:
    """w(dst) = w(src); the upper 32 bits of dst become zero."""
    return Insn(uapi.BPF_ALU | uapi.BPF_MOV | uapi.BPF_X, dst, src)


def alu64_imm(op: int, dst: int, imm: int) -> Insn:
    """dst <op>= imm, 64-bit; op is uapi.BPF_ADD, BPF_AND, BPF_RSH..."""
    return Insn(uapi.BPF_ALU64 | _alu_op(op) | uapi.BPF_K, dst, 0, 0, imm)


def alu64_reg(op: int, dst: int, src: int) -> Insn:
    """dst <op>= src, 64-bit."""
    return Insn(uapi.BPF_ALU64 | _alu_op(op) | uapi.BPF_X, dst, src)


def alu32_imm(op: int, dst: int, imm: int) -> Insn:
    """w(dst) <op>= imm, 32-bit; the upper half of dst becomes zero."""
    return Insn(uapi.BPF_ALU | _alu_op(op) | uapi.BPF_K, dst, 0, 0, imm)


def alu32_reg(op: int, dst: int, src: int) -> Insn:
    """w(dst) <op>= w(src), 32-bit; the upper half of dst becomes zero."""
    return Insn(uapi.BPF_ALU | _alu_op(op) | uapi.BPF_X, dst, src)


def ldx_mem(size: int, dst: int, src: int, off: int) -> Insn:
    """dst = *(u<size*8> *)(src + off); size in bytes (1, 2, 4, 8), zero-extended."""
    return Insn(uapi.BPF_LDX | uapi.BPF_MEM | _size_code(size), dst, src, off)


def stx_mem(size: int, dst: int, src: int, off: int) -> Insn:
    """*(u<size*8> *)(dst + off) = src; size in bytes."""
    return Insn(uapi.BPF_STX | uapi.BPF_MEM | _size_code(size), dst, src, off)


def st_mem(size: int, dst: int, off: int, imm: int) -> Insn:
    """*(u<size*8> *)(dst + off) = imm; size in bytes."""
    return Insn(uapi.BPF_ST | uapi.BPF_MEM | _size_code(size), dst, 0, off, imm)


def atomic_add(size: int, dst: int, src: int, off: int) -> Insn:
    """lock *(u<size*8> *)(dst + off) += src; size 4 or 8 bytes."""
    if size not in (4, 8):
        raise ValueError(f"atomic add of {size} bytes: only 4 and 8 exist")
    return Insn(uapi.BPF_STX | uapi.BPF_ATOMIC | _size_code(size), dst, src, off, uapi.BPF_ADD)


def jmp_imm(op: int, dst: int, imm: int, off: int) -> Insn:
    """if dst <op> imm goto pc+off (64-bit compare; imm sign-extended)."""
    return Insn(uapi.BPF_JMP | _jmp_op(op) | uapi.BPF_K, dst, 0, off, imm)


def jmp_reg(op: int, dst: int, src: int, off: int) -> Insn:
    """if dst <op> src goto pc+off (64-bit compare)."""
    return Insn(uapi.BPF_JMP | _jmp_op(op) | uapi.BPF_X, dst, src, off)


def jmp32_imm(op: int, dst: int, imm: int, off: int) -> Insn:
    """if w(dst) <op> imm goto pc+off (32-bit compare)."""
    return Insn(uapi.BPF_JMP32 | _jmp_op(op) | uapi.BPF_K, dst, 0, off, imm)


def jmp32_reg(op: int, dst: int, src: int, off: int) -> Insn:
    """if w(dst) <op> w(src) goto pc+off (32-bit compare)."""
    return Insn(uapi.BPF_JMP32 | _jmp_op(op) | uapi.BPF_X, dst, src, off)


def ja(off: int) -> Insn:
    """goto pc+off."""
    return Insn(uapi.BPF_JMP | uapi.BPF_JA, off=off)


def call(helper: int) -> Insn:
    """Call helper `helper` (a uapi.Helper); arguments in r1-r5, result in r0."""
    return Insn(uapi.BPF_JMP | uapi.BPF_CALL, imm=int(helper))


def exit_() -> Insn:
    """Return r0."""
    return Insn(uapi.BPF_JMP | uapi.BPF_EXIT)


def ld_imm64(dst: int, value: int, src: int = 0) -> tuple[Insn, Insn]:
    """dst = value (any 64-bit value, signed or unsigned); occupies two instruction slots.

    `src` is the pseudo source (uapi.BPF_PSEUDO_*) telling the verifier what the value is.
    """
    if not -(1 << 63) <= value < (1 << 64):
        raise ValueError(f"immediate {value} does not fit in 64 bits")
    value &= (1 << 64) - 1
    code = uapi.BPF_LD | uapi.BPF_IMM | uapi.BPF_DW
    return (Insn(code, dst, src, 0, _s32(value)), Insn(0, 0, 0, 0, _s32(value >> 32)))


def ld_map_fd(dst: int, map_fd: int) -> tuple[Insn, Insn]:
    """dst = the map behind `map_fd` (BPF_PSEUDO_MAP_FD); two slots. The fd must stay open until load."""
    if not 0 <= map_fd < (1 << 31):
        raise ValueError(f"map fd {map_fd} is not a file descriptor")
    return ld_imm64(dst, map_fd, uapi.BPF_PSEUDO_MAP_FD)


def encode(insns: Iterable[Insn], byteorder: str = sys.byteorder) -> bytes:
    """Pack instructions into the bytes BPF_PROG_LOAD takes (host byte order by default)."""
    layout = _LAYOUTS[byteorder]
    little = byteorder == "little"
    out = bytearray()
    for insn in insns:
        regs = (insn.src << 4 | insn.dst) if little else (insn.dst << 4 | insn.src)
        out += layout.pack(insn.code, regs, insn.off, insn.imm)
    return bytes(out)


def decode(data: bytes, byteorder: str = sys.byteorder) -> list[Insn]:
    """Unpack struct bpf_insn bytes (e.g. xlated_prog_insns) into `Insn`s; raises ValueError."""
    if len(data) % INSN_SIZE:
        raise ValueError(f"{len(data)} bytes is not a whole number of {INSN_SIZE}-byte instructions")
    layout = _LAYOUTS[byteorder]
    little = byteorder == "little"
    insns = []
    for code, regs, off, imm in layout.iter_unpack(data):
        lo, hi = regs & 0x0F, regs >> 4
        dst, src = (lo, hi) if little else (hi, lo)
        insns.append(Insn(code, dst, src, off, imm))
    return insns
