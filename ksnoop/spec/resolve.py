# SPDX-License-Identifier: GPL-2.0-only
"""Parsed specs + BTF -> a Plan: the only place BTF knowledge turns into numbers.

Each value expression becomes a Capture (context slot, pointer hops, offset, size); each
predicate becomes a Test whose literal is checked against the value's type. Pointers to
structs are followed and the whole struct copied; char pointers are read as strings.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

from bpf.codegen import copies_from_registers
from bpf.plan import (
    MAX_CAPTURE_SIZE,
    MAX_CAPTURES,
    MAX_PATH_LENGTH,
    Pair,
    MAX_STRING_PREDICATE,
    Bitfield,
    Capture,
    CompareOp,
    Filters,
    GraphStep,
    PathStep,
    Plan,
    Predicate,
    Probe,
    ProbeKind,
    Stash,
    Test,
)
from btf import BTF, BTFError, Enum, Enum64, Float, Int, MemberPath, MemberPathError, Ptr, Struct, Union
from btf import Array as ArrayType
from btf import Const, TypeTag, Void, Volatile
from btf.members import resolve as resolve_members
from btf.values import is_char

from ksnoop.spec.language import (
    GLOB_CHARS,
    RETURN,
    Item,
    Literal,
    LiteralKind,
    SpecError,
    TraceSpec,
    ValueExpr,
    parse_spec,
)
from ksnoop.errors import UnknownTarget, UsageError, did_you_mean
from ksnoop.spec.calling import NoConvention, registers
from ksnoop.spec.targets import TRACEPOINT_PREFIX, KernelBTF, Target, TargetKind

# What a note says of a value shown by default that the probe cannot read (a summary, which shows
# no values, leaves such notes out).
LEFT_OUT = "left out of the values shown"
# How much of a string a char pointer's capture reads, NUL included.
STRING_SIZE = 128
# How many functions and tracepoints one trace attaches to unless --max-probes says otherwise.
DEFAULT_MAX_PROBES = 64
# The same where a glob's functions share one kprobe_multi link: attaching them is one system call
# whatever their number, so what grows is ksnoop's own work, about 1 ms a function to resolve,
# generate and verify; bpftrace and retsnoop attach thousands this way.
MULTI_MAX_PROBES = 2048


@dataclass(frozen=True)
class ResolvedTrace:
    """A plan, and for each of its probes the Target whose BTF decodes that probe's records."""

    plan: Plan
    targets: Tuple[Target, ...]
    # Per probe, the index of the spec it came from; per spec, its target glob or None.
    sources: Tuple[int, ...] = ()
    globs: Tuple[Optional[str], ...] = ()
    # Lines for stderr: how many targets each glob matched, and which it left out.
    notes: Tuple[str, ...] = ()


@dataclass(frozen=True)
class _Located:
    """A value expression resolved against a target: where it lives and its BTF type."""

    expr_text: str
    # The context slot holding the value, or the pointer `path` follows first: the argument's first
    # slot, moved on by that value's or pointer's byte offset in a struct the argument holds by value.
    slot: int
    path: MemberPath
    btf: BTF
    opaque_slot: bool  # see Capture.opaque_slot


