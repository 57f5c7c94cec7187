# SPDX-License-Identifier: GPL-2.0-only
"""Plan -> BPF programs, one per probe, assembled from the templates in templates.py.

`generate(plan, index)` picks templates for the probe's filters, predicates and captures,
fills their holes with numbers from the plan, resolves jump labels and checks no hole is left.
It is pure: the same plan gives the same instructions. Map fds are bound at load time
(`Program.bind_maps`), since they exist only then.
"""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass, replace
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import templates as tpl
from . import uapi
from .insn import Insn, Insns
from .plan import (
    AGGREGATE_DROPS_SIZE,
    DURATION,
    CALLS_OFFSET,
    COMM_OFFSET,
    COMM_SIZE,
    COUNTERS_SIZE,
    PATH_TASKS,
    GRAPH_STATE_SIZE,
    STASH_ENTRIES,
    ERRORS_OFFSET,
    MAX_CAPTURES,
    MAX_KSTACK_DEPTH,
    MAX_STRING_PREDICATE,
    MAX_PATH_LENGTH,
    Aggregate,
    Builtin,
    Capture,
    CompareOp,
    Count,
    PathLayout,
    Plan,
    Predicate,
    Probe,
    ProbeKind,
    RecordLayout,
    Stash,
)
from .uapi import AttachType, Helper, ProgType


class MapRole(enum.Enum):
    EVENTS = "events"  # the RINGBUF records go to
    DROPS = "drops"  # a PERCPU_ARRAY of one u64: records lost to a full ringbuf
    STASH = "stash"  # an LRU_HASH pid_tgid -> entry time or entry record, one per fentry/fexit pair
    SCRATCH = "scratch"  # a PERCPU_ARRAY of one entry record, where an fentry builds what it stashes
    COUNTS = "counts"  # summary mode: a PERCPU_ARRAY of COUNTERS per counted function
    PATH = "path"  # call-path mode: a HASH pid_tgid -> the task's path state (PathLayout)
    PATH_ZERO = "path_zero"  # call-path mode: a one-entry ARRAY holding a zeroed path state to copy
    AGGREGATE = "aggregate"  # aggregation mode: a PERCPU_HASH key (AggregateLayout) -> u64 count
    AGGREGATE_DROPS = "aggregate_drops"  # a PERCPU_ARRAY of one value: calls and keys a full hash dropped
    AGGREGATE_OVERFLOW = "aggregate_overflow"  # a HASH of the keys a full hash dropped, to count them once
    TEXT = "text"  # the kernel text reader: an ARRAY of one TEXT_CHUNK, what the last read read
    GRAPH_ROOTS = "graph_roots"  # function-graph mode: an ARRAY of one u64, the tasks inside a root call


class Sharing(enum.Enum):
    """Which programs of a plan use one map of a role."""

    PLAN = "plan"  # all of them: the ring buffer, the drop counter, summary counters, call-path state, aggregates
    PAIR = "pair"  # one fentry/fexit pair (their Probe.stash_group): the stash, the entry's scratch record
    MULTI = "multi"  # the kprobe_multi programs of one MultiAttach.share (a glob's): stash and scratch
    PROGRAM = "program"  # this program alone (an iterator's scratch record)


@dataclass(frozen=True)
class MapSpec:
    """A map a generated program relies on: the code below patches its fd into ld_imm64s and
    its value size into the reads and writes, so it says here what it must be."""

    role: MapRole
    map_type: uapi.MapType
    key_size: int
    value_size: int
    max_entries: int
    sharing: Sharing
    group: int = 0  # the stash group, for Sharing.PAIR
    flags: int = 0
    name: str = ""  # at most BPF_OBJ_NAME_LEN - 1 characters


class CodegenError(ValueError):
    """A plan the generator cannot express (too many captures, a string too long...)."""


@dataclass(frozen=True)
class Program:
    """A generated program: instructions, where map fds go, and what it attaches to."""

    name: str  # at most BPF_OBJ_NAME_LEN - 1 characters
    insns: Tuple[Insn, ...]
    map_slots: Tuple[Tuple[int, MapRole], ...]  # (index of an ld_imm64, the map it loads)
    maps: Tuple[MapSpec, ...]  # one per role in map_slots: what each map must be
    prog_type: ProgType
    expected_attach_type: AttachType
    attach_btf_id: int
    module: str
    layout: RecordLayout
    sections: Tuple[Tuple[int, str], ...]  # (first instruction, template name), for listings
    # A kprobe program goes on a function by name (not by BTF id), as a kprobe or a kretprobe.
    kprobe_function: str = ""
    retprobe: bool = False
    # A kprobe_multi program goes on these functions by one link, with these cookies (see
    # templates.COOKIE_FIELDS): each names the branch that serves its function, and its numbers.
    multi_functions: Tuple[str, ...] = ()
    multi_cookies: Tuple[int, ...] = ()
    # A branch of a kprobe_multi program (generate(..., branch=True)) reads its function's numbers
    # from the cookie that program saves first: it is not loaded alone.
    branch: bool = False

    def bind_maps(self, fds: Mapping[MapRole, int]) -> List[Insn]:
        """The instructions with each map's fd in its ld_imm64 (BPF_PSEUDO_MAP_FD)."""
        out = list(self.insns)
        for index, role in self.map_slots:
            first = out[index]
            out[index] = Insn(first.code, first.dst, uapi.BPF_PSEUDO_MAP_FD, first.off, fds[role])
        return out


_ATTACH = {
    ProbeKind.FENTRY: AttachType.TRACE_FENTRY,
    ProbeKind.FEXIT: AttachType.TRACE_FEXIT,
    ProbeKind.TP_BTF: AttachType.TRACE_RAW_TP,
    ProbeKind.ITER: AttachType.TRACE_ITER,
    # A kprobe attached through a perf event takes no expected attach type.
    ProbeKind.KPROBE: AttachType.UNSPEC,
    ProbeKind.KRETPROBE: AttachType.UNSPEC,
}
_KPROBE_KINDS = (ProbeKind.KPROBE, ProbeKind.KRETPROBE)

# The jump that leaves when the test fails: the inverse of the operator, unsigned or signed.
_FAIL_JUMP = {
    (CompareOp.EQ, False): uapi.BPF_JNE,
    (CompareOp.EQ, True): uapi.BPF_JNE,
    (CompareOp.NE, False): uapi.BPF_JEQ,
    (CompareOp.NE, True): uapi.BPF_JEQ,
    (CompareOp.GT, False): uapi.BPF_JLE,
    (CompareOp.GT, True): uapi.BPF_JSLE,
    (CompareOp.GE, False): uapi.BPF_JLT,
    (CompareOp.GE, True): uapi.BPF_JSLT,
    (CompareOp.LT, False): uapi.BPF_JGE,
    (CompareOp.LT, True): uapi.BPF_JSGE,
    (CompareOp.LE, False): uapi.BPF_JGT,
    (CompareOp.LE, True): uapi.BPF_JSGT,
}
_SIZE_CODES = {1: uapi.BPF_B, 2: uapi.BPF_H, 4: uapi.BPF_W, 8: uapi.BPF_DW}
_READ_HELPERS = {
    (False, False): Helper.probe_read_kernel,
    (True, False): Helper.probe_read_kernel_str,
    (False, True): Helper.probe_read_user,
    (True, True): Helper.probe_read_user_str,
}


# Holes a map fd fills (map_slots), not emit's values.
_MAP_HOLES = frozenset(role.value for role in MapRole)


