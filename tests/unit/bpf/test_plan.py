# SPDX-License-Identifier: GPL-2.0-only
"""bpf.plan.Plan checks that its probes' flags go together and that its pairs are real pairs."""

from __future__ import annotations

import dataclasses

import pytest

from bpf.plan import Capture, Count, Pair, PathStep, Plan, PlanError, Probe, ProbeKind, Stash
from tests.support.records import path_kernel, trace

ENTRY = Probe(ProbeKind.FENTRY, "f", 7, stash=Stash.TIME, stash_group=0, emits=False)
EXIT = Probe(ProbeKind.FEXIT, "f", 7, captures=(Capture(label="return", slot=0),), stash=Stash.TIME, stash_group=0)


def test_what_the_resolver_makes_is_a_valid_plan_with_its_pairs() -> None:
    resolved = trace("seven_args(a, return)", "tp:net_dev_queue(skb->len)", "ip_send_skb(skb)")
    kinds = [p.kind for p in resolved.plan.probes]
    assert kinds == [ProbeKind.FENTRY, ProbeKind.FEXIT, ProbeKind.TP_BTF, ProbeKind.FENTRY]  # skb: entry only
    assert resolved.plan.pairs == (Pair(0, 1),)
    assert [resolved.plan.partner(i) for i in range(4)] == [1, 0, None, None]


def test_a_call_paths_pairs_put_each_return_first() -> None:
    from ksnoop.spec.language import parse_spec
    from ksnoop.spec.resolve import resolve_path

    resolved = resolve_path([parse_spec("ip_send_skb"), parse_spec("seven_args")], path_kernel())
    for pair in resolved.plan.pairs:
        assert pair.exit + 1 == pair.entry
        assert resolved.plan.probes[pair.entry].path == resolved.plan.probes[pair.exit].path


def test_summary_counting_keeps_pairs() -> None:
    from ksnoop.run.summary import count_calls

    counting = count_calls(trace("seven_args(a, return > 0)", "tp:net_dev_queue"))
    assert counting.plan.pairs == (Pair(0, 1),)
    assert counting.plan.probes[1].tests == trace("seven_args(a, return > 0)").plan.probes[1].tests


@pytest.mark.parametrize(
    "probes, pairs, message",
    [
        ((ENTRY, EXIT), (), "has a time stash but no fexit to pair with"),
        ((EXIT,), (), "has a time stash but no fentry to pair with"),
        ((ENTRY, EXIT), (Pair(1, 0),), "an entry/return pair is an fentry and an fexit, or a kprobe and a kretprobe"),
        ((ENTRY, EXIT), (Pair(0, 2),), "names a probe the plan does not have"),
        ((ENTRY, dataclasses.replace(EXIT, attach_btf_id=8)), (Pair(0, 1),), "are not one function"),
        ((ENTRY, dataclasses.replace(EXIT, stash=Stash.RECORD)), (Pair(0, 1),), "disagree on their stash"),
        ((ENTRY, EXIT, ENTRY), (Pair(0, 1), Pair(2, 1)), "is in two pairs"),
        ((Probe(ProbeKind.FENTRY, "f", 7, requires_entry=True),), (), "requires its entry"),
        ((Probe(ProbeKind.TP_BTF, "t", 9, emits=False),), (), "emits nothing"),
        ((Probe(ProbeKind.TP_BTF, "t", 9, count=Count(0), kstack_depth=4),), (), "counts, so it captures nothing"),
        ((Probe(ProbeKind.TP_BTF, "t", 9, path=PathStep(0, 1)),), (), "is a call-path step"),
        ((Probe(ProbeKind.FENTRY, "t", 9, forgets_path=True, emits=False),), (), "forgets call paths"),
        ((Probe(ProbeKind.ITER, "task", 9, kstack_depth=2),), (), "an iterator program only tests and captures"),
    ],
)
def test_flags_that_do_not_go_together_are_refused(probes, pairs, message) -> None:
    with pytest.raises(PlanError, match=message):
        Plan(probes=probes, pairs=pairs)


def test_a_pair_is_valid() -> None:
    plan = Plan(probes=(ENTRY, EXIT), pairs=(Pair(0, 1),))
    assert plan.partner(0) == 1 and plan.partner(1) == 0
