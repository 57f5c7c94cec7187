# SPDX-License-Identifier: GPL-2.0-only
"""Call-path mode (-s) programs run in the BPF interpreter: which calls join a path, what is emitted
when, and that the per-task state is gone when the path ends or the task dies inside it.

The path is strncpy_from_user -> ip_send_skb -> noargs from the mini kernel: their names do not
matter here, only their nesting. Each test drives the programs in the order the kernel would run
them for a sequence of calls and returns in one or more tasks.
"""

from __future__ import annotations

import struct

import pytest

from bpf.codegen import CodegenError, generate
from bpf.plan import HEADER, PATH_DEPTH_OFFSET, PathLayout, PathStep, ProbeKind
from ksnoop.errors import UsageError
from ksnoop.spec.resolve import ResolvedTrace, resolve_path
from ksnoop.spec.language import SpecError, parse_spec
from tests.support import records
from tests.support.task_driver import DST, NET, SKB, SRC, TASK_A, TASK_B, TaskDriver

U64 = (1 << 64) - 1


def _path(*specs: str) -> ResolvedTrace:
    return resolve_path([parse_spec(s) for s in specs], records.path_kernel())


def Driver(resolved: ResolvedTrace, **vm_options: object) -> TaskDriver:  # noqa: N802 - reads as the class
    return TaskDriver(resolved, PathLayout.of(resolved.plan).size, **vm_options)


def _outline(events: list) -> list[tuple[str, str]]:
    return [(function, side) for function, side, _, _ in events]


THREE = ("strncpy_from_user(count, return)", "ip_send_skb(skb->len)", "noargs")


def test_a_full_path_comes_out_when_the_innermost_returns_in_call_order_with_durations() -> None:
    d = Driver(_path(*THREE))
    d.enter("strncpy_from_user", DST, SRC, 64).enter("ip_send_skb", NET, SKB).enter("noargs")
    assert d.events() == []  # nothing until the innermost returns
    d.leave("noargs", 0)
    events = d.events()
    assert _outline(events) == [
        ("strncpy_from_user", "entry"),
        ("ip_send_skb", "entry"),
        ("noargs", "entry"),
        ("noargs", "return"),
    ]
    assert events[0][2] == (64,) and events[1][2] == (242,)
    assert events[3][3] is not None and events[3][3] > 0  # the innermost's duration
    d.leave("ip_send_skb", NET, SKB, 0)
    d.leave("strncpy_from_user", DST, SRC, 64, 11)
    outer = d.events()
    assert _outline(outer) == [("ip_send_skb", "return"), ("strncpy_from_user", "return")]
    assert outer[1][2] == (11,)
    # Each outer duration spans what it called.
    assert outer[1][3] > outer[0][3] > events[3][3]
    assert d.vm.path_states() == {}  # the outermost returned: the task's state is gone


def test_calls_outside_the_path_or_out_of_order_produce_nothing() -> None:
    d = Driver(_path(*THREE))
    d.enter("noargs").leave("noargs", 0)  # the innermost alone
    d.enter("ip_send_skb", NET, SKB).enter("noargs").leave("noargs", 0).leave("ip_send_skb", NET, SKB, 0)
    d.enter("noargs").enter("ip_send_skb", NET, SKB).leave("ip_send_skb", NET, SKB, 0).leave("noargs", 0)
    assert d.events() == []
    # The outer two without the innermost: held, never shown, and forgotten at the end.
    d.enter("strncpy_from_user", DST, SRC, 64).enter("ip_send_skb", NET, SKB)
    d.leave("ip_send_skb", NET, SKB, 0).leave("strncpy_from_user", DST, SRC, 64, 0)
    assert d.events() == [] and d.vm.path_states() == {}


def test_outer_entries_come_out_once_for_several_innermost_calls() -> None:
    d = Driver(_path(*THREE))
    d.enter("strncpy_from_user", DST, SRC, 64).enter("ip_send_skb", NET, SKB)
    for _ in range(3):
        d.enter("noargs").leave("noargs", 0)
    d.leave("ip_send_skb", NET, SKB, 0).leave("strncpy_from_user", DST, SRC, 64, 0)
    assert _outline(d.events()) == [
        ("strncpy_from_user", "entry"),
        ("ip_send_skb", "entry"),
        ("noargs", "entry"),
        ("noargs", "return"),
        ("noargs", "entry"),
        ("noargs", "return"),
        ("noargs", "entry"),
        ("noargs", "return"),
        ("ip_send_skb", "return"),
        ("strncpy_from_user", "return"),
    ]