@dataclass
class _Jump:
    """An instruction whose `off` is a label, resolved once every label has a position."""

    insn: Insn
    label: str


class _Assembler:
    def __init__(self, cookie_forms: Optional[Mapping[str, tpl.Template]] = None) -> None:
        # A kprobe_multi branch: the forms of templates.BY_COOKIE (or BY_COOKIE_RETURN) it emits.
        self.cookie_forms = cookie_forms
        self.items: List[Union[Insn, _Jump]] = []
        self.labels: Dict[str, int] = {}
        self.map_slots: List[Tuple[int, MapRole]] = []
        self.sections: List[Tuple[int, str]] = []

    def label(self, name: str) -> None:
        assert name not in self.labels, f"label {name} placed twice"
        self.labels[name] = len(self.items)

    def emit(self, template: tpl.Template, **values: Union[int, str]) -> None:
        if self.cookie_forms is not None:
            template = self.cookie_forms.get(template.name, template)
        missing = set(template.hole_names).difference(values, _MAP_HOLES)
        assert not missing, f"{template.name}: holes left unfilled: {sorted(missing)}"
        self.sections.append((len(self.items), template.name))
        high_word: Optional[int] = None  # an ld_imm64's upper half, for the pair's second slot
        for t in template.insns:
            insn = t.insn
            if high_word is not None:
                insn = Insn(insn.code, insn.dst, insn.src, insn.off, _s32(high_word))
                high_word = None
            label: Optional[str] = None
            for hole in t.holes:
                if hole.field == "map":
                    self.map_slots.append((len(self.items), MapRole(hole.name)))
                    continue
                value = values[hole.name]
                if hole.field == "off" and isinstance(value, str):
                    label = value
                    continue
                assert isinstance(value, int), f"{template.name}: hole {hole.name} wants a number, got {value!r}"
                if hole.field == "imm64":
                    value &= (1 << 64) - 1
                    high_word = value >> 32
                insn = _patch(insn, hole, value)
            self.items.append(insn if label is None else _Jump(insn, label))

    def append(self, program: "Program") -> None:
        """A whole generated program's instructions, its map slots and sections moved along with
        them: its own jumps are relative and stay as they are."""
        start = len(self.items)
        self.items.extend(program.insns)
        self.map_slots.extend((start + index, role) for index, role in program.map_slots)
        self.sections.extend((start + first, name) for first, name in program.sections)

    def jumps_to(self, label: str) -> bool:
        return any(isinstance(item, _Jump) and item.label == label for item in self.items)

    def assemble(self) -> Tuple[Insn, ...]:
        out = []
        for pos, item in enumerate(self.items):
            if isinstance(item, _Jump):
                target = self.labels[item.label]
                if not -(1 << 15) <= target - pos - 1 < 1 << 15:
                    raise CodegenError(f"a jump of {target - pos - 1} instructions: more than a jump's 16 bits reach")
                item = Insn(item.insn.code, item.insn.dst, item.insn.src, target - pos - 1, item.insn.imm)
            out.append(item)
        return Insns(out)


def _patch(insn: Insn, hole: tpl.Hole, value: int) -> Insn:
    if hole.field == "off":
        return Insn(insn.code, insn.dst, insn.src, value, insn.imm)
    if hole.field in ("imm", "imm64"):
        return Insn(insn.code, insn.dst, insn.src, insn.off, _s32(value))
    if hole.field == "code":
        if hole.name == "size":  # a width in bytes, into the BPF_SIZE bits
            return Insn((insn.code & ~0x18) | _SIZE_CODES[value], insn.dst, insn.src, insn.off, insn.imm)
        return Insn((insn.code & 0x0F) | value, insn.dst, insn.src, insn.off, insn.imm)  # BPF_OP bits
    raise AssertionError(f"unknown hole field {hole.field}")


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


# ---- the program ------------------------------------------------------------------------------


def generate_all(plan: Plan) -> Tuple[Program, ...]:
    """Every probe's program, as ksnoop loads them: the probes of a kprobe_multi attachment as
    branches (generate(..., branch=True)), the rest alone. A glob's functions whose branches can
    only come out the same (_branch_shape) are generated once: hundreds of functions, each
    costing the generator's templates and the comparisons that find their branches the same."""
    programs: List[Program] = []
    made: Dict[Tuple[object, ...], Program] = {}
    for index, probe in enumerate(plan.probes):
        if plan.multi_of(index) is None:
            programs.append(generate(plan, index))
            continue
        shape = _branch_shape(plan, index)
        first = made.get(shape)
        if first is None:
            made[shape] = first = generate(plan, index, branch=True)
            programs.append(first)
        else:
            programs.append(replace(first, name=_program_name(probe), kprobe_function=probe.target))
    return tuple(programs)


def _branch_shape(plan: Plan, index: int) -> Tuple[object, ...]:
    """What a branch's program is made from besides the plan's own settings: the probe and its
    partner's (for a return's stashed entry record) but for the names and the numbers a branch
    takes from the cookie, and the maps of its glob."""
    multi = plan.multi_of(index)
    partner = plan.partner(index)
    return (
        multi.share if multi is not None else -1,
        _unnamed(plan.probes[index]),
        _unnamed(plan.probes[partner]) if partner is not None else None,
    )


def _unnamed(probe: Probe) -> Probe:
    count = replace(probe.count, key=0) if probe.count is not None else None
    aggregate = replace(probe.aggregate, key=0) if probe.aggregate is not None else None
    return replace(probe, target="", attach_btf_id=0, stash_group=0, count=count, aggregate=aggregate)


def generate(plan: Plan, probe_index: int, branch: bool = False) -> Program:
    """The BPF program for plan.probes[probe_index]; CodegenError if the plan cannot be expressed.
    With `branch`, its form as a branch of its kprobe_multi program (see generate_multi)."""
    probe = plan.probes[probe_index]
    if branch and plan.multi_of(probe_index) is None:
        raise CodegenError(f"{probe.target}: not one of a kprobe_multi program's functions")
    if probe.kind is ProbeKind.ITER:
        return _iter_program(plan, probe_index)
    if len(probe.captures) > MAX_CAPTURES:
        raise CodegenError(f"{probe.target}: {len(probe.captures)} values to capture; at most {MAX_CAPTURES}")
    if not 0 <= probe.kstack_depth <= MAX_KSTACK_DEPTH:
        raise CodegenError(f"{probe.target}: a kernel stack of {probe.kstack_depth} frames; at most {MAX_KSTACK_DEPTH}")
    layout = RecordLayout.of(probe, plan.with_comm)
    if probe.path is not None or probe.forgets_path:
        return _program(_path_program(plan, probe_index, layout), plan, probe_index, layout)
    forms = (tpl.BY_COOKIE_RETURN if probe.kind.is_return else tpl.BY_COOKIE) if branch else None
    if probe.graph is not None:
        return _program(_graph_program(plan, probe_index, layout, forms), plan, probe_index, layout)
    fexit_stash = probe.kind.is_return and probe.stash is not Stash.NONE
    asm = _Assembler(cookie_forms=forms)
    asm.emit(tpl.PROLOGUE)
    if fexit_stash:
        if probe.stash is Stash.TIME:
            asm.emit(
                tpl.STASH_TAKE, stash_group=probe.stash_group
            )  # first, so the entry time is used up whichever way out
        else:
            asm.emit(tpl.STASH_LOOKUP, stash_group=probe.stash_group)  # first, so every way out can delete the entry
        if probe.requires_entry:
            asm.emit(tpl.REQUIRE_ENTRY, out="out")
        if probe.min_duration_ns:  # before the filters and tests: most calls are quick
            asm.emit(tpl.ELAPSED)
            asm.emit(tpl.SKIP_IF_QUICKER, min_duration=probe.min_duration_ns, out="out")
    _emit_filters(asm, plan)
    _emit_tests(asm, probe)
    if probe.count is not None:
        _emit_count(asm, probe, probe.count)
    elif probe.aggregate is not None:
        _emit_aggregate(asm, plan, probe, probe.aggregate)
    elif probe.kind.is_entry and not probe.emits:
        asm.emit(tpl.STASH_TIME_ONLY, stash_group=probe.stash_group)
        asm.emit(tpl.STASH_PUT)
    else:
        if fexit_stash and probe.stash is Stash.RECORD:
            asm.emit(tpl.EMIT_STASHED, size=plan.entry_layout(probe_index).size, dropped="dropped")
        holds_record = probe.kind.is_entry and probe.stash is Stash.RECORD
        if holds_record:
            asm.emit(tpl.SCRATCH_RECORD, out="out")
        else:
            asm.emit(tpl.RESERVE, size=layout.size, dropped="dropped")
        _emit_record_body(asm, plan, probe, probe_index, layout, entry_ts=fexit_stash)
        if holds_record:
            asm.emit(tpl.STASH_RECORD, stash_group=probe.stash_group)
        else:
            if probe.kind.is_entry and probe.stash is Stash.TIME:
                asm.emit(tpl.STASH_TIME, stash_group=probe.stash_group)
                asm.emit(tpl.STASH_PUT)
            _emit_submit(asm, plan, layout)
    asm.label("out")
    if fexit_stash and probe.stash is Stash.RECORD:
        asm.emit(tpl.STASH_DELETE)
    asm.emit(tpl.EXIT)
    _place_dropped(asm, "out")
    return _program(asm, plan, probe_index, layout)


