# SPDX-License-Identifier: GPL-2.0-only
"""Named instruction templates: short BPF sequences with typed holes the code generator fills.

A hole stands in one field of one instruction (an offset, a size, a constant, a jump target,
a map) and is filled from the plan, so every number the program uses is an immediate and
nothing in the kernel interprets a description of the trace.

Register roles, fixed across all templates:
  r6 = ctx (the u64 argument array)   r7 = the reserved record   r8 = failed-read mask
  r9 = the pointer being followed, or the value just read        r1-r5, r0 = helper calls
Stack (below r10): STACK_PTR scratch for a followed pointer, STACK_VALUE for a value under
test, STACK_COMM for the comm filter, STACK_STRING for string predicates, and in fexit
programs STACK_ENTRY_TS and STACK_STASH_KEY for the entry's stash.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Tuple

from . import insn as i
from . import uapi
from .plan import (
    AGGREGATE_BUCKET_OFFSET,
    AGGREGATE_FAILED_OFFSET,
    AGGREGATE_FUNCTION_OFFSET,
    AGGREGATE_HEADER_SIZE,
    BUCKETS_OFFSET,
    DROPPED_CALLS_OFFSET,
    DROPPED_KEYS_OFFSET,
    HIST_NEGATIVE,
    HIST_UNREADABLE,
    MAX_KEY_VALUES_SIZE,
    COMM_SIZE,
    CPU_OFFSET,
    ENTRY_TS_OFFSET,
    FAILED_OFFSET,
    GRAPH_DEPTH_OFFSET,
    GRAPH_ENTRY_TS_OFFSET,
    GRAPH_NODES_OFFSET,
    GRAPH_RECORDED_OFFSET,
    GRAPH_ROOTS_OFFSET,
    DURATION_SUM_OFFSET,
    LATENCY_BUCKETS,
    MAX_STRING_PREDICATE,
    PATH_DEPTH_OFFSET,
    PATH_SHOWN_OFFSET,
    PID_TGID_OFFSET,
    PROBE_OFFSET,
    TS_OFFSET,
)
from .uapi import Helper

R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)
CTX, RECORD, FAILED, CURSOR = R6, R7, R8, R9

STACK_PTR = -8
STACK_VALUE = -16
STACK_COMM = -32
# A string predicate's literal and its NUL, plus a word for the byte past the NUL the _str helpers read.
STACK_STRING = STACK_COMM - MAX_STRING_PREDICATE - 8
STACK_ENTRY_TS = STACK_STRING - 8  # fexit: the stashed entry time, 0 if none
STACK_STASH_KEY = STACK_ENTRY_TS - 8  # fexit: this task's pid_tgid, the stash key
STACK_PATH_KEY = STACK_STASH_KEY  # call-path programs (which have no stash): the path state's key
STACK_COOKIE = STACK_STASH_KEY - 8  # kprobe_multi programs: the link's cookie for the function that fired
# Aggregation mode: the key being built (AggregateLayout), r7 pointing at it while it is.
STACK_KEY = STACK_COOKIE - AGGREGATE_HEADER_SIZE - MAX_KEY_VALUES_SIZE

# A kprobe_multi program has one branch for all the functions whose programs are the same but
# for the numbers that name the function: the link gives each function a cookie holding them,
# and the number of the branch that serves it, at these shifts (16 bits a number, 8 a branch
# number). One cookie serves both sides of a function (its entry's link and its return's, or one
# kprobe session link running both), so each side reads its own probe index; a function's
# counters' key and its stash group are one number where it has both (count_calls). The
# `_by_cookie` templates (BY_COOKIE, BY_COOKIE_RETURN) read them from the cookie saved at
# STACK_COOKIE where the others take them as constants.
COOKIE_FIELDS = {"probe": 0, "return_probe": 16, "key": 32, "stash_group": 32}
COOKIE_FIELD_MAX = 0xFFFF
COOKIE_ENTRY_BRANCH_SHIFT = 48
COOKIE_RETURN_BRANCH_SHIFT = 56
COOKIE_BRANCH_MAX = 0xFF
_BY_COOKIE = "_by_cookie"


@dataclass(frozen=True)
class Hole:
    """A field left open in a template instruction, filled by name from the plan.

    `field` says what the value patches: "off" and "imm" take an int ("off" also takes a label,
    a str, for jumps), "imm64" an int for an ld_imm64 pair, "map" a map role for an ld_imm64
    pair, and "code" patches the opcode: a width in bytes for a load or store, or the operation
    bits of a jump or shift.
    """

    field: str
    name: str


@dataclass(frozen=True)
class TInsn:
    """One template instruction: a real Insn with the fields named in `holes` left open."""

    insn: i.Insn
    holes: Tuple[Hole, ...] = ()


@dataclass(frozen=True)
class Template:
    name: str
    contract: str  # the registers and stack it reads and writes, and where it jumps
    insns: Tuple[TInsn, ...]

    @functools.cached_property
    def hole_names(self) -> Tuple[str, ...]:  # asked at every emit: a glob's programs emit thousands
        return tuple(dict.fromkeys(h.name for t in self.insns for h in t.holes))


def T(insn: i.Insn, **holes: str) -> TInsn:  # noqa: N802 - reads as a table row
    """A template instruction; each keyword is a field (code, off, imm, imm64, map), its value the hole's name."""
    return TInsn(insn, tuple(Hole(field, name) for field, name in holes.items()))


def _pair(insns: Tuple[i.Insn, i.Insn], **holes: str) -> Tuple[TInsn, TInsn]:
    return T(insns[0], **holes), T(insns[1])


def _keyed_call(helper: Helper, role: str, key_offset: int) -> Tuple[TInsn, ...]:
    """helper(map `role`, r10 + key_offset): a map lookup or delete by the key on the stack; clobbers r0-r5."""
    return (
        *_pair(i.ld_map_fd(R1, 0), map=role),
        T(i.mov64_reg(R2, R10)),
        T(i.alu64_imm(ADD, R2, key_offset)),
        T(i.call(helper)),
    )


def _function_value(reg: int, name: str, by_cookie: bool) -> Tuple[TInsn, ...]:
    """`reg` = the function's number `name` (a COOKIE_FIELDS key): the constant, or `by_cookie`
    its field of the cookie at STACK_COOKIE."""
    if not by_cookie:
        return (T(i.mov64_imm(reg, 0), imm=name),)
    shift = COOKIE_FIELDS[name]
    return (
        T(i.ldx_mem(8, reg, R10, STACK_COOKIE)),
        *((T(i.alu64_imm(RSH, reg, shift)),) if shift else ()),
        T(i.alu64_imm(AND, reg, COOKIE_FIELD_MAX)),
    )


ADD, AND, OR, LSH, RSH, ARSH = uapi.BPF_ADD, uapi.BPF_AND, uapi.BPF_OR, uapi.BPF_LSH, uapi.BPF_RSH, uapi.BPF_ARSH
JEQ, JNE = uapi.BPF_JEQ, uapi.BPF_JNE
LDX_MEM = uapi.BPF_LDX | uapi.BPF_MEM
STX_MEM = uapi.BPF_STX | uapi.BPF_MEM
JMP_K = uapi.BPF_JMP | uapi.BPF_K
JMP_X = uapi.BPF_JMP | uapi.BPF_X

PROLOGUE = Template(
    "prologue",
    "r6 = r1 (ctx); r8 = 0 (no read failed yet)",
    (
        T(i.mov64_reg(CTX, R1)),
        T(i.mov64_imm(FAILED, 0)),
    ),
)

PID_FILTER = Template(
    "pid_filter",
    "drops the event unless the current tgid == CONST; clobbers r0-r5",
    (
        T(i.call(Helper.get_current_pid_tgid)),
        T(i.alu64_imm(RSH, R0, 32)),
        T(i.jmp_imm(JNE, R0, 0, 0), imm="pid", off="out"),
    ),
)

UID_FILTER = Template(
    "uid_filter",
    "drops the event unless the current task's uid (the low 32 bits of bpf_get_current_uid_gid) "
    "== CONST, compared as 32 bits; clobbers r0-r5",
    (
        T(i.call(Helper.get_current_uid_gid)),
        T(i.jmp32_imm(JNE, R0, 0, 0), imm="uid", off="out"),
    ),
)

