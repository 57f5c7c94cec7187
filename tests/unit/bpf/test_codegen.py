# SPDX-License-Identifier: GPL-2.0-only
"""bpf.codegen: programs from plans built by hand and by resolve() over the mini kernel.

Structure first (holes, labels, map slots, determinism), then meaning: each program runs in
tests/support/bpfvm.py over memory laid out here, and its records are decoded with
ksnoop.output.decode, so an operator, a shift, a string word or a record offset that is wrong shows up
as a wrong value.
"""

from __future__ import annotations

import dataclasses
import operator
import struct
import sys

import pytest

from bpf import templates as tpl
from bpf import uapi
from bpf.codegen import CodegenError, MapRole, Program, _Assembler, generate
from bpf.insn import Insn, alu64_imm, call, decode, encode, mov64_imm, mov64_reg, stx_mem
from bpf.plan import (
    PlanError,
    ENTRY_TS_OFFSET,
    HEADER,
    MAX_CAPTURES,
    MAX_KSTACK_DEPTH,
    Bitfield,
    Capture,
    CgroupFilter,
    CompareOp,
    Filters,
    Plan,
    Predicate,
    Probe,
    ProbeKind,
    FAILED_OFFSET,
    RecordLayout,
    Stash,
)
from bpf.plan import Test as ValueTest  # not named Test*, or pytest tries to collect it
from bpf.uapi import AttachType, Helper, ProgType
from ksnoop.output.decode import READ_FAILED, RawValue, build_decoder
from ksnoop.spec.resolve import ResolvedTrace, resolve
from ksnoop.spec.language import parse_spec
from tests.support import records
from tests.support.bpfvm import VM, VMError

PID, TID = 4242, 4243
SKB, DEV, NET, NAME_PTR, USER_PTR = (
    0xFFFF888000001000,
    0xFFFF888000002000,
    0xFFFF888000003000,
    0xFFFF888000004000,
    0x7FFE00001000,
)
DESTRUCTOR, DATA = 0xFFFFFFFF81000000, 0xFFFF8880DEADBEEF


def _trace(
    *specs: str,
    pid: int | None = None,
    comm: bytes | None = None,
    uid: int | None = None,
    cgroup: CgroupFilter | None = None,
    with_comm: bool = True,
    kstack_depth: int = 0,
) -> ResolvedTrace:
    return resolve(
        [parse_spec(s) for s in specs],
        records.kernel(),
        Filters(pid=pid, comm=comm, uid=uid, cgroup=cgroup),
        with_comm=with_comm,
        kstack_depth=kstack_depth,
    )


def _sk_buff(*, length: int = 242, dev: int = DEV, byte84: int = 5 | 1 << 3 | 1 << 4, cb: bytes = b"cb text") -> bytes:
    data = bytearray(104)
    struct.pack_into("<QQQQ", data, 0, 0, 0, 0, dev)
    data[32 : 32 + len(cb)] = cb
    struct.pack_into("<IBxH", data, 80, length, byte84, 0x0008)
    struct.pack_into("<QQ", data, 88, DESTRUCTOR, DATA)
    return bytes(data)


def _net_device(name: bytes = b"lo", ifindex: int = -3) -> bytes:
    return name.ljust(16, b"\0") + struct.pack("<iI", ifindex, 0)


def _memory(**changes: bytes) -> dict[int, bytes]:
    memory = {SKB: _sk_buff(), DEV: _net_device(), NET: struct.pack("<Ii", 0xABCD, -7)}
    memory.update({{"skb": SKB, "dev": DEV, "net": NET}[k]: v for k, v in changes.items()})
    return memory


def _vm(resolved: ResolvedTrace | None = None, **kwargs) -> VM:
    """A VM whose stash and scratch maps fit `resolved`'s fentry/fexit pair, if it has one."""
    if resolved is not None:
        for i, probe in enumerate(resolved.plan.probes):
            if probe.kind is ProbeKind.FENTRY and probe.stash is Stash.RECORD:
                size = generate(resolved.plan, i).layout.size
                kwargs.setdefault("stash_value_size", size)
                kwargs.setdefault("scratch_value_size", size)
    kwargs.setdefault("memory", _memory())
    kwargs.setdefault("pid_tgid", PID << 32 | TID)
    return VM(**kwargs)


def _events(resolved: ResolvedTrace, probe_index: int, ctx: list[int], vm: VM | None = None) -> list:
    """Run one probe's program; decode what it emitted (each record by the probe index in it)."""
    vm = vm or _vm(resolved)
    before = len(vm.records)
    run = vm.run(generate(resolved.plan, probe_index), ctx)
    return _decode(resolved, run.records[before:])


def _decode(resolved: ResolvedTrace, recs: list[bytes]) -> list:
    out = []
    for rec in recs:
        index = HEADER.unpack_from(rec)[3]
        out.append(build_decoder(resolved.plan, index, resolved.targets[index].btf)(rec))
    return out


def _jump_targets(insns: tuple[Insn, ...]) -> list[tuple[int, int]]:
    out = []
    for pc, insn in enumerate(insns):
        cls, op = insn.code & 0x07, insn.code & 0xF0
        if cls in (uapi.BPF_JMP, uapi.BPF_JMP32) and op not in (uapi.BPF_CALL, uapi.BPF_EXIT):
            out.append((pc, pc + insn.off + 1))
    return out


def _pair_starts(insns: tuple[Insn, ...]) -> set[int]:
    starts, pc = set(), 0
    while pc < len(insns):
        if insns[pc].is_ld_imm64:
            starts.add(pc)
            pc += 2
        else:
            pc += 1
    return starts


def _sections(program: Program) -> list[str]:
    return [name for _, name in program.sections]


CORPUS = [
    ("tp:net_dev_queue", {}),
    ("tp:net_dev_queue(skb->len)", {}),
    ("tp:net_dev_queue(skb->len)", {"pid": 4242, "comm": b"curl"}),
    ("tp:net_dev_queue(skb->len)", {"with_comm": False}),
    ('tp:net_dev_queue(skb->len > 100, skb->dev->name == "lo", skb->cb)', {}),
    ('tp:net_dev_queue(skb->dev->name != "lo", skb->pkt_type == 5, skb->cloned)', {}),
    ("seven_args(a < -5, b, c, d >= 4294967296, e->dev->ifindex, f, g)", {}),
    ('seven_args(f == "hello world!", e->data)', {}),
    ('strncpy_from_user(src != "x", count)', {}),
    ("ip_send_skb(skb->len, return)", {}),
    ("ip_send_skb(skb->len > 5, return != 0)", {"pid": 1}),
    ("ip_send_skb(net->ifindex, skb->dev, return >= -1)", {"comm": b"ping"}),
    ("tp:net_dev_queue(skb->len, skb->dev->name)", {"kstack_depth": 4}),
    ("tp:net_dev_queue", {"kstack_depth": MAX_KSTACK_DEPTH, "with_comm": False}),
    ("ip_send_skb(skb->len, return)", {"kstack_depth": 8}),
    ("ip_send_skb(skb->len > 5, return != 0)", {"kstack_depth": 8, "pid": 1}),
]