def generate_multi(
    plan: Plan, multi_index: int, only: Optional[Sequence[int]] = None, programs: Optional[Sequence[Program]] = None
) -> Program:
    """The one program of plan.multi[multi_index] (or of `only` those of its probes).

    Each probe's program is generated as a branch (generate(..., branch=True), or `programs[i]`,
    generated so already), which takes the numbers naming its function from the link's cookie
    for the function that fired: the functions whose branches are then the same instructions
    (a glob's functions with the same captures and tests) share one. The cookie also holds the
    number of the branch, chosen by a binary search of compare-and-jumps. Nothing is looked up
    at run time, and the verifier checks each distinct branch once, not once per function."""
    multi = plan.multi[multi_index]
    probes = list(multi.probes if only is None else only)
    if not probes or not set(probes) <= set(multi.probes):
        raise CodegenError(f"{probes}: not probes of {multi}")
    returns = plan.probes[probes[0]].kind.is_return
    side = _Side(plan, probes, programs)
    asm = _Assembler()
    asm.emit(tpl.COOKIE_SAVE)
    asm.emit(tpl.RETURN_BRANCH if returns else tpl.ENTRY_BRANCH)
    side.emit(asm, "branch")
    entries = [plan.partner_of(i) for i in probes] if returns else probes
    cookies = [
        _cookie(
            plan,
            entry,
            entry_branch=0 if returns else side.numbers[n],
            return_branch=side.numbers[n] if returns else 0,
        )
        for n, entry in enumerate(entries)
    ]
    return _multi_program(plan, asm, side.branches, probes, cookies, AttachType.TRACE_KPROBE_MULTI, returns)


def generate_session(
    plan: Plan,
    entries: Sequence[int],
    is_return_id: int,
    programs: Optional[Sequence[Program]] = None,
) -> Program:
    """One kprobe session program (v6.10) for the entry probes `entries` of a glob's kprobe_multi
    and their return probes: run at each function's entry and again at its return, it asks the
    kfunc bpf_session_is_return (`is_return_id`, its BTF id in vmlinux) which, then dispatches on
    that side's branch number in the cookie as generate_multi does. One link where there were two."""
    entries = list(entries)
    returns = [plan.partner(i) for i in entries]
    if not entries or any(r is None or not plan.probes[r].kind.is_return for r in returns):
        raise CodegenError(f"{entries}: a kprobe session wants entry probes that each have a return probe")
    for group in (entries, returns):
        multis = {plan.multi_of(i) for i in group}  # type: ignore[arg-type]
        if None in multis or len({m.share for m in multis if m is not None}) != 1:
            raise CodegenError(f"{group}: not the probes of one glob's kprobe_multi side")
    entry_side = _Side(plan, entries, programs)
    return_side = _Side(plan, [r for r in returns if r is not None], programs)
    asm = _Assembler()
    asm.emit(tpl.COOKIE_SAVE)
    asm.emit(tpl.SESSION_RETURNING, is_return=is_return_id, target="returning")
    asm.emit(tpl.ENTRY_BRANCH)
    entry_side.emit(asm, "entry")
    asm.label("returning")
    asm.emit(tpl.RETURN_BRANCH)
    return_side.emit(asm, "return")
    cookies = [
        _cookie(plan, e, entry_branch=entry_side.numbers[n], return_branch=return_side.numbers[n])
        for n, e in enumerate(entries)
    ]
    branches = entry_side.branches + return_side.branches
    return _multi_program(plan, asm, branches, entries, cookies, AttachType.TRACE_KPROBE_SESSION, False)


class _Side:
    """The distinct branches of one side's probes, and each probe's branch number."""

    def __init__(self, plan: Plan, probes: Sequence[int], programs: Optional[Sequence[Program]]) -> None:
        self.branches: List[Program] = []
        self.numbers: List[int] = []
        seen: Dict[Tuple[Insn, ...], int] = {}
        for index in probes:
            program = generate(plan, index, branch=True) if programs is None else programs[index]
            if not program.branch:
                raise CodegenError(f"{plan.probes[index].target}: its program was not generated as a branch")
            number = seen.setdefault(program.insns, len(seen))
            if number > tpl.COOKIE_BRANCH_MAX:
                raise CodegenError(
                    f"{plan.probes[index].target}: more than {tpl.COOKIE_BRANCH_MAX + 1} distinct branches "
                    "in one kprobe_multi program"
                )
            if number == len(self.branches):
                self.branches.append(program)
            self.numbers.append(number)

    def emit(self, asm: _Assembler, prefix: str) -> None:
        """The dispatch on the branch number in r0, then the branches."""
        if len(self.branches) > 1:
            _emit_dispatch(asm, prefix, 0, len(self.branches))
        for n, branch in enumerate(self.branches):
            asm.label(f"{prefix}{n}")
            asm.append(branch)


def _multi_program(
    plan: Plan,
    asm: _Assembler,
    branches: Sequence[Program],
    probes: Sequence[int],
    cookies: Sequence[int],
    attach_type: AttachType,
    retprobe: bool,
) -> Program:
    maps: Dict[MapRole, MapSpec] = {}
    for branch in branches:
        for spec in branch.maps:
            if maps.setdefault(spec.role, spec) != spec:
                raise CodegenError(f"the branches of one kprobe_multi program disagree on its {spec.role.value} map")
    kind = "session" if attach_type is AttachType.TRACE_KPROBE_SESSION else "ret" if retprobe else "entry"
    return Program(
        name=f"ksnoop_multi_{kind}"[: uapi.BPF_OBJ_NAME_LEN - 1],
        insns=asm.assemble(),
        map_slots=tuple(asm.map_slots),
        maps=tuple(maps.values()),
        prog_type=ProgType.KPROBE,
        expected_attach_type=attach_type,
        attach_btf_id=0,
        module="vmlinux",
        layout=branches[0].layout,
        sections=tuple(asm.sections),
        retprobe=retprobe,
        multi_functions=tuple(plan.probes[i].target for i in probes),
        multi_cookies=tuple(cookies),
    )