CGROUP_FILTER = Template(
    "cgroup_filter",
    "drops the event unless the current task's cgroup (v2) has the ancestor CONST64 at level "
    "CONST (itself when that is its own level; 0 when it is not that deep); clobbers r0-r5",
    (
        T(i.mov64_imm(R1, 0), imm="level"),
        T(i.call(Helper.get_current_ancestor_cgroup_id)),
        *_pair(i.ld_imm64(R1, 0), imm64="cgroup_id"),
        T(i.jmp_reg(JNE, R0, R1, 0), off="out"),
    ),
)

COMM_FILTER = Template(
    "comm_filter",
    "drops the event unless the current comm == CONST64 x2; the "
    "buffer is zeroed first, since kernels 5.19 to 6.3 leave the bytes after the NUL as "
    "they were (strscpy, not strscpy_pad); uses STACK_COMM; clobbers r0-r5",
    (
        T(i.st_mem(8, R10, STACK_COMM, 0)),
        T(i.st_mem(8, R10, STACK_COMM + 8, 0)),
        T(i.mov64_reg(R1, R10)),
        T(i.alu64_imm(ADD, R1, STACK_COMM)),
        T(i.mov64_imm(R2, COMM_SIZE)),
        T(i.call(Helper.get_current_comm)),
        T(i.ldx_mem(8, R1, R10, STACK_COMM)),
        *_pair(i.ld_imm64(R2, 0), imm64="comm_lo"),
        T(i.jmp_reg(JNE, R1, R2, 0), off="out"),
        T(i.ldx_mem(8, R1, R10, STACK_COMM + 8)),
        *_pair(i.ld_imm64(R2, 0), imm64="comm_hi"),
        T(i.jmp_reg(JNE, R1, R2, 0), off="out"),
    ),
)

LOAD_ARG = Template(
    "load_arg",
    "r9 = the u64 at ctx + slot_offset (one argument or the return value)",
    (T(i.ldx_mem(8, CURSOR, CTX, 0), off="slot_offset"),),
)

COPY_ARG = Template(
    "copy_arg",
    "r9 = ctx, so that follow_pointer at the slot's offset copies the slot out "
    "with probe_read_kernel: for a slot the verifier will not let a program load (btf_ctx_access "
    "refuses pointers to anything but structs, ints and void)",
    (T(i.mov64_reg(CURSOR, CTX)),),
)

NULL_CHECK = Template(
    "null_check",
    "jumps to `fail` when r9 is NULL; the verifier refuses arithmetic on an "
    "argument the kernel marks nullable (PTR_TO_BTF_ID_OR_NULL) until it is checked",
    (T(i.jmp_imm(JEQ, CURSOR, 0, 0), off="fail"),),
)

FOLLOW_POINTER = Template(
    "follow_pointer",
    "r9 = *(u64 *)(r9 + offset) read with probe_read_kernel "
    "through STACK_PTR; a failed read jumps to `fail`; clobbers r0-r5",
    (
        T(i.mov64_reg(R1, R10)),
        T(i.alu64_imm(ADD, R1, STACK_PTR)),
        T(i.mov64_imm(R2, 8)),
        T(i.mov64_reg(R3, CURSOR)),
        T(i.alu64_imm(ADD, R3, 0), imm="offset"),
        T(i.call(Helper.probe_read_kernel)),
        T(i.jmp_imm(JNE, R0, 0, 0), off="fail"),
        T(i.ldx_mem(8, CURSOR, R10, STACK_PTR)),
    ),
)

READ_VALUE = Template(
    "read_value",
    "r9 = the `size`-byte value at r9 + offset, read with "
    "probe_read_kernel through STACK_VALUE, zero-extended; a failed read jumps to `fail`",
    (
        T(i.mov64_imm(R1, 0)),
        T(i.stx_mem(8, R10, R1, STACK_VALUE)),
        T(i.mov64_reg(R1, R10)),
        T(i.alu64_imm(ADD, R1, STACK_VALUE)),
        T(i.mov64_imm(R2, 8), imm="size"),
        T(i.mov64_reg(R3, CURSOR)),
        T(i.alu64_imm(ADD, R3, 0), imm="offset"),
        T(i.call(Helper.probe_read_kernel)),
        T(i.jmp_imm(JNE, R0, 0, 0), off="fail"),
        T(i.ldx_mem(8, CURSOR, R10, STACK_VALUE), code="size"),
    ),
)

EXTRACT_BITS = Template(
    "extract_bits",
    "r9 = bits of r9: shifted left by `left`, then right by "
    "`right`, arithmetically when signed (sign-extends narrow signed values too)",
    (
        T(i.alu64_imm(LSH, CURSOR, 0), imm="left"),
        T(i.alu64_imm(RSH, CURSOR, 0), imm="right", code="shift_op"),
    ),
)

COMPARE_IMM = Template(
    "compare_imm",
    "jumps to `out` when r9 <inverse op> imm32 (the test fails)",
    (T(i.jmp_imm(JEQ, CURSOR, 0, 0), code="jmp_op", imm="constant", off="out"),),
)

COMPARE_IMM64 = Template(
    "compare_imm64",
    "jumps to `out` when r9 <inverse op> a 64-bit constant; clobbers r1",
    (
        *_pair(i.ld_imm64(R1, 0), imm64="constant"),
        T(i.jmp_reg(JEQ, CURSOR, R1, 0), code="jmp_op", off="out"),
    ),
)

ZERO_STACK_WORD = Template("zero_stack_word", "*(u64 *)(r10 + off) = 0", (T(i.st_mem(8, R10, 0, 0), off="stack_off"),))

READ_STRING_TO_STACK = Template(
    "read_string_to_stack",
    "copies `size` bytes at r9 + offset to "
    "STACK_STRING (probe_read_kernel, or the _str/_user helper named by "
    "`helper`); a failed read jumps to `fail`",
    (
        T(i.mov64_reg(R1, R10)),
        T(i.alu64_imm(ADD, R1, STACK_STRING)),
        T(i.mov64_imm(R2, 0), imm="size"),
        T(i.mov64_reg(R3, CURSOR)),
        T(i.alu64_imm(ADD, R3, 0), imm="offset"),
        T(i.call(Helper.probe_read_kernel), imm="helper"),
        T(i.jmp_imm(uapi.BPF_JSLT, R0, 0, 0), off="fail"),
    ),
)

COMPARE_STACK_WORD = Template(
    "compare_stack_word",
    "jumps to `differ` when the u64 at r10 + off != a 64-bit constant; clobbers r1, r2",
    (
        T(i.ldx_mem(8, R1, R10, 0), off="stack_off"),
        *_pair(i.ld_imm64(R2, 0), imm64="constant"),
        T(i.jmp_reg(JNE, R1, R2, 0), off="differ"),
    ),
)

RESERVE = Template(
    "reserve",
    "r7 = a `size`-byte record reserved in the ringbuf; jumps to `dropped` when it is full; clobbers r0-r5",
    (
        *_pair(i.ld_map_fd(R1, 0), map="events"),
        T(i.mov64_imm(R2, 0), imm="size"),
        T(i.mov64_imm(R3, 0)),
        T(i.call(Helper.ringbuf_reserve)),
        T(i.jmp_imm(JEQ, R0, 0, 0), off="dropped"),
        T(i.mov64_reg(RECORD, R0)),
    ),
)


def _header(by_cookie: bool, field: str = "probe") -> Template:
    if by_cookie:
        probe: Tuple[TInsn, ...] = (*_function_value(R0, field, True), T(i.stx_mem(4, RECORD, R0, PROBE_OFFSET)))
    else:
        probe = (T(i.st_mem(4, RECORD, PROBE_OFFSET, 0), imm="probe"),)
    return Template(
        "header" + _BY_COOKIE * by_cookie + ("_" + field) * (field != "probe"),
        "fills the record header: ktime, pid_tgid, cpu, probe index, no entry time; clobbers r0-r5",
        (
            T(i.call(Helper.ktime_get_ns)),
            T(i.stx_mem(8, RECORD, R0, TS_OFFSET)),
            T(i.call(Helper.get_current_pid_tgid)),
            T(i.stx_mem(8, RECORD, R0, PID_TGID_OFFSET)),
            T(i.call(Helper.get_smp_processor_id)),
            T(i.stx_mem(4, RECORD, R0, CPU_OFFSET)),
            *probe,
            T(i.st_mem(8, RECORD, ENTRY_TS_OFFSET, 0)),
        ),
    )