def _corpus_programs() -> list[tuple[str, dict, ResolvedTrace, int, Program]]:
    out = []
    for spec, options in CORPUS:
        resolved = _trace(spec, **options)
        for i in range(len(resolved.plan.probes)):
            out.append((spec, options, resolved, i, generate(resolved.plan, i)))
    return out


PROGRAMS = _corpus_programs()
PROGRAM_IDS = [f"{spec}{options or ''}#{i}" for spec, options, _, i, _ in PROGRAMS]


# ---- structure --------------------------------------------------------------------------------


@pytest.mark.parametrize("spec,options,resolved,index,program", PROGRAMS, ids=PROGRAM_IDS)
def test_every_jump_lands_inside_the_program_on_a_whole_instruction(spec, options, resolved, index, program) -> None:
    # Only the drop path jumps back (to the shared exit); the VM test below shows nothing loops.
    insns = program.insns
    starts = _pair_starts(insns)
    seconds = {s + 1 for s in starts}
    for pc, target in _jump_targets(insns):
        assert 0 <= target < len(insns) and target != pc, f"{spec}: jump at {pc} to {target}"
        assert target not in seconds, f"{spec}: jump at {pc} into the ld_imm64 at {target - 1}"
    last = insns[-1]
    assert last.code in (uapi.BPF_JMP | uapi.BPF_EXIT, uapi.BPF_JMP | uapi.BPF_JA)


@pytest.mark.parametrize("spec,options,resolved,index,program", PROGRAMS, ids=PROGRAM_IDS)
def test_map_slots_are_exactly_the_map_loads(spec, options, resolved, index, program) -> None:
    starts = _pair_starts(program.insns)
    map_loads = {pc for pc in starts if program.insns[pc].src == uapi.BPF_PSEUDO_MAP_FD}
    assert {pc for pc, _ in program.map_slots} == map_loads
    for pc, _ in program.map_slots:
        assert pc in starts and program.insns[pc].dst == tpl.R1
    fds = {MapRole.EVENTS: 11, MapRole.DROPS: 12, MapRole.STASH: 13, MapRole.SCRATCH: 14}
    bound = program.bind_maps(fds)
    for pc, role in program.map_slots:
        assert bound[pc].imm == fds[role] and bound[pc].src == uapi.BPF_PSEUDO_MAP_FD
        assert bound[pc + 1].imm == 0
    changed = {pc for pc, (a, b) in enumerate(zip(program.insns, bound)) if a != b}
    assert changed == {pc for pc, _ in program.map_slots}


@pytest.mark.parametrize("spec,options,resolved,index,program", PROGRAMS, ids=PROGRAM_IDS)
def test_generation_is_deterministic_and_round_trips(spec, options, resolved, index, program) -> None:
    again = generate(_trace(spec, **options).plan, index)
    assert again == program
    assert decode(encode(program.insns)) == list(program.insns)
    assert len(program.name) < uapi.BPF_OBJ_NAME_LEN and program.name.startswith("ksnoop_")
    assert program.prog_type is ProgType.TRACING
    probe = resolved.plan.probes[index]
    assert (
        program.expected_attach_type
        is {
            ProbeKind.TP_BTF: AttachType.TRACE_RAW_TP,
            ProbeKind.FENTRY: AttachType.TRACE_FENTRY,
            ProbeKind.FEXIT: AttachType.TRACE_FEXIT,
        }[probe.kind]
    )
    assert program.attach_btf_id == probe.attach_btf_id
    assert program.layout == RecordLayout.of(probe, resolved.plan.with_comm)
    firsts = [first for first, _ in program.sections]
    assert firsts == sorted(firsts) and firsts[0] == 0
    assert set(_sections(program)) <= {t.name for t in tpl.ALL}


@pytest.mark.parametrize("spec,options,resolved,index,program", PROGRAMS, ids=PROGRAM_IDS)
def test_every_corpus_program_runs_to_exit_in_the_vm(spec, options, resolved, index, program) -> None:
    ctx = [NET, SKB, 0, 0, SKB, NAME_PTR, 7, 0]
    vm = _vm(resolved, memory={**_memory(), NAME_PTR: b"hello world!\0"}, user_memory={USER_PTR: b"x\0"})
    vm.run(program, ctx)


def test_a_hole_left_unfilled_is_refused() -> None:
    asm = _Assembler()
    with pytest.raises(AssertionError, match=r"read_value: holes left unfilled: \['size'\]"):
        asm.emit(tpl.READ_VALUE, offset=8, fail="out")


def test_a_label_nobody_places_is_refused() -> None:
    asm = _Assembler()
    asm.emit(tpl.GOTO, target="nowhere")
    with pytest.raises(KeyError):
        asm.assemble()


@pytest.mark.parametrize("template", tpl.ALL, ids=lambda t: t.name)
def test_template_holes_sit_where_they_can_be_filled(template: tpl.Template) -> None:
    insns = [t.insn for t in template.insns]
    starts = _pair_starts(tuple(insns))
    labels = {"out", "fail", "dropped", "differ", "target", "bucketed", "raced"}
    for pc, t in enumerate(template.insns):
        for hole in t.holes:
            assert hole.field in ("off", "imm", "imm64", "map", "code"), (template.name, hole)
            if hole.field in ("imm64", "map"):
                assert pc in starts, f"{template.name}: {hole} not on the first slot of an ld_imm64"
            if hole.field == "map":
                assert MapRole(hole.name)
            if hole.name in labels:
                jumps = t.insn.code & 0x07 in (uapi.BPF_JMP, uapi.BPF_JMP32)
                assert hole.field == "off" and jumps, (template.name, hole)
        if pc - 1 in starts:
            assert not t.holes, f"{template.name}: a hole on the second half of an ld_imm64"
    assert template.contract


# ---- operators and constants ------------------------------------------------------------------

# The jump that leaves when the test fails, per operator, unsigned then signed.
INVERSE = {
    CompareOp.EQ: (uapi.BPF_JNE, uapi.BPF_JNE),
    CompareOp.NE: (uapi.BPF_JEQ, uapi.BPF_JEQ),
    CompareOp.GT: (uapi.BPF_JLE, uapi.BPF_JSLE),
    CompareOp.GE: (uapi.BPF_JLT, uapi.BPF_JSLT),
    CompareOp.LT: (uapi.BPF_JGE, uapi.BPF_JSGE),
    CompareOp.LE: (uapi.BPF_JGT, uapi.BPF_JSGT),
}
PY_OPS = {
    CompareOp.EQ: operator.eq,
    CompareOp.NE: operator.ne,
    CompareOp.GT: operator.gt,
    CompareOp.GE: operator.ge,
    CompareOp.LT: operator.lt,
    CompareOp.LE: operator.le,
}


