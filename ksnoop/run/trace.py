# SPDX-License-Identifier: GPL-2.0-only
"""One trace from start to finish: the options checked, the specs parsed and resolved, the
programs generated (prepare), then the record loop or the summary loop, which attach through
the runner and detach everything on the way out, whatever ends the run.
"""

from __future__ import annotations

import mmap
from dataclasses import replace
from typing import Optional, TextIO, Tuple

from bpf.codegen import Program, generate_all
from bpf.plan import MAX_KSTACK_DEPTH, CgroupFilter, Filters

from ksnoop.errors import UsageError
from ksnoop.run.aggregate import AggregateRequest, aggregate_calls
from ksnoop.run.aggregate_loop import run_aggregate
from ksnoop.run.backend import BACKENDS, Backend, choose_backend, choose_graph_backend
from ksnoop.run.cgroups import cgroup_by_id, cgroup_by_path
from ksnoop.run.describe import write_notes
from ksnoop.run.exporter import require_prometheus_client
from ksnoop.run.options import RunOptions, Summary
from ksnoop.run.record_loop import run_records
from ksnoop.run.runner import require_privileges
from ksnoop.run.slow_calls import only_slow_calls
from ksnoop.run.summary import count_calls
from ksnoop.run.summary_loop import run_summary
from ksnoop.spec.language import TraceSpec, parse_spec
from ksnoop.spec.multi import group_kprobes, multi_globs, split_multi
from ksnoop.spec.resolve import (
    DEFAULT_MAX_PROBES,
    MULTI_MAX_PROBES,
    ResolvedTrace,
    resolve,
    resolve_graph,
    resolve_path,
)
from ksnoop.spec.targets import KernelBTF

__all__ = ["RunOptions", "Summary", "prepare", "run"]

# The largest ring buffer the kernel takes: a power of two that fits BPF_MAP_CREATE's u32 max_entries.
MAX_RINGBUF_SIZE = 1 << 31


def implied(options: RunOptions) -> RunOptions:
    """The options as they run: --metrics alone counts as --summary does."""
    mode_given = options.aggregates or options.summary or options.records or options.graph
    if options.metrics is not None and not mode_given:
        return replace(options, summary=True)
    return options


def prepare(options: RunOptions) -> Tuple[ResolvedTrace, Tuple[Program, ...]]:
    """Parse, resolve and generate: everything short of touching the kernel. Usage errors raise here."""
    options = implied(options)
    if options.records and options.metrics is None:
        raise UsageError("--records goes with --metrics: without it, trace prints each record anyway")
    if options.metrics is not None:
        _check_metrics(options)
    if options.pages <= 0 or options.pages & (options.pages - 1):
        raise UsageError(f"--pages {options.pages}: the ring buffer size must be a power of two pages")
    if options.pages * mmap.PAGESIZE > MAX_RINGBUF_SIZE:  # the map's max_entries is a u32
        raise UsageError(
            f"--pages {options.pages}: at most {MAX_RINGBUF_SIZE // mmap.PAGESIZE} pages ({MAX_RINGBUF_SIZE >> 30} GiB)"
        )
    if options.comm is not None and len(options.comm.encode()) >= 16:
        raise UsageError(f"--comm '{options.comm}': a task's comm has at most 15 bytes")
    if not 0 <= options.kstack_depth <= MAX_KSTACK_DEPTH:
        raise UsageError(f"--kstack-depth {options.kstack_depth}: at most {MAX_KSTACK_DEPTH} frames")
    if options.summary and options.count is not None:
        raise UsageError("--count stops after N calls printed, and --summary prints none: use --duration or Ctrl-C")
    if options.summary and options.kstack_depth:
        raise UsageError("--kstack shows a stack per record, and --summary prints none")
    if options.call_path and options.summary:
        raise UsageError("-s shows the calls of one path, and --summary counts every call: use one")
    if options.calls_only and not options.summary:
        raise UsageError("--calls-only is a kind of --summary: add --summary")
    _check_aggregation(options)
    _check_graph(options)
    if options.backend not in BACKENDS:
        raise UsageError(f"--backend {options.backend}: one of {', '.join(BACKENDS)}")
    specs = [parse_spec(text) for text in options.specs]
    kernel = KernelBTF.load(options.btf_path)
    if options.graph:
        backend = choose_graph_backend(options.backend, specs[0], kernel)
    else:
        backend = choose_backend(options.backend, specs, kernel)
    filters = Filters(
        pid=options.pid,
        comm=options.comm.encode() if options.comm is not None else None,
        uid=options.uid,
        cgroup=_cgroup(options),
    )
    if options.graph:
        resolved = _resolve_graph(options, specs[0], kernel, filters, backend)
    elif options.call_path:
        resolved = resolve_path(
            specs,
            kernel,
            filters,
            ringbuf_size=options.pages * mmap.PAGESIZE,
            kstack_depth=options.kstack_depth,
            function_kind=backend.kind,
        )
    else:
        resolved = resolve(
            specs,
            kernel,
            filters,
            ringbuf_size=options.pages * mmap.PAGESIZE,
            kstack_depth=options.kstack_depth,
            max_probes=options.max_probes or (MULTI_MAX_PROBES if backend.multi else DEFAULT_MAX_PROBES),
            function_kind=backend.kind,
            defaults=not (options.summary or options.aggregates),
        )
    said = [f"ksnoop: backend: {backend.why}"] if options.verbose and backend.why else []
    if backend.note and not options.verbose:
        said.append(backend.note)
    resolved = replace(resolved, notes=tuple(said) + resolved.notes)
    if options.summary:
        resolved = count_calls(resolved, calls_only=options.calls_only)
    if options.aggregates:
        request = AggregateRequest(options.count_by, options.hist)
        resolved = aggregate_calls(resolved, request, at_return=options.min_duration_ns > 0, max_keys=options.max_keys)
    if options.min_duration_ns and not options.graph:  # a graph's root return has it already
        resolved = only_slow_calls(resolved, options.min_duration_ns)
    if backend.multi:  # grouped before generating: a glob's programs name the stash they share
        resolved = group_kprobes(resolved)
        if backend.session_is_return and resolved.plan.multi:
            resolved = replace(resolved, plan=replace(resolved.plan, session_is_return=backend.session_is_return))
    plan = resolved.plan
    programs = generate_all(plan)
    if plan.multi:
        resolved = split_multi(resolved, [p.insns for p in programs])
    elif backend.no_multi and not options.graph:  # the graph's backend note says so already
        globs = ", ".join(f"'{glob}'" for glob in multi_globs(resolved))
        if globs:
            note = f"ksnoop: {globs}: one kprobe per function, since this kernel has {backend.no_multi}"
            resolved = replace(resolved, notes=resolved.notes + (note,))
    return resolved, programs