def _cookie(plan: Plan, entry: int, *, entry_branch: int, return_branch: int) -> int:
    """The cookie of the function whose entry probe is plan.probes[entry] (see templates.COOKIE_FIELDS)."""
    probe = plan.probes[entry]
    partner = plan.partner(entry)
    numbers = {"probe": entry, "return_probe": partner if partner is not None else 0}
    sides = [probe] if partner is None else [probe, plan.probes[partner]]
    counted = {p.count.key for p in sides if p.count is not None}
    counted |= {p.aggregate.key for p in sides if p.aggregate is not None}
    stashed = {p.stash_group for p in sides if p.stash is not Stash.NONE}
    if len(counted | stashed) > 1:
        raise CodegenError(f"{probe.target}: its counters' key and its stash group differ; a cookie holds one")
    numbers["key"] = next(iter(counted | stashed), 0)
    cookie = entry_branch << tpl.COOKIE_ENTRY_BRANCH_SHIFT | return_branch << tpl.COOKIE_RETURN_BRANCH_SHIFT
    for name, value in numbers.items():
        if not 0 <= value <= tpl.COOKIE_FIELD_MAX:
            raise CodegenError(
                f"{probe.target}: its {name} number {value} is more than a kprobe_multi cookie's "
                f"{tpl.COOKIE_FIELD_MAX} (trace fewer functions)"
            )
        cookie |= value << tpl.COOKIE_FIELDS[name]
    return cookie


def _emit_dispatch(asm: _Assembler, prefix: str, low: int, high: int) -> None:
    # Branches low..high-1: halve the range until one is left, then jump to it.
    if high - low == 1:
        asm.emit(tpl.GOTO, target=f"{prefix}{low}")
        return
    middle = (low + high) // 2
    asm.emit(tpl.BRANCH_AT_LEAST, branch=middle, target=f"{prefix}_from{middle}")
    _emit_dispatch(asm, prefix, low, middle)
    asm.label(f"{prefix}_from{middle}")
    _emit_dispatch(asm, prefix, middle, high)


def _place_dropped(asm: _Assembler, then: str) -> None:
    if asm.jumps_to("dropped"):  # the verifier refuses code nothing reaches
        asm.label("dropped")
        asm.emit(tpl.COUNT_DROP)
        asm.emit(tpl.GOTO, target=then)


def _program_name(probe: Probe) -> str:
    name = "ksnoop_" + "".join(c if c.isalnum() or c == "_" else "_" for c in probe.target)
    return name[: uapi.BPF_OBJ_NAME_LEN - 1]


def _program(asm: _Assembler, plan: Plan, probe_index: int, layout: RecordLayout) -> Program:
    probe = plan.probes[probe_index]
    roles = list(dict.fromkeys(role for _, role in asm.map_slots))
    return Program(
        name=_program_name(probe),
        insns=asm.assemble(),
        map_slots=tuple(asm.map_slots),
        maps=tuple(_map_spec(plan, probe_index, layout, role) for role in roles),
        prog_type=ProgType.KPROBE if probe.kind in _KPROBE_KINDS else ProgType.TRACING,
        expected_attach_type=_ATTACH[probe.kind],
        # A kprobe is attached by the function's name, not its BTF id.
        attach_btf_id=0 if probe.kind in _KPROBE_KINDS else probe.attach_btf_id,
        module=probe.module,
        layout=layout,
        sections=tuple(asm.sections),
        kprobe_function=probe.target if probe.kind in _KPROBE_KINDS else "",
        retprobe=probe.kind is ProbeKind.KRETPROBE,
        branch=asm.cookie_forms is not None,
    )


def _map_spec(plan: Plan, probe_index: int, layout: RecordLayout, role: MapRole) -> MapSpec:
    """What the map of `role` must be for this probe's program, as the templates use it."""
    probe = plan.probes[probe_index]
    if role is MapRole.EVENTS:
        return MapSpec(role, uapi.MapType.RINGBUF, 0, 0, plan.ringbuf_size, Sharing.PLAN, name="ksnoop_events")
    if role is MapRole.DROPS:  # one u64 a CPU: records lost to a full ring buffer
        return MapSpec(role, uapi.MapType.PERCPU_ARRAY, 4, 8, 1, Sharing.PLAN, name="ksnoop_drops")
    if role is MapRole.COUNTS:
        slots = plan.counter_slots
        return MapSpec(role, uapi.MapType.PERCPU_ARRAY, 4, COUNTERS_SIZE, slots, Sharing.PLAN, name="ksnoop_counts")
    if role is MapRole.AGGREGATE:  # preallocated: a full hash fails an insert rather than allocate
        key_size = plan.aggregate_layout.size
        entries = plan.aggregate_entries
        return MapSpec(role, uapi.MapType.PERCPU_HASH, key_size, 8, entries, Sharing.PLAN, name="ksnoop_aggr")
    if role is MapRole.AGGREGATE_DROPS:
        return MapSpec(
            role, uapi.MapType.PERCPU_ARRAY, 4, AGGREGATE_DROPS_SIZE, 1, Sharing.PLAN, name="ksnoop_aggr_drp"
        )
    if role is MapRole.AGGREGATE_OVERFLOW:  # allocated as keys are dropped: most runs drop none
        key_size = plan.aggregate_layout.size
        entries = plan.aggregate_entries + 1  # one more than the hash: when full, more were dropped
        return MapSpec(
            role,
            uapi.MapType.HASH,
            key_size,
            8,
            entries,
            Sharing.PLAN,
            flags=uapi.BPF_F_NO_PREALLOC,
            name="ksnoop_aggr_ovf",
        )
    if role is MapRole.GRAPH_ROOTS:
        return MapSpec(role, uapi.MapType.ARRAY, 4, 8, 1, Sharing.PLAN, name="ksnoop_graph_on")
    if role in (MapRole.PATH, MapRole.PATH_ZERO):
        size = GRAPH_STATE_SIZE if plan.is_graph else PathLayout.of(plan).size
        if role is MapRole.PATH:  # allocated as tasks enter a path, not all up front
            return MapSpec(
                role,
                uapi.MapType.HASH,
                8,
                size,
                PATH_TASKS,
                Sharing.PLAN,
                flags=uapi.BPF_F_NO_PREALLOC,
                name="ksnoop_path",
            )
        return MapSpec(role, uapi.MapType.ARRAY, 4, size, 1, Sharing.PLAN, name="ksnoop_path0")
    if role is MapRole.SCRATCH and probe.kind is ProbeKind.ITER:  # the record, built before seq_write
        return MapSpec(role, uapi.MapType.PERCPU_ARRAY, 4, layout.size, 1, Sharing.PROGRAM, name="ksnoop_scratch")
    if role in (MapRole.STASH, MapRole.SCRATCH):
        # A pair's: the stash (entry time or record, per task) and the scratch record an entry
        # builds before it stashes it. The branches of a kprobe_multi share use one map of each,
        # as large as its largest value: the stash key (thread id and stash group) keeps the
        # functions apart, and each branch reads and writes its own size.
        multi = plan.multi_of(probe_index)
        sharing, group = (Sharing.PAIR, probe.stash_group) if multi is None else (Sharing.MULTI, multi.share)
        if role is MapRole.SCRATCH:
            size = plan.pair_value_size(probe_index, scratch=True)
            return MapSpec(role, uapi.MapType.PERCPU_ARRAY, 4, size, 1, sharing, group=group, name="ksnoop_scratch")
        size = plan.pair_value_size(probe_index, scratch=False)
        return MapSpec(role, uapi.MapType.LRU_HASH, 8, size, STASH_ENTRIES, sharing, group=group, name="ksnoop_stash")
    raise AssertionError(f"no map spec for {role}")