def test_a_second_middle_call_shows_its_own_entry_again() -> None:
    d = Driver(_path(*THREE))
    d.enter("strncpy_from_user", DST, SRC, 64)
    for _ in range(2):
        d.enter("ip_send_skb", NET, SKB).enter("noargs").leave("noargs", 0).leave("ip_send_skb", NET, SKB, 0)
    d.leave("strncpy_from_user", DST, SRC, 64, 0)
    assert _outline(d.events()) == [
        ("strncpy_from_user", "entry"),
        ("ip_send_skb", "entry"),
        ("noargs", "entry"),
        ("noargs", "return"),
        ("ip_send_skb", "return"),
        ("ip_send_skb", "entry"),
        ("noargs", "entry"),
        ("noargs", "return"),
        ("ip_send_skb", "return"),
        ("strncpy_from_user", "return"),
    ]


def test_a_function_calling_itself_neither_pushes_nor_pops() -> None:
    d = Driver(_path("strncpy_from_user", "ip_send_skb(skb->len)"))
    d.enter("strncpy_from_user", DST, SRC, 1).enter("ip_send_skb", NET, SKB)
    # ip_send_skb re-entered (an ICMP reply sent from the softirq the first one raised, say).
    d.vm.kernel[0].data[80:84] = struct.pack("<I", 999)
    d.enter("ip_send_skb", NET, SKB).leave("ip_send_skb", NET, SKB, 0)
    assert d.events() == []  # the nested return is not the path's innermost return
    d.leave("ip_send_skb", NET, SKB, 0)
    events = d.events()
    assert _outline(events) == [("strncpy_from_user", "entry"), ("ip_send_skb", "entry"), ("ip_send_skb", "return")]
    assert events[1][2] == (242,)  # the outer call's entry, not the nested one's
    # An outer function re-entered deeper down is no step of this path either.
    d.enter("strncpy_from_user", DST, SRC, 2).leave("strncpy_from_user", DST, SRC, 2, 0)
    assert d.events() == []
    d.leave("strncpy_from_user", DST, SRC, 1, 0)
    assert _outline(d.events()) == [("strncpy_from_user", "return")]
    assert d.vm.path_states() == {}


def test_tasks_keep_their_own_paths() -> None:
    d = Driver(_path("strncpy_from_user(count)", "noargs"))
    d.task(TASK_A).enter("strncpy_from_user", DST, SRC, 1)
    d.task(TASK_B).enter("noargs").leave("noargs", 0)  # B is in no path
    assert d.events() == []
    d.task(TASK_B).enter("strncpy_from_user", DST, SRC, 2)
    d.task(TASK_A).enter("noargs").leave("noargs", 0)
    a_events = d.events()
    assert [e[2] for e in a_events[:1]] == [(1,)]
    d.task(TASK_B).enter("noargs").leave("noargs", 0)
    assert [e[2] for e in d.events()[:1]] == [(2,)]
    d.task(TASK_A).leave("strncpy_from_user", DST, SRC, 1, 0)
    assert list(d.vm.path_states()) == [TASK_B.to_bytes(8, "little")]


def test_entry_tests_decide_whether_a_call_joins_the_path() -> None:
    d = Driver(_path("strncpy_from_user(count == 64)", "ip_send_skb(skb->len > 1000)"))
    d.enter("strncpy_from_user", DST, SRC, 63)
    assert d.vm.path_states() == {}  # a failed test at level 0 leaves no state behind
    d.enter("ip_send_skb", NET, SKB).leave("ip_send_skb", NET, SKB, 0).leave("strncpy_from_user", DST, SRC, 63, 0)
    d.enter("strncpy_from_user", DST, SRC, 64).enter("ip_send_skb", NET, SKB)  # len 242: not > 1000
    d.leave("ip_send_skb", NET, SKB, 0).leave("strncpy_from_user", DST, SRC, 64, 0)
    assert d.events() == [] and d.vm.path_states() == {}
    d.vm.kernel[0].data[80:84] = struct.pack("<I", 1500)
    d.enter("strncpy_from_user", DST, SRC, 64).enter("ip_send_skb", NET, SKB).leave("ip_send_skb", NET, SKB, 0)
    assert _outline(d.events()) == [("strncpy_from_user", "entry"), ("ip_send_skb", "entry"), ("ip_send_skb", "return")]


def test_return_tests_filter_the_innermost_path_and_each_outer_return() -> None:
    d = Driver(_path("strncpy_from_user(return == 0)", "ip_send_skb(return < 0)"))
    d.enter("strncpy_from_user", DST, SRC, 64).enter("ip_send_skb", NET, SKB).leave("ip_send_skb", NET, SKB, 0)
    assert d.events() == []  # ip_send_skb returned 0: the path is not shown
    d.enter("ip_send_skb", NET, SKB).leave("ip_send_skb", NET, SKB, (-11) & U64)
    assert _outline(d.events()) == [("strncpy_from_user", "entry"), ("ip_send_skb", "entry"), ("ip_send_skb", "return")]
    d.leave("strncpy_from_user", DST, SRC, 64, 5)  # fails `return == 0`: no return record
    assert d.events() == [] and d.vm.path_states() == {}


