# SPDX-License-Identifier: GPL-2.0-only
"""kprobe_multi programs: one program for a glob's functions, whose branch for each is that
function's own kprobe program with its numbers (probe, key, stash group) read from the link's
cookie, which also chooses the branch; functions whose branches are the same share one. Run in
the test interpreter (tests/support/bpfvm.py) with every cookie: each must run its function's
branch, reading that function's arguments from pt_regs, and nothing else; entries and returns of
nested calls keep their stashed times apart in the one stash map they share."""

from __future__ import annotations

import struct

import pytest

from bpf.codegen import CodegenError, MapRole, Sharing, generate, generate_all, generate_multi, generate_session
from bpf.plan import HEADER, MultiAttach, PlanError, ProbeKind
from btf import BTF
from ksnoop.output.decode import build_decoder
from ksnoop.spec.language import parse_spec
from ksnoop.spec.multi import MULTI_MIN_FUNCTIONS, group_kprobes, split_multi
from ksnoop.spec.resolve import ResolvedTrace, resolve
from ksnoop.spec.targets import KernelBTF
from tests.support.bpfvm import VM
from tests.support.btfbuilder import BTFBuilder

X86_REGS = ["r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si", "di"]
FUNCTIONS = 11  # f00..f10, each `int fNN(unsigned long a, unsigned long b)`
SHAPES = 3  # g00..g08: `int g(a)`, `int g(a, b)`, `int g(a, b, c)` in turn
PID, TID = 4242, 4243


def _kernel() -> KernelBTF:
    b = BTFBuilder()
    u64 = b.int_("unsigned long", 8)
    s32 = b.int_("int", 4, signed=True)
    b.struct("pt_regs", 8 * 21, [(name, u64, 64 * n) for n, name in enumerate(X86_REGS)])
    proto = b.func_proto(s32, [("a", u64), ("b", u64)])
    for n in range(FUNCTIONS):
        b.func(f"f{n:02d}", proto)
    b.func("alone", proto)
    protos = [b.func_proto(s32, [(name, u64) for name in "abc"[: n + 1]]) for n in range(SHAPES)]
    for n in range(3 * SHAPES):
        b.func(f"g{n:02d}", protos[n % SHAPES])
    return KernelBTF(BTF.from_bytes(b.to_bytes()), [])


def _resolved(*specs: str) -> ResolvedTrace:
    resolved = resolve([parse_spec(s) for s in specs], _kernel(), function_kind=ProbeKind.KPROBE)
    grouped = group_kprobes(resolved)
    return split_multi(grouped, _branches(grouped))


def _branches(resolved: ResolvedTrace) -> list:
    plan = resolved.plan
    return [generate(plan, i, branch=plan.multi_of(i) is not None).insns for i in range(len(plan.probes))]


def _regs(**values: int) -> list[int]:
    """A pt_regs as 21 u64s, the named registers set."""
    ctx = [0] * 21
    for name, value in values.items():
        ctx[X86_REGS.index(name)] = value
    return ctx


def _vm(resolved: ResolvedTrace) -> VM:
    return VM(pid_tgid=PID << 32 | TID)


def test_a_glob_of_enough_functions_is_grouped_by_side_and_shares_one_stash() -> None:
    resolved = _resolved("f*(a, b, return)", "alone(a)")
    plan = resolved.plan
    entries, returns = plan.multi
    assert len(entries.probes) == len(returns.probes) == FUNCTIONS
    assert {plan.probes[i].kind for i in entries.probes} == {ProbeKind.KPROBE}
    assert {plan.probes[i].kind for i in returns.probes} == {ProbeKind.KRETPROBE}
    assert entries.share == returns.share == 0
    alone = [i for i, p in enumerate(plan.probes) if p.target == "alone"]
    assert alone and all(plan.multi_of(i) is None for i in alone)  # named alone: a kprobe of its own
    stashes = {
        spec for i in entries.probes + returns.probes for spec in generate(plan, i).maps if spec.role is MapRole.STASH
    }
    (stash,) = stashes  # one map for the glob, not one per function
    assert stash.sharing is Sharing.MULTI and stash.group == 0
    # Fewer than a handful of functions: one kprobe each.
    assert _resolved("f1*(a)").plan.multi == ()  # f10 alone
    assert MULTI_MIN_FUNCTIONS > 1