# ---- call-path mode ---------------------------------------------------------------------------


def _path_program(plan: Plan, probe_index: int, layout: RecordLayout) -> _Assembler:
    """A call-path probe. The fentry of level k goes on only when the task's path state shows levels
    0..k-1 open; it writes its record into the state's slot k and pushes. The fexit pops; the
    innermost's emits the entries not yet shown, its own entry and its return record; an outer
    level's emits its return record if its entry was shown. Level 0 creates the state and its
    return deletes it; a program on sched_process_exit deletes what a task dying inside a path left."""
    probe = plan.probes[probe_index]
    asm = _Assembler()
    asm.emit(tpl.PROLOGUE)
    if probe.forgets_path:
        asm.emit(tpl.PATH_KEY)
        asm.emit(tpl.PATH_FORGET)
        if plan.is_graph:  # a task dying inside a root call: one task fewer inside one
            asm.emit(tpl.JUMP_IF_NONZERO_R0, target="out")
            asm.emit(tpl.GRAPH_COUNT_ROOTS, delta=-1)
            asm.label("out")
        asm.emit(tpl.EXIT)
        return asm
    step = probe.path
    assert step is not None
    if not 0 <= step.level < step.length <= MAX_PATH_LENGTH:
        raise CodegenError(
            f"{probe.target}: level {step.level} of a call path of {step.length} functions; "
            f"at most {MAX_PATH_LENGTH} functions"
        )
    try:
        state = PathLayout.of(plan)
    except ValueError as error:
        raise CodegenError(f"{probe.target}: {error}") from None
    if len(state.slot_offsets) != step.length:
        raise CodegenError(
            f"{probe.target}: the plan's call path has {len(state.slot_offsets)} levels, not {step.length}"
        )
    if probe.kind.is_entry:
        _emit_path_entry(asm, plan, probe, probe_index, layout, state)
        asm.label("out")
        asm.emit(tpl.EXIT)
        _place_dropped(asm, "out")
    elif probe.kind.is_return:
        _emit_path_return(asm, plan, probe, probe_index, layout, state)
        asm.label("popped")
        if step.level == 0:  # the outermost returned: the path is over for this task
            asm.emit(tpl.PATH_FORGET)
        asm.label("out")
        asm.emit(tpl.EXIT)
        _place_dropped(asm, "popped")
    else:
        raise CodegenError(f"{probe.target}: a call path is made of fentry and fexit probes")
    return asm


# ---- function-graph mode ----------------------------------------------------------------------


def _graph_program(
    plan: Plan, probe_index: int, layout: RecordLayout, forms: Optional[Mapping[str, tpl.Template]]
) -> _Assembler:
    """A function-graph probe. The root's entry, when its task has no state and its filters and
    tests pass, makes the state (templates.GRAPH_START) and emits; inside its own call it is one
    more call. Every other entry and return exits at once while no task is inside a root call
    (GRAPH_NO_ROOT_CALLS: an array the verifier inlines), else after one lookup when its own task
    is not: otherwise GRAPH_ENTER or GRAPH_RETURN says whether it is recorded. The root
    call's own return tests its return value and duration (since the state's start), emits, and
    deletes the state whatever the tests say: a root call that fails them has no return record,
    and the reader drops its tree when the task's next root call begins (its entry record's
    entry time set) or the trace ends."""
    probe = plan.probes[probe_index]
    step = probe.graph
    assert step is not None
    asm = _Assembler(cookie_forms=forms)
    asm.emit(tpl.PROLOGUE)
    root_entry = probe.kind.is_entry and step.root
    # A callee's entry outside any root call, as a kprobe_multi branch, returns 1: in a kprobe
    # session that spares its return side (a plain kprobe_multi ignores the value).
    outside = "outside" if probe.kind.is_entry and not step.root and forms is not None else "out"
    if not step.root:  # first, before the task's own lookup: most calls are outside every root call
        asm.emit(tpl.GRAPH_NO_ROOT_CALLS, target=outside)
    asm.emit(tpl.PATH_LOOKUP)
    if root_entry:
        # A root call's entry record carries its start (the record's entry time), which tells the
        # reader a new tree begins; the root's entries inside its own call carry 0.
        asm.emit(tpl.JUMP_IF_STATE, target="again")
        _emit_filters(asm, plan)
        _emit_tests(asm, probe)
        asm.emit(tpl.PATH_CREATE, out="out", dropped="dropped")
        asm.emit(tpl.GRAPH_START)
        asm.emit(tpl.GRAPH_COUNT_ROOTS, delta=1)
        asm.emit(tpl.GRAPH_ENTRY_TS)
        asm.emit(tpl.GOTO, target="emit")
        asm.label("again")
        asm.emit(tpl.GRAPH_ROOT_AGAIN)
    else:
        asm.emit(tpl.JUMP_IF_NO_STATE, target=outside)
        if step.root:
            asm.emit(tpl.GRAPH_ROOT_RETURN, target="root_returns")
    if probe.kind.is_entry:
        asm.emit(tpl.GRAPH_ENTER, max_nodes=plan.graph_max_nodes, out="out")
        if root_entry:
            asm.emit(tpl.ZERO_STACK_WORD, stack_off=tpl.STACK_ENTRY_TS)
            asm.label("emit")
    else:
        asm.emit(tpl.GRAPH_RETURN, out="out")
    asm.emit(tpl.RESERVE, size=layout.size, dropped="dropped")
    _emit_record_body(asm, plan, probe, probe_index, layout, entry_ts=root_entry)
    _emit_submit(asm, plan, layout)
    if step.root and probe.kind.is_return:
        asm.emit(tpl.GOTO, target="out")
        asm.label("root_returns")
        _emit_tests(asm, probe, fail="forget")
        asm.emit(tpl.GRAPH_ENTRY_TS)
        if probe.min_duration_ns:
            asm.emit(tpl.ELAPSED)
            asm.emit(tpl.SKIP_IF_QUICKER, min_duration=probe.min_duration_ns, out="forget")
        asm.emit(tpl.RESERVE, size=layout.size, dropped="dropped_forget")
        # No entry time in the record: the reader times every call of the tree alike, from its
        # entry and return records.
        _emit_record_body(asm, plan, probe, probe_index, layout)
        _emit_submit(asm, plan, layout)
        asm.label("forget")
        asm.emit(tpl.PATH_FORGET)
        asm.emit(tpl.GRAPH_COUNT_ROOTS, delta=-1)
        if asm.jumps_to("dropped_forget"):
            asm.emit(tpl.GOTO, target="out")
            asm.label("dropped_forget")
            asm.emit(tpl.COUNT_DROP)
            asm.emit(tpl.GOTO, target="forget")
    asm.label("out")
    asm.emit(tpl.EXIT)
    if asm.jumps_to("outside"):
        asm.label("outside")
        asm.emit(tpl.RETURN_ONE)
    _place_dropped(asm, "out")
    return asm