def _hand_plan(
    *tests: ValueTest,
    captures: tuple[Capture, ...] = (),
    kind: ProbeKind = ProbeKind.TP_BTF,
    filters: Filters | None = None,
) -> Plan:
    value = Capture(label="x", slot=0, size=8)
    probe = Probe(kind, "hand", 1, tests=tests, captures=captures or (value,))
    return Plan(probes=(probe,), filters=filters or Filters())


def _kept(plan: Plan, ctx: list[int], memory: dict[int, bytes] | None = None, **vm) -> bool:
    run = VM(memory or {}, **vm).run(generate(plan, 0), ctx)
    assert len(run.records) <= 1
    return bool(run.records)


def _compare_insns(program: Program) -> list[Insn]:
    return [
        i
        for i in program.insns
        if i.code & 0x07 == uapi.BPF_JMP
        and i.dst == tpl.CURSOR
        and i.code & 0xF0 not in (uapi.BPF_CALL, uapi.BPF_EXIT, uapi.BPF_JA)
    ]


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("op", list(CompareOp), ids=lambda op: op.name)
def test_each_operator_jumps_out_on_its_inverse(op: CompareOp, signed: bool) -> None:
    value = Capture(label="x", slot=0, size=8)
    plan = _hand_plan(ValueTest(value, Predicate(op, 100, signed)))
    (compare,) = _compare_insns(generate(plan, 0))
    assert compare.code == uapi.BPF_JMP | INVERSE[op][signed] | uapi.BPF_K
    assert compare.imm == 100
    for x in (0, 99, 100, 101, 1 << 40, -1, -100, -(1 << 63)):
        as_seen = x if signed else x & ((1 << 64) - 1)
        assert _kept(plan, [x]) == PY_OPS[op](as_seen, 100), (op, signed, x)


@pytest.mark.parametrize(
    "constant,signed,wide",
    [
        (0, False, False),
        ((1 << 31) - 1, False, False),
        (1 << 31, False, True),
        ((1 << 32) - 1, False, True),
        ((1 << 64) - 1, False, True),
        (-1, True, False),
        (-(1 << 31), True, False),
        (-(1 << 31) - 1, True, True),
        ((1 << 31) - 1, True, False),
        (1 << 31, True, True),
        (-(1 << 63), True, True),
    ],
)
def test_constants_that_fit_an_imm32_stay_there_and_others_take_an_ld_imm64(
    constant: int, signed: bool, wide: bool
) -> None:
    value = Capture(label="x", slot=0, size=8)
    plan = _hand_plan(ValueTest(value, Predicate(CompareOp.EQ, constant, signed)))
    program = generate(plan, 0)
    (compare,) = _compare_insns(program)
    if wide:
        assert compare.code == uapi.BPF_JMP | uapi.BPF_JNE | uapi.BPF_X and compare.src == tpl.R1
        pc = program.insns.index(compare)
        lo, hi = program.insns[pc - 2], program.insns[pc - 1]
        assert lo.is_ld_imm64 and lo.dst == tpl.R1 and lo.src == 0
        assert (lo.imm & 0xFFFFFFFF) | (hi.imm & 0xFFFFFFFF) << 32 == constant & ((1 << 64) - 1)
    else:
        assert compare.code == uapi.BPF_JMP | uapi.BPF_JNE | uapi.BPF_K and compare.imm == constant
    for delta in (-1, 0, 1):
        assert _kept(plan, [constant + delta]) == (delta == 0)


@pytest.mark.parametrize(
    "size,signed,shift",
    [
        (1, False, (56, uapi.BPF_RSH)),
        (2, True, (48, uapi.BPF_ARSH)),
        (4, False, (32, uapi.BPF_RSH)),
        (4, True, (32, uapi.BPF_ARSH)),
        (8, True, None),
        (8, False, None),
    ],
)
def test_narrow_arguments_drop_their_undefined_upper_bits(size: int, signed: bool, shift) -> None:
    value = Capture(label="x", slot=0, size=size)
    plan = _hand_plan(ValueTest(value, Predicate(CompareOp.EQ, -2 if signed else 2, signed)))
    program = generate(plan, 0)
    shifts = [i for i in program.insns if i.code & 0x07 == uapi.BPF_ALU64 and i.dst == tpl.CURSOR]
    if shift is None:
        assert shifts == []
    else:
        bits, right = shift
        assert [(i.code & 0xF0, i.imm) for i in shifts] == [(uapi.BPF_LSH, bits), (right, bits)]
    garbage = 0xDEADBEEF << 8 * size if size < 8 else 0
    target = (-2 if signed else 2) & ((1 << 8 * size) - 1)
    assert _kept(plan, [garbage | target])
    assert not _kept(plan, [garbage | (target ^ 1)])


def test_a_signed_int_argument_compares_as_negative_whatever_its_upper_half_holds() -> None:
    t = _trace("seven_args(a < -5)")
    entry = generate(t.plan, 0)
    assert [i.code & 0xF0 for i in _compare_insns(entry)] == [uapi.BPF_JSGE]
    vm_kept = lambda a: bool(VM({}).run(entry, [a, 0, 0, 0, 0, 0, 0]).records)
    assert vm_kept(0x00000000_FFFFFFF9)  # -7 with a clean upper half
    assert vm_kept(0xDEADBEEF_FFFFFFFA)  # -6 under garbage
    assert not vm_kept(0xFFFFFFFF_FFFFFFFB)  # -5
    assert not vm_kept(0xFFFFFFFF_00000007)  # 7 under ones


# ---- bitfields --------------------------------------------------------------------------------


def test_bitfield_shifts_from_the_mini_kernel() -> None:
    t = _trace("tp:net_dev_queue(skb->pkt_type == 5, skb->cloned == 1)")
    program = generate(t.plan, 0)
    shifts = [(i.code & 0xF0, i.imm) for i in program.insns if i.code & 0x07 == uapi.BPF_ALU64 and i.dst == tpl.CURSOR]
    # pkt_type: bits 0-2 of byte 84; cloned: bit 4.
    assert shifts == [(uapi.BPF_LSH, 61), (uapi.BPF_RSH, 61), (uapi.BPF_LSH, 59), (uapi.BPF_RSH, 63)]
    reads = [i for i in program.insns if i.code & 0x07 == uapi.BPF_LDX and i.dst == tpl.CURSOR and i.src == tpl.R10]
    assert [i.code & 0x18 for i in reads] == [uapi.BPF_B, uapi.BPF_B]
    for byte84, kept in (
        (5 | 1 << 4, True),
        (5, False),
        (4 | 1 << 4, False),
        (0xFF & ~(1 << 1), True),
        (5 | 1 << 3 | 1 << 4 | 0xE0, True),
    ):
        events = _events(t, 0, [SKB], _vm(memory=_memory(skb=_sk_buff(byte84=byte84))))
        assert bool(events) == kept, bin(byte84)