HEADER = _header(False)

HEADER_COMM = Template(
    "header_comm",
    "copies the current comm into the record at `rec_offset`; clobbers r0-r5",
    (
        T(i.mov64_reg(R1, RECORD)),
        T(i.alu64_imm(ADD, R1, 0), imm="rec_offset"),
        T(i.mov64_imm(R2, COMM_SIZE)),
        T(i.call(Helper.get_current_comm)),
    ),
)

STORE_REGISTER = Template(
    "store_register",
    "*(u<size> *)(r7 + rec_offset) = r9",
    (T(i.stx_mem(8, RECORD, CURSOR, 0), code="size", off="rec_offset"),),
)

COPY_TO_RECORD = Template(
    "copy_to_record",
    "copies `size` bytes at r9 + offset into the record at "
    "`rec_offset` with `helper` (probe_read_kernel or a _str/_user variant); a "
    "failed read jumps to `fail`; clobbers r0-r5",
    (
        T(i.mov64_reg(R1, RECORD)),
        T(i.alu64_imm(ADD, R1, 0), imm="rec_offset"),
        T(i.mov64_imm(R2, 0), imm="size"),
        T(i.mov64_reg(R3, CURSOR)),
        T(i.alu64_imm(ADD, R3, 0), imm="offset"),
        T(i.call(Helper.probe_read_kernel), imm="helper"),
        T(i.jmp_imm(uapi.BPF_JSLT, R0, 0, 0), off="fail"),
    ),
)

# bpf_get_stack's flags: without BPF_F_USER_STACK the kernel stack, no frames skipped
# (BPF_F_SKIP_FIELD_MASK), no build ids.
KSTACK_FLAGS = 0

CAPTURE_STACK = Template(
    "capture_stack",
    "the kernel stack into the record: bpf_get_stack(ctx, r7 + "
    "rec_offset, size, KSTACK_FLAGS), then its result (bytes written, or a negative "
    "error) stored as a u64 at `len_offset`; clobbers r0-r5",
    (
        T(i.mov64_reg(R1, CTX)),
        T(i.mov64_reg(R2, RECORD)),
        T(i.alu64_imm(ADD, R2, 0), imm="rec_offset"),
        T(i.mov64_imm(R3, 0), imm="size"),
        T(i.mov64_imm(R4, KSTACK_FLAGS)),
        T(i.call(Helper.get_stack)),
        T(i.stx_mem(8, RECORD, R0, 0), off="len_offset"),
    ),
)

MARK_FAILED = Template("mark_failed", "r8 |= bit (a capture below bit 31)", (T(i.alu64_imm(OR, FAILED, 0), imm="bit"),))

MARK_FAILED_HIGH = Template(
    "mark_failed_high",
    "r8 |= bit (bit 31 and up need 64 bits); clobbers r1",
    (
        *_pair(i.ld_imm64(R1, 0), imm64="bit"),
        T(i.alu64_reg(OR, FAILED, R1)),
    ),
)

GOTO = Template("goto", "jumps to `target`", (T(i.ja(0), off="target"),))

# ---- kprobe_multi: one program for many functions, a branch each, chosen by the link's cookie ----


def _cookie_branch(shift: int) -> Tuple[TInsn, ...]:
    """r0 = the branch number at `shift` of the cookie at STACK_COOKIE."""
    return (
        T(i.ldx_mem(8, R0, R10, STACK_COOKIE)),
        T(i.alu64_imm(RSH, R0, shift)),
        T(i.alu64_imm(AND, R0, COOKIE_BRANCH_MAX)),
    )


COOKIE_SAVE = Template(
    "cookie_save",
    "STACK_COOKIE = the cookie the link gave the function that fired; r6 = ctx; clobbers r0-r5",
    (
        T(i.mov64_reg(CTX, R1)),
        T(i.call(Helper.get_attach_cookie)),
        T(i.stx_mem(8, R10, R0, STACK_COOKIE)),
    ),
)

ENTRY_BRANCH = Template(
    "entry_branch",
    "r0 = the number of the entry branch serving the function that fired; r1 = ctx again, as each "
    "branch's prologue expects",
    (*_cookie_branch(COOKIE_ENTRY_BRANCH_SHIFT), T(i.mov64_reg(R1, CTX))),
)

RETURN_BRANCH = Template(
    "return_branch",
    "r0 = the number of the return branch serving the function that fired; r1 = ctx again",
    (*_cookie_branch(COOKIE_RETURN_BRANCH_SHIFT), T(i.mov64_reg(R1, CTX))),
)

BRANCH_AT_LEAST = Template(
    "branch_at_least",
    "jumps to `target` if the branch number in r0 is at least `branch`",
    (T(i.jmp_imm(uapi.BPF_JGE, R0, 0, 0), imm="branch", off="target"),),
)

SESSION_RETURNING = Template(
    "session_returning",
    "jumps to `target` if this run of a kprobe session program is the function's return (the "
    "kfunc bpf_session_is_return, whose BTF id is `is_return`); clobbers r0-r5",
    (
        T(i.mov64_reg(R1, CTX)),
        T(i.Insn(uapi.BPF_JMP | uapi.BPF_CALL, 0, uapi.BPF_PSEUDO_KFUNC_CALL, 0, 0), imm="is_return"),
        T(i.jmp_imm(JNE, R0, 0, 0), off="target"),
    ),
)

SUBMIT = Template(
    "submit",
    "stores the failed mask and submits r7 with BPF_RB_NO_WAKEUP, except the one "
    "record that takes the backlog past `wakeup` bytes (up to `wakeup_end`), which forces a "
    "wake-up: waking on every record of a backlog costs microseconds each and throttles the "
    "traced task; a crossing missed between CPUs waits for the reader's poll; clobbers r0-r5",
    (
        T(i.stx_mem(8, RECORD, FAILED, FAILED_OFFSET)),
        *_pair(i.ld_map_fd(R1, 0), map="events"),
        T(i.mov64_imm(R2, uapi.BPF_RB_AVAIL_DATA)),
        T(i.call(Helper.ringbuf_query)),
        T(i.mov64_imm(R2, uapi.BPF_RB_NO_WAKEUP)),
        T(i.jmp_imm(uapi.BPF_JLT, R0, 0, 2), imm="wakeup"),
        T(i.jmp_imm(uapi.BPF_JGE, R0, 0, 1), imm="wakeup_end"),
        T(i.mov64_imm(R2, uapi.BPF_RB_FORCE_WAKEUP)),
        T(i.mov64_reg(R1, RECORD)),
        T(i.call(Helper.ringbuf_submit)),
    ),
)

COUNT_DROP = Template(
    "count_drop",
    "adds one to this CPU's drop counter (PERCPU_ARRAY `drops`, key 0); uses STACK_PTR; clobbers r0-r5",
    (
        T(i.st_mem(4, R10, STACK_PTR, 0)),
        *_keyed_call(Helper.map_lookup_elem, "drops", STACK_PTR),
        T(i.jmp_imm(JEQ, R0, 0, 3)),
        T(i.ldx_mem(8, R1, R0, 0)),
        T(i.alu64_imm(ADD, R1, 1)),
        T(i.stx_mem(8, R0, R1, 0)),
    ),
)

SCRATCH_RECORD = Template(
    "scratch_record",
    "r7 = this CPU's scratch record (PERCPU_ARRAY `scratch`, "
    "key 0), for an entry record to stash rather than emit; uses STACK_PTR; clobbers r0-r5",
    (
        T(i.st_mem(4, R10, STACK_PTR, 0)),
        *_keyed_call(Helper.map_lookup_elem, "scratch", STACK_PTR),
        T(i.jmp_imm(JEQ, R0, 0, 0), off="out"),
        T(i.mov64_reg(RECORD, R0)),
    ),
)

# An iterator program's context is a struct bpf_iter__<target> whose first member is `meta`
# (DEFINE_BPF_ITER_FUNC puts it there), and struct bpf_iter_meta's first member is `seq`.
ITER_CTX_META_OFFSET = 0
ITER_META_SEQ_OFFSET = 0