def _emit_filters(asm: _Assembler, plan: Plan) -> None:
    if plan.filters.pid is not None:
        asm.emit(tpl.PID_FILTER, pid=plan.filters.pid, out="out")
    if plan.filters.uid is not None:
        asm.emit(tpl.UID_FILTER, uid=plan.filters.uid, out="out")
    if plan.filters.cgroup is not None:
        cgroup = plan.filters.cgroup
        asm.emit(tpl.CGROUP_FILTER, level=cgroup.level, cgroup_id=cgroup.id, out="out")
    if plan.filters.comm is not None:
        lo, hi = _words(plan.filters.comm.ljust(COMM_SIZE, b"\0")[:COMM_SIZE])
        asm.emit(tpl.COMM_FILTER, comm_lo=lo, comm_hi=hi, out="out")


def _emit_path_entry(
    asm: _Assembler, plan: Plan, probe: Probe, probe_index: int, layout: RecordLayout, state: PathLayout
) -> None:
    assert probe.path is not None
    level = probe.path.level
    _emit_filters(asm, plan)
    asm.emit(tpl.PATH_LOOKUP)
    # Level 0 makes the state, but only once its tests pass: most calls fail them.
    asm.emit(tpl.JUMP_IF_NO_STATE, target="tests" if level == 0 else "out")
    asm.emit(
        tpl.PATH_ENTER_CHECK,
        depth=level,
        depth_nested=level + 1,
        nested_offset=PathLayout.nested_offset(level),
        out="out",
    )
    asm.label("tests")
    _emit_tests(asm, probe)
    if level == 0:
        asm.emit(tpl.JUMP_IF_STATE, target="have_state")
        asm.emit(tpl.PATH_CREATE, out="out", dropped="dropped")
        asm.label("have_state")
    slot = state.slot_offsets[level]
    asm.emit(tpl.PATH_SLOT, slot_offset=slot)
    _emit_record_body(asm, plan, probe, probe_index, layout)
    asm.emit(tpl.PATH_PUSH, minus_slot_offset=-slot, depth=level + 1)


def _emit_path_return(
    asm: _Assembler, plan: Plan, probe: Probe, probe_index: int, layout: RecordLayout, state: PathLayout
) -> None:
    assert probe.path is not None
    level, innermost = probe.path.level, probe.path.level == probe.path.length - 1
    asm.emit(tpl.PATH_LOOKUP)
    asm.emit(tpl.JUMP_IF_NO_STATE, target="out")
    asm.emit(tpl.PATH_RETURN_CHECK, depth=level + 1, nested_offset=PathLayout.nested_offset(level), out="out")
    asm.emit(tpl.PATH_POP, depth=level)
    if not innermost:
        asm.emit(tpl.PATH_REQUIRE_SHOWN, bit=1 << level, target="popped")
    _emit_tests(asm, probe, fail="popped")
    if innermost and probe.min_duration_ns:  # the path's total so far: since its outermost entry
        asm.emit(tpl.PATH_ENTRY_TS, slot_offset=state.slot_offsets[0])
        asm.emit(tpl.ELAPSED)
        asm.emit(tpl.SKIP_IF_QUICKER, min_duration=probe.min_duration_ns, out="popped")
    if innermost:
        for outer in range(level):
            asm.emit(tpl.PATH_SKIP_SHOWN, bit=1 << outer, target=f"shown{outer}")
            asm.emit(
                tpl.PATH_EMIT_ENTRY,
                slot_offset=state.slot_offsets[outer],
                size=state.slot_sizes[outer],
                dropped="dropped",
            )
            asm.label(f"shown{outer}")
        asm.emit(
            tpl.PATH_EMIT_ENTRY, slot_offset=state.slot_offsets[level], size=state.slot_sizes[level], dropped="dropped"
        )
    asm.emit(tpl.PATH_ENTRY_TS, slot_offset=state.slot_offsets[level])
    asm.emit(tpl.RESERVE, size=layout.size, dropped="dropped")
    _emit_record_body(asm, plan, probe, probe_index, layout, entry_ts=True)
    _emit_submit(asm, plan, layout)


def _emit_submit(asm: _Assembler, plan: Plan, layout: RecordLayout) -> None:
    # The backlog counts this record (and its 8-byte header) already: it crossed the
    # threshold if it now lies in [wakeup, wakeup + record).
    wakeup = min(plan.wakeup_bytes, 0x7FFFFFFF - layout.size - 8)
    asm.emit(tpl.SUBMIT, wakeup=wakeup, wakeup_end=wakeup + ((layout.size + 8 + 7) & ~7))


def _emit_record_body(
    asm: _Assembler, plan: Plan, probe: Probe, probe_index: int, layout: RecordLayout, entry_ts: bool = False
) -> None:
    """The header (with STACK_ENTRY_TS as the entry time if `entry_ts`), the comm, every capture and
    the kernel stack, into the record at r7."""
    asm.emit(tpl.HEADER, probe=probe_index)
    if entry_ts:
        asm.emit(tpl.SET_ENTRY_TS)
    if plan.with_comm:
        asm.emit(tpl.HEADER_COMM, rec_offset=COMM_OFFSET)
    for n, (capture, rec_offset) in enumerate(zip(probe.captures, layout.capture_offsets)):
        _emit_capture(asm, probe, capture, rec_offset, n)
    if layout.kstack_depth:
        asm.emit(
            tpl.CAPTURE_STACK,
            rec_offset=layout.kstack_frames_offset,
            size=8 * layout.kstack_depth,
            len_offset=layout.kstack_offset,
        )


def _emit_count(asm: _Assembler, probe: Probe, count: Count) -> None:
    """Summary mode: calls, errors and the latency bucket added to the function's counters."""
    if count.latency and not (probe.kind.is_return and probe.stash is Stash.TIME and probe.requires_entry):
        raise CodegenError(f"{probe.target}: latency needs an fexit that requires its entry's stashed time")
    asm.emit(tpl.COUNTERS, key=count.key, out="out")
    asm.emit(tpl.COUNT_ONE, counter_offset=CALLS_OFFSET)
    if count.errors is not None:
        value = count.errors
        if value.in_memory or value.size not in _SIZE_CODES:
            raise CodegenError(f"{probe.target}: errors are counted on a return value in a register")
        asm.emit(tpl.LOAD_ARG, slot_offset=probe.context_offset(value.slot))
        if value.size < 8:  # sign-extend; the upper bits of a narrow value are not defined
            shift = 64 - 8 * value.size
            asm.emit(tpl.EXTRACT_BITS, left=shift, right=shift, shift_op=uapi.BPF_ARSH)
        asm.emit(tpl.SKIP_UNLESS_NEGATIVE, target="counted_error")
        asm.emit(tpl.COUNT_ONE, counter_offset=ERRORS_OFFSET)
        asm.label("counted_error")
    if count.latency:
        asm.emit(tpl.ELAPSED)
        asm.emit(tpl.ADD_DURATION)
        asm.emit(tpl.LOG2)
        asm.emit(tpl.COUNT_BUCKET)