@pytest.mark.parametrize(
    "bit_offset,bit_size,signed,raw,expected",
    [
        (5, 3, True, 0b111_00000, -1),
        (5, 3, True, 0b011_00000, 3),
        (5, 3, False, 0b111_00000, 7),
        (6, 4, True, 0b10_000000 | 0b10 << 8, -6),  # spans two bytes: 0b1010
        (6, 4, False, 0b10_000000 | 0b10 << 8, 10),
        (0, 16, True, 0x8001, -32767),
    ],
)
def test_bitfield_extraction_in_a_two_byte_read(
    bit_offset: int, bit_size: int, signed: bool, raw: int, expected: int
) -> None:
    value = Capture(label="bf", slot=0, in_memory=True, offset=4, size=2, bitfield=Bitfield(bit_offset, bit_size))
    memory = {SKB: b"\xff" * 4 + raw.to_bytes(2, "little") + b"\xff" * 2}
    for constant, kept in ((expected, True), (expected + 1, False), (expected - 1, False)):
        plan = _hand_plan(ValueTest(value, Predicate(CompareOp.EQ, constant, signed)))
        assert _kept(plan, [SKB], memory) == kept, (constant, raw)


def test_big_endian_bitfields_count_from_the_top(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "byteorder", "big")
    value = Capture(label="bf", slot=0, in_memory=True, offset=0, size=1, bitfield=Bitfield(0, 3))
    program = generate(_hand_plan(ValueTest(value, Predicate(CompareOp.EQ, 5))), 0)
    shifts = [(i.code & 0xF0, i.imm) for i in program.insns if i.code & 0x07 == uapi.BPF_ALU64 and i.dst == tpl.CURSOR]
    # The top three bits of the byte: bits 5-7 of the register.
    assert shifts == [(uapi.BPF_LSH, 56), (uapi.BPF_RSH, 61)]


# ---- strings ----------------------------------------------------------------------------------


def _string_words(program: Program) -> list[int]:
    out = []
    for pc, insn in enumerate(program.insns):
        nxt = program.insns[pc + 2] if pc + 2 < len(program.insns) else None
        if (
            insn.is_ld_imm64
            and insn.dst == tpl.R2
            and insn.src == 0
            and nxt is not None
            and nxt.code == uapi.BPF_JMP | uapi.BPF_JNE | uapi.BPF_X
            and nxt.dst == tpl.R1
        ):
            out.append((insn.imm & 0xFFFFFFFF) | (program.insns[pc + 1].imm & 0xFFFFFFFF) << 32)
    return out


def _helper_calls(program: Program) -> list[int]:
    return [i.imm for i in program.insns if i.code == uapi.BPF_JMP | uapi.BPF_CALL]


def _read_sizes(program: Program) -> list[int]:
    """The size argument of each read into STACK_STRING."""
    out = []
    for pc, insn in enumerate(program.insns):
        if insn.code == 0x07 and insn.dst == tpl.R1 and insn.imm == tpl.STACK_STRING:
            size = program.insns[pc + 1]
            assert size.code == 0xB7 and size.dst == tpl.R2
            out.append(size.imm)
    return out


def test_string_predicate_on_a_char_array_reads_up_to_the_literal_nul() -> None:
    program = generate(_trace('tp:net_dev_queue(skb->dev->name == "lo")').plan, 0)
    assert _string_words(program) == [int.from_bytes(b"lo\0\0\0\0\0\0", "little")]
    assert _read_sizes(program) == [3]  # "lo" and its NUL; what follows the NUL in the array is not read
    assert Helper.probe_read_kernel in _helper_calls(program)
    assert Helper.probe_read_kernel_str not in _helper_calls(program)
    zeroed = [i.off for i in program.insns if i.code == uapi.BPF_ST | uapi.BPF_MEM | uapi.BPF_DW and i.dst == tpl.R10]
    assert zeroed == [tpl.STACK_STRING]


def test_string_predicate_on_a_char_pointer_uses_the_str_helper_and_several_words() -> None:
    program = generate(_trace('seven_args(f == "hello world!")').plan, 0)
    literal = b"hello world!\0"
    padded = literal.ljust(16, b"\0")
    assert _string_words(program) == [
        int.from_bytes(padded[:8], "little"),
        int.from_bytes(padded[8:], "little"),
    ]
    # The _str helper's forced NUL lands past the literal's; the second read is the user-memory retry.
    assert _read_sizes(program) == [len(literal) + 1, len(literal) + 1]
    assert Helper.probe_read_kernel_str in _helper_calls(program)
    assert Helper.probe_read_user_str in _helper_calls(program)
    user = generate(_trace('strncpy_from_user(src == "x")').plan, 0)
    assert Helper.probe_read_user_str in _helper_calls(user)
    assert Helper.probe_read_kernel_str not in _helper_calls(user)


def test_a_char_pointer_not_known_as_user_is_read_from_user_memory_when_the_kernel_read_faults() -> None:
    value = Capture(label="s", slot=0, in_memory=True, size=16, string=True)
    plan = _hand_plan(ValueTest(value, Predicate(CompareOp.EQ, b"lo")))
    assert _kept(plan, [NAME_PTR], {NAME_PTR: b"lo\0"})
    assert _kept(plan, [NAME_PTR], {}, user_memory={NAME_PTR: b"lo\0"})
    assert not _kept(plan, [NAME_PTR], {}, user_memory={NAME_PTR: b"loo\0"})
    assert not _kept(plan, [NAME_PTR], {})
    shown = _hand_plan(captures=(value,))
    run = VM({}, user_memory={NAME_PTR: b"hello\0"}).run(generate(shown, 0), [NAME_PTR])
    (record,) = run.records
    layout = RecordLayout.of(shown.probes[0], shown.with_comm)
    offset = layout.capture_offsets[0]
    assert bytes(record[offset : offset + 6]) == b"hello\0"
    failed = int.from_bytes(record[FAILED_OFFSET : FAILED_OFFSET + 8], "little")
    assert failed == 0
    (nowhere,) = VM({}).run(generate(shown, 0), [NAME_PTR]).records
    assert int.from_bytes(nowhere[FAILED_OFFSET : FAILED_OFFSET + 8], "little") == 1