def _check_graph(options: RunOptions) -> None:
    """UsageError for -g with what does not go with it, and for its options without it."""
    if not options.graph:
        if options.graph_depth is not None or options.graph_include or options.graph_exclude:
            raise UsageError("--graph-depth, --graph-include and --graph-exclude go with -g")
        if options.graph_args != "scalars":
            raise UsageError("--graph-args goes with -g")
        return
    if len(options.specs) != 1:
        raise UsageError(f"-g traces the graph of one root function, and {len(options.specs)} specs were given")
    for given, option in (
        (options.call_path, "-s"),
        (options.summary, "--summary"),
        (options.aggregates, "--count-by/--hist"),
        (options.metrics is not None, "--metrics"),
        (options.kstack_depth > 0, "--kstack"),
    ):
        if given:
            raise UsageError(f"-g shows each root call's tree of calls, and {option} does not go with it")


def _resolve_graph(
    options: RunOptions, root: TraceSpec, kernel: KernelBTF, filters: Filters, backend: Backend
) -> ResolvedTrace:
    """-g: the root's static graph read from the kernel's code, then every function of it resolved."""
    from ksnoop.graph.build import static_graph

    graph = static_graph(
        kernel, root.target, options.graph_depth, options.graph_include, options.graph_exclude, leaves=False
    )
    resolved = resolve_graph(
        root,
        graph.functions(),
        kernel,
        filters,
        full_args=options.graph_args == "full",
        min_duration_ns=options.min_duration_ns,
        ringbuf_size=options.pages * mmap.PAGESIZE,
        function_kind=backend.kind,
        max_probes=options.max_probes or (MULTI_MAX_PROBES if backend.multi else DEFAULT_MAX_PROBES),
    )
    indirect = [(node.name, node.indirect) for node in graph.nodes if node.indirect]
    if options.verbose and indirect:
        counted = ", ".join(f"{name} {n}" for name, n in indirect)
        note = (
            f"ksnoop: the graph of {root.target} ({len(graph.functions())} functions within {graph.depth} calls) "
            f"leaves out calls through pointers, which code does not show: {counted} (--graph-include adds functions)"
        )
        resolved = replace(resolved, notes=resolved.notes + (note,))
    return resolved


def _check_metrics(options: RunOptions) -> None:
    """UsageError for options that do not go with --metrics; prometheus_client must be there."""
    if options.records:
        counting = "--summary" if options.summary else "--count-by" if options.count_by else "--hist"
        if options.summary or options.aggregates:
            raise UsageError(f"--records prints each call, and {counting} counts them: one of them per ksnoop")
    else:
        for given, option, why in (
            (options.call_path, "-s", "shows the calls of one path"),
            (options.count is not None, "--count", "stops after N records"),
            (options.kstack_depth > 0, "--kstack", "shows a stack per record"),
        ):
            if given:
                raise UsageError(f"{option} {why}, and --metrics alone serves counts: add --records to print records")
    require_prometheus_client()


def _check_aggregation(options: RunOptions) -> None:
    """UsageError for options that do not go with --count-by / --hist, or need them."""
    if not options.aggregates:
        for given, option in (
            (options.top is not None, "--top"),
            (options.interval_s is not None, "--interval"),
        ):
            if given:
                raise UsageError(f"{option} is for counts by key: add --count-by or --hist")
        return
    what = "--count-by" if options.count_by else "--hist"
    for given, option, why in (
        (options.summary, "--summary", "counts per function; use one"),
        (options.call_path, "-s", "shows the calls of one path; use one"),
        (options.count is not None, "--count", "stops after N calls printed, and counts print none: use --duration"),
        (options.kstack_depth > 0, "--kstack", "shows a stack per record, and counts print none"),
    ):
        if given:
            raise UsageError(f"{option} {why} ({what} counts calls by key)")


def _cgroup(options: RunOptions) -> Optional[CgroupFilter]:
    if options.cgroup_path is not None and options.cgroup_id is not None:
        raise UsageError("--cgroup and --cgroup-id: give one")
    if options.cgroup_path is not None:
        return cgroup_by_path(options.cgroup_path)
    if options.cgroup_id is not None:
        return cgroup_by_id(options.cgroup_id)[1]
    return None


def run(options: RunOptions, out: TextIO, err: TextIO) -> Summary:
    """Trace until the count, the time limit, SIGINT or SIGTERM; RuntimeFailure on kernel trouble."""
    options = implied(options)
    resolved, programs = prepare(options)
    write_notes(resolved, programs, options.verbose, err)
    require_privileges("tracing")
    if options.summary:
        return run_summary(resolved, programs, options, out, err)
    if options.aggregates:
        return run_aggregate(resolved, programs, options, out, err)
    return run_records(resolved, programs, options, out, err)
