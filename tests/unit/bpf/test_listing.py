# SPDX-License-Identifier: GPL-2.0-only
"""bpf.listing: each instruction form against the text kernel/bpf/disasm.c and bpftool print for it."""

from __future__ import annotations

import pytest

from bpf import insn as I
from bpf import uapi
from bpf.insn import Insn, decode, encode
from bpf.listing import MAP_REF_ID, format_insn, format_insns

CASES = [
    # The notation the issue quotes.
    (I.ldx_mem(8, 1, 6, 8), "(79) r1 = *(u64 *)(r6 +8)"),
    (I.call(uapi.Helper.probe_read_kernel), "(85) call bpf_probe_read_kernel#113"),
    (I.mov64_imm(2, 16), "(b7) r2 = 16"),
    (I.mov64_reg(1, 10), "(bf) r1 = r10"),
    (I.alu64_imm(uapi.BPF_ADD, 1, -16), "(07) r1 += -16"),
    (I.jmp_imm(uapi.BPF_JEQ, 0, 0, 3), "(15) if r0 == 0x0 goto pc+3"),
    (I.exit_(), "(95) exit"),
    # ALU, 64 and 32 bits.
    (I.alu64_reg(uapi.BPF_SUB, 2, 3), "(1f) r2 -= r3"),
    (I.alu64_imm(uapi.BPF_RSH, 0, 32), "(77) r0 >>= 32"),
    (I.alu64_imm(uapi.BPF_AND, 4, 0xFF), "(57) r4 &= 255"),
    (I.mov32_imm(0, 1), "(b4) w0 = 1"),
    (I.mov32_reg(1, 2), "(bc) w1 = w2"),
    (I.alu32_imm(uapi.BPF_RSH, 0, 3), "(74) w0 >>= 3"),
    (I.alu32_reg(uapi.BPF_ARSH, 9, 8), "(cc) w9 s>>= w8"),
    (Insn(0x87, 3), "(87) r3 = -r3"),
    (Insn(0x84, 3), "(84) w3 = -w3"),
    (Insn(0xDC, 1, imm=16), "(dc) r1 = be16 r1"),
    (Insn(0xD4, 1, imm=32), "(d4) r1 = le32 r1"),
    (Insn(0xD7, 1, imm=64), "(d7) r1 = bswap64 r1"),
    (Insn(0xBF, 1, 2, off=8), "(bf) r1 = (s8)r2"),
    (Insn(0xBC, 1, 2, off=16), "(bc) w1 = (s16)w2"),
    (Insn(0x3F, 1, 2, off=1), "(3f) r1 s/= r2"),
    (Insn(0x97, 1, off=1, imm=3), "(97) r1 s%= 3"),
    # Loads and stores.
    (I.ldx_mem(1, 0, 1, -1), "(71) r0 = *(u8 *)(r1 -1)"),
    (I.ldx_mem(2, 0, 1, 0), "(69) r0 = *(u16 *)(r1 +0)"),
    (Insn(0x91, 0, 1, 4), "(91) r0 = *(s8 *)(r1 +4)"),
    (I.st_mem(4, 10, -4, -1), "(62) *(u32 *)(r10 -4) = -1"),
    (I.stx_mem(8, 10, 1, -8), "(7b) *(u64 *)(r10 -8) = r1"),
    (I.atomic_add(8, 0, 1, 16), "(db) lock *(u64 *)(r0 +16) += r1"),
    (Insn(0xC3, 0, 1, 0, 0x40), "(c3) lock *(u32 *)(r0 +0) |= r1"),
    (Insn(0xDB, 0, 1, 0, 0x01), "(db) r1 = atomic64_fetch_add((u64 *)(r0 +0), r1)"),
    (Insn(0xC3, 0, 1, 0, 0x51), "(c3) r1 = atomic_fetch_and((u32 *)(r0 +0), r1)"),
    (Insn(0xDB, 0, 1, 0, 0xE1), "(db) r1 = atomic64_xchg((u64 *)(r0 +0), r1)"),
    (Insn(0xDB, 0, 1, 0, 0xF1), "(db) r0 = atomic64_cmpxchg((u64 *)(r0 +0), r0, r1)"),
    (Insn(0x20, imm=12), "(20) r0 = *(u32 *)skb[12]"),
    (Insn(0x48, src=7, imm=2), "(48) r0 = *(u16 *)skb[r7 + 2]"),
    # Jumps and calls.
    (I.jmp_imm(uapi.BPF_JNE, 1, -1, 2), "(55) if r1 != 0xffffffff goto pc+2"),
    (I.jmp_reg(uapi.BPF_JSGT, 1, 2, -5), "(6d) if r1 s> r2 goto pc-5"),
    (I.jmp32_imm(uapi.BPF_JSET, 3, 0x10, 1), "(46) if w3 & 0x10 goto pc+1"),
    (I.jmp32_reg(uapi.BPF_JLE, 4, 5, 0), "(be) if w4 <= w5 goto pc+0"),
    (I.ja(-1), "(05) goto pc-1"),
    (Insn(0x06, imm=100), "(06) gotol pc+100"),
    (Insn(0xE5, off=3), "(e5) may_goto pc+3"),
    (Insn(0x85, src=uapi.BPF_PSEUDO_CALL, imm=5), "(85) call pc+5"),
    (Insn(0x85, src=uapi.BPF_PSEUDO_KFUNC_CALL, imm=1234), "(85) call kernel-function#1234"),
    (I.call(9999), "(85) call unknown#9999"),
    (I.call(uapi.Helper.ringbuf_reserve), "(85) call bpf_ringbuf_reserve#131"),
    # Malformed: printed the way disasm.c prints them.
    (Insn(0x01), "BUG_ldx_01"),
    (Insn(0x22), "BUG_st_22"),
]


