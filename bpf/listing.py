# SPDX-License-Identifier: GPL-2.0-only
"""Instructions to text in the notation of `bpftool prog dump xlated` (kernel/bpf/disasm.c).

`format_insns()` gives one line per instruction, numbered by slot as bpftool numbers them
(a 16-byte ld_imm64 takes two slots and prints once). Used by -v, golden tests and verifier errors.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import uapi
from .insn import Insn

# disasm.c's tables, indexed by BPF_OP(code) >> 4 and BPF_SIZE(code) >> 3.
_ALU_STRING = {
    uapi.BPF_ADD: "+=",
    uapi.BPF_SUB: "-=",
    uapi.BPF_MUL: "*=",
    uapi.BPF_DIV: "/=",
    uapi.BPF_OR: "|=",
    uapi.BPF_AND: "&=",
    uapi.BPF_LSH: "<<=",
    uapi.BPF_RSH: ">>=",
    uapi.BPF_NEG: "neg",
    uapi.BPF_MOD: "%=",
    uapi.BPF_XOR: "^=",
    uapi.BPF_MOV: "=",
    uapi.BPF_ARSH: "s>>=",
    uapi.BPF_END: "endian",
}
_ALU_SIGNED_STRING = {uapi.BPF_DIV: "s/=", uapi.BPF_MOD: "s%="}
_MOVSX_STRING = {8: "(s8)", 16: "(s16)", 32: "(s32)"}
_ATOMIC_ALU_STRING = {uapi.BPF_ADD: "add", uapi.BPF_AND: "and", uapi.BPF_OR: "or", uapi.BPF_XOR: "xor"}
_LDST_STRING = {uapi.BPF_W: "u32", uapi.BPF_H: "u16", uapi.BPF_B: "u8", uapi.BPF_DW: "u64"}
_LDSX_STRING = {uapi.BPF_W: "s32", uapi.BPF_H: "s16", uapi.BPF_B: "s8"}
_JMP_STRING = {
    uapi.BPF_JEQ: "==",
    uapi.BPF_JGT: ">",
    uapi.BPF_JLT: "<",
    uapi.BPF_JGE: ">=",
    uapi.BPF_JLE: "<=",
    uapi.BPF_JSET: "&",
    uapi.BPF_JNE: "!=",
    uapi.BPF_JSGT: "s>",
    uapi.BPF_JSLT: "s<",
    uapi.BPF_JSGE: "s>=",
    uapi.BPF_JSLE: "s<=",
}

# Special forms of BPF_ALU64 | BPF_MOV | BPF_X, told apart by off.
_ADDR_SPACE_CAST_OFF = 1
_ADDR_PERCPU_OFF = -1
# Atomic load-acquire / store-release, carried in imm of BPF_STX | BPF_ATOMIC.
_LOAD_ACQ = 0x100
_STORE_REL = 0x110
# BPF_ST | BPF_NOSPEC: a verifier-inserted speculation barrier, no uapi name.
_NOSPEC_MODE = 0xC0

_HELPER_NAMES = {int(h): f"bpf_{h.name}" for h in uapi.Helper}

MAP_REF_FD = "fd"
MAP_REF_ID = "id"


def format_insns(insns: Sequence[Insn], map_ref: str = MAP_REF_FD) -> list[str]:
    """One line per instruction, e.g. `   3: (79) r1 = *(u64 *)(r6 +8)`.

    `map_ref` says what the imm of a BPF_PSEUDO_MAP_FD load holds: "fd" for programs we
    build (printed `map[fd:5]`), "id" for instructions read back from the kernel, which
    has swapped the fd for the map id (printed `map[id:5]`, as bpftool does).
    """
    lines = []
    i = 0
    while i < len(insns):
        insn = insns[i]
        second = insns[i + 1] if insn.is_ld_imm64 and i + 1 < len(insns) else None
        lines.append(f"{i:4d}: {format_insn(insn, second, map_ref)}")
        i += 2 if insn.is_ld_imm64 else 1
    return lines


def format_insn(insn: Insn, second: Insn | None = None, map_ref: str = MAP_REF_FD) -> str:
    """One instruction without its slot number; `second` is the other half of an ld_imm64."""
    cls = insn.code & 0x07
    if cls in (uapi.BPF_ALU, uapi.BPF_ALU64):
        text = _format_alu(insn, cls)
    elif cls == uapi.BPF_STX:
        text = _format_stx(insn)
    elif cls == uapi.BPF_ST:
        text = _format_st(insn)
    elif cls == uapi.BPF_LDX:
        text = _format_ldx(insn)
    elif cls == uapi.BPF_LD:
        text = _format_ld(insn, second, map_ref)
    else:
        text = _format_jmp(insn, cls)
    # A malformed instruction prints as bpftool prints it: BUG_<class>_<code>, no "(code)".
    return text if text.startswith("BUG_") else f"({insn.code:02x}) {text}"


def _size(insn: Insn) -> str:
    return _LDST_STRING[insn.code & 0x18]


def _format_alu(insn: Insn, cls: int) -> str:
    reg = "w" if cls == uapi.BPF_ALU else "r"
    op = insn.code & 0xF0
    dst, src = insn.dst, insn.src
    if op == uapi.BPF_END:
        if cls == uapi.BPF_ALU64:
            return f"r{dst} = bswap{insn.imm} r{dst}"
        order = "be" if insn.code & uapi.BPF_X else "le"
        return f"r{dst} = {order}{insn.imm} r{dst}"
    if op == uapi.BPF_NEG:
        return f"{reg}{dst} = -{reg}{dst}"
    if op not in _ALU_STRING:
        return f"BUG_alu_{insn.code:02x}"
    is_mov64_x = insn.code == uapi.BPF_ALU64 | uapi.BPF_MOV | uapi.BPF_X
    if is_mov64_x and insn.off == _ADDR_SPACE_CAST_OFF:
        imm = insn.imm & 0xFFFFFFFF
        return f"r{dst} = addr_space_cast(r{src}, {imm >> 16}, {imm & 0xFFFF})"
    if is_mov64_x and insn.off == _ADDR_PERCPU_OFF:
        return f"r{dst} = &(void __percpu *)(r{src})"
    opstr = _ALU_SIGNED_STRING[op] if op in _ALU_SIGNED_STRING and insn.off == 1 else _ALU_STRING[op]
    if insn.code & uapi.BPF_X:
        cast = _MOVSX_STRING.get(insn.off, "") if op == uapi.BPF_MOV else ""
        return f"{reg}{dst} {opstr} {cast}{reg}{src}"
    return f"{reg}{dst} {opstr} {insn.imm}"


def _format_stx(insn: Insn) -> str:
    mode = insn.code & 0xE0
    size = _size(insn)
    dst, src, off, imm = insn.dst, insn.src, insn.off, insn.imm
    if mode == uapi.BPF_MEM:
        return f"*({size} *)(r{dst} {off:+d}) = r{src}"
    if mode != uapi.BPF_ATOMIC:
        return f"BUG_{insn.code:02x}"
    bits = "64" if insn.code & 0x18 == uapi.BPF_DW else ""
    alu = imm & ~uapi.BPF_FETCH
    if alu in _ATOMIC_ALU_STRING and imm & 0xFF == imm:
        if imm & uapi.BPF_FETCH:
            name = _ATOMIC_ALU_STRING[alu]
            return f"r{src} = atomic{bits}_fetch_{name}(({size} *)(r{dst} {off:+d}), r{src})"
        return f"lock *({size} *)(r{dst} {off:+d}) {_ALU_STRING[alu]} r{src}"
    if imm == uapi.BPF_CMPXCHG:
        return f"r0 = atomic{bits}_cmpxchg(({size} *)(r{dst} {off:+d}), r0, r{src})"
    if imm == uapi.BPF_XCHG:
        return f"r{src} = atomic{bits}_xchg(({size} *)(r{dst} {off:+d}), r{src})"
    if imm == _LOAD_ACQ:
        return f"r{dst} = load_acquire(({size} *)(r{src} {off:+d}))"
    if imm == _STORE_REL:
        return f"store_release(({size} *)(r{dst} {off:+d}), r{src})"
    return f"BUG_{insn.code:02x}"


def _format_st(insn: Insn) -> str:
    mode = insn.code & 0xE0
    if mode == uapi.BPF_MEM:
        return f"*({_size(insn)} *)(r{insn.dst} {insn.off:+d}) = {insn.imm}"
    if mode == _NOSPEC_MODE:
        return "nospec"
    return f"BUG_st_{insn.code:02x}"


def _format_ldx(insn: Insn) -> str:
    mode = insn.code & 0xE0
    if mode == uapi.BPF_MEM:
        size = _size(insn)
    elif mode == uapi.BPF_MEMSX and insn.code & 0x18 in _LDSX_STRING:
        size = _LDSX_STRING[insn.code & 0x18]
    else:
        return f"BUG_ldx_{insn.code:02x}"
    return f"r{insn.dst} = *({size} *)(r{insn.src} {insn.off:+d})"


def _format_ld(insn: Insn, second: Insn | None, map_ref: str) -> str:
    mode = insn.code & 0xE0
    if mode == uapi.BPF_ABS:
        return f"r0 = *({_size(insn)} *)skb[{insn.imm}]"
    if mode == uapi.BPF_IND:
        return f"r0 = *({_size(insn)} *)skb[r{insn.src} + {insn.imm}]"
    if not insn.is_ld_imm64:
        return f"BUG_ld_{insn.code:02x}"
    hi = second.imm if second is not None else 0
    if insn.src == uapi.BPF_PSEUDO_MAP_FD:
        value = f"map[{map_ref}:{insn.imm}]"
    elif insn.src == uapi.BPF_PSEUDO_MAP_VALUE:
        value = f"map[{map_ref}:{insn.imm}][0]+{hi}"
    elif insn.src == uapi.BPF_PSEUDO_MAP_IDX_VALUE:
        value = f"map[idx:{insn.imm}]+{hi}"
    elif insn.src == uapi.BPF_PSEUDO_FUNC:
        value = f"subprog[{insn.imm:+d}]"
    else:
        value = f"{(hi & 0xFFFFFFFF) << 32 | (insn.imm & 0xFFFFFFFF):#x}"
    return f"r{insn.dst} = {value}"


def _format_jmp(insn: Insn, cls: int) -> str:
    op = insn.code & 0xF0
    reg = "w" if cls == uapi.BPF_JMP32 else "r"
    if op == uapi.BPF_CALL:
        if insn.src == uapi.BPF_PSEUDO_CALL:
            return f"call pc{insn.imm:+d}"
        if insn.src == uapi.BPF_PSEUDO_KFUNC_CALL:
            name = "kernel-function"
        else:
            name = _HELPER_NAMES.get(insn.imm, "unknown")
        return f"call {name}#{insn.imm}"
    if insn.code == uapi.BPF_JMP | uapi.BPF_JA:
        return f"goto pc{insn.off:+d}"
    if insn.code == uapi.BPF_JMP | uapi.BPF_JA | uapi.BPF_X:
        return f"gotox r{insn.dst}"
    if insn.code == uapi.BPF_JMP | uapi.BPF_JCOND and insn.src == uapi.BPF_MAY_GOTO:
        return f"may_goto pc{insn.off:+d}"
    if insn.code == uapi.BPF_JMP32 | uapi.BPF_JA:
        return f"gotol pc{insn.imm:+d}"
    if insn.code == uapi.BPF_JMP | uapi.BPF_EXIT:
        return "exit"
    if op not in _JMP_STRING:
        return f"BUG_jmp_{insn.code:02x}"
    if insn.code & uapi.BPF_X:
        return f"if {reg}{insn.dst} {_JMP_STRING[op]} {reg}{insn.src} goto pc{insn.off:+d}"
    return f"if {reg}{insn.dst} {_JMP_STRING[op]} {insn.imm & 0xFFFFFFFF:#x} goto pc{insn.off:+d}"