SEQ_WRITE = Template(
    "seq_write",
    "stores the failed mask, then bpf_seq_write(ctx->meta->seq, r7, size): an "
    "iterator's record goes to its seq_file, whose reader gets it with read(); one that does "
    "not fit the seq_file's buffer is not cut: the kernel takes back the object's output and "
    "shows the object again in the next read, or fails that read with E2BIG when the buffer "
    "was empty; clobbers r0-r5",
    (
        T(i.stx_mem(8, RECORD, FAILED, FAILED_OFFSET)),
        T(i.ldx_mem(8, R1, CTX, ITER_CTX_META_OFFSET)),
        T(i.ldx_mem(8, R1, R1, ITER_META_SEQ_OFFSET)),
        T(i.mov64_reg(R2, RECORD)),
        T(i.mov64_imm(R3, 0), imm="size"),
        T(i.call(Helper.seq_write)),
    ),
)


def _stash_key(reg: int, scratch: int, by_cookie: bool) -> Tuple[TInsn, ...]:
    """`reg` (a pid_tgid) becomes the stash key: the thread id (the low half, unique system-wide)
    with the pair's `stash_group` in the high half, so that one map can hold the entries of many
    functions (a kprobe_multi program's) without a task's nested calls overwriting each other's;
    clobbers `scratch`."""
    return (
        T(i.alu64_imm(LSH, reg, 32)),
        T(i.alu64_imm(RSH, reg, 32)),
        *_function_value(scratch, "stash_group", by_cookie),
        T(i.alu64_imm(LSH, scratch, 32)),
        T(i.alu64_reg(OR, reg, scratch)),
    )


def _stash_time(by_cookie: bool) -> Template:
    return Template(
        "stash_time" + _BY_COOKIE * by_cookie,
        "STACK_PTR = the stash key of the record's pid_tgid, STACK_VALUE = its ktime: a key and value for "
        "stash_put; clobbers r1, r2",
        (
            T(i.ldx_mem(8, R1, RECORD, PID_TGID_OFFSET)),
            *_stash_key(R1, R2, by_cookie),
            T(i.stx_mem(8, R10, R1, STACK_PTR)),
            T(i.ldx_mem(8, R1, RECORD, TS_OFFSET)),
            T(i.stx_mem(8, R10, R1, STACK_VALUE)),
        ),
    )


def _stash_time_only(by_cookie: bool) -> Template:
    return Template(
        "stash_time_only" + _BY_COOKIE * by_cookie,
        "STACK_PTR = this task's stash key, STACK_VALUE = ktime now, for an "
        "entry probe that emits nothing: a key and value for stash_put; clobbers r0-r5",
        (
            T(i.call(Helper.get_current_pid_tgid)),
            *_stash_key(R0, R1, by_cookie),
            T(i.stx_mem(8, R10, R0, STACK_PTR)),
            T(i.call(Helper.ktime_get_ns)),
            T(i.stx_mem(8, R10, R0, STACK_VALUE)),
        ),
    )


STASH_TIME = _stash_time(False)
STASH_TIME_ONLY = _stash_time_only(False)

STASH_PUT = Template(
    "stash_put",
    "stash[STACK_PTR] = STACK_VALUE (LRU_HASH `stash`), written in place when "
    "the task has an entry already: a lookup and a store cost a fraction of an update, which "
    "takes a bucket lock and a free element each time; clobbers r0-r5",
    (
        *_keyed_call(Helper.map_lookup_elem, "stash", STACK_PTR),
        T(i.jmp_imm(JEQ, R0, 0, 3)),
        T(i.ldx_mem(8, R1, R10, STACK_VALUE)),
        T(i.stx_mem(8, R0, R1, 0)),
        T(i.ja(8)),
        *_pair(i.ld_map_fd(R1, 0), map="stash"),
        T(i.mov64_reg(R2, R10)),
        T(i.alu64_imm(ADD, R2, STACK_PTR)),
        T(i.mov64_reg(R3, R10)),
        T(i.alu64_imm(ADD, R3, STACK_VALUE)),
        T(i.mov64_imm(R4, uapi.BPF_ANY)),
        T(i.call(Helper.map_update_elem)),
    ),
)


def _stash_record(by_cookie: bool) -> Template:
    return Template(
        "stash_record" + _BY_COOKIE * by_cookie,
        "stores the failed mask, then stash[the stash key of its pid_tgid] = the whole record at r7; uses "
        "STACK_PTR; clobbers r0-r5",
        (
            T(i.stx_mem(8, RECORD, FAILED, FAILED_OFFSET)),
            T(i.ldx_mem(8, R1, RECORD, PID_TGID_OFFSET)),
            *_stash_key(R1, R2, by_cookie),
            T(i.stx_mem(8, R10, R1, STACK_PTR)),
            *_pair(i.ld_map_fd(R1, 0), map="stash"),
            T(i.mov64_reg(R2, R10)),
            T(i.alu64_imm(ADD, R2, STACK_PTR)),
            T(i.mov64_reg(R3, RECORD)),
            T(i.mov64_imm(R4, uapi.BPF_ANY)),
            T(i.call(Helper.map_update_elem)),
        ),
    )


def _stash_read(take: bool, by_cookie: bool) -> Template:
    """STACK_STASH_KEY = this task's stash key; STACK_ENTRY_TS = the stash's first u64, or 0; with
    `take`, 0 left there."""
    if take:
        name, contract = (
            "stash_take",
            "STACK_STASH_KEY = this task's stash key; STACK_ENTRY_TS = the stashed entry time, "
            "or 0, which it leaves in the stash instead (entry time stashes are used once, and "
            "reused in place rather than deleted); clobbers r0-r5",
        )
    else:
        name, contract = (
            "stash_lookup",
            "STACK_STASH_KEY = this task's stash key; STACK_ENTRY_TS = the stashed "
            "entry's ktime (the first u64 of either stash), or 0; clobbers r0-r5",
        )
    return Template(
        name + _BY_COOKIE * by_cookie,
        contract,
        (
            T(i.st_mem(8, R10, STACK_ENTRY_TS, 0)),
            T(i.call(Helper.get_current_pid_tgid)),
            *_stash_key(R0, R1, by_cookie),
            T(i.stx_mem(8, R10, R0, STACK_STASH_KEY)),
            *_keyed_call(Helper.map_lookup_elem, "stash", STACK_STASH_KEY),
            T(i.jmp_imm(JEQ, R0, 0, 3 if take else 2)),
            T(i.ldx_mem(8, R1, R0, 0)),
            T(i.stx_mem(8, R10, R1, STACK_ENTRY_TS)),
            *((T(i.st_mem(8, R0, 0, 0)),) if take else ()),
        ),
    )


STASH_RECORD = _stash_record(False)
STASH_LOOKUP = _stash_read(False, False)
STASH_TAKE = _stash_read(True, False)

REQUIRE_ENTRY = Template(
    "require_entry",
    "jumps to `out` unless STACK_ENTRY_TS is set (the entry passed its tests and stashed); clobbers r1",
    (
        T(i.ldx_mem(8, R1, R10, STACK_ENTRY_TS)),
        T(i.jmp_imm(JEQ, R1, 0, 0), off="out"),
    ),
)

EMIT_STASHED = Template(
    "emit_stashed",
    "copies the stashed entry record (`size` bytes) into the ringbuf "
    "`events`; a full ringbuf jumps to `dropped`; clobbers r0-r5",
    (
        *_keyed_call(Helper.map_lookup_elem, "stash", STACK_STASH_KEY),
        T(i.jmp_imm(JEQ, R0, 0, 6)),
        *_pair(i.ld_map_fd(R1, 0), map="events"),
        T(i.mov64_reg(R2, R0)),
        T(i.mov64_imm(R3, 0), imm="size"),
        T(i.mov64_imm(R4, uapi.BPF_RB_NO_WAKEUP)),
        T(i.call(Helper.ringbuf_output)),
        T(i.jmp_imm(uapi.BPF_JSLT, R0, 0, 0), off="dropped"),
    ),
)

SET_ENTRY_TS = Template(
    "set_entry_ts",
    "the record's entry time = STACK_ENTRY_TS; clobbers r1",
    (
        T(i.ldx_mem(8, R1, R10, STACK_ENTRY_TS)),
        T(i.stx_mem(8, RECORD, R1, ENTRY_TS_OFFSET)),
    ),
)