@pytest.mark.parametrize("op", [CompareOp.EQ, CompareOp.NE], ids=["eq", "ne"])
@pytest.mark.parametrize(
    "name,equal",
    [
        (b"lo", True),
        (b"l", False),
        (b"loo", False),
        (b"loopback", False),
        (b"", False),
        (b"lo\0xyz", True),
        (b"lO", False),
        (b"eth0", False),
    ],
)
def test_string_predicate_on_a_char_array_keeps_exactly_equal_names(op: CompareOp, name: bytes, equal: bool) -> None:
    t = _trace(f'tp:net_dev_queue(skb->dev->name {op.value} "lo")')
    events = _events(t, 0, [SKB], _vm(memory=_memory(dev=_net_device(name))))
    assert bool(events) == (equal if op is CompareOp.EQ else not equal)


@pytest.mark.parametrize("op", [CompareOp.EQ, CompareOp.NE], ids=["eq", "ne"])
@pytest.mark.parametrize(
    "text,equal",
    [
        (b"hello world!", True),
        (b"hello world", False),
        (b"hello world!!", False),
        (b"hello worle!", False),
        (b"hello world!\0tail", True),
        (b"", False),
    ],
)
def test_string_predicate_on_a_char_pointer_keeps_exactly_equal_strings(
    op: CompareOp, text: bytes, equal: bool
) -> None:
    t = _trace(f'seven_args(f {op.value} "hello world!")')
    ctx = [0, 0, 0, 0, SKB, NAME_PTR, 0]
    events = _events(t, 0, ctx, _vm(t, memory={NAME_PTR: text + b"\0"}))
    assert bool(events) == (equal if op is CompareOp.EQ else not equal)


@pytest.mark.parametrize("op", [CompareOp.EQ, CompareOp.NE], ids=["eq", "ne"])
def test_a_string_that_cannot_be_read_fails_either_test(op: CompareOp) -> None:
    t = _trace(f'seven_args(f {op.value} "x")')
    assert _events(t, 0, [0, 0, 0, 0, SKB, 0xFFFF888000BAD000, 0]) == []


def test_string_literals_at_and_over_the_limit() -> None:
    value = Capture(label="s", slot=0, in_memory=True, size=128, string=True)
    longest = b"a" * 127
    plan = _hand_plan(ValueTest(value, Predicate(CompareOp.EQ, longest)))
    assert len(_string_words(generate(plan, 0))) == 17 and _read_sizes(generate(plan, 0)) == [129, 129]
    assert _kept(plan, [NAME_PTR], {NAME_PTR: longest + b"\0"})
    assert not _kept(plan, [NAME_PTR], {NAME_PTR: longest + b"b\0"})
    assert not _kept(plan, [NAME_PTR], {NAME_PTR: longest[:-1] + b"\0"})
    array = dataclasses.replace(value, string=False)
    array_plan = _hand_plan(ValueTest(array, Predicate(CompareOp.EQ, longest)))
    assert _read_sizes(generate(array_plan, 0)) == [128]
    assert _kept(array_plan, [NAME_PTR], {NAME_PTR: longest + b"\0"})
    assert not _kept(array_plan, [NAME_PTR], {NAME_PTR: longest + b"b"})
    with pytest.raises(CodegenError, match="string of 128 bytes; at most 127"):
        generate(_hand_plan(ValueTest(value, Predicate(CompareOp.EQ, longest + b"a"))), 0)


# ---- plans the generator refuses --------------------------------------------------------------


def test_codegen_errors() -> None:
    many = tuple(Capture(label=f"c{n}", slot=0) for n in range(MAX_CAPTURES + 1))
    with pytest.raises(CodegenError, match=f"{MAX_CAPTURES + 1} values to capture; at most {MAX_CAPTURES}"):
        generate(_hand_plan(captures=many), 0)
    generate(_hand_plan(captures=many[:MAX_CAPTURES]), 0)
    string = Capture(label="s", slot=0, in_memory=True, size=16, string=True)
    with pytest.raises(CodegenError, match="strings compare only with == and !="):
        generate(_hand_plan(ValueTest(string, Predicate(CompareOp.LT, b"a"))), 0)
    with pytest.raises(CodegenError, match="needs a char array or char pointer"):
        generate(_hand_plan(ValueTest(Capture(label="r", slot=0), Predicate(CompareOp.EQ, b"a"))), 0)
    odd = Capture(label="odd", slot=0, in_memory=True, size=3)
    with pytest.raises(CodegenError, match="cannot compare a 3-byte value with a number"):
        generate(_hand_plan(ValueTest(odd, Predicate(CompareOp.EQ, 1))), 0)
    with pytest.raises(CodegenError, match="cannot come from one register"):
        generate(_hand_plan(captures=(Capture(label="odd", slot=0, size=3),)), 0)
    with pytest.raises(PlanError, match="has a record stash but no fentry to pair with"):
        Plan(probes=(Probe(ProbeKind.FEXIT, "f", 1, captures=(Capture(label="r", slot=0),), stash=Stash.RECORD),))


# ---- filters ----------------------------------------------------------------------------------


def test_pid_filter_compares_the_tgid() -> None:
    t = _trace("tp:net_dev_queue(skb->len)", pid=PID)
    program = generate(t.plan, 0)
    assert _sections(program)[:2] == ["prologue", "pid_filter"]
    assert any(i.code == uapi.BPF_JMP | uapi.BPF_JNE | uapi.BPF_K and i.imm == PID for i in program.insns)
    assert len(_events(t, 0, [SKB], _vm(pid_tgid=PID << 32 | 99))) == 1
    assert _events(t, 0, [SKB], _vm(pid_tgid=99 << 32 | PID)) == []  # a thread id is not the process


@pytest.mark.parametrize(
    "comm,kept",
    [
        (b"curl", True),
        (b"cur", False),
        (b"curl2", False),
        (b"Curl", False),
        (b"fifteen_chars_x", False),
        (b"", False),
    ],
)
def test_comm_filter_compares_all_sixteen_bytes(comm: bytes, kept: bool) -> None:
    t = _trace("tp:net_dev_queue(skb->len)", comm=b"curl")
    assert bool(_events(t, 0, [SKB], _vm(comm=comm))) == kept
    long = _trace("tp:net_dev_queue(skb->len)", comm=b"fifteen_chars_x")
    assert bool(_events(long, 0, [SKB], _vm(comm=comm))) == (comm == b"fifteen_chars_x")


@pytest.mark.parametrize("comm,kept", [(b"curl", True), (b"cur", False), (b"curl2", False)])
def test_comm_filter_does_not_read_what_the_helper_left_past_the_nul(comm: bytes, kept: bool) -> None:
    """Kernels 5.19 to 6.3 copy the comm with strscpy: the bytes after its NUL are not written."""
    t = _trace("tp:net_dev_queue(skb->len)", comm=b"curl")
    assert bool(_events(t, 0, [SKB], _vm(comm=comm, comm_pads=False))) == kept


