# SPDX-License-Identifier: GPL-2.0-only
"""Program.maps: the MapSpecs a generated program declares are exactly the maps its instructions
load, sized as its templates use them."""

from __future__ import annotations

from bpf.codegen import MapRole, Sharing, generate
from bpf.plan import COUNTERS_SIZE, PathLayout, RecordLayout, Stash
from bpf.uapi import BPF_F_NO_PREALLOC, MapType
from ksnoop.run.summary import count_calls
from tests.support.records import trace


def _programs(resolved):
    return [generate(resolved.plan, i) for i in range(len(resolved.plan.probes))]


def test_every_map_a_program_loads_is_declared_once() -> None:
    resolved = trace("seven_args(a, b, return)", "tp:net_dev_queue(skb->len > 100, skb)")
    for program in _programs(resolved):
        roles = [spec.role for spec in program.maps]
        assert len(roles) == len(set(roles))
        assert set(roles) == {role for _, role in program.map_slots}


def test_ring_buffer_and_drop_counter_are_the_plans() -> None:
    resolved = trace("seven_args(a)")
    specs = {spec.role: spec for spec in generate(resolved.plan, 0).maps}
    events, drops = specs[MapRole.EVENTS], specs[MapRole.DROPS]
    assert (events.map_type, events.max_entries, events.sharing) == (
        MapType.RINGBUF,
        resolved.plan.ringbuf_size,
        Sharing.PLAN,
    )
    assert (drops.map_type, drops.key_size, drops.value_size, drops.max_entries) == (MapType.PERCPU_ARRAY, 4, 8, 1)


def test_a_pair_shares_its_stash_and_both_halves_agree_on_its_size() -> None:
    # A predicate on the return value holds the entry record until the return: Stash.RECORD.
    resolved = trace("seven_args(a, b, return == 1)", "ip_send_skb(skb, return)")
    programs = _programs(resolved)
    stashes = {}
    for probe, program in zip(resolved.plan.probes, programs):
        for spec in program.maps:
            if spec.role is MapRole.STASH:
                assert spec.sharing is Sharing.PAIR and spec.group == probe.stash_group
                stashes.setdefault(probe.stash_group, set()).add(spec)
    assert len(stashes) == 2 and all(len(specs) == 1 for specs in stashes.values()), stashes
    held = [p for p in resolved.plan.probes if p.stash is Stash.RECORD]
    assert held, "the predicate should hold the entry record"
    entry = next(p for p in held if p.kind.value == "fentry")
    (spec,) = stashes[entry.stash_group]
    assert spec.value_size == RecordLayout.of(entry, resolved.plan.with_comm).size
    assert spec.map_type is MapType.LRU_HASH and spec.key_size == 8


def test_summary_counters_have_a_slot_per_counted_function() -> None:
    counting = count_calls(trace("seven_args", "ip_send_skb"))
    keys = {p.count.key for p in counting.plan.probes if p.count is not None}
    for program in _programs(counting):
        for spec in program.maps:
            if spec.role is MapRole.COUNTS:
                assert (spec.value_size, spec.max_entries, spec.sharing) == (COUNTERS_SIZE, len(keys), Sharing.PLAN)


def test_call_path_state_is_allocated_as_tasks_enter() -> None:
    from ksnoop.spec.language import parse_spec
    from ksnoop.spec.resolve import resolve_path
    from tests.support.records import path_kernel

    resolved = resolve_path([parse_spec("ip_send_skb"), parse_spec("seven_args")], path_kernel())
    size = PathLayout.of(resolved.plan).size
    specs = {spec.role: spec for program in _programs(resolved) for spec in program.maps}
    assert (specs[MapRole.PATH].map_type, specs[MapRole.PATH].value_size, specs[MapRole.PATH].flags) == (
        MapType.HASH,
        size,
        BPF_F_NO_PREALLOC,
    )
    assert (specs[MapRole.PATH_ZERO].value_size, specs[MapRole.PATH_ZERO].max_entries) == (size, 1)