STASH_DELETE = Template(
    "stash_delete",
    "deletes stash[STACK_STASH_KEY]; clobbers r0-r5",
    (*_keyed_call(Helper.map_delete_elem, "stash", STACK_STASH_KEY),),
)

# ---- summary mode: counters in a PERCPU_ARRAY instead of records; here r7 = the counters ----


def _counters(by_cookie: bool) -> Template:
    if by_cookie:
        key: Tuple[TInsn, ...] = (*_function_value(R1, "key", True), T(i.stx_mem(4, R10, R1, STACK_PTR)))
    else:
        key = (T(i.st_mem(4, R10, STACK_PTR, 0), imm="key"),)
    return Template(
        "counters" + _BY_COOKIE * by_cookie,
        "r7 = this function's counters (PERCPU_ARRAY `counts`, key `key`); jumps "
        "to `out` if the lookup fails; uses STACK_PTR; clobbers r0-r5",
        (
            *key,
            *_keyed_call(Helper.map_lookup_elem, "counts", STACK_PTR),
            T(i.jmp_imm(JEQ, R0, 0, 0), off="out"),
            T(i.mov64_reg(RECORD, R0)),
        ),
    )


COUNTERS = _counters(False)

# A per-CPU value is only ever touched by programs on its own CPU, and tracing programs run with
# migration disabled, so a plain load-add-store needs no atomic.
COUNT_ONE = Template(
    "count_one",
    "adds one to the u64 counter at r7 + counter_offset; clobbers r1",
    (
        T(i.ldx_mem(8, R1, RECORD, 0), off="counter_offset"),
        T(i.alu64_imm(ADD, R1, 1)),
        T(i.stx_mem(8, RECORD, R1, 0), off="counter_offset"),
    ),
)

SKIP_UNLESS_NEGATIVE = Template(
    "skip_unless_negative",
    "jumps to `target` unless r9 < 0 (signed)",
    (T(i.jmp_imm(uapi.BPF_JSGE, CURSOR, 0, 0), off="target"),),
)

SKIP_IF_QUICKER = Template(
    "skip_if_quicker",
    "jumps to `out` when r9 (the call's duration so far, from ELAPSED) < CONST64 ns; clobbers r1",
    (
        *_pair(i.ld_imm64(R1, 0), imm64="min_duration"),
        T(i.jmp_reg(uapi.BPF_JLT, CURSOR, R1, 0), off="out"),
    ),
)

ELAPSED = Template(
    "elapsed",
    "r9 = ktime now - STACK_ENTRY_TS (ns since the stashed entry); clobbers r0-r5",
    (
        T(i.call(Helper.ktime_get_ns)),
        T(i.ldx_mem(8, R1, R10, STACK_ENTRY_TS)),
        T(i.mov64_reg(CURSOR, R0)),
        T(i.alu64_reg(uapi.BPF_SUB, CURSOR, R1)),
    ),
)


ADD_DURATION = Template(
    "add_duration",
    "adds r9 (the call's duration in ns, from ELAPSED) to the u64 at r7 + DURATION_SUM_OFFSET; clobbers r1",
    (
        T(i.ldx_mem(8, R1, RECORD, DURATION_SUM_OFFSET)),
        T(i.alu64_reg(ADD, R1, CURSOR)),
        T(i.stx_mem(8, RECORD, R1, DURATION_SUM_OFFSET)),
    ),
)


def _log2_step(shift: int) -> Tuple[TInsn, ...]:
    # If r9 has a set bit at `shift` or above, drop the low `shift` bits and count them.
    return (
        T(i.mov64_reg(R2, CURSOR)),
        T(i.alu64_imm(RSH, R2, shift)),
        T(i.jmp_imm(JEQ, R2, 0, 2)),
        T(i.mov64_reg(CURSOR, R2)),
        T(i.alu64_imm(ADD, R1, shift)),
    )


LOG2 = Template(
    "log2",
    "r1 = floor(log2(r9)), 0 for r9 = 0, by halving steps of 32, 16, 8, 4, 2 and 1 "
    "bits with no loop; r9 is left at 0 or 1; clobbers r2",
    (
        T(i.mov64_imm(R1, 0)),
        *_log2_step(32),
        *_log2_step(16),
        *_log2_step(8),
        *_log2_step(4),
        *_log2_step(2),
        *_log2_step(1),
    ),
)

COUNT_BUCKET = Template(
    "count_bucket",
    "adds one to latency bucket r1 of the counters at r7 (BUCKETS_OFFSET "
    "+ 8 * r1, r1 masked to LATENCY_BUCKETS - 1 so the verifier sees it in bounds); "
    "clobbers r1, r2",
    (
        T(i.alu64_imm(uapi.BPF_AND, R1, LATENCY_BUCKETS - 1)),
        T(i.alu64_imm(LSH, R1, 3)),
        T(i.mov64_reg(R2, RECORD)),
        T(i.alu64_reg(ADD, R2, R1)),
        T(i.ldx_mem(8, R1, R2, BUCKETS_OFFSET)),
        T(i.alu64_imm(ADD, R1, 1)),
        T(i.stx_mem(8, R2, R1, BUCKETS_OFFSET)),
    ),
)

# ---- aggregation mode: a count per key in the PERCPU_HASH `aggregate`; r7 = the key on the stack ----
# A key's parts are written as a record's captures are (COPY_TO_RECORD, STORE_REGISTER, HEADER_COMM,
# MARK_FAILED at r7), so the key is built by the same code with r7 pointing at STACK_KEY.

# EEXIST, as the kernel's map_update_elem returns it negated: another CPU made the key first.
EEXIST = 17


def _aggregate_key(by_cookie: bool) -> Template:
    if by_cookie:
        function: Tuple[TInsn, ...] = (
            *_function_value(R1, "key", True),
            T(i.stx_mem(4, RECORD, R1, AGGREGATE_FUNCTION_OFFSET)),
        )
    else:
        function = (T(i.st_mem(4, RECORD, AGGREGATE_FUNCTION_OFFSET, 0), imm="key"),)
    return Template(
        "aggregate_key" + _BY_COOKIE * by_cookie,
        "r7 = STACK_KEY, the key's first word this function's number `key` (bucket 0, nothing "
        "failed); the rest is zeroed by ZERO_STACK_WORD; clobbers r1",
        (
            T(i.mov64_reg(RECORD, R10)),
            T(i.alu64_imm(ADD, RECORD, STACK_KEY)),
            T(i.st_mem(8, RECORD, 0, 0)),
            *function,
        ),
    )


AGGREGATE_KEY = _aggregate_key(False)


def _insert_key(role: str) -> Tuple[TInsn, ...]:
    """map `role`[the key at STACK_KEY] = 1 (a u64 at STACK_VALUE) if it has no such key
    (BPF_NOEXIST); r0 = 0, -EEXIST, or -E2BIG when full; clobbers r0-r5."""
    return (
        T(i.st_mem(8, R10, STACK_VALUE, 1)),
        *_pair(i.ld_map_fd(R1, 0), map=role),
        T(i.mov64_reg(R2, R10)),
        T(i.alu64_imm(ADD, R2, STACK_KEY)),
        T(i.mov64_reg(R3, R10)),
        T(i.alu64_imm(ADD, R3, STACK_VALUE)),
        T(i.mov64_imm(R4, uapi.BPF_NOEXIST)),
        T(i.call(Helper.map_update_elem)),
    )


KEY_PID_TGID = Template(
    "key_pid_tgid",
    "*(u32 *)(r7 + rec_offset) = pid_tgid >> `shift` (32: the process, 0: the thread); clobbers r0-r5",
    (
        T(i.call(Helper.get_current_pid_tgid)),
        T(i.alu64_imm(RSH, R0, 0), imm="shift"),
        T(i.stx_mem(4, RECORD, R0, 0), off="rec_offset"),
    ),
)

KEY_UID = Template(
    "key_uid",
    "*(u32 *)(r7 + rec_offset) = the real uid (the low half of bpf_get_current_uid_gid); clobbers r0-r5",
    (
        T(i.call(Helper.get_current_uid_gid)),
        T(i.stx_mem(4, RECORD, R0, 0), off="rec_offset"),
    ),
)