@pytest.mark.parametrize(
    "uid_gid,kept",
    [
        (1000, True),
        (7 << 32 | 1000, True),  # the gid is not looked at
        (1001, False),
        (1000 << 32, False),  # a gid of 1000 is not a uid of 1000
        (0, False),
    ],
)
def test_uid_filter_compares_the_uid_alone(uid_gid: int, kept: bool) -> None:
    t = _trace("tp:net_dev_queue(skb->len)", uid=1000)
    assert _sections(generate(t.plan, 0))[:2] == ["prologue", "uid_filter"]
    assert bool(_events(t, 0, [SKB], _vm(uid_gid=uid_gid))) == kept


def test_uid_filter_takes_the_largest_uids() -> None:
    # 4294967294 (nobody on some systems) does not fit a signed 32-bit immediate: a 32-bit compare does.
    t = _trace("tp:net_dev_queue(skb->len)", uid=0xFFFFFFFE)
    assert bool(_events(t, 0, [SKB], _vm(uid_gid=0xFFFFFFFE)))
    assert not _events(t, 0, [SKB], _vm(uid_gid=0xFFFFFFFF))


@pytest.mark.parametrize(
    "ancestors,kept",
    [
        ((1, 50, 70), True),  # the cgroup itself (level 2)
        ((1, 50, 70, 90), True),  # below it
        ((1, 50, 71), False),  # a sibling
        ((1, 50), False),  # its parent: not that deep
        ((1,), False),  # the root
    ],
)
def test_cgroup_filter_keeps_the_cgroup_and_those_below_it(ancestors: tuple[int, ...], kept: bool) -> None:
    t = _trace("tp:net_dev_queue(skb->len)", cgroup=CgroupFilter(id=70, level=2))
    assert _sections(generate(t.plan, 0))[:2] == ["prologue", "cgroup_filter"]
    assert bool(_events(t, 0, [SKB], _vm(cgroup_ancestors=ancestors))) == kept


def test_comm_filter_words() -> None:
    program = generate(_trace("tp:net_dev_queue", comm=b"kworker/0:1H-kb").plan, 0)
    words = [
        (i.imm & 0xFFFFFFFF) | (program.insns[pc + 1].imm & 0xFFFFFFFF) << 32
        for pc, i in enumerate(program.insns)
        if i.is_ld_imm64 and i.src == 0 and i.dst == tpl.R2
    ]
    assert words[:2] == [int.from_bytes(b"kworker/", "little"), int.from_bytes(b"0:1H-kb\0", "little")]


# ---- records ----------------------------------------------------------------------------------


def test_records_carry_exact_values_at_the_decoder_offsets() -> None:
    t = _trace(
        "tp:net_dev_queue(skb->len, skb->dev->name, skb->dev->ifindex, skb->pkt_type, skb->ignore_df, "
        "skb->cloned, skb->protocol, skb->data, skb->cb, skb->dev, skb)"
    )
    vm = _vm(comm=b"ping")
    (event,) = _events(t, 0, [SKB], vm)
    assert event.pid == PID and event.tid == TID and event.cpu == 1 and event.probe == 0
    assert event.comm == "ping" and event.ts_ns == 1_001_000 and event.duration_ns is None
    (length, name, ifindex, pkt_type, ignore_df, cloned, protocol, data, cb, dev, skb) = event.values
    assert (length, name, ifindex, pkt_type, ignore_df, cloned) == (242, "lo", -3, 5, 1, 1)
    assert protocol == 0x0008 and data == DATA and cb == "cb text"
    # Structs followed from pointers come with where they were.
    assert dev == RawValue(records.IDS["struct net_device"], _net_device(), False, DEV)
    assert skb == RawValue(records.IDS["struct sk_buff"], _sk_buff(), False, SKB)


def test_a_read_through_a_null_pointer_is_flagged_never_zero() -> None:
    t = _trace("tp:net_dev_queue(skb->len, skb->dev->name, skb->dev->ifindex, skb->dev, skb->protocol)")
    (event,) = _events(t, 0, [SKB], _vm(memory=_memory(skb=_sk_buff(dev=0))))
    assert event.values == (242, READ_FAILED, READ_FAILED, READ_FAILED, 0x0008)
    (whole,) = _events(t, 0, [0])  # the argument itself is NULL
    assert whole.values == (READ_FAILED,) * 5


def test_a_test_on_a_value_that_cannot_be_read_drops_the_event() -> None:
    for spec in ("tp:net_dev_queue(skb->dev->ifindex != 12345)", "tp:net_dev_queue(skb->dev->ifindex == 0)"):
        t = _trace(spec)
        assert _events(t, 0, [SKB], _vm(memory=_memory(skb=_sk_buff(dev=0)))) == []
    assert (
        len(
            _events(
                _trace("tp:net_dev_queue(skb->dev == NULL)"),
                0,
                [SKB],
                _vm(memory=_memory(skb=_sk_buff(dev=0))),
            )
        )
        == 1
    )


def test_failed_bits_above_31_use_the_wide_mask() -> None:
    through_dev = Capture(label="ifindex", slot=0, hops=(24,), in_memory=True, offset=16, size=4)
    length = Capture(label="len", slot=0, in_memory=True, offset=80, size=4)
    failing = {30, 31, 40, 63}
    plan = _hand_plan(captures=tuple(through_dev if n in failing else length for n in range(MAX_CAPTURES)))
    program = generate(plan, 0)
    assert "mark_failed_high" in _sections(program) and "mark_failed" in _sections(program)
    run = VM({SKB: _sk_buff(dev=0)}).run(program, [SKB])
    assert HEADER.unpack_from(run.records[0])[4] == sum(1 << n for n in failing)
    run = VM({SKB: _sk_buff(), DEV: _net_device()}).run(program, [SKB])
    assert HEADER.unpack_from(run.records[0])[4] == 0


def test_a_full_ringbuf_counts_a_drop() -> None:
    t = _trace("tp:net_dev_queue(skb->len)")
    vm = _vm(ringbuf_room=1)
    program = generate(t.plan, 0)
    assert len(vm.run(program, [SKB]).records) == 1
    second = vm.run(program, [SKB])
    third = vm.run(program, [SKB])
    assert len(third.records) == 1 and (second.drops, third.drops) == (1, 2)


def test_without_comm_the_captures_follow_the_header() -> None:
    t = _trace("tp:net_dev_queue(skb->len)", with_comm=False)
    program = generate(t.plan, 0)
    assert "header_comm" not in _sections(program)
    assert program.layout.capture_offsets == (HEADER.size,)
    (event,) = _events(t, 0, [SKB])
    assert event.comm == "" and event.values == (242,)


