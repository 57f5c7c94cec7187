# SPDX-License-Identifier: GPL-2.0-only
"""Aggregation mode (`trace --count-by EXPR,...`, `--hist EXPR`): count calls per key in the kernel.

`aggregate_calls` turns a resolved trace into probes that build a key from the values asked for
(bpf.plan.Aggregate) and add one to its count in a per-CPU hash; `key_totals` turns the counts
read back into one KeyTotal per function and key, with its histogram when there is one.
"""

from __future__ import annotations

import difflib
import struct
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from bpf.plan import (
    AGGREGATE_FUNCTION_OFFSET,
    DROPPED_CALLS_OFFSET,
    DROPPED_KEYS_OFFSET,
    DURATION,
    MAX_KEY_PARTS,
    MAX_KEY_VALUES_SIZE,
    Aggregate,
    Builtin,
    Capture,
    Pair,
    PlanError,
    Probe,
    ProbeKind,
    Stash,
    key_part_size,
    key_values_size,
)
from btf import Array, Enum, Enum64, Int, Ptr, Struct, Union as UnionType
from btf.values import is_char

from ksnoop.errors import UsageError, did_you_mean
from ksnoop.output.decode import AggregateKey, build_key_decoder
from ksnoop.spec.calling import NoConvention
from ksnoop.spec.language import RETURN, SpecError, TraceSpec, ValueExpr, parse_values
from ksnoop.spec.resolve import STRING_SIZE, ResolvedTrace, context_offsets, resolve_value
from ksnoop.spec.targets import Target, TargetKind

BUILTINS = {b.value: b for b in Builtin}
_BUILTIN_MEANING = {
    Builtin.COMM: "the task's name",
    Builtin.PID: "the process id",
    Builtin.TID: "the thread id",
    Builtin.UID: "the task's uid",
    Builtin.CPU: "the CPU",
}
# The distinct keys a trace counts unless --max-keys says otherwise (bpftrace's default map size).
DEFAULT_MAX_KEYS = 10240
# A char pointer's text in a key takes what the other values leave of its bytes, shared by the
# strings, but at least this much.
MIN_KEY_STRING = 8
_DROPS = struct.Struct("=QQ")
_FUNCTION = struct.Struct("=I")


@dataclass(frozen=True)
class AggregateRequest:
    """--count-by and --hist as given: the option texts, which errors point into."""

    count_by: str = ""
    hist: str = ""

    def keys(self) -> Tuple[ValueExpr, ...]:
        return _parsed("--count-by", self.count_by) if self.count_by else ()

    def hist_value(self) -> Optional[ValueExpr]:
        if not self.hist:
            return None
        values = _parsed("--hist", self.hist)
        if len(values) != 1:
            raise SpecError("--hist: one value, an integer or 'duration'", self.hist, values[1].position)
        return values[0]


def _parsed(option: str, text: str) -> Tuple[ValueExpr, ...]:
    try:
        return parse_values(text)
    except SpecError as err:
        raise SpecError(f"{option}: {err.reason}", err.text, err.position) from None


@dataclass  # not frozen: a --metrics scrape makes one per key, 10,000 of them, and frozen takes 4x as long
class KeyTotal:
    """One function's count for one key (all its buckets), over every CPU."""

    function: int  # its number, Aggregate.key
    label: str  # the function as the user writes it: `ip_send_skb`, `tp:net_dev_queue`
    values: Tuple[object, ...]  # the key's values, decoded as records' are
    count: int
    # --hist: bucket -> count (see bpf.plan: 0 holds 0, k holds [2**(k-1), 2**k), and
    # HIST_NEGATIVE, HIST_UNREADABLE); None without --hist.
    buckets: Optional[Dict[int, int]] = None


@dataclass(frozen=True)
class Dropped:
    """What a full hash could not count: calls, and how many distinct keys they had."""

    calls: int = 0
    keys: int = 0


