# SPDX-License-Identifier: GPL-2.0-only
"""One dump from start to finish: per spec, load its iterator program, link it to its target, read
the walk to EOF, and print the records as trace prints its own; close everything on the way out.

The only module holding live kernel objects for `dump`: per spec an ExitStack closes the walk,
the link, the program, then the scratch map, whatever ends it (EOF, a count, an error, Ctrl-C, a
closed stdout). An iterator is linked to nothing that outlives its fds: a killed ksnoop leaves
nothing behind.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple

from bpf.codegen import Program, generate
from bpf.plan import Probe
from bpf.iter import IterLink, IterReader, attach_iter, link_info_cgroup, link_info_map, link_info_task, max_record_size
from bpf.maps import element_value_size, map_fd_by_id, map_shape
from bpf.uapi import CgroupIterOrder

from ksnoop.output.decode import build_decoder, probe_of, record_fields
from ksnoop.spec.resolve_dump import IterParams, ResolvedDump, parse_dump_spec, resolve_dump
from ksnoop.errors import NotPermitted, RuntimeFailure, UsageError
from ksnoop.output.formatter import Formatter
from ksnoop.output.writer import LineWriter
from ksnoop.run.runner import create_maps, load_generated, module_btf_objects, require_privileges
from ksnoop.spec.iter_targets import IterTarget, IterTargets, ParamKind, no_iterators_reason
from ksnoop.spec.targets import KernelBTF

log = logging.getLogger(__name__)

# Where the cgroup iterator walks when --cgroup-order is not given: every cgroup below the start
# (the kernel's own default is the starting cgroup alone).
DEFAULT_CGROUP_ORDER = "descendants-pre"


@dataclass(frozen=True)
class DumpOptions:
    specs: Tuple[str, ...]
    params: IterParams = IterParams()
    count: Optional[int] = None  # stop after this many records, over every spec
    output: str = "text"  # "text" or "json"
    color: bool = False
    verbose: int = 0  # as RunOptions.verbose
    btf_path: Optional[str] = None
    zeros: bool = False  # text: show struct members that are all zero
    compact: bool = False  # text: one line per record


@dataclass(frozen=True)
class DumpSummary:
    records: int
    bytes: int  # read from the iterators
    read_s: float  # in read(): the kernel walking its objects and running the program on each
    total_s: float  # from the first program load to the last line written
    load_s: float = 0.0  # of total_s, loading the programs and linking them to their targets


def prepare(options: DumpOptions) -> Tuple[ResolvedDump, Tuple[Program, ...]]:
    """Parse, find the targets, resolve and generate: everything short of loading. Usage errors raise
    here, and RuntimeFailure for a kernel without iterators."""
    if options.count is not None and options.count < 1:
        raise UsageError(f"--count {options.count}: at least 1")
    for option, value in (
        ("--pid", options.params.pid),
        ("--tid", options.params.tid),
        ("--map-id", options.params.map_id),
        ("--cgroup-id", options.params.cgroup_id),
    ):
        if value is not None and not 0 < value < 1 << (64 if option == "--cgroup-id" else 31):
            raise UsageError(f"{option} {value}: not a valid id")
    specs = [parse_dump_spec(text) for text in options.specs]
    kernel = KernelBTF.load(options.btf_path)
    iters = IterTargets(kernel)
    if not iters.exist():
        raise RuntimeFailure(f"cannot dump: {no_iterators_reason(kernel.vmlinux)}")
    dump = resolve_dump(specs, iters, options.params, max_record_size=max_record_size())
    if options.params.map_id is not None and any(t.params is ParamKind.MAP for t in dump.iters):
        # Now that the map is known to be wanted: its elements' keys and values are that many bytes.
        dump = resolve_dump(
            specs,
            iters,
            options.params,
            max_record_size=max_record_size(),
            element_sizes=map_element_sizes(options.params.map_id),
        )
    programs = tuple(generate(dump.resolved.plan, i) for i in range(len(dump.iters)))
    return dump, programs


def run(options: DumpOptions, out: TextIO, err: TextIO) -> DumpSummary:
    """Walk each spec's target in turn and print its objects; RuntimeFailure on kernel trouble."""
    dump, programs = prepare(options)
    resolved = dump.resolved
    from ksnoop.run.describe import write_notes

    write_notes(resolved, programs, options.verbose, err)
    require_privileges("dumping")
    formatter = formatter_for(options, dump)
    writer = LineWriter(out)
    records = size = 0
    read_s = load_s = 0.0
    start = time.perf_counter()
    for index, (target, program) in enumerate(zip(dump.iters, programs)):
        limit = None if options.count is None else options.count - records
        if limit is not None and limit <= 0:
            break
        decode = build_decoder(resolved.plan, index, target.target.btf)
        fields = record_fields(resolved.plan, index, target.target.btf)
        line, batch = formatter.record(index, fields, decode), formatter.batch(index, fields, decode)
        with contextlib.ExitStack() as stack:
            opening = time.perf_counter()
            reader = _open_walk(stack, target, resolved.plan.probes[index], program, options.params)
            load_s += time.perf_counter() - opening
            walked = walk(reader, target, index, program.layout.size, line, batch, writer, limit)
        records += walked.records
        size += walked.bytes
        read_s += walked.read_s
    writer.flush()
    return DumpSummary(records, size, read_s, time.perf_counter() - start, load_s)