def _emit_aggregate(asm: _Assembler, plan: Plan, probe: Probe, aggregate: Aggregate) -> None:
    """Aggregation mode: the key built on the stack (the function, each part, the bucket), then one
    added to its count; a full hash counts the call as dropped."""
    if aggregate.hist == DURATION and not (probe.kind.is_return and probe.stash is Stash.TIME):
        raise CodegenError(f"{probe.target}: a duration needs a return probe with its entry's stashed time")
    layout = plan.aggregate_layout
    asm.emit(tpl.AGGREGATE_KEY, key=aggregate.key)
    for offset in range(8, layout.size, 8):
        asm.emit(tpl.ZERO_STACK_WORD, stack_off=tpl.STACK_KEY + offset)
    for n, (part, offset) in enumerate(zip(aggregate.parts, layout.part_offsets)):
        if part is Builtin.COMM:
            asm.emit(tpl.HEADER_COMM, rec_offset=offset)
        elif part in (Builtin.PID, Builtin.TID):
            asm.emit(tpl.KEY_PID_TGID, shift=32 if part is Builtin.PID else 0, rec_offset=offset)
        elif part is Builtin.UID:
            asm.emit(tpl.KEY_UID, rec_offset=offset)
        elif part is Builtin.CPU:
            asm.emit(tpl.KEY_CPU, rec_offset=offset)
        elif part.bitfield is not None:  # its value, not the bits around it, tells keys apart
            _emit_load_number(asm, probe, part, False, f"fail{n}")
            asm.emit(tpl.STORE_REGISTER, size=8, rec_offset=offset)
            if asm.jumps_to(f"fail{n}"):  # the verifier refuses code nothing reaches
                asm.emit(tpl.GOTO, target=f"done{n}")
                asm.label(f"fail{n}")
                asm.emit(tpl.MARK_FAILED, bit=1 << n)
                asm.label(f"done{n}")
        else:
            _emit_capture(asm, probe, part, offset, n)
    if aggregate.hist is not None:
        if aggregate.hist == DURATION:
            asm.emit(tpl.ELAPSED)
        else:
            assert isinstance(aggregate.hist, Capture)
            _emit_load_number(asm, probe, aggregate.hist, aggregate.hist_signed, "hist_unreadable")
            if aggregate.hist_signed:
                asm.emit(tpl.HIST_IF_NEGATIVE, bucketed="bucketed")
        asm.emit(tpl.HIST_IF_ZERO, bucketed="bucketed")
        asm.emit(tpl.LOG2)
        asm.emit(tpl.HIST_ABOVE_ZERO)
        if asm.jumps_to("hist_unreadable"):
            asm.emit(tpl.GOTO, target="bucketed")
            asm.label("hist_unreadable")
            asm.emit(tpl.HIST_UNREADABLE_BUCKET)
        asm.label("bucketed")
        asm.emit(tpl.STORE_BUCKET)
    asm.emit(tpl.STORE_KEY_FAILED)
    asm.emit(tpl.AGGREGATE_ADD, out="out")
    asm.emit(tpl.AGGREGATE_INSERT, out="out", raced="raced")
    asm.emit(tpl.AGGREGATE_DROP, out="out")
    asm.emit(tpl.GOTO, target="out")
    asm.label("raced")
    asm.emit(tpl.AGGREGATE_ADD, out="out")


def _emit_locate(asm: _Assembler, probe: Probe, capture: Capture, fail: str) -> None:
    """r9 = the slot's value, then each hop's pointer followed; a NULL argument goes to `fail`."""
    slot_offset = probe.context_offset(capture.slot)
    # A kprobe's context is registers, plain scalars the verifier lets a program load whatever
    # their C type: only a BTF-typed context (fentry, tp_btf) has slots it will not type.
    if capture.opaque_slot and probe.kind not in _KPROBE_KINDS:
        asm.emit(tpl.COPY_ARG)
        asm.emit(tpl.FOLLOW_POINTER, offset=slot_offset, fail=fail)
    else:
        asm.emit(tpl.LOAD_ARG, slot_offset=slot_offset)
    if capture.in_memory:
        asm.emit(tpl.NULL_CHECK, fail=fail)
    for offset in capture.hops:
        asm.emit(tpl.FOLLOW_POINTER, offset=offset, fail=fail)


def _emit_tests(asm: _Assembler, probe: Probe, fail: str = "out") -> None:
    for n, test in enumerate(probe.tests):
        _emit_test(asm, probe, test.value, test.predicate, f"test{n}", fail)


def _emit_test(
    asm: _Assembler, probe: Probe, capture: Capture, predicate: Predicate, name: str, fail: str = "out"
) -> None:
    """Leave for `fail` unless the predicate holds; a value that cannot be read fails the test."""
    if isinstance(predicate.constant, bytes):
        _emit_locate(asm, probe, capture, fail)
        _emit_string_test(asm, capture, predicate, name, fail)
        return
    if capture.size not in _SIZE_CODES:
        raise CodegenError(f"{capture.label}: cannot compare a {capture.size}-byte value with a number")
    _emit_load_number(asm, probe, capture, predicate.signed, fail)
    constant = predicate.constant
    jmp_op = _FAIL_JUMP[(predicate.op, predicate.signed)]
    if -(1 << 31) <= constant < (1 << 31) and (predicate.signed or constant >= 0):
        asm.emit(tpl.COMPARE_IMM, jmp_op=jmp_op, constant=constant, out=fail)
    else:
        asm.emit(tpl.COMPARE_IMM64, jmp_op=jmp_op, constant=constant, out=fail)


def _emit_load_number(asm: _Assembler, probe: Probe, capture: Capture, signed: bool, fail: str) -> None:
    """r9 = the integer value of `capture` (a bitfield cut out, sign-extended if `signed`); a value
    that cannot be read goes to `fail`."""
    _emit_locate(asm, probe, capture, fail)
    size = capture.size
    if size not in _SIZE_CODES:
        raise CodegenError(f"{capture.label}: a {size}-byte value is no number")
    if capture.in_memory:
        asm.emit(tpl.READ_VALUE, size=size, offset=capture.offset, fail=fail)
    bits = 8 * size
    if capture.bitfield is not None:
        low_bit = capture.bitfield.bit_offset
        if sys.byteorder == "big":  # big-endian compilers number bitfields from the top
            low_bit = bits - capture.bitfield.bit_offset - capture.bitfield.bit_size
        left, right = 64 - low_bit - capture.bitfield.bit_size, 64 - capture.bitfield.bit_size
    else:
        left = right = 64 - bits  # an argument's upper bits are not defined: drop them
    if right:
        shift_op = uapi.BPF_ARSH if signed else uapi.BPF_RSH
        asm.emit(tpl.EXTRACT_BITS, left=left, right=right, shift_op=shift_op)