# ---- fentry/fexit stashes ---------------------------------------------------------------------


def test_stash_time_gives_the_return_record_its_entry_time() -> None:
    t = _trace("ip_send_skb(skb->len, return)")
    entry, exit_ = t.plan.probes
    assert (entry.stash, exit_.stash) == (Stash.TIME, Stash.TIME) and entry.emits
    fentry, fexit = generate(t.plan, 0), generate(t.plan, 1)
    assert _sections(fentry).index("stash_time") < _sections(fentry).index("submit")
    assert _sections(fexit)[:2] == ["prologue", "stash_take"]
    # The entry time is used up in place, not deleted: the task's entry is rewritten next call.
    assert "set_entry_ts" in _sections(fexit) and "stash_delete" not in _sections(fexit)
    vm = _vm(t)
    run = vm.run(fentry, [NET, SKB, 0])
    (first,) = _decode(t, run.records)
    assert first.values == (242,)
    # Keyed by the thread id, with the pair's stash group above it (one map may serve many functions).
    key = (entry.stash_group << 32 | TID).to_bytes(8, "little")
    assert run.stash == {key: first.ts_ns.to_bytes(8, "little")}
    (ret,) = _decode(t, vm.run(fexit, [NET, SKB, (-22) & ((1 << 64) - 1)]).records[1:])
    assert ret.probe == 1 and ret.values == (-22,)
    assert ret.duration_ns == ret.ts_ns - first.ts_ns and ret.duration_ns > 0
    assert vm.run(fexit, [NET, SKB, 0]).stash == {key: bytes(8)}
    again = vm.run(fexit, [NET, SKB, 0])
    assert HEADER.unpack_from(again.records[-1])[5] == 0  # no entry seen: no entry time
    assert _decode(t, again.records[-1:])[0].duration_ns is None


def test_a_return_whose_entry_failed_its_tests_is_not_shown() -> None:
    t = _trace("ip_send_skb(skb->len > 500, return)")
    entry, exit_ = t.plan.probes
    assert exit_.requires_entry and exit_.tests == ()  # the arguments are not tested again at exit
    fentry, fexit = generate(t.plan, 0), generate(t.plan, 1)
    assert _sections(fexit)[:3] == ["prologue", "stash_take", "require_entry"]
    vm = _vm(t)
    assert vm.run(fentry, [NET, SKB, 0]).records == []  # skb->len is 242: the entry fails
    assert vm.run(fexit, [NET, SKB, 0]).records == []  # and so its return is not shown
    plain = _trace("ip_send_skb(skb->len, return)")
    assert not plain.plan.probes[1].requires_entry
    assert "require_entry" not in _sections(generate(plain.plan, 1))


def test_stash_record_emits_the_entry_only_when_the_return_passes() -> None:
    t = _trace("ip_send_skb(skb->len > 5, return != 0)")
    entry, exit_ = t.plan.probes
    assert (entry.stash, exit_.stash) == (Stash.RECORD, Stash.RECORD)
    fentry, fexit = generate(t.plan, 0), generate(t.plan, 1)
    assert "scratch_record" in _sections(fentry) and "stash_record" in _sections(fentry)
    assert "reserve" not in _sections(fentry) and "submit" not in _sections(fentry)
    assert {role for _, role in fentry.map_slots} == {MapRole.SCRATCH, MapRole.STASH}
    assert "emit_stashed" in _sections(fexit)
    vm = _vm(t)
    assert _events(t, 0, [NET, SKB, 0], vm) == []
    assert len(vm.run(fentry, [NET, SKB, 0]).stash) == 1
    assert _events(t, 1, [NET, SKB, 0], vm) == []  # return == 0: both dropped
    assert vm.run(fexit, [NET, SKB, 0]).stash == {}
    _events(t, 0, [NET, SKB, 0], vm)
    entry_event, ret = _events(t, 1, [NET, SKB, 1], vm)
    assert (entry_event.probe, entry_event.values) == (0, (242,))
    assert (ret.probe, ret.values) == (1, (1,)) and ret.duration_ns == ret.ts_ns - entry_event.ts_ns
    # The entry test fails: nothing stashed, nothing emitted at return.
    short = _vm(t, memory=_memory(skb=_sk_buff(length=5)))
    assert _events(t, 0, [NET, SKB, 0], short) == [] and short.run(fentry, [NET, SKB, 0]).stash == {}
    assert _events(t, 1, [NET, SKB, 1], short) == []


def test_stash_record_full_ringbuf_at_return_counts_a_drop() -> None:
    t = _trace("ip_send_skb(skb->len > 5, return != 0)")
    vm = _vm(t, ringbuf_room=0)
    vm.run(generate(t.plan, 0), [NET, SKB, 0])
    run = vm.run(generate(t.plan, 1), [NET, SKB, 1])
    assert run.records == [] and run.drops >= 1 and run.stash == {}


def test_time_only_fentry_stashes_and_emits_nothing() -> None:
    t = _trace("ip_send_skb(skb->len, return)")
    entry = dataclasses.replace(t.plan.probes[0], captures=(), emits=False)
    plan = dataclasses.replace(t.plan, probes=(entry, t.plan.probes[1]))
    program = generate(plan, 0)
    assert "stash_time_only" in _sections(program)
    assert not {"reserve", "header", "submit", "count_drop"} & set(_sections(program))
    assert {role for _, role in program.map_slots} == {MapRole.STASH}
    vm = _vm()
    run = vm.run(program, [NET, SKB, 0])
    assert run.records == [] and list(run.stash) == [(entry.stash_group << 32 | TID).to_bytes(8, "little")]
    stashed = int.from_bytes(next(iter(run.stash.values())), "little")
    ret = vm.run(generate(plan, 1), [NET, SKB, 0]).records[-1]
    assert struct.unpack_from("=Q", ret, ENTRY_TS_OFFSET)[0] == stashed


def test_vm_catches_a_wrong_jump() -> None:
    program = generate(_trace("tp:net_dev_queue(skb->len > 1)").plan, 0)
    insns = list(program.insns)
    pc = next(pc for pc, i in enumerate(insns) if i.code == uapi.BPF_JMP | uapi.BPF_JLE | uapi.BPF_K)
    insns[pc] = dataclasses.replace(insns[pc], off=len(insns))
    broken = dataclasses.replace(program, insns=tuple(insns))
    with pytest.raises(VMError, match="outside the program|jump to"):
        VM({SKB: _sk_buff(length=1)}).run(broken, [SKB])


# ---- kernel stacks ----------------------------------------------------------------------------

STACK = (0xFFFFFFFF81A00010, 0xFFFFFFFF81B00020, 0xFFFFFFFFC0001234)


