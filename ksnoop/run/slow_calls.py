# SPDX-License-Identifier: GPL-2.0-only
"""--min-duration: only calls at least that slow are shown (or counted).

`only_slow_calls` turns a resolved trace (records, or --summary's counting probes) into one whose
return probes require their entry and skip, first thing, a call quicker than the minimum; an
entry record is held back in the stash and emitted with its return, as for a return predicate,
since whether a call is slow is known only when it returns. A function traced at entry alone
gains a return probe that shows nothing but the call's duration. With -s, a path is shown when
its total so far (since its outermost entry) is at least the minimum as its innermost returns.
"""

from __future__ import annotations

from dataclasses import replace
from typing import List

from bpf.plan import Pair, Probe, Stash

from ksnoop.errors import UsageError
from ksnoop.spec.resolve import ResolvedTrace, context_offsets
from ksnoop.spec.targets import Target, TargetKind


def only_slow_calls(resolved: ResolvedTrace, min_duration_ns: int) -> ResolvedTrace:
    """The same trace, showing (or counting) only calls of at least `min_duration_ns`."""
    plan = resolved.plan
    probes, targets, sources = plan.probes, resolved.targets, resolved.sources
    if any(p.path is not None for p in probes):  # -s: the innermost return decides for the path
        innermost = [p.path is not None and p.kind.is_return and p.path.level == p.path.length - 1 for p in probes]
        slow = tuple(replace(p, min_duration_ns=min_duration_ns) if last else p for p, last in zip(probes, innermost))
        return replace(resolved, plan=replace(plan, probes=slow))
    out_probes: List[Probe] = []
    out_targets: List[Target] = []
    out_sources: List[int] = []
    out_pairs: List[Pair] = []
    done = set()
    group = max((p.stash_group for p in probes), default=0) + 1  # for the pairs made here
    for n, (probe, target) in enumerate(zip(probes, targets)):
        if n in done:
            continue
        if target.kind is TargetKind.TRACEPOINT:
            raise UsageError(f"--min-duration: {target.label} is a tracepoint, which has no duration")
        partner = plan.partner(n)
        if partner is None and (probe.count is not None or probe.aggregate is not None):
            raise UsageError("--min-duration counts calls by their return: drop --calls-only")
        if partner is not None:
            done.add(partner)
            entry, exit_ = (probe, probes[partner]) if probe.kind.is_entry else (probes[partner], probe)
            if probe.count is None and exit_.aggregate is None:  # records: the entry held back, emitted with its return
                entry = replace(entry, stash=Stash.RECORD, emits=True)
                exit_ = replace(exit_, stash=Stash.RECORD)
        else:
            offsets = context_offsets(target, probe.kind)[1] if probe.context_offsets else ()
            entry = replace(probe, stash=Stash.RECORD, stash_group=group, emits=True)
            exit_ = Probe(
                probe.kind.return_kind,
                probe.target,
                probe.attach_btf_id,
                probe.module,
                stash=Stash.RECORD,
                stash_group=group,
                context_offsets=offsets,
            )
            group += 1
        exit_ = replace(exit_, requires_entry=True, min_duration_ns=min_duration_ns)
        out_pairs.append(Pair(len(out_probes), len(out_probes) + 1))
        out_probes.extend((entry, exit_))
        out_targets.extend((target, target))
        if sources:
            out_sources.extend((sources[n], sources[n]))
    plan = replace(plan, probes=tuple(out_probes), pairs=tuple(out_pairs))
    if sources:
        return replace(resolved, plan=plan, targets=tuple(out_targets), sources=tuple(out_sources))
    return replace(resolved, plan=plan, targets=tuple(out_targets))
