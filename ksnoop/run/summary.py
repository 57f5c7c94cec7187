# SPDX-License-Identifier: GPL-2.0-only
"""Summary mode (`trace --summary`): count in the kernel instead of emitting a record per call.

`count_calls` turns a resolved trace into counting probes (bpf.plan.Count); `sum_counters` turns
the per-CPU counters read back at exit into one FunctionCounts per counted function.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

from bpf.plan import COUNTERS, LATENCY_BUCKETS, Capture, Count, Pair, Probe, Stash
from btf import Int

from ksnoop.errors import UsageError
from ksnoop.spec.resolve import LEFT_OUT, ResolvedTrace, _slots, context_offsets
from ksnoop.spec.language import RETURN
from ksnoop.spec.targets import Target, TargetKind


@dataclass(frozen=True)
class FunctionCounts:
    """One function's or tracepoint's totals over every CPU."""

    label: str  # as the user writes it: `ip_send_skb`, `tp:net_dev_queue`
    calls: int
    errors: Optional[int]  # None: the return value is not a signed integer (or a tracepoint)
    # Latency: bucket k counts durations in [2**k, 2**(k+1)) ns, bucket 0 also 0 ns; None for a tracepoint.
    buckets: Optional[Tuple[int, ...]]
    duration_ns: Optional[int] = None  # the calls' durations summed (mean = duration_ns / calls); None as buckets


def count_calls(resolved: ResolvedTrace, calls_only: bool = False) -> ResolvedTrace:
    """The same trace counting instead of recording: one counter slot per function, keyed in order.

    A tracepoint counts calls. A function becomes an fentry that stashes its time (after its tests)
    and an fexit that, only for calls whose entry stashed, counts the call, a negative return (for
    a signed integer return) and the latency bucket; with `calls_only`, an fentry that counts calls
    and nothing else (no fexit: the cheapest count, as bpftrace's `count()`), and a test on the
    return value is a UsageError. Values to show are dropped: nothing is shown per call. Filters and
    tests apply as they would to records.
    """
    plan = resolved.plan
    probes, targets = plan.probes, resolved.targets
    sources = resolved.sources
    out_probes: List[Probe] = []
    out_targets: List[Target] = []
    out_sources: List[int] = []
    out_pairs: List[Pair] = []
    counted = 0
    for n, (probe, target) in enumerate(zip(probes, targets)):
        partner = plan.partner(n)
        if probe.kind.is_return and partner is not None:
            continue  # counted with its fentry
        exit_tests = probes[partner].tests if partner is not None else ()
        key = counted  # each function (or tracepoint) counts with one probe
        counted += 1
        made: List[Probe]
        if target.kind is TargetKind.TRACEPOINT:
            made = [replace(probe, captures=(), kstack_depth=0, count=Count(key))]
        elif calls_only:
            if exit_tests:
                raise UsageError(
                    f"{target.label}: --calls-only counts at entry, where the return value that "
                    "the spec tests is not known yet: drop --calls-only or the test"
                )
            made = [replace(probe, captures=(), kstack_depth=0, stash=Stash.NONE, emits=False, count=Count(key))]
        else:
            entry = replace(probe, captures=(), kstack_depth=0, stash=Stash.TIME, stash_group=key, emits=False)
            exit_ = Probe(
                probe.kind.return_kind,
                target.name,
                target.attach_btf_id,
                target.module,
                exit_tests,
                stash=Stash.TIME,
                stash_group=key,
                emits=False,
                requires_entry=True,
                count=Count(key, _error_value(target), latency=True),
                context_offsets=context_offsets(target, probe.kind)[1],
            )
            made = [entry, exit_]
            out_pairs.append(Pair(len(out_probes), len(out_probes) + 1))
        out_probes.extend(made)
        out_targets.extend(target for _ in made)
        if sources:
            out_sources.extend(sources[n] for _ in made)
    plan = replace(plan, probes=tuple(out_probes), pairs=tuple(out_pairs))
    notes = tuple(note for note in resolved.notes if LEFT_OUT not in note)  # no values are shown
    if sources:
        return replace(resolved, plan=plan, targets=tuple(out_targets), sources=tuple(out_sources), notes=notes)
    return replace(resolved, plan=plan, targets=tuple(out_targets), notes=notes)


def _error_value(target: Target) -> Optional[Capture]:
    """The return value if it is a signed integer (an error when negative), else None."""
    if target.return_type_id == 0:
        return None
    final = target.btf.skip_modifiers(target.return_type_id)
    if not isinstance(final, Int) or not final.signed or final.is_bool or final.size not in (1, 2, 4, 8):
        return None
    return Capture(label=RETURN, slot=_slots(target)[RETURN][0], size=final.size, type_id=target.return_type_id)


def counted(resolved: ResolvedTrace) -> List[Tuple[int, Probe, Target]]:
    """(key, probe, target) of each probe that counts, in key order."""
    out = [(p.count.key, p, t) for p, t in zip(resolved.plan.probes, resolved.targets) if p.count is not None]
    return sorted(out, key=lambda row: row[0])


def sum_counters(resolved: ResolvedTrace, per_cpu: Dict[int, Sequence[bytes]]) -> List[FunctionCounts]:
    """Totals per counted function from each key's per-CPU values (COUNTERS layout; absent: zeros)."""
    out = []
    for key, probe, target in counted(resolved):
        # Column sums of the CPUs' counters, in C: hundreds of functions times 66 counters a CPU.
        values = [COUNTERS.unpack_from(value) for value in per_cpu.get(key, ())]
        totals = (
            [sum(column) for column in zip(*values)] if values else [0] * len(COUNTERS.unpack(bytes(COUNTERS.size)))
        )
        assert probe.count is not None
        latency = probe.count.latency
        out.append(
            FunctionCounts(
                label=target.label,
                calls=totals[0],
                errors=totals[1] if probe.count.errors is not None else None,
                buckets=tuple(totals[2 : 2 + LATENCY_BUCKETS]) if latency else None,
                duration_ns=totals[2 + LATENCY_BUCKETS] if latency else None,
            )
        )
    return out