def _stack_call(program: Program) -> list[Insn]:
    """The capture_stack template's instructions in `program`."""
    (start,) = [first for first, name in program.sections if name == "capture_stack"]
    return list(program.insns[start : start + len(tpl.CAPTURE_STACK.insns)])


@pytest.mark.parametrize("with_comm", [True, False])
@pytest.mark.parametrize("depth", [1, 32, MAX_KSTACK_DEPTH])
def test_capture_stack_writes_where_the_layout_says(depth: int, with_comm: bool) -> None:
    t = _trace("tp:net_dev_queue(skb->len, skb->dev->name)", kstack_depth=depth, with_comm=with_comm)
    program = generate(t.plan, 0)
    layout = program.layout
    assert layout.kstack_depth == depth
    assert layout.kstack_offset == layout.capture_offsets[-1] + 16  # after the 16-byte name
    assert layout.kstack_frames_offset == layout.kstack_offset + 8
    assert layout.size == layout.kstack_offset + 8 + 8 * depth
    sections = _sections(program)
    assert sections.index("capture_stack") > max(i for i, n in enumerate(sections) if n == "copy_to_record")
    assert sections.index("capture_stack") < sections.index("submit")
    assert _stack_call(program) == [
        mov64_reg(tpl.R1, tpl.CTX),
        mov64_reg(tpl.R2, tpl.RECORD),
        alu64_imm(uapi.BPF_ADD, tpl.R2, layout.kstack_frames_offset),
        mov64_imm(tpl.R3, 8 * depth),
        mov64_imm(tpl.R4, 0),
        call(Helper.get_stack),
        stx_mem(8, tpl.RECORD, tpl.R0, layout.kstack_offset),
    ]
    (reserve,) = [first for first, name in program.sections if name == "reserve"]
    assert program.insns[reserve + 2] == mov64_imm(tpl.R2, layout.size)  # after the map's ld_imm64


def test_without_kstack_nothing_changes() -> None:
    plain, deep = _trace("tp:net_dev_queue(skb->len)"), _trace("tp:net_dev_queue(skb->len)", kstack_depth=8)
    assert plain.plan.probes[0].kstack_depth == 0
    layout = generate(plain.plan, 0).layout
    assert (layout.kstack_offset, layout.kstack_depth) == (0, 0)
    assert "capture_stack" not in _sections(generate(plain.plan, 0))
    assert Helper.get_stack not in _helper_calls(generate(plain.plan, 0))
    assert generate(deep.plan, 0).layout.capture_offsets == layout.capture_offsets


def test_only_entry_and_tracepoint_records_carry_the_stack() -> None:
    t = _trace("ip_send_skb(skb->len, return)", "tp:net_dev_queue", kstack_depth=8)
    kinds = {p.kind: p.kstack_depth for p in t.plan.probes}
    assert kinds == {ProbeKind.FENTRY: 8, ProbeKind.FEXIT: 0, ProbeKind.TP_BTF: 8}
    assert "capture_stack" not in _sections(generate(t.plan, 1))
    # An fentry with nothing else to show still emits its stack.
    only_return = _trace("ip_send_skb(return)", kstack_depth=8)
    assert only_return.plan.probes[0].emits


@pytest.mark.parametrize("depth", [-1, MAX_KSTACK_DEPTH + 1])
def test_a_stack_depth_out_of_range_is_refused(depth: int) -> None:
    t = _trace("tp:net_dev_queue")
    probe = dataclasses.replace(t.plan.probes[0], kstack_depth=depth)
    with pytest.raises(CodegenError, match="kernel stack"):
        generate(dataclasses.replace(t.plan, probes=(probe,)), 0)


def test_the_stack_decodes_to_its_addresses() -> None:
    t = _trace("tp:net_dev_queue(skb->len, skb->dev->ifindex)", kstack_depth=4)
    (event,) = _events(t, 0, [SKB], _vm(kstack=STACK))
    assert event.values == (242, -3) and event.kstack == STACK
    (full,) = _events(t, 0, [SKB], _vm(kstack=STACK * 2))  # deeper than asked: cut at 4
    assert full.kstack == (STACK * 2)[:4]
    (failed,) = _events(t, 0, [SKB], _vm(kstack=STACK, kstack_error=14))  # -EFAULT
    assert failed.kstack == () and failed.values == (242, -3)
    (plain,) = _events(_trace("tp:net_dev_queue(skb->len)"), 0, [SKB], _vm(kstack=STACK))
    assert plain.kstack is None


def test_a_stashed_entry_record_keeps_its_stack() -> None:
    t = _trace("ip_send_skb(skb->len > 5, return != 0)", kstack_depth=4)
    vm = _vm(t, kstack=STACK)
    assert _events(t, 0, [NET, SKB, 0], vm) == []
    entry_event, ret = _events(t, 1, [NET, SKB, 1], vm)
    assert entry_event.kstack == STACK and entry_event.values == (242,)
    assert ret.kstack is None and ret.values == (1,)


@pytest.mark.parametrize(
    "backlog_past_threshold, flags",
    [
        (-1, uapi.BPF_RB_NO_WAKEUP),  # below the threshold: the reader's poll will come
        (0, uapi.BPF_RB_FORCE_WAKEUP),  # this record took the backlog to the threshold
        ("record", uapi.BPF_RB_FORCE_WAKEUP),  # still within this record: it crossed
        ("past", uapi.BPF_RB_NO_WAKEUP),  # an earlier record crossed and woke the reader
    ],
)
def test_only_the_record_crossing_the_wakeup_threshold_wakes_the_reader(backlog_past_threshold, flags) -> None:
    plan = _hand_plan(captures=(Capture(label="x", slot=0),))
    program = generate(plan, 0)
    record = RecordLayout.of(plan.probes[0], plan.with_comm).size
    step = {"record": record + 7, "past": record + 8}.get(backlog_past_threshold, backlog_past_threshold)
    vm = VM({}, ringbuf_backlog=plan.wakeup_bytes + step)
    assert len(vm.run(program, [7]).records) == 1
    assert vm.submit_flags == [flags]


def test_a_slot_the_verifier_will_not_type_is_copied_out_of_the_context() -> None:
    opaque = Capture(label="fn", slot=1, opaque_slot=True)
    program = generate(_hand_plan(ValueTest(opaque, Predicate(CompareOp.NE, 0)), captures=(opaque,)), 0)
    assert _sections(program).count("copy_arg") == 2 and "load_arg" not in _sections(program)
    copy = next(
        i for i in program.insns if i.code == uapi.BPF_ALU64 | uapi.BPF_ADD | uapi.BPF_K and i.dst == 3 and i.imm == 8
    )
    assert copy  # r3 = ctx + 8 * slot