def resolve(
    specs: Sequence[TraceSpec],
    kernel: KernelBTF,
    filters: Filters = Filters(),
    *,
    with_comm: bool = True,
    ringbuf_size: int = 1 << 22,
    kstack_depth: int = 0,
    max_probes: int = DEFAULT_MAX_PROBES,
    function_kind: ProbeKind = ProbeKind.FENTRY,
    defaults: bool = True,
) -> ResolvedTrace:
    """Resolve every spec; SpecError (usage, exit 2) pointing into the spec that does not fit.
    Entry and tracepoint records carry `kstack_depth` frames of the kernel stack (0: none).

    A spec whose target is a glob (`tcp_v4_*`, `tp:net_dev_*`) stands for every function, or
    every tracepoint, whose name matches; each gets its own probes and its own stash group.
    Its items must fit each function on its own: a function they do not fit (no argument of
    that name, no such member, a void return for `return`...) is left out, and the one note
    naming those left out says why for the first. When they fit none, that first error is
    raised. More than `max_probes` functions and tracepoints in all is a UsageError, as is a
    glob matching nothing (UnknownTarget-style, with the closest names).

    Functions are traced by `function_kind` probes: FENTRY (and fexit), or KPROBE (and kretprobe),
    which read arguments from the registers the calling convention puts them in (ksnoop.spec.calling).

    A spec that names no values shows every argument and the return value; with `defaults` False
    (a summary, which shows none) it captures only what it names, and a glob of hundreds resolves
    no argument it will not use.
    """
    probes: List[Probe] = []
    targets: List[Target] = []
    sources: List[int] = []
    notes: List[str] = []
    counts: List[Tuple[str, int]] = []
    pairs: List[Pair] = []
    group = 0
    for index, spec in enumerate(specs):
        try:
            found = kernel.glob_targets(spec.target) if spec.is_glob else [kernel.find_target(spec.target)]
        except UnknownTarget as err:
            raise SpecError(str(err), spec.text, spec.target_position) from None
        if spec.is_glob and not spec.items and len(found) > max_probes:  # fail before resolving them all
            raise UsageError(_too_many(len(found), [(spec.target, len(found))], max_probes))
        kept = 0
        left_out: List[str] = []
        first_error: Optional[SpecError] = None
        spec_notes: List[str] = []
        for target in found:
            try:
                new, new_notes = _probes(spec, target, group, kstack_depth, function_kind, defaults)
            except SpecError as err:
                if not spec.is_glob:
                    raise
                left_out.append(target.label)
                first_error = first_error or err
                continue
            group += 1
            kept += 1
            spec_notes.extend(new_notes)
            if len(new) == 2:  # an fentry and its fexit
                pairs.append(Pair(len(probes), len(probes) + 1))
            probes.extend(new)
            targets.extend(target for _ in new)
            sources.extend(index for _ in new)
        counts.append((spec.target, kept))
        if spec.is_glob:
            noun = "tracepoint" if spec.target.startswith(TRACEPOINT_PREFIX) else "function"
            if first_error is not None and not kept:
                raise SpecError(
                    f"none of the {len(found)} {noun}s matching '{spec.target}' fits: {first_error.reason}",
                    spec.text,
                    first_error.position,
                )
            notes.append(f"ksnoop: tracing {kept} {noun}{'' if kept == 1 else 's'} matching '{spec.target}'")
            if first_error is not None:
                notes.append(
                    f"ksnoop: warning: left out {len(left_out)} {noun}{'' if len(left_out) == 1 else 's'} "
                    f"matching '{spec.target}' whose values cannot be shown as asked (the first: "
                    f"{first_error.reason}): {', '.join(left_out)}"
                )
        notes.extend(spec_notes)
    total = sum(n for _, n in counts)
    if total > max_probes:
        raise UsageError(_too_many(total, counts, max_probes))
    plan = Plan(
        probes=tuple(probes), filters=filters, with_comm=with_comm, ringbuf_size=ringbuf_size, pairs=tuple(pairs)
    )
    return ResolvedTrace(
        plan,
        tuple(targets),
        tuple(sources),
        tuple(spec.target if spec.is_glob else None for spec in specs),
        tuple(notes),
    )


# The tracepoint every exiting task passes: call-path mode drops the task's state there.
TASK_EXIT_TRACEPOINT = "sched_process_exit"


def resolve_path(
    specs: Sequence[TraceSpec],
    kernel: KernelBTF,
    filters: Filters = Filters(),
    *,
    with_comm: bool = True,
    ringbuf_size: int = 1 << 22,
    kstack_depth: int = 0,
    function_kind: ProbeKind = ProbeKind.FENTRY,
) -> ResolvedTrace:
    """Call-path mode (`-s`): the specs name functions in call order, outermost first, and each is
    shown only inside a call of the one before, in the same task. Every function gets an fentry
    (its tests decide whether the call joins the path; its record is held in the task's state)
    and an fexit (which pops, and emits a return record with the duration). One more probe, on
    the sched_process_exit tracepoint, forgets the state of a task that dies inside a path.
    Globs, tracepoints, repeats and more than MAX_PATH_LENGTH functions are usage errors."""
    if len(specs) > MAX_PATH_LENGTH:
        raise UsageError(f"a call path of {len(specs)} functions; at most {MAX_PATH_LENGTH}")
    found: List[Target] = []
    for spec in specs:
        target = _one_function(
            spec,
            kernel,
            "a call path (-s) names functions one by one, not a glob",
            "a call path (-s) is made of functions: a tracepoint has no return to end a call",
        )
        if any(t.name == target.name and t.module == target.module for t in found):
            raise SpecError(
                f"{target.label} is already in the call path: each function can be one step",
                spec.text,
                spec.target_position,
            )
        found.append(target)
    length = len(found)
    levels: List[Tuple[int, Target, List[Probe]]] = []
    notes: List[str] = []
    for level, (spec, target) in enumerate(zip(specs, found)):
        sides = _sides(spec, target, function_kind)
        notes.extend(sides.notes)
        entry, exit_ = _entry_and_return(spec, target, function_kind, sides, path=PathStep(level, length))
        levels.append((level, target, [exit_, replace(entry, kstack_depth=kstack_depth)]))
    forget, task_exit = _task_exit_probe(kernel)
    probes = [forget]
    targets = [task_exit]
    sources = [-1]
    # Attached in this order: the state forgotten at exit first, then the innermost function first,
    # each return before its entry, so no path starts before every step of it is in place.
    pairs: List[Pair] = []
    for level, target, both in reversed(levels):
        pairs.append(Pair(entry=len(probes) + 1, exit=len(probes)))  # the return goes in first
        probes.extend(both)
        targets.extend(target for _ in both)
        sources.extend(level for _ in both)
    plan = Plan(
        probes=tuple(probes), filters=filters, with_comm=with_comm, ringbuf_size=ringbuf_size, pairs=tuple(pairs)
    )
    return ResolvedTrace(plan, tuple(targets), tuple(sources), tuple(None for _ in specs), tuple(notes))