KEY_CPU = Template(
    "key_cpu",
    "*(u32 *)(r7 + rec_offset) = this CPU; clobbers r0-r5",
    (
        T(i.call(Helper.get_smp_processor_id)),
        T(i.stx_mem(4, RECORD, R0, 0), off="rec_offset"),
    ),
)

HIST_IF_NEGATIVE = Template(
    "hist_if_negative",
    "r1 = HIST_NEGATIVE and jumps to `bucketed` when r9 < 0 (signed)",
    (
        T(i.mov64_imm(R1, HIST_NEGATIVE)),
        T(i.jmp_imm(uapi.BPF_JSLT, CURSOR, 0, 0), off="bucketed"),
    ),
)

HIST_IF_ZERO = Template(
    "hist_if_zero",
    "r1 = 0 (the bucket of 0) and jumps to `bucketed` when r9 == 0",
    (
        T(i.mov64_imm(R1, 0)),
        T(i.jmp_imm(JEQ, CURSOR, 0, 0), off="bucketed"),
    ),
)

HIST_ABOVE_ZERO = Template(
    "hist_above_zero",
    "r1 += 1 after LOG2: [2**(k-1), 2**k) is bucket k, so 1 is bucket 1 and 0 keeps its own",
    (T(i.alu64_imm(ADD, R1, 1)),),
)

HIST_UNREADABLE_BUCKET = Template(
    "hist_unreadable_bucket",
    "r1 = HIST_UNREADABLE: the value to bucket could not be read",
    (T(i.mov64_imm(R1, HIST_UNREADABLE)),),
)

STORE_BUCKET = Template(
    "store_bucket",
    "the key's bucket = r1",
    (T(i.stx_mem(2, RECORD, R1, AGGREGATE_BUCKET_OFFSET)),),
)

STORE_KEY_FAILED = Template(
    "store_key_failed",
    "the key's failed mask = r8 (bit i: part i could not be read)",
    (T(i.stx_mem(2, RECORD, FAILED, AGGREGATE_FAILED_OFFSET)),),
)

# A per-CPU value: only this CPU's programs touch it (see COUNT_ONE), so a plain add.
AGGREGATE_ADD = Template(
    "aggregate_add",
    "adds one to this CPU's count of the key at STACK_KEY and jumps to `out`; falls through when "
    "the hash has no such key yet; clobbers r0-r5",
    (
        *_keyed_call(Helper.map_lookup_elem, "aggregate", STACK_KEY),
        T(i.jmp_imm(JEQ, R0, 0, 4)),
        T(i.ldx_mem(8, R1, R0, 0)),
        T(i.alu64_imm(ADD, R1, 1)),
        T(i.stx_mem(8, R0, R1, 0)),
        T(i.ja(0), off="out"),
    ),
)

AGGREGATE_INSERT = Template(
    "aggregate_insert",
    "makes the key at STACK_KEY with a count of one on this CPU (BPF_NOEXIST; the other CPUs' "
    "start at 0) and jumps to `out`; to `raced` when another CPU made it first; falls through "
    "when the hash is full; uses STACK_VALUE; clobbers r0-r5",
    (
        *_insert_key("aggregate"),
        T(i.jmp_imm(JEQ, R0, 0, 0), off="out"),
        T(i.jmp_imm(JEQ, R0, -EEXIST, 0), off="raced"),
    ),
)

AGGREGATE_DROP = Template(
    "aggregate_drop",
    "the hash is full: adds one to this CPU's dropped calls (PERCPU_ARRAY `aggregate_drops`, key "
    "0) and, if the HASH `aggregate_overflow` takes the key as new (BPF_NOEXIST), one to its "
    "dropped keys; uses STACK_PTR and STACK_VALUE; clobbers r0-r5, r9",
    (
        T(i.st_mem(4, R10, STACK_PTR, 0)),
        *_keyed_call(Helper.map_lookup_elem, "aggregate_drops", STACK_PTR),
        T(i.jmp_imm(JEQ, R0, 0, 0), off="out"),
        T(i.mov64_reg(CURSOR, R0)),
        T(i.ldx_mem(8, R1, CURSOR, DROPPED_CALLS_OFFSET)),
        T(i.alu64_imm(ADD, R1, 1)),
        T(i.stx_mem(8, CURSOR, R1, DROPPED_CALLS_OFFSET)),
        *_insert_key("aggregate_overflow"),
        T(i.jmp_imm(JNE, R0, 0, 3)),
        T(i.ldx_mem(8, R1, CURSOR, DROPPED_KEYS_OFFSET)),
        T(i.alu64_imm(ADD, R1, 1)),
        T(i.stx_mem(8, CURSOR, R1, DROPPED_KEYS_OFFSET)),
    ),
)

# ---- call-path mode: per-task state in the HASH `path` (see PathLayout); r7 = the state ----

PATH_LOOKUP = Template(
    "path_lookup",
    "STACK_PATH_KEY = pid_tgid; r7 = this task's path state, or NULL (the caller tests it); clobbers r0-r5",
    (
        T(i.call(Helper.get_current_pid_tgid)),
        T(i.stx_mem(8, R10, R0, STACK_PATH_KEY)),
        *_keyed_call(Helper.map_lookup_elem, "path", STACK_PATH_KEY),
        T(i.mov64_reg(RECORD, R0)),
    ),
)

JUMP_IF_NO_STATE = Template(
    "jump_if_no_state", "jumps to `target` when r7 is NULL", (T(i.jmp_imm(JEQ, RECORD, 0, 0), off="target"),)
)

JUMP_IF_STATE = Template(
    "jump_if_state", "jumps to `target` when r7 is not NULL", (T(i.jmp_imm(JNE, RECORD, 0, 0), off="target"),)
)

PATH_ENTER_CHECK = Template(
    "path_enter_check",
    "goes on only if depth == `depth` (the levels before this "
    "one are open); if depth == `depth` + 1 this function is calling itself: counts "
    "the nested call, whose return must not pop, and jumps to `out`; any other depth "
    "jumps to `out`; clobbers r1",
    (
        T(i.ldx_mem(8, R1, RECORD, PATH_DEPTH_OFFSET)),
        T(i.jmp_imm(JEQ, R1, 0, 5), imm="depth"),
        T(i.jmp_imm(JNE, R1, 0, 0), imm="depth_nested", off="out"),
        T(i.ldx_mem(8, R1, RECORD, 0), off="nested_offset"),
        T(i.alu64_imm(ADD, R1, 1)),
        T(i.stx_mem(8, RECORD, R1, 0), off="nested_offset"),
        T(i.ja(0), off="out"),
    ),
)

PATH_CREATE = Template(
    "path_create",
    "r7 = a new zeroed path state for STACK_PATH_KEY (copied from the "
    "one-entry ARRAY `path_zero`); a full map jumps to `dropped`; uses STACK_PTR; clobbers r0-r5",
    (
        T(i.st_mem(4, R10, STACK_PTR, 0)),
        *_keyed_call(Helper.map_lookup_elem, "path_zero", STACK_PTR),
        T(i.jmp_imm(JEQ, R0, 0, 0), off="out"),
        T(i.mov64_reg(R3, R0)),
        *_pair(i.ld_map_fd(R1, 0), map="path"),
        T(i.mov64_reg(R2, R10)),
        T(i.alu64_imm(ADD, R2, STACK_PATH_KEY)),
        T(i.mov64_imm(R4, uapi.BPF_NOEXIST)),
        T(i.call(Helper.map_update_elem)),
        T(i.jmp_imm(JNE, R0, 0, 0), off="dropped"),
        *_keyed_call(Helper.map_lookup_elem, "path", STACK_PATH_KEY),
        T(i.jmp_imm(JEQ, R0, 0, 0), off="out"),
        T(i.mov64_reg(RECORD, R0)),
    ),
)

PATH_SLOT = Template(
    "path_slot",
    "r7 += slot_offset: the record is written into the state, at this level's slot",
    (T(i.alu64_imm(ADD, RECORD, 0), imm="slot_offset"),),
)

PATH_PUSH = Template(
    "path_push",
    "stores the failed mask in the record at r7 (this level's slot), then the state's depth = `depth`; clobbers r1",
    (
        T(i.stx_mem(8, RECORD, FAILED, FAILED_OFFSET)),
        T(i.mov64_reg(R1, RECORD)),
        T(i.alu64_imm(ADD, R1, 0), imm="minus_slot_offset"),
        T(i.st_mem(8, R1, PATH_DEPTH_OFFSET, 0), imm="depth"),
    ),
)