def aggregate_calls(
    resolved: ResolvedTrace, request: AggregateRequest, *, at_return: bool = False, max_keys: int = DEFAULT_MAX_KEYS
) -> ResolvedTrace:
    """The same trace counting calls by key instead of recording them.

    A function aggregates at its entry (no return probe) unless a key or the histogram needs its
    return (`return`, `duration`), its spec tests the return value, or `at_return` (for
    --min-duration); then its entry stashes its time and the return builds the key. A tracepoint
    aggregates where it fires. A glob's function the values do not fit is left out, with a note;
    SpecError, pointing into the option's text, when a named function does not fit or none does.
    """
    keys = request.keys()
    hist = request.hist_value()
    plan = resolved.plan
    probes, targets, sources = plan.probes, resolved.targets, resolved.sources
    out_probes: List[Probe] = []
    out_targets: List[Target] = []
    out_sources: List[int] = []
    out_pairs: List[Pair] = []
    left_out: Dict[int, List[str]] = {}
    first_error: Dict[int, SpecError] = {}
    counted = 0
    for n, (probe, target) in enumerate(zip(probes, targets)):
        partner = plan.partner(n)
        if probe.kind.is_return and partner is not None:
            continue  # aggregated with its entry
        exit_tests = probes[partner].tests if partner is not None else ()
        source = sources[n] if sources else 0
        function = target.kind is TargetKind.FUNCTION
        needs_return = function and (
            at_return
            or bool(exit_tests)
            or any(k.base == RETURN for k in keys)
            or (hist is not None and hist.base in (RETURN, DURATION))
        )
        try:
            aggregate = _aggregate(request, keys, hist, target, probe.kind.return_kind if needs_return else probe.kind)
        except SpecError as err:
            glob = resolved.globs[source] if source < len(resolved.globs) else None
            if glob is None:
                raise
            left_out.setdefault(source, []).append(target.label)
            first_error.setdefault(source, err)
            continue
        aggregate = replace(aggregate, key=counted)
        counted += 1
        kprobe = probe.kind is ProbeKind.KPROBE
        offsets = _offsets(target) if kprobe else ((), ())
        if not needs_return:
            made = [
                replace(
                    probe,
                    captures=(),
                    kstack_depth=0,
                    stash=Stash.NONE,
                    emits=False,
                    aggregate=aggregate,
                    context_offsets=offsets[0] if kprobe else probe.context_offsets,
                )
            ]
        else:
            entry = replace(
                probe,
                captures=(),
                kstack_depth=0,
                stash=Stash.TIME,
                stash_group=aggregate.key,
                emits=False,
                context_offsets=offsets[0] if kprobe else (),
            )
            exit_ = Probe(
                probe.kind.return_kind,
                target.name,
                target.attach_btf_id,
                target.module,
                exit_tests,
                stash=Stash.TIME,
                stash_group=aggregate.key,
                emits=False,
                requires_entry=True,
                aggregate=aggregate,
                context_offsets=offsets[1] if kprobe else (),
            )
            made = [entry, exit_]
            out_pairs.append(Pair(len(out_probes), len(out_probes) + 1))
        out_probes.extend(made)
        out_targets.extend(target for _ in made)
        if sources:
            out_sources.extend(source for _ in made)
    if not out_probes:
        raise next(iter(first_error.values()))
    notes = list(resolved.notes)
    for source, names in left_out.items():
        glob = resolved.globs[source] or ""
        noun = "tracepoint" if glob.startswith("tp:") else "function"
        kept = len({t.label for t, s in zip(out_targets, out_sources) if s == source})
        said = f" matching '{glob}'"
        notes = [  # the resolver's count of what the glob traces, less what is left out here
            f"ksnoop: tracing {kept} {noun}{'' if kept == 1 else 's'}{said}"
            if note.startswith("ksnoop: tracing ") and note.endswith(said)
            else note
            for note in notes
        ]
        notes.append(
            f"ksnoop: warning: left out {len(names)} {noun}{'' if len(names) == 1 else 's'} matching '{glob}' "
            f"whose values cannot be counted as asked (the first: {first_error[source].reason}): {', '.join(names)}"
        )
    try:
        plan = replace(plan, probes=tuple(out_probes), pairs=tuple(out_pairs), aggregate_entries=max_keys)
    except PlanError as err:  # parts that fit each function but, each as large as its largest, not all
        raise UsageError(f"--count-by: {err}") from None
    result = replace(resolved, plan=plan, targets=tuple(out_targets), notes=tuple(notes))
    return replace(result, sources=tuple(out_sources)) if sources else result


def _offsets(target: Target) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    try:
        return context_offsets(target, ProbeKind.KPROBE)
    except NoConvention as err:
        raise UsageError(f"cannot put a kprobe on {target.label}: {err}") from None


def _aggregate(
    request: AggregateRequest, keys: Sequence[ValueExpr], hist: Optional[ValueExpr], target: Target, kind: ProbeKind
) -> Aggregate:
    """The Aggregate for `target` probed by `kind` (its entry, return or tracepoint probe); key 0."""
    spec = TraceSpec(request.count_by, target.name, 0, ())
    if len(keys) > MAX_KEY_PARTS:
        raise SpecError(
            f"--count-by: {len(keys)} values; at most {MAX_KEY_PARTS}", spec.text, keys[MAX_KEY_PARTS].position
        )
    parts = [_part(spec, expr, target, kind) for expr in keys]
    parts = [_as_text(part, target) for part in _fit_strings(spec, keys, parts)]
    if hist is None:
        return Aggregate(0, tuple(parts))
    value, signed = _hist(TraceSpec(request.hist, target.name, 0, ()), hist, target, kind)
    return Aggregate(0, tuple(parts), value, signed)