def resolve_graph(
    root: TraceSpec,
    callees: Sequence[str],
    kernel: KernelBTF,
    filters: Filters = Filters(),
    *,
    full_args: bool = False,
    min_duration_ns: int = 0,
    with_comm: bool = True,
    ringbuf_size: int = 1 << 22,
    function_kind: ProbeKind = ProbeKind.FENTRY,
    max_probes: int = DEFAULT_MAX_PROBES,
) -> ResolvedTrace:
    """Function-graph mode (`-g`): the root spec's function, traced as `trace` traces it (its
    tests say which calls are roots; `min_duration_ns` keeps only root calls that slow), and each
    of `callees` (its static graph) at entry and return while its task is inside a root call:
    its arguments (numbers, pointers as addresses, char pointers as text; whole structs with
    `full_args`) and its return value. A sched_process_exit probe forgets the state of a task
    that dies inside a root call. Sources: 0 for the root, 1 for the callees (as though they were
    one glob, `globs[1]`: kprobe_multi groups them, and a callee the kernel refuses is left out
    with a warning, as a glob's function is)."""
    target = _one_function(
        root,
        kernel,
        "a function graph (-g) has one root: a function, not a glob",
        "a function graph (-g) is rooted at a function: a tracepoint calls nothing",
    )
    names = [name for name in dict.fromkeys(callees) if name != target.name]
    if 1 + len(names) > max_probes:
        raise UsageError(
            f"the graph of {target.label} has {1 + len(names)} functions, more than --max-probes {max_probes}: "
            "lower --graph-depth, leave some out with --graph-exclude, or raise --max-probes"
        )
    sides = _sides(root, target, function_kind)
    notes = list(sides.notes)
    # Attached in plan order: the state forgotten at exit first, the callees, the root last, so
    # that no root call starts before its callees are traced.
    forget, task_exit = _task_exit_probe(kernel)
    probes = [forget]
    targets = [task_exit]
    sources = [-1]
    callee_step = GraphStep(root=False)
    left_out = 0
    for name in names:
        callee = kernel.find_function(name)
        callee_spec = parse_spec(name)
        entry_captures, exit_captures, missing = _callee_captures(callee_spec, callee, function_kind, full_args)
        left_out += missing
        callee_sides = _Sides((), entry_captures, (), exit_captures)
        probes.extend(_entry_and_return(callee_spec, callee, function_kind, callee_sides, graph=callee_step))
        targets.extend((callee, callee))
        sources.extend((1, 1))
    if left_out:
        notes.append(f"ksnoop: {left_out} callee arguments {LEFT_OUT}: their registers or sizes cannot be copied")
    entry, exit_ = _entry_and_return(root, target, function_kind, sides, graph=GraphStep(root=True))
    probes.extend((entry, replace(exit_, min_duration_ns=min_duration_ns)))
    targets.extend((target, target))
    sources.extend((0, 0))
    pairs = tuple(Pair(entry=i, exit=i + 1) for i in range(1, len(probes), 2))
    plan = Plan(probes=tuple(probes), filters=filters, with_comm=with_comm, ringbuf_size=ringbuf_size, pairs=pairs)
    return ResolvedTrace(plan, tuple(targets), tuple(sources), (None, f"-g {target.label}"), tuple(notes))


def _entry_and_return(
    spec: TraceSpec, target: Target, function_kind: ProbeKind, sides: _Sides, **both: Any
) -> Tuple[Probe, Probe]:
    """A function's entry and return probes for what `sides` asks at each (no stash: the modes
    that keep per-task state, -s and -g, whose role `both` gives each)."""
    entry_offsets, return_offsets = _context_offsets(spec, target, function_kind)
    entry = Probe(
        function_kind,
        target.name,
        target.attach_btf_id,
        target.module,
        sides.entry_tests,
        sides.entry_captures,
        context_offsets=entry_offsets,
        **both,
    )
    exit_ = Probe(
        function_kind.return_kind,
        target.name,
        target.attach_btf_id,
        target.module,
        sides.exit_tests,
        sides.exit_captures,
        context_offsets=return_offsets,
        **both,
    )
    return entry, exit_