PATH_RETURN_CHECK = Template(
    "path_return_check",
    "goes on only if this call is the open one at this level: "
    "depth == `depth` and no nested call of the same function is open (if one is, "
    "this is its return: counts it off and jumps to `out`); clobbers r1",
    (
        T(i.ldx_mem(8, R1, RECORD, PATH_DEPTH_OFFSET)),
        T(i.jmp_imm(JNE, R1, 0, 0), imm="depth", off="out"),
        T(i.ldx_mem(8, R1, RECORD, 0), off="nested_offset"),
        T(i.jmp_imm(JEQ, R1, 0, 3)),
        T(i.alu64_imm(uapi.BPF_SUB, R1, 1)),
        T(i.stx_mem(8, RECORD, R1, 0), off="nested_offset"),
        T(i.ja(0), off="out"),
    ),
)

PATH_POP = Template(
    "path_pop",
    "the state's depth = `depth` (this level returned)",
    (T(i.st_mem(8, RECORD, PATH_DEPTH_OFFSET, 0), imm="depth"),),
)

PATH_REQUIRE_SHOWN = Template(
    "path_require_shown",
    "an outer level's return: jumps to `target` unless its "
    "entry was emitted (`bit` of the shown mask), and clears the bit; clobbers r1, r2",
    (
        T(i.ldx_mem(8, R1, RECORD, PATH_SHOWN_OFFSET)),
        T(i.mov64_reg(R2, R1)),
        T(i.alu64_imm(uapi.BPF_AND, R2, 0), imm="bit"),
        T(i.jmp_imm(JEQ, R2, 0, 0), off="target"),
        T(i.alu64_imm(uapi.BPF_XOR, R1, 0), imm="bit"),
        T(i.stx_mem(8, RECORD, R1, PATH_SHOWN_OFFSET)),
    ),
)

PATH_SKIP_SHOWN = Template(
    "path_skip_shown",
    "jumps to `target` if `bit` of the shown mask is set, else "
    "sets it (this level's entry is about to be emitted); clobbers r1, r2",
    (
        T(i.ldx_mem(8, R1, RECORD, PATH_SHOWN_OFFSET)),
        T(i.mov64_reg(R2, R1)),
        T(i.alu64_imm(uapi.BPF_AND, R2, 0), imm="bit"),
        T(i.jmp_imm(JNE, R2, 0, 0), off="target"),
        T(i.alu64_imm(OR, R1, 0), imm="bit"),
        T(i.stx_mem(8, RECORD, R1, PATH_SHOWN_OFFSET)),
    ),
)

PATH_EMIT_ENTRY = Template(
    "path_emit_entry",
    "copies the entry record held at r7 + slot_offset (`size` "
    "bytes) into the ringbuf `events`; a full ringbuf jumps to `dropped`; clobbers r0-r5",
    (
        *_pair(i.ld_map_fd(R1, 0), map="events"),
        T(i.mov64_reg(R2, RECORD)),
        T(i.alu64_imm(ADD, R2, 0), imm="slot_offset"),
        T(i.mov64_imm(R3, 0), imm="size"),
        T(i.mov64_imm(R4, uapi.BPF_RB_NO_WAKEUP)),
        T(i.call(Helper.ringbuf_output)),
        T(i.jmp_imm(uapi.BPF_JSLT, R0, 0, 0), off="dropped"),
    ),
)

PATH_ENTRY_TS = Template(
    "path_entry_ts",
    "STACK_ENTRY_TS = the ktime of the entry record held at r7 + slot_offset; clobbers r1",
    (
        T(i.mov64_reg(R1, RECORD)),
        T(i.alu64_imm(ADD, R1, 0), imm="slot_offset"),
        T(i.ldx_mem(8, R1, R1, TS_OFFSET)),
        T(i.stx_mem(8, R10, R1, STACK_ENTRY_TS)),
    ),
)

PATH_KEY = Template(
    "path_key",
    "STACK_PATH_KEY = pid_tgid; clobbers r0",
    (
        T(i.call(Helper.get_current_pid_tgid)),
        T(i.stx_mem(8, R10, R0, STACK_PATH_KEY)),
    ),
)

PATH_FORGET = Template(
    "path_forget",
    "deletes path[STACK_PATH_KEY]; clobbers r0-r5",
    (*_keyed_call(Helper.map_delete_elem, "path", STACK_PATH_KEY),),
)

# ---- function graphs (trace -g): the task's state in the `path` map, r7 pointing at it ----

GRAPH_NO_ROOT_CALLS = Template(
    "graph_no_root_calls",
    "jumps to `target` when no task is inside a root call (ARRAY `graph_roots`, key 0, is 0): "
    "the verifier inlines the array's lookup, so a callee outside every root call costs a few "
    "instructions, no helper call; uses STACK_PTR; clobbers r0-r5",
    (
        T(i.st_mem(4, R10, STACK_PTR, 0)),
        *_keyed_call(Helper.map_lookup_elem, "graph_roots", STACK_PTR),
        T(i.jmp_imm(JEQ, R0, 0, 0), off="target"),
        T(i.ldx_mem(8, R1, R0, 0)),
        T(i.jmp_imm(JEQ, R1, 0, 0), off="target"),
    ),
)

GRAPH_COUNT_ROOTS = Template(
    "graph_count_roots",
    "adds CONST `delta` (1 or -1) to the tasks inside a root call (ARRAY `graph_roots`, key 0), "
    "atomically: tasks on every CPU count there; uses STACK_PTR; clobbers r0-r5",
    (
        T(i.st_mem(4, R10, STACK_PTR, 0)),
        *_keyed_call(Helper.map_lookup_elem, "graph_roots", STACK_PTR),
        T(i.jmp_imm(JEQ, R0, 0, 2)),
        T(i.mov64_imm(R1, 0), imm="delta"),
        T(i.atomic_add(8, R0, R1, 0)),
    ),
)

JUMP_IF_NONZERO_R0 = Template(
    "jump_if_nonzero_r0",
    "jumps to `target` when r0 (a helper's result) is not 0",
    (T(i.jmp_imm(JNE, R0, 0, 0), off="target"),),
)

GRAPH_START = Template(
    "graph_start",
    "r7 (a new task state) becomes a root call's: depth, recorded calls, nodes and open root calls "
    "1, the entry time now; clobbers r0-r5",
    (
        T(i.call(Helper.ktime_get_ns)),
        T(i.stx_mem(8, RECORD, R0, GRAPH_ENTRY_TS_OFFSET)),
        T(i.mov64_imm(R1, 1)),
        T(i.stx_mem(8, RECORD, R1, GRAPH_DEPTH_OFFSET)),
        T(i.stx_mem(8, RECORD, R1, GRAPH_RECORDED_OFFSET)),
        T(i.stx_mem(8, RECORD, R1, GRAPH_NODES_OFFSET)),
        T(i.stx_mem(8, RECORD, R1, GRAPH_ROOTS_OFFSET)),
    ),
)

GRAPH_ROOT_AGAIN = Template(
    "graph_root_again",
    "the root called inside its own call: one more open root call; clobbers r1",
    (
        T(i.ldx_mem(8, R1, RECORD, GRAPH_ROOTS_OFFSET)),
        T(i.alu64_imm(ADD, R1, 1)),
        T(i.stx_mem(8, RECORD, R1, GRAPH_ROOTS_OFFSET)),
    ),
)

GRAPH_ENTER = Template(
    "graph_enter",
    "a call inside the root's: depth + 1; past CONST `max_nodes` recorded calls jumps to `out`; "
    "else one more node, and the call is recorded (recorded = depth) unless it is the first past "
    "the bound, whose entry alone goes out to say the tree was cut; clobbers r1, r2",
    (
        T(i.ldx_mem(8, R1, RECORD, GRAPH_DEPTH_OFFSET)),
        T(i.alu64_imm(ADD, R1, 1)),
        T(i.stx_mem(8, RECORD, R1, GRAPH_DEPTH_OFFSET)),
        T(i.ldx_mem(8, R2, RECORD, GRAPH_NODES_OFFSET)),
        T(i.jmp_imm(uapi.BPF_JGT, R2, 0, 0), imm="max_nodes", off="out"),
        T(i.alu64_imm(ADD, R2, 1)),
        T(i.stx_mem(8, RECORD, R2, GRAPH_NODES_OFFSET)),
        T(i.jmp_imm(uapi.BPF_JGT, R2, 0, 1), imm="max_nodes"),
        T(i.stx_mem(8, RECORD, R1, GRAPH_RECORDED_OFFSET)),
    ),
)