def map_element_sizes(map_id: int) -> Tuple[int, int]:
    """(key size, value size) of the map `map_id`'s elements as a map element iterator hands them
    over: a per-CPU map's value is one (8-byte aligned) value per possible CPU."""
    fd = _map_fd(map_id)
    try:
        map_type, key_size, value_size = map_shape(fd)
    except OSError as error:
        raise RuntimeFailure(f"--map-id {map_id}: {error.strerror or error}") from None
    finally:
        os.close(fd)
    return key_size, element_value_size(map_type, value_size)


def _map_fd(map_id: int) -> int:
    """An fd of the map `map_id` (the caller closes it); UsageError when no map has that id."""
    try:
        return map_fd_by_id(map_id)
    except FileNotFoundError:
        raise UsageError(f"--map-id {map_id}: no BPF map has that id") from None
    except PermissionError:
        raise NotPermitted(f"--map-id {map_id}: opening a map by id needs CAP_SYS_ADMIN") from None
    except OSError as error:
        raise RuntimeFailure(f"--map-id {map_id}: {error.strerror or error}") from None


def formatter_for(options: DumpOptions, dump: ResolvedDump) -> Formatter:
    if options.output == "json":
        from ksnoop.output.json_lines import JsonFormatter

        return JsonFormatter(dump.resolved)
    from ksnoop.output.text import TextFormatter, TextLayout

    return TextFormatter(
        dump.resolved, color=options.color, layout=TextLayout(zeros=options.zeros, compact=options.compact)
    )


@dataclass(frozen=True)
class Walked:
    records: int
    bytes: int
    read_s: float


def walk(
    reader: IterReader,
    target: IterTarget,
    index: int,
    record_size: int,
    line: Callable[[Any], str],
    batch: Callable[[Any], List[str]],
    writer: LineWriter,
    limit: Optional[int],
) -> Walked:
    """Read the walk to EOF (or `limit` records), splitting the bytes into records of `record_size`:
    every record in the stream comes from this one program, whose records all have one size. Whole
    chunks of records become lines in one `batch` call; `line` takes the last ones up to `limit`."""
    label = target.target.label
    records = size = 0
    read_s = 0.0
    pending = b""
    clock = time.perf_counter
    add = writer.add
    while True:
        t0 = clock()
        try:
            chunk = reader.read()
        except OSError as error:
            if error.errno == errno.E2BIG:
                raise RuntimeFailure(
                    f"reading {label}: one object's record ({record_size} bytes) did not fit the iterator's buffer"
                ) from None
            raise RuntimeFailure(f"reading {label}: {error.strerror or error}") from None
        read_s += clock() - t0
        if not chunk:
            break
        size += len(chunk)
        data = pending + chunk if pending else chunk
        whole = len(data) - len(data) % record_size
        view = memoryview(data)
        if whole and probe_of(view) != index:
            raise RuntimeFailure(
                f"reading {label}: a record of probe {probe_of(view)} where probe {index}'s "
                "were expected: the stream is not what the program writes"
            )
        if limit is None or records + whole // record_size <= limit:
            writer.extend(batch(view[:whole]))
            records += whole // record_size
            pending = data[whole:]
            if limit is not None and records >= limit:  # reached: no further read
                return Walked(records, size, read_s)
            continue
        # The limit falls inside this chunk: its records one by one, up to the limit.
        for offset in range(0, whole, record_size):
            add(line(view[offset : offset + record_size]))
            records += 1
            if limit is not None and records >= limit:
                return Walked(records, size, read_s)
    if pending:
        raise RuntimeFailure(f"reading {label}: the walk ended inside a record ({len(pending)} of {record_size} bytes)")
    return Walked(records, size, read_s)