def _task_exit_probe(kernel: KernelBTF) -> Tuple[Probe, Target]:
    """The probe on sched_process_exit that forgets the per-task state (-s, -g) of a task dying
    inside a call path or a root call, and its target."""
    task_exit = kernel.find_target(TRACEPOINT_PREFIX + TASK_EXIT_TRACEPOINT)
    probe = Probe(
        ProbeKind.TP_BTF, task_exit.name, task_exit.attach_btf_id, task_exit.module, emits=False, forgets_path=True
    )
    return probe, task_exit


def _one_function(spec: TraceSpec, kernel: KernelBTF, not_a_glob: str, not_a_tracepoint: str) -> Target:
    """The one function a spec names; SpecError at the spec's target, saying `not_a_glob` or
    `not_a_tracepoint` (why the mode wants one function), or what the BTF does not have."""
    if spec.is_glob:
        raise SpecError(not_a_glob, spec.text, spec.target_position)
    try:
        target = kernel.find_target(spec.target)
    except UnknownTarget as err:
        raise SpecError(str(err), spec.text, spec.target_position) from None
    if target.kind is not TargetKind.FUNCTION:
        raise SpecError(not_a_tracepoint, spec.text, spec.target_position)
    return target


def _callee_captures(
    spec: TraceSpec, target: Target, function_kind: ProbeKind, full_args: bool
) -> Tuple[Tuple[Capture, ...], Tuple[Capture, ...], int]:
    """A graph callee's captures at entry and return (`spec` its bare name), and how many of its
    values were left out. Every argument and the return value, as trace shows them with
    `full_args`; otherwise a struct behind a pointer is the pointer alone (an address: most of a
    graph's calls pass the same few structs along)."""
    entry: List[Capture] = []
    exit_: List[Capture] = []
    missing = 0
    for item in _default_items(spec, target):
        try:
            located = _locate(spec, target, item.value, function_kind)
            capture = _capture(spec, item.value, located)
            if capture.address and not full_args:
                capture = _value(spec, item.value, located)
        except SpecError:
            missing += 1
            continue
        captures = exit_ if item.value.base == RETURN else entry
        if len(captures) < MAX_CAPTURES:
            captures.append(capture)
        else:
            missing += 1
    return tuple(entry), tuple(exit_), missing


def _too_many(total: int, counts: List[Tuple[str, int]], max_probes: int) -> str:
    globs = [(target, n) for target, n in counts if any(ch in target for ch in GLOB_CHARS)]
    what = ", ".join(f"'{target}' matches {n}" for target, n in globs)
    if len(counts) == 1 and globs:
        noun = "tracepoints" if globs[0][0].startswith(TRACEPOINT_PREFIX) else "functions"
        return (
            f"'{globs[0][0]}' matches {total} {noun}, more than --max-probes {max_probes}: "
            "narrow the glob or raise --max-probes"
        )
    return (
        f"{total} functions and tracepoints to trace ({what or 'each spec names one'}), more than "
        f"--max-probes {max_probes}: narrow the glob or raise --max-probes"
    )


@dataclass(frozen=True)
class _Sides:
    """What a spec asks of one target, at entry (or the tracepoint) and at return."""

    entry_tests: Tuple[Test, ...]
    entry_captures: Tuple[Capture, ...]
    exit_tests: Tuple[Test, ...]
    exit_captures: Tuple[Capture, ...]
    notes: Tuple[str, ...] = ()  # the values shown by default that are left out, and why


def _sides(
    spec: TraceSpec, target: Target, function_kind: ProbeKind = ProbeKind.FENTRY, with_defaults: bool = True
) -> _Sides:
    defaults = () if spec.items or not with_defaults else _default_items(spec, target)
    if (
        with_defaults
        and target.kind is TargetKind.FUNCTION
        and spec.items
        and all(item.value.base == RETURN for item in spec.items)
    ):
        # Only the return value named (`f(return != 0)`): the entry still shows every argument.
        defaults = _default_items(spec, target, with_return=False)
    entry_tests: List[Test] = []
    entry_captures: List[Capture] = []
    exit_tests: List[Test] = []
    exit_captures: List[Capture] = []
    notes: List[str] = []
    for item, by_default in [(item, True) for item in defaults] + [(item, False) for item in spec.items]:
        at_return = item.value.base == RETURN
        if at_return and target.kind is TargetKind.TRACEPOINT:
            raise SpecError("a tracepoint has no return value", spec.text, item.value.position)
        captures = exit_captures if at_return else entry_captures
        try:
            located = _locate(spec, target, item.value, function_kind)
            if all(c.label != located.expr_text for c in captures):  # `f(x > 1, x)` shows x once
                captures.append(_capture(spec, item.value, located))
        except SpecError as err:
            if not by_default:
                raise
            # Shown by default, not named: what the program cannot read or copy (a struct passed by
            # value that registers do not hold whole; for a kprobe, what no register holds for
            # certain) is left out, and a note says so.
            notes.append(f"ksnoop: {target.label}: '{item.value.text}' {LEFT_OUT}: {err.reason}")
            continue
        if item.op is not None:
            assert item.literal is not None
            test = _test(spec, located, item)
            (exit_tests if at_return else entry_tests).append(test)
    for captures in (entry_captures, exit_captures):
        if len(captures) > MAX_CAPTURES:
            raise SpecError(f"{len(captures)} values in one probe; at most {MAX_CAPTURES}", spec.text, 0)
    return _Sides(tuple(entry_tests), tuple(entry_captures), tuple(exit_tests), tuple(exit_captures), tuple(notes))


