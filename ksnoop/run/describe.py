# SPDX-License-Identifier: GPL-2.0-only
"""The one describer: what `-v` says of a plan (each probe, test and capture with its offsets,
then each program's listing), and the resolver's notes, on stderr, sanitised."""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, TextIO, Tuple

from bpf.codegen import Program
from bpf.insn import Insn
from bpf.listing import format_insns
from bpf.plan import Capture, ProbeKind

from ksnoop.sanitize import sanitize
from ksnoop.run.options import Summary
from ksnoop.spec.resolve import ResolvedTrace
from ksnoop.spec.targets import TRACEPOINT_PREFIX


def describe_plan(resolved: ResolvedTrace, programs: Tuple[Program, ...]) -> List[str]:
    """`-v`: one line per probe and per capture, then each program's listing."""
    lines = []
    listed: Dict[Tuple[Insn, ...], str] = {}  # a kprobe_multi branch listed already -> whose
    for probe, program in zip(resolved.plan.probes, programs):
        lines.append(
            f"probe {probe.kind.value}:{probe.target} attach_btf_id {probe.attach_btf_id} "
            f"({probe.module}), record {program.layout.size} bytes"
        )
        for test in probe.tests:
            c = test.value
            lines.append(
                f"  test {c.label} {test.predicate.op.value} {test.predicate.constant!r}: slot {c.slot} "
                f"hops {list(c.hops)} offset {c.offset} size {c.size}"
            )
        for c, offset in zip(probe.captures, program.layout.capture_offsets):
            lines.append(
                f"  capture {c.label}: slot {c.slot} hops {list(c.hops)} "
                f"{'offset ' + str(c.offset) if c.in_memory else 'register'} size {c.size}"
                f"{' (of ' + str(c.full_size) + ')' if c.truncated else ''} -> record +{offset}"
            )
        if program.layout.kstack_depth:
            lines.append(f"  kstack: {program.layout.kstack_depth} frames -> record +{program.layout.kstack_offset}")
        if probe.path is not None:
            lines.append(
                f"  call path: level {probe.path.level} of {probe.path.length}"
                f"{', the innermost' if probe.path.level == probe.path.length - 1 else ''}"
            )
        if probe.forgets_path:
            lines.append("  forgets the call-path state of each exiting task")
        if probe.count is not None:  # --summary: counters, no record
            errors = f"errors of a {probe.count.errors.size}-byte return" if probe.count.errors else "no errors"
            lines.append(f"  count: key {probe.count.key}, calls, {errors}{', latency' if probe.count.latency else ''}")
        if probe.aggregate is not None:  # --count-by / --hist: a count per key, no record
            aggregate = probe.aggregate
            layout = resolved.plan.aggregate_layout
            parts = ", ".join(
                (part.value if not isinstance(part, Capture) else f"{part.label} size {part.size}")
                + f" -> key +{offset}"
                for part, offset in zip(aggregate.parts, layout.part_offsets)
            )
            hist = aggregate.hist if isinstance(aggregate.hist, str) or aggregate.hist is None else aggregate.hist.label
            lines.append(
                f"  aggregate: function {aggregate.key}, key of {layout.size} bytes ({parts or 'no values'})"
                f"{', log2 of ' + hist if hist else ''}"
            )
        if program.branch and program.insns in listed:
            lines.append(f"  kprobe_multi branch: {len(program.insns)} instructions, {listed[program.insns]}'s")
            continue
        if program.branch:
            listed[program.insns] = probe.target
            lines.append(f"  kprobe_multi branch: {len(program.insns)} instructions (its numbers from the cookie)")
        else:
            lines.append(f"  program {program.name}: {len(program.insns)} instructions")
        lines.extend("    " + line for line in format_insns(program.insns))
    for multi in resolved.plan.multi:
        probes = resolved.plan.probes
        side = "returns" if probes[multi.probes[0]].kind.is_return else "entries"
        how = "one link"
        if resolved.plan.session_is_return and resolved.plan.partner(multi.probes[0]) is not None:
            how = "one kprobe session link with their other side where the kernel takes it, else one link"
        lines.append(
            f"kprobe_multi: the {side} of {len(multi.probes)} functions by {how}, one program whose "
            f"branches (above) the link's cookie for the function that fired selects, "
            f"{len({programs[i].insns for i in multi.probes})} distinct: "
            + ", ".join(probes[i].target for i in multi.probes)
        )
    return lines


def write_notes(resolved: ResolvedTrace, programs: Tuple[Program, ...], verbose: int, err: TextIO) -> None:
    """The resolver's notes, and with `verbose` the plan and listings, on stderr, sanitised."""
    for note in resolved.notes:
        err.write(sanitize(note) + "\n")
    if verbose:
        for line in describe_plan(resolved, programs):
            err.write(sanitize(line) + "\n")


def ready_line(
    resolved: ResolvedTrace,
    labels: Iterable[str],
    duration_s: Optional[float],
    summary: bool,
    serving: Optional[str] = None,
) -> str:
    """The line that says every probe is attached (`labels`: the targets attached), so that a
    script can wait for it before it starts its workload, as for bcc's "Tracing... Hit Ctrl-C";
    `serving`: the URL of the metrics (--metrics), which say the counts (`summary`) or the records' (--records)."""
    labels = set(labels)
    tracepoints = sum(1 for label in labels if label.startswith(TRACEPOINT_PREFIX))
    functions = len(labels) - tracepoints
    parts = []
    if functions:
        parts.append(f"{plural(functions, 'function')} ({_function_probes(resolved)})")
    if tracepoints:
        parts.append(plural(tracepoints, "tracepoint"))
    what = ", ".join(parts)
    if serving is not None and summary:
        until = f"for {duration_s:g} s or until Ctrl-C" if duration_s is not None else "until Ctrl-C or SIGTERM"
        return f"ksnoop: counting calls of {what}; metrics at {serving} {until}"
    if summary:
        when = "at the time limit or Ctrl-C" if duration_s is not None else "at Ctrl-C"
        return f"ksnoop: counting calls of {what}; the summary comes {when}"
    until = f"stops after {duration_s:g} s or at Ctrl-C" if duration_s is not None else "Ctrl-C to stop"
    metrics = f"; metrics at {serving}" if serving is not None else ""
    return f"ksnoop: tracing {what}{metrics}; {until}"


def _function_probes(resolved: ResolvedTrace) -> str:
    plan = resolved.plan
    kinds = {p.kind for p in plan.probes}
    if ProbeKind.FENTRY in kinds or ProbeKind.FEXIT in kinds:
        return "fentry/fexit" if ProbeKind.FEXIT in kinds else "fentry"
    if plan.session_is_return and plan.multi:
        return "kprobe session"
    if plan.multi:
        return "kprobe_multi"
    return "kprobes" if ProbeKind.KRETPROBE in kinds else "kprobe"


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def say_summary(summary: Summary, err: TextIO) -> None:
    """The last line of a trace: how many records (and lost ones), or calls counted."""
    if summary.calls is not None:
        err.write(f"ksnoop: {plural(summary.calls, 'call')} counted\n")
    else:
        lost = f", {summary.lost} lost (ring buffer full)" if summary.lost else ""
        err.write(f"ksnoop: {plural(summary.records, 'record')}{lost}\n")
    err.flush()
