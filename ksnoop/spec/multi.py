# SPDX-License-Identifier: GPL-2.0-only
"""Which kprobes attach together: a glob's functions by one kprobe_multi link for their entries
and one for their returns, as retsnoop, bpftrace and pwru do, so that attaching hundreds takes
one system call instead of one kprobe (and its detach) each.

In: a resolved trace with kprobes (then the length of each probe's program). Out: the same trace
whose plan says, in Plan.multi, which probes are the branches of one kprobe_multi program.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Sequence, Set, Tuple

from bpf.plan import MultiAttach, ProbeKind
from bpf.templates import COOKIE_BRANCH_MAX

from ksnoop.spec.resolve import ResolvedTrace

# A glob of fewer functions is attached one kprobe each: a handful of links cost no more than one,
# and a program of one function needs no dispatch.
MULTI_MIN_FUNCTIONS = 8
# A branch is reached by 16-bit jumps from the dispatch at the program's start, and the verifier
# grows a program as it patches it (inlined helpers, rewritten context loads): 6.12 refused a
# 30,000-instruction program of all of tcp_* ("insn 22419 cannot be patched due to 16-bit range").
# So each program stays at a quarter of a jump's reach; a glob whose programs are longer gets
# several links (tcp_*'s --summary --calls-only programs: two a side).
MULTI_MAX_INSNS = 8192
# The cookie holds a branch number, 0 to COOKIE_BRANCH_MAX.
MULTI_MAX_BRANCHES = COOKIE_BRANCH_MAX + 1


def _sides(resolved: ResolvedTrace) -> Dict[Tuple[int, ProbeKind], List[int]]:
    # (spec, kprobe or kretprobe) -> the probes of a glob's functions that could share a link:
    # at least MULTI_MIN_FUNCTIONS of vmlinux (a module's functions are attached alone).
    sides: Dict[Tuple[int, ProbeKind], List[int]] = {}
    for index, probe in enumerate(resolved.plan.probes):
        source = resolved.sources[index] if resolved.sources else -1
        if source < 0 or resolved.globs[source] is None or probe.path is not None:
            continue
        if probe.kind in (ProbeKind.KPROBE, ProbeKind.KRETPROBE) and probe.module == "vmlinux":
            sides.setdefault((source, probe.kind), []).append(index)
    return {side: probes for side, probes in sides.items() if len(probes) >= MULTI_MIN_FUNCTIONS}


def multi_globs(resolved: ResolvedTrace) -> List[str]:
    """The globs whose kprobes group_kprobes would attach by kprobe_multi links."""
    return list(dict.fromkeys(str(resolved.globs[source]) for source, _kind in _sides(resolved)))


def group_kprobes(resolved: ResolvedTrace) -> ResolvedTrace:
    """`resolved` with each glob's kprobes grouped by side (see _sides) into one multi attachment,
    sharing one stash per glob. The programs generate() writes for it do not change when
    split_multi then cuts a side into several links: those share the stash still."""
    multi = [MultiAttach(tuple(probes), share=source) for (source, _kind), probes in _sides(resolved).items()]
    if not multi:
        return resolved
    return replace(resolved, plan=replace(resolved.plan, multi=tuple(multi)))


def split_multi(resolved: ResolvedTrace, branches: Sequence[Tuple[object, ...]]) -> ResolvedTrace:
    """`resolved` with each multi attachment cut into links of at most MULTI_MAX_INSNS
    instructions of branches, and MULTI_MAX_BRANCHES distinct ones. `branches[i]`: the
    instructions of probe i's program as a branch; the functions whose branches are the same
    instructions share one (generate_multi). A glob's entries and returns are cut at the same
    functions, so that each cut can be one kprobe session link (generate_session)."""
    plan = resolved.plan
    multi: List[MultiAttach] = []
    for sides in _by_share(resolved):
        # The sides' probes, function by function: (entry, return) or (entry,).
        functions = list(zip(*(side.probes for side in sides)))
        cuts: List[List[Tuple[int, ...]]] = [[]]
        seen: List[Set[Tuple[object, ...]]] = [set() for _ in sides]
        sizes = [0 for _ in sides]
        for probes in functions:
            added = [0 if branches[i] in seen[n] else len(branches[i]) for n, i in enumerate(probes)]
            full = any(
                sizes[n] + added[n] > MULTI_MAX_INSNS or (added[n] and len(seen[n]) == MULTI_MAX_BRANCHES)
                for n in range(len(sides))
            )
            if cuts[-1] and full:
                cuts.append([])
                seen = [set() for _ in sides]
                sizes = [0 for _ in sides]
                added = [len(branches[i]) for i in probes]
            cuts[-1].append(probes)
            for n, i in enumerate(probes):
                seen[n].add(branches[i])
                sizes[n] += added[n]
        for cut in cuts:
            multi.extend(
                MultiAttach(tuple(probes[n] for probes in cut), share=sides[0].share) for n in range(len(sides))
            )
    return replace(resolved, plan=replace(plan, multi=tuple(multi)))


def _by_share(resolved: ResolvedTrace) -> List[List[MultiAttach]]:
    """The multi attachments of each glob: [entries, returns] where each entry's return probe is
    the return side's probe at the same place (every glob of functions with return values), else
    each side alone."""
    plan = resolved.plan
    shares: Dict[int, List[MultiAttach]] = {}
    for multi in plan.multi:
        shares.setdefault(multi.share, []).append(multi)
    out: List[List[MultiAttach]] = []
    for sides in shares.values():
        entries = [m for m in sides if not plan.probes[m.probes[0]].kind.is_return]
        returns = [m for m in sides if plan.probes[m.probes[0]].kind.is_return]
        if len(entries) == len(returns) == 1 and [plan.partner(i) for i in entries[0].probes] == list(
            returns[0].probes
        ):
            out.append([entries[0], returns[0]])
        else:
            out.extend([side] for side in sides)
    return out