def test_a_side_longer_than_one_program_may_be_is_cut_into_links_that_share_its_stash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """split_multi cuts by the length of each link's distinct branches, after generating: the
    branches name the glob's one stash whichever link holds them, so they need not be generated
    again."""
    from ksnoop.spec import multi as multi_module

    grouped = group_kprobes(resolve([parse_spec("g*(return)")], _kernel(), function_kind=ProbeKind.KPROBE))
    branches = _branches(grouped)
    entries = grouped.plan.multi[0].probes
    shapes = list(dict.fromkeys(branches[i] for i in entries))
    assert len(shapes) == SHAPES  # one branch per prototype, whatever the number of functions
    # Room for the two shortest distinct branches a link (the shapes grow with the arguments).
    assert len(shapes[0]) < len(shapes[1]) < len(shapes[2])
    monkeypatch.setattr(multi_module, "MULTI_MAX_INSNS", sum(len(b) for b in shapes[:2]))
    split = split_multi(grouped, branches)
    links = [m for m in split.plan.multi if split.plan.probes[m.probes[0]].kind is ProbeKind.KPROBE]
    assert [i for m in links for i in m.probes] == list(entries)
    for link in links:
        assert sum(len(b) for b in {branches[i] for i in link.probes}) <= multi_module.MULTI_MAX_INSNS
    # g00-g01 (shapes 0 and 1), g02 (shape 2 leaves no room for another), g03-g04, g05, ...
    assert [len(m.probes) for m in links] == [2, 1] * SHAPES
    assert {m.share for m in split.plan.multi} == {0}
    assert _branches(split) == branches
    # One shape: a link holds every function while one branch fits.
    same = group_kprobes(resolve([parse_spec("f*")], _kernel(), function_kind=ProbeKind.KPROBE))
    same_branches = _branches(same)
    monkeypatch.setattr(multi_module, "MULTI_MAX_INSNS", len(same_branches[same.plan.multi[0].probes[0]]))
    assert [len(m.probes) for m in split_multi(same, same_branches).plan.multi] == [FUNCTIONS, FUNCTIONS]  # a side each


def test_each_cookie_runs_its_own_functions_branch() -> None:
    resolved = _resolved("f*(a, b > 10)")
    plan = resolved.plan
    (entries,) = plan.multi
    program = generate_multi(plan, 0)
    assert program.multi_functions == tuple(f"f{n:02d}" for n in range(FUNCTIONS))
    assert program.prog_type == 2 and program.expected_attach_type == 42  # KPROBE, TRACE_KPROBE_MULTI
    # Functions of one prototype and one spec: one branch serves them all.
    assert [name for _, name in program.sections].count("prologue") == 1
    assert len(program.insns) < len(generate(plan, entries.probes[0], branch=True).insns) + 10
    vm = _vm(resolved)
    for n, probe_index in enumerate(entries.probes):
        before = len(vm.records)
        cookie = program.multi_cookies[n]
        run = vm.run(program, _regs(di=1000 + n, si=11), cookie=cookie)
        (record,) = run.records[before:]
        assert HEADER.unpack_from(record)[3] == probe_index  # the probe index its branch writes
        event = build_decoder(plan, probe_index, resolved.targets[probe_index].btf)(record)
        assert event.values == (1000 + n, 11)
        # The branch's own predicate: b > 10 holds for 11, not for 10.
        assert vm.run(program, _regs(di=1, si=10), cookie=cookie).records[len(vm.records) :] == []
    assert len(vm.records) == FUNCTIONS