@pytest.mark.parametrize(("insn", "text"), CASES, ids=[t for _, t in CASES])
def test_single_instruction(insn: Insn, text: str) -> None:
    assert format_insn(insn) == text


@pytest.mark.parametrize(
    ("pair", "text"),
    [
        (I.ld_imm64(2, 0x1122334455667788), "(18) r2 = 0x1122334455667788"),
        (I.ld_imm64(2, 0), "(18) r2 = 0x0"),
        (I.ld_imm64(2, -2), "(18) r2 = 0xfffffffffffffffe"),
        (I.ld_map_fd(1, 5), "(18) r1 = map[fd:5]"),
        ((Insn(0x18, 1, uapi.BPF_PSEUDO_MAP_VALUE, 0, 5), Insn(0, imm=16)), "(18) r1 = map[fd:5][0]+16"),
        ((Insn(0x18, 1, uapi.BPF_PSEUDO_MAP_IDX_VALUE, 0, 2), Insn(0, imm=8)), "(18) r1 = map[idx:2]+8"),
        ((Insn(0x18, 3, uapi.BPF_PSEUDO_FUNC, 0, 7), Insn(0)), "(18) r3 = subprog[+7]"),
    ],
)
def test_ld_imm64(pair: tuple[Insn, Insn], text: str) -> None:
    assert format_insn(pair[0], pair[1]) == text


def test_numbering_skips_the_second_slot_of_ld_imm64() -> None:
    insns = [I.mov64_reg(6, 1), *I.ld_map_fd(1, 5), I.exit_()]
    assert format_insns(insns) == [
        "   0: (bf) r6 = r1",
        "   1: (18) r1 = map[fd:5]",
        "   3: (95) exit",
    ]


def test_what_bpftool_printed_for_a_loaded_program() -> None:
    # Lines from `bpftool prog dump xlated` of a sys_enter program on this machine's 6.18 kernel.
    insns = [
        I.mov64_reg(6, 1),
        I.call(uapi.Helper.get_current_pid_tgid),
        I.alu64_imm(uapi.BPF_RSH, 0, 32),
        I.jmp_imm(uapi.BPF_JNE, 0, 0x2FE0, 13),
        I.mov64_reg(7, 0),
        Insn(0x18, 1, uapi.BPF_PSEUDO_MAP_FD, 0, 27),
        Insn(0),
        I.mov64_imm(2, 16),
    ]
    assert format_insns(insns, map_ref=MAP_REF_ID) == [
        "   0: (bf) r6 = r1",
        "   1: (85) call bpf_get_current_pid_tgid#14",
        "   2: (77) r0 >>= 32",
        "   3: (55) if r0 != 0x2fe0 goto pc+13",
        "   4: (bf) r7 = r0",
        "   5: (18) r1 = map[id:27]",
        "   7: (b7) r2 = 16",
    ]


def test_listing_of_decoded_bytes_equals_listing_of_the_source() -> None:
    insns = [insn for insn, _ in CASES] + [*I.ld_imm64(0, 1 << 40), I.exit_()]
    assert format_insns(decode(encode(insns))) == format_insns(insns)


def test_truncated_ld_imm64_still_prints() -> None:
    lo, _ = I.ld_imm64(0, 0x1_0000_0005)
    assert format_insns([lo]) == ["   0: (18) r0 = 0x5"]