def _open_walk(
    stack: contextlib.ExitStack, target: IterTarget, probe: Probe, program: Program, params: IterParams
) -> IterReader:
    """Maps, program, link and walk for one target, each entering `stack`."""
    label = target.target.label
    maps = create_maps(stack, [program])
    btf_obj_fd = module_btf_objects(stack, [probe]).get(probe.module)
    prog = stack.enter_context(load_generated(program, maps.fds(0), label, btf_obj_fd))
    iter_info, expect = link_info(stack, target, params)
    try:
        link = stack.enter_context(attach_iter(prog, iter_info))
    except OSError as error:
        raise RuntimeFailure(f"cannot link the iterator program to {label}: {attach_reason(error, params)}") from None
    if expect:
        _check_link(link, label, expect)
    try:
        return stack.enter_context(link.open())
    except OSError as error:
        raise RuntimeFailure(f"cannot start walking {label}: {error.strerror or error}") from None


def link_info(
    stack: contextlib.ExitStack, target: IterTarget, params: IterParams
) -> Tuple[Optional[bytes], Dict[str, int]]:
    """The packed bpf_iter_link_info for the target's parameters (fds it needs entering `stack`), and
    what the link should then report (`pid`: 1234...), to check the target took them."""
    if target.params is ParamKind.MAP and params.map_id is not None:
        fd = _map_fd(params.map_id)
        stack.callback(os.close, fd)
        return link_info_map(fd), {"map_id": params.map_id}
    if target.params is ParamKind.TASK and (params.pid is not None or params.tid is not None):
        if params.tid is not None:
            return link_info_task(tid=params.tid), {"tid": params.tid}
        assert params.pid is not None
        return link_info_task(pid=params.pid), {"pid": params.pid}
    if target.params is ParamKind.CGROUP:
        order = CgroupIterOrder[(params.cgroup_order or DEFAULT_CGROUP_ORDER).upper().replace("-", "_")]
        expect = {"cgroup_order": int(order)}
        if params.cgroup_path is not None:
            try:
                fd = os.open(params.cgroup_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as error:
                raise UsageError(f"--cgroup {params.cgroup_path}: {error.strerror or error}") from None
            stack.callback(os.close, fd)
            return link_info_cgroup(order, cgroup_fd=fd), expect
        if params.cgroup_id is not None:
            expect["cgroup_id"] = params.cgroup_id
        return link_info_cgroup(order, cgroup_id=params.cgroup_id or 0), expect
    return None, {}


def _check_link(link: IterLink, label: str, expect: Dict[str, int]) -> None:
    """A target without an attach_target callback ignores bpf_iter_link_info without a word: make
    sure it kept what it was given, rather than walk everything when asked for one process."""
    try:
        info = link.info()
    except OSError as error:
        log.debug("cannot read the link info of %s: %s", label, error)
        return
    for field, value in expect.items():
        if getattr(info, field) != value:
            raise RuntimeFailure(
                f"{label} did not take its parameter on this kernel ({field} {value}, the link "
                f"says {getattr(info, field)}): it would walk every object"
            )


def attach_reason(error: OSError, params: IterParams) -> str:
    text = error.strerror or str(error)
    if error.errno == errno.E2BIG:
        return f"{text} (this kernel's bpf_iter_link_info is smaller than the parameters given)"
    if error.errno == errno.EINVAL and (params.pid is not None or params.tid is not None):
        return f"{text} (the kernel refused the task parameters)"
    if error.errno == errno.ENOENT and params.cgroup_id is not None:
        return f"{text} (no cgroup with id {params.cgroup_id})"
    if error.errno == errno.EBADF and params.cgroup_path is not None:
        return f"{text} ({params.cgroup_path} is not a cgroup directory)"
    return text