def test_nested_calls_of_two_functions_keep_their_entry_times_apart() -> None:
    resolved = _resolved("f*(return)")
    plan = resolved.plan
    entries, returns = plan.multi
    enter, leave = generate_multi(plan, 0), generate_multi(plan, 1)
    vm = _vm(resolved)
    # f03 calls f07: both enter, then f07 returns, then f03. One stash map, keyed by thread and function.
    vm.run(enter, _regs(di=1, si=2), cookie=enter.multi_cookies[3])
    t3 = vm.ktime
    vm.run(enter, _regs(di=1, si=2), cookie=enter.multi_cookies[7])
    t7 = vm.ktime
    inner = vm.run(leave, _regs(ax=7), cookie=leave.multi_cookies[7]).records[-1]
    outer = vm.run(leave, _regs(ax=3), cookie=leave.multi_cookies[3]).records[-1]
    for record, n, entered in ((inner, 7, t7), (outer, 3, t3)):
        ts, _pid_tgid, _cpu, probe, _failed, entry_ts = HEADER.unpack_from(record)
        assert probe == returns.probes[n]
        assert entry_ts == entered, (n, entry_ts, entered)
        assert struct.unpack_from("=i", record, len(record) - 8)[0] == n  # the return value, from ax


def test_a_kprobe_session_runs_both_sides_of_nested_calls_in_one_program() -> None:
    """One program for a glob's entries and returns (BPF_TRACE_KPROBE_SESSION): the kfunc
    bpf_session_is_return chooses the side, the cookie the function; each side's records and
    stash are what its own kprobe_multi program would write."""
    resolved = _resolved("f*(a, return)")
    plan = resolved.plan
    entries, returns = plan.multi
    session = generate_session(plan, entries.probes, VM.session_is_return_id)
    assert session.expected_attach_type == 56 and session.prog_type == 2  # TRACE_KPROBE_SESSION, KPROBE
    assert session.multi_functions == tuple(f"f{n:02d}" for n in range(FUNCTIONS)) and not session.retprobe
    assert [name for _, name in session.sections].count("prologue") == 2  # one branch a side
    vm = _vm(resolved)
    cookies = session.multi_cookies
    # f03 calls f07; each entry records `a`, each return its value and its entry's time.
    opened = [vm.run(session, _regs(di=30 + n), cookie=cookies[n]).records[-1] for n in (3, 7)]
    entered = {}
    for n, record in zip((3, 7), opened):
        ts, _pid_tgid, _cpu, probe, _failed, _entry_ts = HEADER.unpack_from(record)
        assert probe == entries.probes[n]
        assert build_decoder(plan, probe, resolved.targets[probe].btf)(record).values == (30 + n,)
        entered[n] = ts
    for n in (7, 3):
        record = vm.run(session, _regs(ax=n), cookie=cookies[n], returning=True).records[-1]
        _ts, _pid_tgid, _cpu, probe, _failed, entry_ts = HEADER.unpack_from(record)
        assert probe == returns.probes[n] and entry_ts == entered[n]
        assert struct.unpack_from("=i", record, len(record) - 8)[0] == n
    # The same cookies, as separate kprobe_multi links would give: each side's program agrees.
    assert generate_multi(plan, 0).multi_cookies == tuple(c & ~(0xFF << 56) for c in cookies)
    assert generate_multi(plan, 1).multi_cookies == tuple(c & ~(0xFF << 48) for c in cookies)
    with pytest.raises(CodegenError, match="return probe"):
        generate_session(_resolved("f*(a)").plan, _resolved("f*(a)").plan.multi[0].probes, 1)


@pytest.mark.parametrize("specs", [("g*(return)", "alone(a)"), ("f*(a, b > 10)",), ("g*(a > 1, return == 0)",)])
def test_generate_all_makes_each_branch_once_and_the_same_as_generate(specs: tuple) -> None:
    """generate_all generates a glob's branches of one shape once: each program is what generate
    writes for its probe (names included), and functions of one shape share one instruction tuple."""
    resolved = _resolved(*specs)
    plan = resolved.plan
    programs = generate_all(plan)
    for index, program in enumerate(programs):
        assert program == generate(plan, index, branch=plan.multi_of(index) is not None), plan.probes[index].target
    for multi in plan.multi:  # f*: one prototype, one generation; g*: one a prototype at most
        assert len({id(programs[i].insns) for i in multi.probes}) <= (1 if specs[0].startswith("f") else SHAPES)


def test_a_multi_is_checked() -> None:
    resolved = _resolved("f*(a)")
    plan = resolved.plan
    with pytest.raises(CodegenError, match="not probes of"):
        generate_multi(plan, 0, only=[len(plan.probes) + 5])
    with pytest.raises(PlanError, match="all of one kind"):
        type(plan)(probes=plan.probes, multi=(MultiAttach((0, 0), 0),))