def _probes(
    spec: TraceSpec,
    target: Target,
    group: int,
    kstack_depth: int,
    function_kind: ProbeKind = ProbeKind.FENTRY,
    with_defaults: bool = True,
) -> Tuple[List[Probe], Tuple[str, ...]]:
    """The target's probes for the spec, and the notes on what they leave out."""
    sides = _sides(spec, target, function_kind, with_defaults)
    entry_tests, entry_captures = sides.entry_tests, sides.entry_captures
    exit_tests, exit_captures = sides.exit_tests, sides.exit_captures
    if target.kind is TargetKind.TRACEPOINT:
        return [
            Probe(
                ProbeKind.TP_BTF,
                target.name,
                target.attach_btf_id,
                target.module,
                tuple(entry_tests),
                tuple(entry_captures),
                kstack_depth=kstack_depth,
            )
        ], sides.notes
    # A probe that reads no argument (a --summary counting calls) needs no registers: a glob's
    # hundreds of prototypes are not classified for nothing.
    reads = entry_tests or entry_captures or exit_tests or exit_captures
    entry_offsets, return_offsets = _context_offsets(spec, target, function_kind) if reads else ((), ())
    entry = Probe(
        function_kind,
        target.name,
        target.attach_btf_id,
        target.module,
        tuple(entry_tests),
        tuple(entry_captures),
        kstack_depth=kstack_depth,
        context_offsets=entry_offsets,
    )
    if not exit_captures:
        return [entry], sides.notes
    # A test on the return value holds the entry record back until the return passes it;
    # otherwise the entry leaves its time so the return record carries duration_ns.
    stash = Stash.RECORD if exit_tests else Stash.TIME
    entry = replace(
        entry, stash=stash, stash_group=group, emits=bool(entry_captures) or stash is Stash.RECORD or kstack_depth > 0
    )
    exit_ = Probe(
        function_kind.return_kind,
        target.name,
        target.attach_btf_id,
        target.module,
        tuple(exit_tests),
        tuple(exit_captures),
        stash=stash,
        stash_group=group,
        requires_entry=bool(entry_tests),
        context_offsets=return_offsets,
    )
    return [entry, exit_], sides.notes


def _default_items(spec: TraceSpec, target: Target, with_return: bool = True) -> Tuple[Item, ...]:
    """No items: every argument at entry and the return value (unless void) at exit."""
    names = [a.name for a in target.args]
    if with_return and target.kind is TargetKind.FUNCTION and target.return_type_id != 0:
        names.append(RETURN)
    return tuple(Item(ValueExpr(name, (), spec.target_position, spec.target_position)) for name in names)


