# SPDX-License-Identifier: GPL-2.0-only
"""Dump specs + iterator targets -> a Plan of one iterator probe per spec.

The spec language is trace's (`task_file(task->pid, fd, file->f_path.dentry->d_name.name)`); its
names are the context's members, resolved by ksnoop/spec/resolve.py as a tracepoint's arguments are.
Each probe's first test skips the kernel's call after the last object (the object NULL), and its
captures are cut, and flagged as cut, until a record fits the iterator's seq_file buffer.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from bpf.plan import MAX_CAPTURE_SIZE, Capture, CompareOp, Plan, Predicate, Probe, ProbeKind, RecordLayout, Test
from btf import BTF, Array, Ptr, Struct, Union, Void
from btf.values import is_char

from ksnoop.errors import RuntimeFailure, UnknownTarget, UsageError, did_you_mean
from ksnoop.spec.iter_targets import META, IterTarget, IterTargets, ParamKind
from ksnoop.spec.resolve import ResolvedTrace, resolve_items
from ksnoop.spec.language import RETURN, Item, SpecError, TraceSpec, ValueExpr, parse_spec
from ksnoop.spec.targets import ITER_PREFIX

# The smallest piece of a struct a cut leaves: one u64.
MIN_CUT_SIZE = 8


@dataclass(frozen=True)
class IterParams:
    """What to walk, for targets that take a parameter (union bpf_iter_link_info)."""

    map_id: Optional[int] = None  # map element iterators: the map, by id
    pid: Optional[int] = None  # task iterators: one process (every thread)
    tid: Optional[int] = None  # task iterators: one thread
    cgroup_id: Optional[int] = None  # cgroup iterator: where to start, by id...
    cgroup_path: Optional[str] = None  # ...or by path (cgroupfs)
    cgroup_order: Optional[str] = None  # cgroup iterator: "self-only", "descendants-pre"...

    def kinds(self) -> List[Tuple[str, ParamKind]]:
        """(option, kind) of each option given."""
        given = [
            ("--map-id", ParamKind.MAP, self.map_id),
            ("--pid", ParamKind.TASK, self.pid),
            ("--tid", ParamKind.TASK, self.tid),
            ("--cgroup-id", ParamKind.CGROUP, self.cgroup_id),
            ("--cgroup", ParamKind.CGROUP, self.cgroup_path),
            ("--cgroup-order", ParamKind.CGROUP, self.cgroup_order),
        ]
        return [(option, kind) for option, kind, value in given if value is not None]


@dataclass(frozen=True)
class ResolvedDump:
    """The plan (one ITER probe per spec, in order) and, per probe, the iterator target it walks."""

    resolved: ResolvedTrace
    iters: Tuple[IterTarget, ...]


def parse_dump_spec(text: str) -> TraceSpec:
    """parse_spec, also taking a target written as list and info name it (`dump:task(...)`)."""
    stripped = text.lstrip()
    if not stripped.startswith(ITER_PREFIX):
        return parse_spec(text)
    start = len(text) - len(stripped)
    # Blank the prefix out, so every position the parser reports is a position in `text`.
    blanked = text[:start] + " " * len(ITER_PREFIX) + stripped[len(ITER_PREFIX) :]
    try:
        spec = parse_spec(blanked)
    except SpecError as err:
        raise SpecError(err.reason, text, err.position) from None
    return dataclasses.replace(spec, text=text, target_position=start)


def resolve_dump(
    specs: Sequence[TraceSpec],
    iters: IterTargets,
    params: IterParams = IterParams(),
    *,
    max_record_size: int,
    element_sizes: Optional[Tuple[int, int]] = None,
) -> ResolvedDump:
    """One ITER probe per spec. SpecError (usage) for a spec that does not fit its target, UsageError
    for options the targets do not take or a target that needs one, RuntimeFailure for an option
    this kernel's union bpf_iter_link_info lacks. Records are at most `max_record_size` bytes.

    `element_sizes` are the (key, value) sizes of the --map-id map, when known: a map element's
    `key` and `value` (void pointers in the context) are then copied as that many bytes."""
    probes: List[Probe] = []
    found: List[IterTarget] = []
    notes: List[str] = []
    for spec in specs:
        if spec.is_glob:
            raise SpecError(
                "dump walks one iterator target per spec, not a glob (see ksnoop list 'dump:*')",
                spec.text,
                spec.target_position,
            )
        try:
            target = iters.find(spec.target)
        except UnknownTarget as err:
            raise SpecError(str(err), spec.text, spec.target_position) from None
        check_params(target, params, iters)
        items = spec.items or default_items(spec, target)
        for item in items:
            _check_name(spec, target, item.value)
        tests, captures = resolve_items(spec, target.target, items)
        if target.params is ParamKind.MAP and element_sizes is not None:
            captures = _element_bytes(target, captures, element_sizes)
        captures, cut = fit_captures(captures, max_record_size, spec, target.target.btf)
        for label, size, full_size in cut:
            notes.append(
                f"ksnoop: {target.target.label}: '{label}' cut to {size} of {full_size} bytes, so that "
                f"a record fits the iterator's buffer ({max_record_size} bytes)"
            )
        probes.append(
            Probe(
                ProbeKind.ITER,
                target.name,
                target.target.attach_btf_id,
                target.target.module,
                (_object_test(target),) + tests,
                captures,
            )
        )
        found.append(target)
    plan = Plan(probes=tuple(probes), with_comm=False)
    resolved = ResolvedTrace(
        plan, tuple(t.target for t in found), tuple(range(len(found))), tuple(None for _ in found), tuple(notes)
    )
    return ResolvedDump(resolved, tuple(found))


def default_items(spec: TraceSpec, target: IterTarget) -> Tuple[Item, ...]:
    """No items: every member of the context but meta."""
    return tuple(Item(ValueExpr(a.name, (), spec.target_position, spec.target_position)) for a in target.members)


def _check_name(spec: TraceSpec, target: IterTarget, expr: ValueExpr) -> None:
    """A value must start at a member of the context (not meta, not `return`)."""
    names = [a.name for a in target.members]
    if expr.base == RETURN:
        raise SpecError(
            f"an iterator has no return value; {target.target.label} gives: {', '.join(names)}",
            spec.text,
            expr.position,
        )
    if expr.base in names:
        return
    close = difflib.get_close_matches(expr.base, names, n=1, cutoff=0.5)
    hint = f"{did_you_mean(close)} " if close else ""
    why = " (meta is the iterator's own bookkeeping)" if expr.base == META else ""
    raise SpecError(
        f"{target.target.label} has no member '{expr.base}'{why}; {hint}its context gives: {', '.join(names)}",
        spec.text,
        expr.position,
    )


def _element_bytes(
    target: IterTarget, captures: Tuple[Capture, ...], element_sizes: Tuple[int, int]
) -> Tuple[Capture, ...]:
    """`key` and `value`, void pointers to one map element's, as the bytes they point to: the map's
    key_size and value_size of them (the iterator hands the program buffers that big)."""
    btf = target.target.btf
    sizes = dict(zip(("key", "value"), element_sizes))
    out = []
    for capture in captures:
        size = sizes.get(capture.label, 0)
        typ = btf.skip_modifiers(capture.type_id) if capture.type_id else None
        void_pointer = isinstance(typ, Ptr) and isinstance(btf.skip_modifiers(typ.type_id), Void)
        if size and not capture.in_memory and void_pointer:
            kept = min(size, MAX_CAPTURE_SIZE)
            capture = dataclasses.replace(
                capture, in_memory=True, hops=(), offset=0, size=kept, type_id=0, full_size=size if kept < size else 0
            )
        out.append(capture)
    return tuple(out)


def _object_test(target: IterTarget) -> Test:
    """`object != NULL`: after the last object the kernel runs the program once more with it NULL."""
    arg = target.target.args[target.object_slot]
    value = Capture(label=arg.name, slot=target.object_slot, size=8, type_id=arg.type_id)
    return Test(value, Predicate(CompareOp.NE, 0))


def fit_captures(
    captures: Tuple[Capture, ...], max_record_size: int, spec: TraceSpec, btf: BTF
) -> Tuple[Tuple[Capture, ...], List[Tuple[str, int, int]]]:
    """The captures, the largest struct copies cut until a record takes at most `max_record_size`
    bytes, and (label, size kept, full size) of each cut. A cut capture keeps its full size, so
    the output says what is missing. SpecError when cutting every struct is not enough."""
    current = list(captures)
    probe = Probe(ProbeKind.ITER, "", 0, captures=tuple(current))
    size = RecordLayout.of(probe, False).size
    cut = set()
    while size > max_record_size:
        candidates = [i for i, c in enumerate(current) if _cuttable(btf, c)]
        if not candidates:
            raise SpecError(
                f"the values make a record of {size} bytes, more than the {max_record_size} an "
                "iterator's buffer takes; name fewer or smaller ones",
                spec.text,
                0,
            )
        i = max(candidates, key=lambda k: (current[k].size, k))  # of equals, the one named last
        c = current[i]
        new_size = max(MIN_CUT_SIZE, (c.size - (size - max_record_size)) & ~7)
        current[i] = dataclasses.replace(c, size=new_size, full_size=c.full_size or c.size)
        cut.add(i)
        size = RecordLayout.of(dataclasses.replace(probe, captures=tuple(current)), False).size
    return tuple(current), [(current[i].label, current[i].size, current[i].full_size) for i in sorted(cut)]


def _cuttable(btf: BTF, capture: Capture) -> bool:
    """A struct, union or array (not of chars: a string) copied whole, larger than what a cut keeps."""
    if not capture.in_memory or capture.string or capture.bitfield is not None or capture.size <= MIN_CUT_SIZE:
        return False
    typ = btf.skip_modifiers(capture.type_id) if capture.type_id else None
    if isinstance(typ, Array):
        return not is_char(btf.skip_modifiers(typ.type_id))
    return isinstance(typ, (Struct, Union))


def check_params(target: IterTarget, params: IterParams, iters: IterTargets) -> None:
    """The options given must be ones `target` takes, and ones this kernel offers; a target that
    walks a map's elements needs --map-id."""
    label = target.target.label
    given = params.kinds()
    for option, kind in given:
        if target.params is not kind:
            takers = sorted(t.target.label for t in iters.all().values() if t.params is kind)
            takes = "takes no options" if target.params is None else f"takes {_options_text(target.params)}"
            raise UsageError(f"{option} is for {', '.join(takers) or 'no target on this kernel'}; {label} {takes}")
    if target.params is ParamKind.MAP and params.map_id is None:
        raise UsageError(
            f"{label} walks the elements of one map: give --map-id ID "
            "(ksnoop dump 'bpf_map(map->id, map->name)' lists them)"
        )
    if params.pid is not None and params.tid is not None:
        raise UsageError("--pid and --tid: give one (a process, or one of its threads)")
    if params.cgroup_id is not None and params.cgroup_path is not None:
        raise UsageError("--cgroup-id and --cgroup: give one (where the walk starts)")
    if not given:
        return
    link_info = iters.link_info
    wanted = {
        "--map-id": ("map", "map_fd"),
        "--pid": ("task", "pid"),
        "--tid": ("task", "tid"),
        "--cgroup-id": ("cgroup", "cgroup_id"),
        "--cgroup": ("cgroup", "cgroup_fd"),
        "--cgroup-order": ("cgroup", "order"),
    }
    for option, _kind in given:
        member, field = wanted[option]
        if not link_info.has(member, field):
            raise RuntimeFailure(
                f"{option}: this kernel's iterators take no {member} {field} (union "
                "bpf_iter_link_info has no such field in its BTF)"
            )
    if params.cgroup_order is not None and params.cgroup_order not in link_info.cgroup_orders:
        raise UsageError(f"--cgroup-order {params.cgroup_order}: one of {', '.join(link_info.cgroup_orders)}")


def _options_text(kind: ParamKind) -> str:
    return {
        ParamKind.MAP: "--map-id",
        ParamKind.TASK: "--pid or --tid",
        ParamKind.CGROUP: "--cgroup-id or --cgroup, and --cgroup-order",
    }[kind]