GRAPH_RETURN = Template(
    "graph_return",
    "a call inside the root's returns: depth - 1; jumps to `out` unless its entry was recorded "
    "(depth == recorded: the recorded calls are the outermost open ones), else recorded - 1; a "
    "return at depth 0 (an entry missed) changes nothing and jumps to `out`; clobbers r1-r3",
    (
        T(i.ldx_mem(8, R1, RECORD, GRAPH_DEPTH_OFFSET)),
        T(i.jmp_imm(JEQ, R1, 0, 0), off="out"),
        T(i.ldx_mem(8, R2, RECORD, GRAPH_RECORDED_OFFSET)),
        T(i.mov64_reg(R3, R1)),
        T(i.alu64_imm(uapi.BPF_SUB, R3, 1)),
        T(i.stx_mem(8, RECORD, R3, GRAPH_DEPTH_OFFSET)),
        T(i.jmp_reg(JNE, R1, R2, 0), off="out"),
        T(i.stx_mem(8, RECORD, R3, GRAPH_RECORDED_OFFSET)),
    ),
)

GRAPH_ROOT_RETURN = Template(
    "graph_root_return",
    "a return of the root: one open root call fewer; jumps to `target` when none is left (the root "
    "call the state was made for returns); clobbers r1",
    (
        T(i.ldx_mem(8, R1, RECORD, GRAPH_ROOTS_OFFSET)),
        T(i.alu64_imm(uapi.BPF_SUB, R1, 1)),
        T(i.stx_mem(8, RECORD, R1, GRAPH_ROOTS_OFFSET)),
        T(i.jmp_imm(JEQ, R1, 0, 0), off="target"),
    ),
)

GRAPH_ENTRY_TS = Template(
    "graph_entry_ts",
    "STACK_ENTRY_TS = the root call's entry time (r7's state); clobbers r1",
    (
        T(i.ldx_mem(8, R1, RECORD, GRAPH_ENTRY_TS_OFFSET)),
        T(i.stx_mem(8, R10, R1, STACK_ENTRY_TS)),
    ),
)

# The kernel text reader (codegen.generate_text_reader) is a raw tracepoint program that is never
# attached: BPF_PROG_TEST_RUN runs it with a context of these u64s.
TEXT_ADDRESS_ARG, TEXT_SIZE_ARG = 0, 1

READ_KERNEL_TEXT = Template(
    "read_kernel_text",
    "bpf_probe_read_kernel(the `text` map's value, ctx[TEXT_SIZE_ARG] bytes, from ctx[TEXT_ADDRESS_ARG]) "
    "and returns its result (0, or a negative errno); to `out` when there is no value or the size "
    "is over CONST `chunk` (the value's size, which bounds the read for the verifier); uses STACK_PTR",
    (
        T(i.st_mem(4, R10, STACK_PTR, 0)),
        *_keyed_call(Helper.map_lookup_elem, "text", STACK_PTR),
        T(i.jmp_imm(JEQ, R0, 0, 0), off="out"),
        T(i.mov64_reg(R1, R0)),
        T(i.ldx_mem(8, R2, CTX, 8 * TEXT_SIZE_ARG)),
        T(i.jmp_imm(uapi.BPF_JGT, R2, 0, 0), imm="chunk", off="out"),
        T(i.ldx_mem(8, R3, CTX, 8 * TEXT_ADDRESS_ARG)),
        T(i.call(Helper.probe_read_kernel)),
        T(i.exit_()),
    ),
)

RETURN_ONE = Template(
    "return_one",
    "returns 1: from a kprobe session's entry, its return side is not run",
    (
        T(i.mov64_imm(R0, 1)),
        T(i.exit_()),
    ),
)

RETURN_EINVAL = Template(
    "return_einval",
    "returns -EINVAL",
    (
        T(i.mov64_imm(R0, -22)),
        T(i.exit_()),
    ),
)

EXIT = Template(
    "exit",
    "returns 0",
    (
        T(i.mov64_imm(R0, 0)),
        T(i.exit_()),
    ),
)

# The templates that name a function by its numbers, and their kprobe_multi forms, which read
# those from the cookie (see COOKIE_FIELDS); by the plain template's name. A return branch's
# record names its own probe.
BY_COOKIE = {
    plain.name: by_cookie
    for plain, by_cookie in (
        (HEADER, _header(True)),
        (STASH_TIME, _stash_time(True)),
        (STASH_TIME_ONLY, _stash_time_only(True)),
        (STASH_RECORD, _stash_record(True)),
        (STASH_LOOKUP, _stash_read(False, True)),
        (STASH_TAKE, _stash_read(True, True)),
        (COUNTERS, _counters(True)),
        (AGGREGATE_KEY, _aggregate_key(True)),
    )
}
BY_COOKIE_RETURN = {**BY_COOKIE, HEADER.name: _header(True, "return_probe")}

ALL = (
    PROLOGUE,
    PID_FILTER,
    UID_FILTER,
    CGROUP_FILTER,
    COMM_FILTER,
    LOAD_ARG,
    COPY_ARG,
    NULL_CHECK,
    FOLLOW_POINTER,
    READ_VALUE,
    EXTRACT_BITS,
    COMPARE_IMM,
    COMPARE_IMM64,
    ZERO_STACK_WORD,
    READ_STRING_TO_STACK,
    COMPARE_STACK_WORD,
    RESERVE,
    HEADER,
    HEADER_COMM,
    STORE_REGISTER,
    COPY_TO_RECORD,
    CAPTURE_STACK,
    MARK_FAILED,
    MARK_FAILED_HIGH,
    GOTO,
    SUBMIT,
    COUNT_DROP,
    SCRATCH_RECORD,
    STASH_TIME,
    STASH_TIME_ONLY,
    STASH_PUT,
    STASH_RECORD,
    STASH_LOOKUP,
    STASH_TAKE,
    REQUIRE_ENTRY,
    EMIT_STASHED,
    SET_ENTRY_TS,
    STASH_DELETE,
    COUNTERS,
    COUNT_ONE,
    SKIP_UNLESS_NEGATIVE,
    ELAPSED,
    SKIP_IF_QUICKER,
    LOG2,
    COUNT_BUCKET,
    ADD_DURATION,
    AGGREGATE_KEY,
    KEY_PID_TGID,
    KEY_UID,
    KEY_CPU,
    HIST_IF_NEGATIVE,
    HIST_IF_ZERO,
    HIST_ABOVE_ZERO,
    HIST_UNREADABLE_BUCKET,
    STORE_BUCKET,
    STORE_KEY_FAILED,
    AGGREGATE_ADD,
    AGGREGATE_INSERT,
    AGGREGATE_DROP,
    PATH_LOOKUP,
    JUMP_IF_NO_STATE,
    JUMP_IF_STATE,
    PATH_ENTER_CHECK,
    PATH_CREATE,
    PATH_SLOT,
    PATH_PUSH,
    PATH_RETURN_CHECK,
    PATH_POP,
    PATH_REQUIRE_SHOWN,
    PATH_SKIP_SHOWN,
    PATH_EMIT_ENTRY,
    PATH_ENTRY_TS,
    PATH_KEY,
    PATH_FORGET,
    GRAPH_NO_ROOT_CALLS,
    GRAPH_COUNT_ROOTS,
    JUMP_IF_NONZERO_R0,
    GRAPH_START,
    GRAPH_ROOT_AGAIN,
    GRAPH_ENTER,
    GRAPH_RETURN,
    GRAPH_ROOT_RETURN,
    GRAPH_ENTRY_TS,
    READ_KERNEL_TEXT,
    RETURN_ONE,
    RETURN_EINVAL,
    EXIT,
    SEQ_WRITE,
    COOKIE_SAVE,
    ENTRY_BRANCH,
    RETURN_BRANCH,
    BRANCH_AT_LEAST,
    SESSION_RETURNING,
    *BY_COOKIE.values(),
    BY_COOKIE_RETURN[HEADER.name],
)