def _slots(target: Target) -> Dict[str, Tuple[int, int]]:
    """Each argument's (first u64 context slot, type id); a struct passed by value may take two."""
    out = {}
    slot = 0
    for arg in target.args:
        out[arg.name] = (slot, arg.type_id)
        try:
            size = target.btf.resolve_size(arg.type_id)
        except BTFError:
            size = 8
        slot += max(1, (size + 7) // 8)
    out[RETURN] = (slot, target.return_type_id)
    return out


def context_offsets(target: Target, function_kind: ProbeKind) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """The entry's and the return's Probe.context_offsets for `target` traced by `function_kind`
    probes: none for fentry; for kprobes, the registers of the calling convention (NoConvention
    where ksnoop does not know it)."""
    if function_kind is not ProbeKind.KPROBE:
        return (), ()
    found = registers(target)
    return found.entry_offsets, found.return_offsets


def _context_offsets(spec: TraceSpec, target: Target, function_kind: ProbeKind) -> Tuple[Tuple[int, ...], ...]:
    try:
        return context_offsets(target, function_kind)
    except NoConvention as err:
        raise SpecError(f"cannot put a kprobe on {target.label}: {err}", spec.text, spec.target_position) from None


def _locate(spec: TraceSpec, target: Target, expr: ValueExpr, function_kind: ProbeKind = ProbeKind.FENTRY) -> _Located:
    slots = _slots(target)
    if function_kind is ProbeKind.KPROBE and target.kind is TargetKind.FUNCTION and expr.base in slots:
        try:
            refused = registers(target).refused
        except NoConvention as err:
            raise SpecError(f"cannot put a kprobe on {target.label}: {err}", spec.text, expr.position) from None
        if expr.base in refused:
            raise SpecError(
                f"a kprobe on {target.label} cannot read '{expr.base}': {refused[expr.base]}",
                spec.text,
                expr.position,
            )
    if expr.base == RETURN and target.return_type_id == 0:
        raise SpecError(f"{target.label} returns void", spec.text, expr.position)
    if expr.base not in slots:
        names = [a.name for a in target.args]
        close = difflib.get_close_matches(expr.base, names, n=1, cutoff=0.5)
        hint = f"{did_you_mean(close)} " if close else ""
        listed = ", ".join(names) if names else "none"
        raise SpecError(
            f"{target.label} has no argument '{expr.base}'; {hint}its arguments are: {listed}", spec.text, expr.position
        )
    slot, type_id = slots[expr.base]
    try:
        path = resolve_members(target.btf, type_id, expr.steps)
    except MemberPathError as err:
        raise SpecError(str(err), spec.text, err.position) from None
    except BTFError as err:
        raise SpecError(f"{expr.text}: {err}", spec.text, expr.position) from None
    # A struct passed by value fills consecutive slots, so a byte offset in it picks the slot.
    if path.in_memory:
        if path.base_offset % 8:
            raise SpecError(
                f"'{expr.text}' follows a pointer at byte {path.base_offset} of '{expr.base}', which "
                "straddles two argument slots",
                spec.text,
                expr.position,
            )
        slot += path.base_offset // 8
    else:
        slot += path.offset // 8
    return _Located(expr.text, slot, path, target.btf, _opaque(target.btf, type_id))


def _opaque(btf: BTF, type_id: int) -> bool:
    """A pointer the verifier's btf_ctx_access will not let a program load from the context: one to
    anything but a struct or union, an int or void (an enum, another pointer, a function...)."""
    typ = btf.skip_modifiers(type_id)
    if not isinstance(typ, Ptr):
        return False
    pointee = btf.skip_modifiers(typ.type_id)
    return not isinstance(pointee, (Struct, Union, Int, Void))


def _followed(path: MemberPath) -> Tuple[int, ...]:
    """Hops that end at the object a pointer-valued path points to: the pointer's own load is one more
    hop if it is in memory; in registers the pointer is the located slot itself."""
    if path.in_memory:
        return path.hops + (path.offset,)
    return ()


def _value(spec: TraceSpec, expr: ValueExpr, located: _Located) -> Capture:
    """The value's own bytes as they are: behind the slot's pointer, or in the located slot. In a slot
    holding part of a struct passed by value, a member past the slot's first byte (or a bitfield) is
    the slot read whole and the member's bits cut out of it: numbers only, and within the slot."""
    btf, path = located.btf, located.path
    value = Capture(
        label=located.expr_text,
        slot=located.slot,
        opaque_slot=located.opaque_slot,
        hops=path.hops,
        in_memory=path.in_memory,
        offset=path.offset,
        size=path.size,
        type_id=path.type_id,
        bitfield=Bitfield(path.bit_offset, path.bitfield_size) if path.bitfield_size else None,
    )
    if path.in_memory:
        return value
    within = path.offset % 8
    if not within:
        return replace(value, offset=0)
    first_bit = 8 * within + path.bit_offset
    bits = path.bitfield_size or 8 * path.size
    type_name = btf.type_name(path.type_id)
    if first_bit + bits > 64:
        raise SpecError(
            f"'{located.expr_text}' ({type_name}) straddles two argument slots; show '{expr.base}' whole instead",
            spec.text,
            expr.position,
        )
    final = btf.skip_modifiers(path.type_id)
    foreign = not path.bitfield_size and btf.value_byteorder(path.type_id) != btf.byteorder
    if not isinstance(final, (Int, Enum, Enum64)) or foreign:
        raise SpecError(
            f"'{located.expr_text}' ({type_name}) starts at byte {within} of an argument slot, where "
            f"only a number in the kernel's byte order is cut out; show '{expr.base}' whole instead",
            spec.text,
            expr.position,
        )
    return replace(value, offset=0, size=8, bitfield=Bitfield(first_bit, bits))


def _user_pointer(btf: BTF, ptr: Ptr) -> bool:
    type_id = ptr.type_id
    for _ in range(16):
        typ = btf.type_by_id(type_id)
        if isinstance(typ, TypeTag) and typ.name == "user":
            return True
        if not hasattr(typ, "type_id") or isinstance(typ, (Ptr, ArrayType)):
            return False
        type_id = typ.type_id
    return False


def _is_text_bytes(btf: BTF, ptr: Ptr) -> bool:
    """A `const unsigned char *` spelled so, not through a typedef such as u8 (which the kernel uses
    for bytes): text, as struct qstr's name (a dentry's) is."""
    typ = btf.type_by_id(ptr.type_id)
    const = False
    for _ in range(16):
        if isinstance(typ, Int):
            return typ.name == "unsigned char" and const
        if not isinstance(typ, (Const, Volatile, TypeTag)):
            return False
        const = const or isinstance(typ, Const)
        typ = btf.type_by_id(typ.type_id)
    return False


def _capture(spec: TraceSpec, expr: ValueExpr, located: _Located) -> Capture:
    """What the record carries for a value: followed and whole for struct pointers, text for char pointers."""
    btf, path = located.btf, located.path
    final = btf.skip_modifiers(path.type_id)
    base = _value(spec, expr, located)
    if base.bitfield is not None:
        return base
    if isinstance(final, Ptr):
        pointee = btf.skip_modifiers(final.type_id)
        hops = _followed(path)
        if is_char(pointee) or _is_text_bytes(btf, final):
            return replace(
                base,
                hops=hops,
                in_memory=True,
                offset=0,
                size=STRING_SIZE,
                string=True,
                user_memory=_user_pointer(btf, final),
            )
        if isinstance(pointee, (Struct, Union)) and pointee.size:
            size = min(pointee.size, MAX_CAPTURE_SIZE)
            return replace(
                base,
                hops=hops,
                in_memory=True,
                offset=0,
                size=size,
                full_size=pointee.size if size < pointee.size else 0,
                type_id=pointee.id,
                user_memory=_user_pointer(btf, final),
                address=True,
            )
        return base
    if not path.in_memory:
        _check_registers(spec, expr, located)
        return base
    if isinstance(final, (Struct, Union, ArrayType)):
        size = min(path.size, MAX_CAPTURE_SIZE)
        return replace(base, size=size, full_size=path.size if size < path.size else 0)
    return base


def _check_registers(spec: TraceSpec, expr: ValueExpr, located: _Located) -> None:
    """SpecError unless the program can copy a value held in the context's slots: a struct passed by
    value may fill two (of up to 16 bytes, in two registers); a return value is one."""
    size = located.path.size
    if expr.base == RETURN:
        if size not in (1, 2, 4, 8):
            raise SpecError(
                f"'{RETURN}' is a {size}-byte value; ksnoop copies 1, 2, 4 or 8 bytes of a return value",
                spec.text,
                expr.position,
            )
    elif not copies_from_registers(size):
        final = located.btf.skip_modifiers(located.path.type_id)
        members = "; name its members instead" if isinstance(final, (Struct, Union)) else ""
        raise SpecError(
            f"'{located.expr_text}' is a {size}-byte value passed in registers: ksnoop copies 1, 2, 4, 8, "
            f"9, 10, 12 or 16 bytes from them{members}",
            spec.text,
            expr.position,
        )


_OPS = {op.value: op for op in CompareOp}


def _test(spec: TraceSpec, located: _Located, item: Item) -> Test:
    btf, path = located.btf, located.path
    literal = item.literal
    assert literal is not None and item.op is not None
    op = _OPS[item.op]
    final = btf.skip_modifiers(path.type_id)
    type_name = btf.type_name(path.type_id)
    value = _value(spec, item.value, located)

    def fail(message: str) -> SpecError:
        return SpecError(message, spec.text, literal.position)

    if literal.kind is LiteralKind.STRING:
        assert isinstance(literal.value, str)
        data = literal.value.encode()
        if op not in (CompareOp.EQ, CompareOp.NE):
            raise SpecError(f"strings compare only with == and !=, not {item.op}", spec.text, item.op_position)
        if len(data) + 1 > MAX_STRING_PREDICATE:
            raise fail(f"string of {len(data)} bytes; at most {MAX_STRING_PREDICATE - 1} compare")
        if isinstance(final, ArrayType) and is_char(btf.skip_modifiers(final.type_id)):
            if len(data) > final.nelems:
                raise fail(f"'{literal.value}' is longer than '{located.expr_text}' ({type_name}) can hold")
            return Test(value, Predicate(op, data))
        if isinstance(final, Ptr) and (is_char(btf.skip_modifiers(final.type_id)) or _is_text_bytes(btf, final)):
            string = replace(
                value,
                hops=_followed(path),
                in_memory=True,
                offset=0,
                size=STRING_SIZE,
                string=True,
                user_memory=_user_pointer(btf, final),
            )
            return Test(string, Predicate(op, data))
        raise fail(
            f"cannot compare '{located.expr_text}' ({type_name}) with a string; strings compare with "
            "char arrays and char pointers"
        )
    if not isinstance(final, (Int, Enum, Enum64, Ptr)) or isinstance(final, Float):
        raise fail(
            f"cannot compare '{located.expr_text}' ({type_name}) with {_describe(literal)}; "
            "name a member that is a number"
        )
    if literal.kind is LiteralKind.NAME:
        constant = _name_constant(spec, btf, final, literal, located.expr_text, type_name)
    else:
        assert isinstance(literal.value, int)
        constant = literal.value
    if isinstance(final, Ptr) and not (literal.kind is LiteralKind.NAME or constant >= 0):
        raise fail(f"a pointer compares with NULL or an address, not {constant}")
    signed = isinstance(final, (Int, Enum, Enum64)) and final.signed
    bits = path.bitfield_size or 8 * path.size
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not low <= constant <= high:
        raise fail(f"{constant} is out of range for '{located.expr_text}' ({type_name}: {low}..{high})")
    order = btf.value_byteorder(path.type_id)
    if order != btf.byteorder and not path.bitfield_size:
        # __be16 and its kind hold their number in their own byte order: the program compares the
        # bytes as loaded, so the constant is swapped here, once (no swap in the kernel at run time),
        # and only equality survives the swap.
        if op not in (CompareOp.EQ, CompareOp.NE):
            wording = "network" if order == "big" else "little-endian"
            raise SpecError(
                f"'{located.expr_text}' ({type_name}) is in {wording} byte order: compare it with == "
                f"or !=, not {item.op}",
                spec.text,
                item.op_position,
            )
        swapped = constant.to_bytes(path.size, order, signed=signed)  # type: ignore[arg-type]
        constant = int.from_bytes(swapped, btf.byteorder, signed=signed)  # type: ignore[arg-type]
    return Test(value, Predicate(op, constant, signed))


def _name_constant(spec: TraceSpec, btf: BTF, final: object, literal: Literal, expr: str, type_name: str) -> int:
    name = literal.value
    assert isinstance(name, str)
    if name == "NULL":
        if not isinstance(final, Ptr):
            raise SpecError(f"NULL compares with pointers; '{expr}' is {type_name}", spec.text, literal.position)
        return 0
    if isinstance(final, (Enum, Enum64)):
        for e in final.values:
            if e.name == name:
                return e.value
        close = difflib.get_close_matches(name, [e.name for e in final.values], n=3, cutoff=0.5)
        hint = f"; {did_you_mean(close)}" if close else ""
        raise SpecError(f"{type_name} has no enumerator '{name}'{hint}", spec.text, literal.position)
    raise SpecError(
        f"'{name}' is not a value for '{expr}' ({type_name}): use a number, or NULL for a pointer",
        spec.text,
        literal.position,
    )


def _describe(literal: Literal) -> str:
    return {LiteralKind.INTEGER: "a number", LiteralKind.STRING: "a string", LiteralKind.NAME: "a name"}[literal.kind]


def resolve_value(
    spec: TraceSpec, target: Target, expr: ValueExpr, function_kind: ProbeKind = ProbeKind.FENTRY, own: bool = False
) -> Capture:
    """One value of `target` as a record's capture reads it (a struct pointer followed to the
    struct, a char pointer to its text) or, with `own`, the value's own bytes (the pointer itself);
    its type is the capture's type_id in target.btf. SpecError, pointing into `spec`, as from resolve()."""
    located = _locate(spec, target, expr, function_kind)
    return _value(spec, expr, located) if own else _capture(spec, expr, located)


def resolve_items(
    spec: TraceSpec, target: Target, items: Sequence[Item]
) -> Tuple[Tuple[Test, ...], Tuple[Capture, ...]]:
    """The tests and captures `items` ask of `target`'s context slots, resolved as a tracepoint's are:
    each value shown once however often it is named, each comparison a Test. For commands other
    than trace (dump), which build their own probes; SpecError as from resolve()."""
    tests: List[Test] = []
    captures: List[Capture] = []
    for item in items:
        located = _locate(spec, target, item.value)
        if all(c.label != located.expr_text for c in captures):
            captures.append(_capture(spec, item.value, located))
        if item.op is not None:
            tests.append(_test(spec, located, item))
    if len(captures) > MAX_CAPTURES:
        raise SpecError(f"{len(captures)} values in one probe; at most {MAX_CAPTURES}", spec.text, 0)
    return tuple(tests), tuple(captures)