def test_a_task_dying_inside_a_path_leaves_no_state() -> None:
    d = Driver(_path("strncpy_from_user", "noargs"))
    d.enter("strncpy_from_user", DST, SRC, 1).enter("noargs").leave("noargs", 0)
    assert len(d.events()) == 3 and len(d.vm.path_states()) == 1  # the outer call never returns...
    d.task(TASK_B).exit_task()
    assert len(d.vm.path_states()) == 1  # another task's exit forgets only its own
    d.task(TASK_A).exit_task()
    assert d.vm.path_states() == {}


def test_a_full_path_map_counts_a_drop_and_shows_nothing() -> None:
    d = Driver(_path("strncpy_from_user", "noargs"), path_room=0)
    d.enter("strncpy_from_user", DST, SRC, 1).enter("noargs").leave("noargs", 0)
    run = d.vm.run(d.programs[("strncpy_from_user", ProbeKind.FEXIT)], [DST, SRC, 1, 0])
    assert d.events() == [] and run.drops == 1


def test_the_entry_record_lives_in_its_level_slot_and_depth_counts_open_levels() -> None:
    resolved = _path(*THREE)
    d = Driver(resolved)
    layout = PathLayout.of(resolved.plan)
    d.enter("strncpy_from_user", DST, SRC, 64).enter("ip_send_skb", NET, SKB)
    (state,) = d.vm.path_states().values()
    assert struct.unpack_from("<Q", state, PATH_DEPTH_OFFSET) == (2,)
    slot = layout.slot_offsets[1]
    header = HEADER.unpack_from(state, slot)
    assert header[1] == TASK_A and resolved.plan.probes[header[3]].target == "ip_send_skb"
    assert len(state) == layout.size


def test_probes_attach_the_exit_hook_first_then_innermost_first_returns_before_entries() -> None:
    resolved = _path(*THREE)
    order = [(p.target, p.kind.value, p.path) for p in resolved.plan.probes]
    assert order == [
        ("sched_process_exit", "tp_btf", None),
        ("noargs", "fexit", PathStep(2, 3)),
        ("noargs", "fentry", PathStep(2, 3)),
        ("ip_send_skb", "fexit", PathStep(1, 3)),
        ("ip_send_skb", "fentry", PathStep(1, 3)),
        ("strncpy_from_user", "fexit", PathStep(0, 3)),
        ("strncpy_from_user", "fentry", PathStep(0, 3)),
    ]
    assert resolved.plan.probes[0].forgets_path


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (("strncpy_*", "noargs"), "not a glob"),
        (("tp:net_dev_queue", "noargs"), "a tracepoint has no return"),
        (("noargs", "noargs"), "already in the call path"),
        (("strncpy_from_usr", "noargs"), "did you mean"),
    ],
)
def test_paths_that_cannot_be_are_usage_errors(specs: tuple[str, ...], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        _path(*specs)


def test_a_path_longer_than_the_state_holds_is_refused() -> None:
    with pytest.raises(UsageError, match="at most 16"):
        _path(*(["noargs"] * 17))


def test_a_path_probe_without_its_path_is_refused_by_the_generator() -> None:
    import dataclasses

    resolved = _path("strncpy_from_user", "noargs")
    probes = tuple(p for p in resolved.plan.probes if not (p.path and p.path.level == 0))
    kept = [i for i, p in enumerate(resolved.plan.probes) if not (p.path and p.path.level == 0)]
    pairs = tuple(
        dataclasses.replace(pair, entry=kept.index(pair.entry), exit=kept.index(pair.exit))
        for pair in resolved.plan.pairs
        if pair.entry in kept and pair.exit in kept
    )
    plan = dataclasses.replace(resolved.plan, probes=probes, pairs=pairs)
    index = next(i for i, p in enumerate(probes) if p.path is not None)
    with pytest.raises(CodegenError, match="no complete call path"):
        generate(plan, index)


def test_min_duration_shows_a_path_only_when_its_total_so_far_is_long_enough() -> None:
    from ksnoop.run.slow_calls import only_slow_calls

    slow = only_slow_calls(_path("ip_send_skb(skb->len)", "noargs"), 5_000_000)
    innermost = [p for p in slow.plan.probes if p.path is not None and p.kind is ProbeKind.FEXIT and p.path.level == 1]
    assert [p.min_duration_ns for p in innermost] == [5_000_000]
    d = Driver(slow)
    d.enter("ip_send_skb", NET, SKB).enter("noargs").leave("noargs", 0).leave("ip_send_skb", NET, SKB, 0)
    assert d.events() == [] and d.vm.path_states() == {}  # quick: nothing, and nothing left behind
    d.enter("ip_send_skb", NET, SKB)
    d.vm.ktime += 6_000_000  # the outer call has run 6 ms when the innermost is entered
    d.enter("noargs").leave("noargs", 0)
    d.leave("ip_send_skb", NET, SKB, 0)
    events = d.events()
    assert _outline(events) == [
        ("ip_send_skb", "entry"),
        ("noargs", "entry"),
        ("noargs", "return"),
        ("ip_send_skb", "return"),
    ]
    assert events[3][3] >= 6_000_000