def _emit_string_test(asm: _Assembler, capture: Capture, predicate: Predicate, name: str, fail: str) -> None:
    assert isinstance(predicate.constant, bytes)
    if predicate.op not in (CompareOp.EQ, CompareOp.NE):
        raise CodegenError(f"{capture.label}: strings compare only with == and !=")
    if not capture.in_memory:
        raise CodegenError(f"{capture.label}: a string comparison needs a char array or char pointer")
    literal = predicate.constant + b"\0"
    if len(literal) > MAX_STRING_PREDICATE:
        raise CodegenError(
            f"{capture.label}: string of {len(literal) - 1} bytes; at most {MAX_STRING_PREDICATE - 1} compare"
        )
    # The _str helpers stop a byte short of the size and put a NUL there, so a char pointer is
    # read one byte past the literal's NUL: "loopback" must not come back as "lo". A char array
    # is read as it is, up to the literal's NUL: what lies after its own NUL is no part of it.
    read_size = len(literal) + 1 if capture.string else min(len(literal), capture.size)
    words = (read_size + 7) // 8
    for w in range(words):
        asm.emit(tpl.ZERO_STACK_WORD, stack_off=tpl.STACK_STRING + 8 * w)
    helper = _READ_HELPERS[(capture.string, capture.user_memory)]
    if _retries_as_user(capture):
        read = f"{name}_read"
        asm.emit(
            tpl.READ_STRING_TO_STACK, size=read_size, offset=capture.offset, helper=int(helper), fail=f"{name}_user"
        )
        asm.emit(tpl.GOTO, target=read)
        asm.label(f"{name}_user")
        asm.emit(
            tpl.READ_STRING_TO_STACK,
            size=read_size,
            offset=capture.offset,
            helper=int(Helper.probe_read_user_str),
            fail=fail,
        )
        asm.label(read)
    else:
        asm.emit(tpl.READ_STRING_TO_STACK, size=read_size, offset=capture.offset, helper=int(helper), fail=fail)
    expected = literal[:read_size].ljust(8 * words, b"\0")
    differ = fail if predicate.op is CompareOp.EQ else f"{name}_differs"
    for w, word in enumerate(_words(expected)):
        asm.emit(tpl.COMPARE_STACK_WORD, stack_off=tpl.STACK_STRING + 8 * w, constant=word, differ=differ)
    if predicate.op is CompareOp.NE:
        asm.emit(tpl.GOTO, target=fail)  # every word matched: equal, so != fails
        asm.label(differ)


def copies_from_registers(size: int) -> bool:
    """Can a value of `size` bytes held in the context's slots (not in memory) be captured: 1, 2, 4 or
    8 bytes of one slot, or a whole slot and 1, 2, 4 or 8 bytes of the next (a struct of up to 16
    bytes passed by value fills two argument registers, so two slots)."""
    return size in _SIZE_CODES or size - 8 in _SIZE_CODES


def _emit_capture(asm: _Assembler, probe: Probe, capture: Capture, rec_offset: int, n: int) -> None:
    fail, done = f"fail{n}", f"done{n}"
    _emit_locate(asm, probe, capture, fail)
    if not capture.in_memory:
        if not copies_from_registers(capture.size) or (capture.opaque_slot and capture.size > 8):
            two = " or two" if capture.size > 8 and not capture.opaque_slot else ""
            raise CodegenError(f"{capture.label}: a {capture.size}-byte value cannot come from one register{two}")
        asm.emit(tpl.STORE_REGISTER, size=min(capture.size, 8), rec_offset=rec_offset)
        if capture.size > 8:  # the rest is in the next slot, stored after the first
            asm.emit(tpl.LOAD_ARG, slot_offset=probe.context_offset(capture.slot + 1))
            asm.emit(tpl.STORE_REGISTER, size=capture.size - 8, rec_offset=rec_offset + 8)
        if not capture.hops and not (capture.opaque_slot and probe.kind not in _KPROBE_KINDS):
            return  # nothing could fail
    else:
        if capture.address:  # r9 is the struct's address: it goes first, its bytes after it
            if capture.offset:
                raise CodegenError(f"{capture.label}: an address capture reads from its pointer's target itself")
            asm.emit(tpl.STORE_REGISTER, size=8, rec_offset=rec_offset)
            rec_offset += 8
        retry_user = _retries_as_user(capture)
        helper = _READ_HELPERS[(capture.string, capture.user_memory)]
        asm.emit(
            tpl.COPY_TO_RECORD,
            rec_offset=rec_offset,
            size=capture.size,
            offset=capture.offset,
            helper=int(helper),
            fail=f"user{n}" if retry_user else fail,
        )
        if retry_user:
            asm.emit(tpl.GOTO, target=done)
            asm.label(f"user{n}")
            asm.emit(
                tpl.COPY_TO_RECORD,
                rec_offset=rec_offset,
                size=capture.size,
                offset=capture.offset,
                helper=int(Helper.probe_read_user_str),
                fail=fail,
            )
    asm.emit(tpl.GOTO, target=done)
    asm.label(fail)
    if n < 31:
        asm.emit(tpl.MARK_FAILED, bit=1 << n)
    else:
        asm.emit(tpl.MARK_FAILED_HIGH, bit=1 << n)
    asm.label(done)


def _retries_as_user(capture: Capture) -> bool:
    """A char pointer not known to be __user (kernels built without BTF type tags say nothing)
    is read as kernel memory first and, if that faults, as user memory: a syscall's path
    argument is a user pointer whatever its BTF says."""
    return capture.string and not capture.user_memory


def _words(data: bytes) -> List[int]:
    """8-byte chunks as the u64s a load from memory would give on this host."""
    return [int.from_bytes(data[k : k + 8], sys.byteorder) for k in range(0, len(data), 8)]


# ---- iterator programs (ksnoop dump) ----------------------------------------------------------


# The most kernel text one run of the reader takes: a page, more than most functions.
TEXT_CHUNK = 4096


def generate_text_reader() -> Program:
    """The kernel text reader: a raw tracepoint program that is never attached, run by
    BPF_PROG_TEST_RUN with (address, size) as its context (templates.TEXT_ADDRESS_ARG and
    TEXT_SIZE_ARG). It reads that many bytes of kernel memory (at most TEXT_CHUNK) into its map's
    value and returns bpf_probe_read_kernel's result, or -EINVAL for a size over TEXT_CHUNK."""
    asm = _Assembler()
    asm.emit(tpl.PROLOGUE)
    asm.emit(tpl.READ_KERNEL_TEXT, chunk=TEXT_CHUNK, out="out")
    asm.label("out")
    asm.emit(tpl.RETURN_EINVAL)
    spec = MapSpec(MapRole.TEXT, uapi.MapType.ARRAY, 4, TEXT_CHUNK, 1, Sharing.PLAN, name="ksnoop_text")
    return Program(
        name="ksnoop_text",
        insns=asm.assemble(),
        map_slots=tuple(asm.map_slots),
        maps=(spec,),
        prog_type=ProgType.RAW_TRACEPOINT,
        expected_attach_type=AttachType.UNSPEC,
        attach_btf_id=0,
        module="",
        layout=RecordLayout((), 0, False),
        sections=tuple(asm.sections),
    )


def _iter_program(plan: Plan, probe_index: int) -> Program:
    """An iterator program: run once per object, it writes one record with bpf_seq_write.

    The record is built in this CPU's scratch value (PERCPU_ARRAY `scratch`, one record), since an
    iterator has no ring buffer and a record may be larger than the stack; iterator programs run
    with migration disabled, so the value is the program's own while it runs. The kernel calls the
    program once more after the last object, with the object NULL (the "stop" call): the plan's
    first test is what skips that call (the object's slot != NULL), put there by the resolver,
    which knows which slot holds the object.
    """
    probe = plan.probes[probe_index]
    if len(probe.captures) > MAX_CAPTURES:
        raise CodegenError(f"{probe.target}: {len(probe.captures)} values to capture; at most {MAX_CAPTURES}")
    if plan.filters.pid is not None or plan.filters.comm is not None:
        raise CodegenError(f"{probe.target}: an iterator runs in the reader's task: --pid and --comm filter nothing")
    layout = RecordLayout.of(probe, plan.with_comm)
    asm = _Assembler()
    asm.emit(tpl.PROLOGUE)
    _emit_tests(asm, probe)
    asm.emit(tpl.SCRATCH_RECORD, out="out")
    _emit_record_body(asm, plan, probe, probe_index, layout)  # kstack_depth is 0: checked above
    asm.emit(tpl.SEQ_WRITE, size=layout.size)
    asm.label("out")
    asm.emit(tpl.EXIT)
    return _program(asm, plan, probe_index, layout)