def _is_argument(expr: ValueExpr, target: Target) -> bool:
    return expr.base == RETURN or any(a.name == expr.base for a in target.args)


def _unknown(option: str, spec: TraceSpec, expr: ValueExpr, target: Target, extra: Sequence[str]) -> SpecError:
    names = [a.name for a in target.args] + ([RETURN] if target.kind is TargetKind.FUNCTION else []) + list(extra)
    close = difflib.get_close_matches(expr.base, names, n=1, cutoff=0.5)
    hint = f"{did_you_mean(close)} " if close else ""
    return SpecError(
        f"{option}: {target.label} has no argument '{expr.base}'; {hint}the values it can take: {', '.join(names)}",
        spec.text,
        expr.position,
    )


def _resolved(
    option: str, spec: TraceSpec, expr: ValueExpr, target: Target, kind: ProbeKind, own: bool = False
) -> Capture:
    """resolve_value for `kind`'s probe, its SpecError naming `option`."""
    if expr.base == RETURN and target.kind is TargetKind.TRACEPOINT:
        raise SpecError(
            f"{option}: {target.label} is a tracepoint, which has no return value", spec.text, expr.position
        )
    if kind is ProbeKind.KRETPROBE and expr.base != RETURN:
        raise SpecError(
            f"{option}: a kretprobe cannot read '{expr.base}' of {target.label}: argument registers are not kept "
            "until the return, which these values need (fentry/fexit can)",
            spec.text,
            expr.position,
        )
    entry_kind = ProbeKind.KPROBE if kind is ProbeKind.KPROBE else ProbeKind.FENTRY
    try:
        return resolve_value(spec, target, expr, entry_kind, own=own)
    except SpecError as err:
        raise SpecError(f"{option}: {err.reason}", err.text, err.position) from None


def _part(spec: TraceSpec, expr: ValueExpr, target: Target, kind: ProbeKind) -> Union[Capture, Builtin]:
    option = "--count-by"
    if not _is_argument(expr, target):
        builtin = BUILTINS.get(expr.base)
        if builtin is None:
            if expr.base == DURATION:
                raise SpecError(
                    f"{option}: 'duration' is not a key; --hist duration makes a histogram of it",
                    spec.text,
                    expr.position,
                )
            raise _unknown(option, spec, expr, target, list(BUILTINS))
        if expr.steps:
            raise SpecError(
                f"{option}: '{expr.base}' is {_BUILTIN_MEANING[builtin]}; it has no members",
                spec.text,
                expr.steps[0].position,
            )
        return builtin
    capture = _resolved(option, spec, expr, target, kind)
    if capture.address:  # a struct pointer: keyed by the pointer, not the struct's bytes
        capture = _resolved(option, spec, expr, target, kind, own=True)
    size = capture.full_size or key_part_size(capture)
    if not capture.string and size > MAX_KEY_VALUES_SIZE:
        raise SpecError(
            f"{option}: '{expr.text}' is a {size}-byte value; a key holds at most {MAX_KEY_VALUES_SIZE} bytes "
            "of values: name a member",
            spec.text,
            expr.position,
        )
    return capture


def _as_text(part: Union[Capture, Builtin], target: Target) -> Union[Capture, Builtin]:
    """A char array in memory read up to its NUL (the _str helper zeroes nothing past it, but the
    key was zeroed first), so what follows the text, left over from an older name, splits no key."""
    if not isinstance(part, Capture) or part.string or not part.in_memory or part.bitfield is not None:
        return part
    final = target.btf.skip_modifiers(part.type_id)
    if isinstance(final, Array) and is_char(target.btf.skip_modifiers(final.type_id)):
        return replace(part, string=True)
    return part


