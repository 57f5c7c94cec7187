# SPDX-License-Identifier: GPL-2.0-only
"""Function-graph mode (-g) programs run in the BPF interpreter: the root call makes its task's
state, callees are recorded only inside it (one lookup outside), recursion of the root and of
callees, the node bound's cut, the root's return tests and --min-duration, and the state gone when
the root returns or the task dies inside it.

The mini kernel's ip_send_skb is the root; strncpy_from_user and noargs are its callees.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

from bpf.codegen import generate, generate_all
from bpf.codegen import MapRole
from bpf.plan import GRAPH_STATE_SIZE, HEADER, ProbeKind
from bpf.uapi import Helper
from ksnoop.spec.language import parse_spec
from ksnoop.spec.resolve import ResolvedTrace, resolve_graph
from tests.support import records
from tests.support.bpfvm import VM
from tests.support.task_driver import DST, NET, SKB, SRC, TASK_A, TASK_B, TaskDriver
from tests.support.task_driver import skb as _skb

CALLEES = ("strncpy_from_user", "noargs")


def _graph(root: str = "ip_send_skb", **options: object) -> ResolvedTrace:
    return resolve_graph(parse_spec(root), CALLEES, records.path_kernel(), **options)  # type: ignore[arg-type]


def Driver(resolved: ResolvedTrace, **vm_options: object) -> TaskDriver:  # noqa: N802 - reads as the class
    return TaskDriver(resolved, GRAPH_STATE_SIZE, **vm_options)


def _outline(events: list) -> List[Tuple[str, str]]:
    return [(function, side) for function, side, _, _ in events]


def _root_call(d: Driver) -> Driver:
    d.enter("ip_send_skb", NET, SKB)
    d.enter("strncpy_from_user", DST, SRC, 64).enter("noargs").leave("noargs", 0).leave(
        "strncpy_from_user", DST, SRC, 64, 5
    )
    d.enter("noargs").leave("noargs", 0)
    return d.leave("ip_send_skb", NET, SKB, 0)


def test_a_root_call_records_its_calls_in_order_and_ends_the_state() -> None:
    d = _root_call(Driver(_graph()))
    events = d.events()
    assert _outline(events) == [
        ("ip_send_skb", "entry"),
        ("strncpy_from_user", "entry"),
        ("noargs", "entry"),
        ("noargs", "return"),
        ("strncpy_from_user", "return"),
        ("noargs", "entry"),
        ("noargs", "return"),
        ("ip_send_skb", "return"),
    ]
    assert events[1][2][0] == "" and events[1][2][2] == 64  # a callee's arguments: char pointers as text
    assert events[4][2] == (5,)  # and its return value
    # No duration in the records: the reader times each call from its entry and return records.
    assert all(duration is None for _, _, _, duration in events)
    assert d.vm.path_states() == {}


def _roots_open(d: Driver) -> int:
    """The graph_roots counter: tasks inside a root call."""
    return int.from_bytes(d.vm._values(MapRole.GRAPH_ROOTS).get(bytes(4), bytes(8)), "little")


def test_callees_outside_a_root_call_do_one_lookup_and_nothing_else() -> None:
    d = Driver(_graph())
    d.enter("noargs")
    # While no task is in a root call: the one-entry array the verifier inlines, no helper run.
    assert d.helpers == [Helper.map_lookup_elem]
    d.leave("noargs", 0).enter("strncpy_from_user", DST, SRC, 64).leave("strncpy_from_user", DST, SRC, 64, 0)
    assert d.events() == [] and d.vm.path_states() == {} and _roots_open(d) == 0
    # Another task's root call does not let this task's callees in: they look their own task up.
    d.task(TASK_B).enter("ip_send_skb", NET, SKB)
    assert _roots_open(d) == 1
    d.task(TASK_A).enter("noargs")
    assert d.helpers == [Helper.map_lookup_elem, Helper.get_current_pid_tgid, Helper.map_lookup_elem]
    d.leave("noargs", 0)
    d.task(TASK_B).leave("ip_send_skb", NET, SKB, 0)
    assert _outline(d.events()) == [("ip_send_skb", "entry"), ("ip_send_skb", "return")]
    assert _roots_open(d) == 0


def test_the_roots_tests_choose_the_root_calls() -> None:
    d = Driver(_graph("ip_send_skb(skb->len > 1000)"))
    d.enter("ip_send_skb", NET, SKB).enter("noargs").leave("noargs", 0).leave("ip_send_skb", NET, SKB, 0)
    assert d.events() == [] and d.vm.path_states() == {}


def test_a_root_call_that_fails_its_return_test_or_is_quick_emits_no_return_and_ends() -> None:
    d = _root_call(Driver(_graph("ip_send_skb(return != 0)")))
    events = d.events()
    assert ("ip_send_skb", "return") not in _outline(events) and ("noargs", "return") in _outline(events)
    assert d.vm.path_states() == {}
    timed = _root_call(Driver(_graph()))
    timed.events()
    took = timed.times[-1] - timed.times[0] + 1000  # from the state's start, a clock read before the entry record's
    slow = _root_call(Driver(_graph(min_duration_ns=took + 1)))
    assert _outline(slow.events())[-1] == ("noargs", "return") and slow.vm.path_states() == {}
    quick_enough = _root_call(Driver(_graph(min_duration_ns=took)))
    assert _outline(quick_enough.events())[-1] == ("ip_send_skb", "return")


def test_recursion_of_the_root_and_of_a_callee() -> None:
    d = Driver(_graph())
    d.enter("ip_send_skb", NET, SKB).enter("ip_send_skb", NET, SKB).enter("noargs").enter("noargs")
    d.leave("noargs", 0).leave("noargs", 0).leave("ip_send_skb", NET, SKB, 0)
    assert d.vm.path_states() != {}  # the inner root call returned: the outer goes on
    d.leave("ip_send_skb", NET, SKB, 0)
    # Only the root call's own entry record carries its start: the reader begins a tree there.
    starts = [HEADER.unpack_from(rec)[5] for rec in d.vm.records[:2]]
    assert starts[0] > 0 and starts[1] == 0
    assert _outline(d.events()) == [
        ("ip_send_skb", "entry"),
        ("ip_send_skb", "entry"),
        ("noargs", "entry"),
        ("noargs", "entry"),
        ("noargs", "return"),
        ("noargs", "return"),
        ("ip_send_skb", "return"),
        ("ip_send_skb", "return"),
    ]
    assert d.vm.path_states() == {}


def test_past_the_node_bound_one_entry_says_the_tree_was_cut() -> None:
    from dataclasses import replace

    resolved = _graph()
    resolved = replace(resolved, plan=replace(resolved.plan, graph_max_nodes=3))
    d = Driver(resolved)
    d.enter("ip_send_skb", NET, SKB)  # node 1
    d.enter("strncpy_from_user", DST, SRC, 64)  # node 2
    d.enter("noargs")  # node 3
    d.enter("noargs")  # the first past the bound: its entry alone
    d.enter("noargs")  # past it: nothing
    d.leave("noargs", 0).leave("noargs", 0).leave("noargs", 0)
    d.leave("strncpy_from_user", DST, SRC, 64, 0).leave("ip_send_skb", NET, SKB, 0)
    assert _outline(d.events()) == [
        ("ip_send_skb", "entry"),
        ("strncpy_from_user", "entry"),
        ("noargs", "entry"),
        ("noargs", "entry"),
        ("noargs", "return"),  # of node 3: the returns of the unrecorded two are not
        ("strncpy_from_user", "return"),
        ("ip_send_skb", "return"),
    ]


def test_a_task_dying_inside_a_root_call_leaves_no_state() -> None:
    d = Driver(_graph())
    d.enter("ip_send_skb", NET, SKB).enter("noargs").exit_task()
    assert d.vm.path_states() == {} and _roots_open(d) == 0
    d.exit_task()  # a task that was in no root call: the count stays
    assert _roots_open(d) == 0


def test_every_program_generates_and_the_root_goes_in_last() -> None:
    resolved = _graph()
    plan = resolved.plan
    assert len(generate_all(plan)) == len(plan.probes)
    assert plan.probes[0].forgets_path and [p.graph.root for p in plan.probes[-2:]] == [True, True]  # type: ignore[union-attr]
    kinds: Dict[str, List[str]] = {}
    for probe in plan.probes[1:]:
        kinds.setdefault(probe.target, []).append(probe.kind.value)
    assert kinds == {name: ["fentry", "fexit"] for name in (*CALLEES, "ip_send_skb")}


def test_in_a_kprobe_session_a_callee_outside_any_root_call_skips_its_return() -> None:
    """The callees' kprobe_multi program: outside a root call an entry returns 1 (a kprobe session
    then does not run its return side); inside one it returns 0 and records."""
    from dataclasses import replace

    from bpf.codegen import generate_multi
    from bpf.plan import MultiAttach

    from btf import BTF
    from ksnoop.spec.targets import KernelBTF
    from tests.support import minikernel
    from tests.unit.bpf.test_codegen_multi import X86_REGS, _regs

    builder, ids = minikernel.make_builder(task_exit=True)
    u64 = builder.int_("unsigned long", 8)
    builder.struct("pt_regs", 8 * 21, [(name, u64, 64 * n) for n, name in enumerate(X86_REGS)])
    kernel = KernelBTF(BTF.from_bytes(builder.to_bytes()), [])
    resolved = resolve_graph(parse_spec("ip_send_skb"), CALLEES, kernel, function_kind=ProbeKind.KPROBE)
    plan = resolved.plan
    entries = tuple(
        i for i, p in enumerate(plan.probes) if p.graph is not None and not p.graph.root and p.kind.is_entry
    )
    plan = replace(plan, multi=(MultiAttach(entries, share=1),))
    program = generate_multi(plan, 0)
    root = next(i for i, p in enumerate(plan.probes) if p.graph is not None and p.graph.root and p.kind.is_entry)
    vm = VM(memory={SKB: _skb(242), NET: bytes(8), DST: bytes(64)}, path_value_size=40, pid_tgid=TASK_A)
    noargs = program.multi_functions.index("noargs")
    outside = vm.run(program, _regs(), cookie=program.multi_cookies[noargs])
    assert outside.r0 == 1 and vm.records == []
    vm.run(generate(plan, root), _regs(di=NET, si=SKB))  # the root call begins (a kprobe: registers)
    inside = vm.run(program, _regs(), cookie=program.multi_cookies[noargs])
    assert inside.r0 == 0 and len(vm.records) == 2


def test_a_graph_over_the_probe_limit_is_a_usage_error_naming_it() -> None:
    import pytest

    from ksnoop.errors import UsageError

    with pytest.raises(UsageError) as failure:
        _graph(max_probes=2)
    assert str(failure.value) == (
        "the graph of ip_send_skb has 3 functions, more than --max-probes 2: lower --graph-depth, "
        "leave some out with --graph-exclude, or raise --max-probes"
    )


def test_a_root_is_one_function() -> None:
    import pytest

    from ksnoop.spec.language import SpecError

    for root, says in (
        ("ip_*", "a function graph (-g) has one root: a function, not a glob"),
        ("tp:net_dev_queue", "a function graph (-g) is rooted at a function: a tracepoint calls nothing"),
    ):
        with pytest.raises(SpecError) as failure:
            _graph(root)
        assert failure.value.reason == says