def _fit_strings(
    spec: TraceSpec, keys: Sequence[ValueExpr], parts: List[Union[Capture, Builtin]]
) -> List[Union[Capture, Builtin]]:
    """Char pointers' text takes what the fixed-size values leave of the key's bytes; SpecError
    when the values do not fit."""
    strings = [n for n, p in enumerate(parts) if isinstance(p, Capture) and p.string]
    fixed = tuple(p for p in parts if not (isinstance(p, Capture) and p.string))
    if strings:
        room = MAX_KEY_VALUES_SIZE - key_values_size(fixed) - 8 * len(strings)  # padding, at worst
        share = min(STRING_SIZE, max(0, room) // len(strings) // 8 * 8)
        if share < MIN_KEY_STRING:
            raise SpecError(
                f"--count-by: no room left in the key's {MAX_KEY_VALUES_SIZE} bytes for the text of "
                f"'{keys[strings[0]].text}'",
                spec.text,
                keys[strings[0]].position,
            )
        for n in strings:
            part = parts[n]
            assert isinstance(part, Capture)
            parts[n] = replace(part, size=share)
    total = key_values_size(tuple(parts))
    if total > MAX_KEY_VALUES_SIZE:
        sizes = ", ".join(f"{k.text} {key_part_size(p)}" for k, p in zip(keys, parts))
        raise SpecError(
            f"--count-by: a key of {total} bytes of values ({sizes}); at most {MAX_KEY_VALUES_SIZE}",
            spec.text,
            keys[0].position,
        )
    return parts


def _hist(spec: TraceSpec, expr: ValueExpr, target: Target, kind: ProbeKind) -> Tuple[Union[Capture, str], bool]:
    """The value to bucket (a Capture of an integer, or DURATION) and whether it is signed."""
    option = "--hist"
    if not _is_argument(expr, target):
        if expr.base == DURATION and expr.steps:
            raise SpecError(
                f"{option}: 'duration' is the call's time in ns; it has no members", spec.text, expr.steps[0].position
            )
        if expr.base == DURATION:
            if target.kind is TargetKind.TRACEPOINT:
                raise SpecError(f"{option}: {target.label} is a tracepoint, which has no duration", spec.text, 0)
            return DURATION, False
        if expr.base in BUILTINS:
            raise SpecError(
                f"{option}: '{expr.base}' is a key (--count-by {expr.base}); --hist takes an integer of the "
                "function's or 'duration'",
                spec.text,
                expr.position,
            )
        raise _unknown(option, spec, expr, target, [DURATION])
    value = _resolved(option, spec, expr, target, kind, own=True)
    btf = target.btf
    type_id = value.type_id
    final = btf.skip_modifiers(type_id)
    what = ""
    if isinstance(final, Ptr):
        what = "a string" if is_char(btf.skip_modifiers(final.type_id)) else "a pointer"
    elif isinstance(final, Array):
        what = "a string" if is_char(btf.skip_modifiers(final.type_id)) else "an array"
    elif isinstance(final, (Struct, UnionType)):
        what = "a struct" if isinstance(final, Struct) else "a union"
    elif not isinstance(final, (Int, Enum, Enum64)):
        what = f"a {btf.type_name(type_id)}"
    if what:
        raise SpecError(
            f"{option}: '{expr.text}' is {what} ({btf.type_name(type_id)}); a histogram is of an integer",
            spec.text,
            expr.position,
        )
    if value.bitfield is None and btf.value_byteorder(type_id) != btf.byteorder:
        raise SpecError(
            f"{option}: '{expr.text}' ({btf.type_name(type_id)}) is in network byte order; its log2 would mean nothing",
            spec.text,
            expr.position,
        )
    return value, bool(getattr(final, "signed", False))


# ---- reading back ---------------------------------------------------------------------------------


def dropped(per_cpu: Sequence[bytes]) -> Dropped:
    """The AGGREGATE_DROPS value summed over CPUs."""
    calls = keys = 0
    for value in per_cpu:
        c, k = _DROPS.unpack_from(value)
        calls, keys = calls + c, keys + k
    assert (DROPPED_CALLS_OFFSET, DROPPED_KEYS_OFFSET) == (0, 8), "_DROPS reads calls, then keys"
    return Dropped(calls, keys)


def key_decoders(resolved: ResolvedTrace) -> Dict[int, Tuple[str, Callable[[bytes], AggregateKey]]]:
    """Per function number (Aggregate.key): its label and the decoder of its keys."""
    layout = resolved.plan.aggregate_layout
    out = {}
    for probe, target in zip(resolved.plan.probes, resolved.targets):
        if probe.aggregate is not None:
            out[probe.aggregate.key] = (target.label, build_key_decoder(layout, probe.aggregate, target.btf))
    return out


def key_totals(
    decoders: Mapping[int, Tuple[str, Callable[[bytes], AggregateKey]]], counts: Mapping[bytes, int], hist: bool
) -> List[KeyTotal]:
    """One KeyTotal per function and key (its buckets gathered), most counted first; keys counted 0
    (in an interval, say) are left out."""
    counted: Dict[Tuple[int, Tuple[object, ...]], int] = {}
    bucketed: Dict[Tuple[int, Tuple[object, ...]], Dict[int, int]] = {}
    for raw, count in counts.items():
        if not count:
            continue
        key = decoders[_FUNCTION.unpack_from(raw, AGGREGATE_FUNCTION_OFFSET)[0]][1](raw)
        series = (key.function, key.values)
        counted[series] = counted.get(series, 0) + count
        if hist:
            buckets = bucketed.get(series)
            if buckets is None:
                buckets = bucketed[series] = {}
            buckets[key.bucket] = buckets.get(key.bucket, 0) + count
    out = [
        KeyTotal(
            function,
            decoders[function][0],
            values,
            n,
            dict(sorted(bucketed[function, values].items())) if hist else None,
        )
        for (function, values), n in counted.items()
    ]
    out.sort(key=lambda t: (-t.count, t.label))
    return out
