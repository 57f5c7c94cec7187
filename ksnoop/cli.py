# SPDX-License-Identifier: GPL-2.0-only
"""The typer app: parses options, calls one function per command, turns errors into one line.

Usage errors exit 2, runtime failures 1; no traceback reaches the user.
"""
# No `from __future__ import annotations` here: on Python 3.9 typer reads the parameters' annotations
# unevaluated, as strings, and then loses every Annotated[..., typer.Option(...)] (`--json` became `--as-json`).

import contextlib
import difflib
import errno
import json
import os
import sys
from typing import Annotated, Iterator, List, Optional, TextIO

import click
import typer

from bpf.plan import DEFAULT_KSTACK_DEPTH, MAX_KSTACK_DEPTH
from btf import BTFError

from ksnoop import __version__
from ksnoop.errors import (
    KsnoopError,
    NothingMatched,
    Refused,
    RuntimeFailure,
    UsageError,
    VerifierRejected,
    did_you_mean,
)
from ksnoop.graph import DEFAULT_DEPTH as DEFAULT_GRAPH_DEPTH, MAX_DEPTH as MAX_GRAPH_DEPTH
from ksnoop.output.writer import OutputFailed, checked, silence_stdout, stdout_closed
from ksnoop.spec.resolve import DEFAULT_MAX_PROBES, MULTI_MAX_PROBES
from ksnoop.sanitize import sanitize, sanitize_layout
from ksnoop.run.options import ListenAt
from ksnoop.usage import Duration, ListenAddress, OneOf, Seconds, WholeNumber, usage_line

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    help="Show the arguments and return values of Linux kernel functions as they run.",
)

# Help texts are one line a paragraph (rich wraps them to the terminal; a line break inside a
# paragraph would stay, raggedly); "\n" only where a line must start, as in an example.
OutputOption = Annotated[
    str,
    typer.Option(
        "--output", "-o", click_type=OneOf(("text", "json")), help="text, or json: one JSON object per line, for jq."
    ),
]
VerboseOption = Annotated[
    int,
    typer.Option(
        "--verbose",
        "-v",
        count=True,
        metavar="",
        help="On stderr: -v the resolved plan, the generated programs and, when the kernel refuses one, its whole "
        "verifier log; -vv also the debug logs.",
    ),
]
ZerosOption = Annotated[
    bool,
    typer.Option("--zeros", help="Text: show struct members that are all zero (else they are left out and counted)."),
]
CompactOption = Annotated[bool, typer.Option("--compact", help="Text: each record on one line, structs included.")]
BTFOption = Annotated[
    Optional[str],
    typer.Option(
        "--btf",
        metavar="PATH",
        help="Read BTF from this file (raw BTF or an ELF with .BTF) instead of /sys/kernel/btf/vmlinux.",
    ),
]
GraphDepthOption = Annotated[
    Optional[int],
    typer.Option(
        "--graph-depth",
        click_type=WholeNumber(1, MAX_GRAPH_DEPTH),
        help=f"With -g: how many calls below the function (default {DEFAULT_GRAPH_DEPTH}).",
    ),
]
GraphIncludeOption = Annotated[
    Optional[List[str]],
    typer.Option(
        "--graph-include",
        metavar="GLOB",
        help="With -g: add these functions, which its code calls through pointers (a name or glob; repeatable).",
    ),
]
GraphExcludeOption = Annotated[
    Optional[List[str]],
    typer.Option(
        "--graph-exclude",
        metavar="GLOB",
        help="With -g: leave out functions matching GLOB, and what only they call (repeatable).",
    ),
]
COMMANDS = ("info", "list", "trace", "dump")


def _version(value: bool) -> None:
    if value:
        print(f"ksnoop {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Show the arguments and return values of Linux kernel functions as they run."""


@contextlib.contextmanager
def _reported_errors(verbose: int = 0) -> Iterator[None]:
    """Turn ksnoop's and the BTF library's errors into `ksnoop: error: ...` and an exit status."""
    if verbose >= 2:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="ksnoop: debug: %(name)s: %(message)s")
    try:
        yield
    except (VerifierRejected, Refused) as err:
        if verbose and err.log:  # above the error line, which stays the last
            print("ksnoop: the verifier's log:\n" + sanitize_layout(err.log.rstrip("\n")), file=sys.stderr)
        _fail(str(err), err.exit_status)
    except OutputFailed as err:
        silence_stdout()
        _fail(str(err), err.exit_status)
    except KsnoopError as err:
        _fail(str(err), err.exit_status)
    except BTFError as err:
        _fail(str(RuntimeFailure(f"corrupt BTF: {err}")), 1)


def _fail(message: str, status: int) -> None:
    _say_error(message)
    raise typer.Exit(status)


def _say_error(message: str) -> None:
    """`ksnoop: error: ...` on stderr; a spec error adds the spec and a caret under the fault:
    lines of their own, each sanitised."""
    first, *rest = message.split("\n")
    lines = [f"ksnoop: error: {sanitize(first)}"] + [sanitize(line) for line in rest]
    print("\n".join(lines), file=sys.stderr, flush=True)


def _stdout() -> TextIO:
    return checked(sys.stdout)


@app.command(
    short_help="A function's or tracepoint's signature, or a type's layout, from BTF.",
    help="Show a function's or tracepoint's signature, a type's layout, or an iterator target's context, "
    "from the kernel's BTF.",
)
def info(
    targets: Annotated[
        List[str],
        typer.Argument(
            metavar="TARGET...",
            help="A function, tp:TRACEPOINT, dump:ITERATOR, 'struct NAME', 'union NAME', 'enum NAME' or a typedef.",
        ),
    ],
    *,
    output: OutputOption = "text",
    as_json: Annotated[bool, typer.Option("--json", help="The same as -o json.")] = False,
    graph: Annotated[
        bool,
        typer.Option(
            "--graph",
            "-g",
            help="The static call graph of each function instead: what it calls, read from the running "
            "kernel's code, to --graph-depth calls; which callees can be traced, and how many calls go "
            "through pointers (which code cannot show). Nothing is attached. Needs pip install 'ksnoop\\[graph]'.",
        ),
    ] = False,
    graph_depth: GraphDepthOption = None,
    graph_include: GraphIncludeOption = None,
    graph_exclude: GraphExcludeOption = None,
    btf: BTFOption = None,
) -> None:
    from ksnoop.info import describe
    from ksnoop.spec.targets import KernelBTF

    as_json = as_json or output == "json"
    out = _stdout()
    with _reported_errors():
        if not graph and (graph_include or graph_exclude or graph_depth is not None):
            raise UsageError("--graph-depth, --graph-include and --graph-exclude go with -g/--graph")
        kernel = KernelBTF.load(btf)
        for text in targets:
            if graph:
                from ksnoop.graph.build import static_graph
                from ksnoop.output.graph_text import graph_json, graph_text

                found = static_graph(kernel, text.strip(), graph_depth, graph_include or (), graph_exclude or ())
                out.write((json.dumps(graph_json(found)) if as_json else graph_text(found)) + "\n")
                continue
            result = describe(kernel, text.strip(), as_json)
            out.write((json.dumps(result) if as_json else sanitize_layout(result)) + "\n")
        out.flush()


@app.command(
    "list",
    short_help="The functions and tracepoints a glob matches; 'dump:*' for iterator targets.",
    help="List traceable kernel functions and tp: tracepoints matching a glob, sorted. 'dump:*' lists the "
    "iterator targets ksnoop dump can walk, marking those this kernel refuses (asked when run as root). "
    "A glob that matches nothing is an error (exit 1).",
)
def list_(
    pattern: Annotated[
        str,
        typer.Argument(
            metavar="[GLOB]", help="Shell glob over names; 'tp:*' for tracepoints only, 'dump:*' for iterator targets."
        ),
    ] = "*",
    *,
    output: OutputOption = "text",
    btf: BTFOption = None,
) -> None:
    from ksnoop.spec.iter_targets import refusal_note
    from ksnoop.spec.targets import ITER_PREFIX, TRACEPOINT_PREFIX, KernelBTF

    out = _stdout()
    with _reported_errors():
        kernel = KernelBTF.load(btf)
        if pattern.startswith(ITER_PREFIX):
            from ksnoop.spec.iter_targets import IterTargets

            iters = IterTargets(kernel)
            found = [(t.target.label, t.target.module, iters.refusal(t)) for t in iters.glob(pattern)]
        else:
            found = [(label, module, "") for label, module in kernel.list_targets(pattern)]
        if not found:
            what = (
                "iterator target"
                if pattern.startswith(ITER_PREFIX)
                else ("tracepoint" if pattern.startswith(TRACEPOINT_PREFIX) else "traceable function or tracepoint")
            )
            raise NothingMatched(f"no {what} matches '{pattern}' (ksnoop list '*' lists them all)")
        for label, module, refused in found:
            if output == "json":
                kind = (
                    "iterator"
                    if label.startswith(ITER_PREFIX)
                    else ("tracepoint" if label.startswith(TRACEPOINT_PREFIX) else "func")
                )
                entry = {"name": label, "kind": kind, "module": module}
                if refused:
                    entry["refused"] = refused
                out.write(json.dumps(entry) + "\n")
            else:
                # One line per name: a newline or tab inside a BTF name is escaped like any control character.
                line = label if module == "vmlinux" else f"{label} [{module}]"
                out.write(sanitize(line + refusal_note(refused) if refused else line) + "\n")
        out.flush()


TRACE_HELP = (
    "Trace kernel functions and tracepoints: print their arguments and return values as they run, until "
    "Ctrl-C, --count or --duration. Once every probe is attached, a line on stderr says so (-q: not).\n\n"
    "A SPEC is TARGET or TARGET(ITEM, ...). TARGET is a kernel function or tp:TRACEPOINT, either may be a "
    "glob ('tcp_v4_*', 'tp:net_dev_*'): every match is traced, with the items that fit it. An ITEM is a value "
    "to show: an argument by name, 'return', or a path through members and array elements (skb->dev->name, "
    "sk->__sk_common.skc_family, skb->cb[0]); an ITEM followed by ==, !=, <, <=, > or >= and a literal (a "
    'number, "a string", an enumerator or NULL) filters instead, in the kernel, before anything is copied. '
    "With no items, every argument and the return value are shown; 'ksnoop info FUNCTION' shows the names.\n\n"
    "Examples:\n\n"
    "ksnoop trace 'ip_send_skb(skb->len > 100)'  # sends of more than 100 bytes\n"
    "ksnoop trace -o json 'tcp_v4_connect(sk, return != 0)' | jq .  # failed connects, as JSON\n"
    "ksnoop trace --summary --duration 10 'tcp_*'  # calls, errors and latency of tcp_* for 10 s\n"
    "ksnoop trace --count-by comm,skb->dev->name ip_send_skb  # sends counted per task name and device\n"
    "ksnoop trace --hist duration --interval 1 close_fd  # a latency histogram every second"
)


@app.command(
    short_help="Print arguments and return values of kernel functions and tracepoints as they run.", help=TRACE_HELP
)
def trace(
    specs: Annotated[
        List[str],
        typer.Argument(
            metavar="SPEC...",
            help="TARGET or TARGET(ITEM, ...), as above, e.g. 'ip_send_skb(skb->len > 100, skb)'.",
        ),
    ],
    *,
    pid: Annotated[
        Optional[int],
        typer.Option("--pid", "-p", click_type=WholeNumber(0, metavar="PID"), help="Only this process (tgid)."),
    ] = None,
    comm: Annotated[
        Optional[str],
        typer.Option("--comm", metavar="NAME", help="Only tasks with this command name (15 bytes at most)."),
    ] = None,
    uid: Annotated[
        Optional[int],
        typer.Option(
            "--uid", "-u", click_type=WholeNumber(0, 0xFFFFFFFF, metavar="UID"), help="Only tasks of this user."
        ),
    ] = None,
    cgroup: Annotated[
        Optional[str],
        typer.Option(
            "--cgroup",
            metavar="PATH",
            help="Only tasks in this cgroup v2 directory or below it (a container, a systemd unit).",
        ),
    ] = None,
    cgroup_id: Annotated[
        Optional[int],
        typer.Option(
            "--cgroup-id", click_type=WholeNumber(1, metavar="ID"), help="The same as --cgroup, by the cgroup's id."
        ),
    ] = None,
    count: Annotated[
        Optional[int],
        typer.Option(
            "--count",
            "-n",
            click_type=WholeNumber(1),
            help="Stop after N calls: a call is an entry with its return when returns are traced (with -s a call "
            "path with its returns), else a record.",
        ),
    ] = None,
    duration: Annotated[
        Optional[float], typer.Option("--duration", click_type=Seconds(), help="Stop after SECONDS.")
    ] = None,
    min_duration: Annotated[
        Optional[int],
        typer.Option(
            "--min-duration",
            click_type=Duration(),
            help="Only calls at least this slow (10ms, 500us): each entry is held back and shown with its return; "
            "with --summary, only those are counted.",
        ),
    ] = None,
    pages: Annotated[
        int,
        typer.Option("--pages", "-P", click_type=WholeNumber(1), help="Ring buffer size in pages (a power of two)."),
    ] = 1024,
    output: OutputOption = "text",
    verbose: VerboseOption = 0,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No line on stderr when every probe is attached.")
    ] = False,
    kstack: Annotated[
        bool,
        typer.Option(
            "--kstack", help="Show the kernel stack of each entry and tracepoint record, named from /proc/kallsyms."
        ),
    ] = False,
    kstack_depth: Annotated[
        Optional[int],
        typer.Option(
            "--kstack-depth",
            click_type=WholeNumber(1, MAX_KSTACK_DEPTH),
            help=f"Frames of kernel stack to keep (implies --kstack; default {DEFAULT_KSTACK_DEPTH}, "
            f"at most {MAX_KSTACK_DEPTH}).",
        ),
    ] = None,
    max_probes: Annotated[
        Optional[int],
        typer.Option(
            "--max-probes",
            click_type=WholeNumber(1),
            help=f"Refuse to trace more than N functions and tracepoints (each a glob matches counts; "
            f"default {DEFAULT_MAX_PROBES}, or {MULTI_MAX_PROBES} where globs attach by one kprobe_multi link).",
        ),
    ] = None,
    summary_view: Annotated[
        bool,
        typer.Option(
            "--summary",
            help="Instead of a record per call, count in the kernel and print per function at exit: "
            "calls, errors (negative returns) and a log2 latency histogram; one JSON object with -o json.",
        ),
    ] = False,
    calls_only: Annotated[
        bool,
        typer.Option(
            "--calls-only",
            help="With --summary: count calls alone, at entry (no errors, no latency, and no "
            "return probe: the cheapest count).",
        ),
    ] = False,
    count_by: Annotated[
        Optional[str],
        typer.Option(
            "--count-by",
            metavar="EXPR[,EXPR...]",
            help="Instead of a record per call, count calls in the kernel per distinct key and print the counts "
            "at exit (and every --interval): the key is these values of each call, an argument or a path from "
            "one (skb->dev->name), 'return', or the task's comm, pid, tid, uid or cpu (up to 64 bytes of values).",
        ),
    ] = None,
    hist: Annotated[
        Optional[str],
        typer.Option(
            "--hist",
            metavar="EXPR",
            help="Count a log2 histogram of an integer value (skb->len, return) or 'duration' (ns), in the "
            "kernel; per key with --count-by.",
        ),
    ] = None,
    top: Annotated[
        Optional[int],
        typer.Option(
            "--top",
            click_type=WholeNumber(1),
            help="With --count-by: each function's N most counted keys, and a count of the rest.",
        ),
    ] = None,
    interval: Annotated[
        Optional[float],
        typer.Option(
            "--interval",
            click_type=Seconds(positive=True),
            help="With --count-by/--hist: print the counts of each SECONDS, not only at exit.",
        ),
    ] = None,
    max_keys: Annotated[
        int,
        typer.Option(
            "--max-keys",
            click_type=WholeNumber(1, 1 << 24),
            help="With --count-by/--hist: the distinct keys the kernel keeps; the calls of any more are counted "
            "as dropped, and said.",
        ),
    ] = 10240,
    metrics: Annotated[
        Optional[ListenAt],
        typer.Option(
            "--metrics",
            click_type=ListenAddress(),
            help="Serve the counts as Prometheus metrics on HOST:PORT/metrics (:PORT for every address, port 0 "
            "for any free one) until Ctrl-C or SIGTERM, instead of printing them: --summary's (the default) or "
            "--count-by/--hist's, read from the kernel at each scrape. Needs pip install 'ksnoop\\[metrics]'.",
        ),
    ] = None,
    records: Annotated[
        bool,
        typer.Option(
            "--records",
            help="With --metrics: trace and print each call as without --metrics, and serve the records "
            "printed per function and the records lost (a full ring buffer) instead of counts.",
        ),
    ] = False,
    graph: Annotated[
        bool,
        typer.Option(
            "--graph",
            "-g",
            help="Function-graph mode: the one SPEC is a root function; trace what its code calls (the static "
            "graph `info -g` shows, by kprobe_multi where the kernel has it) and print each root call that passes "
            "the SPEC's tests as a tree of the calls its task made inside it, with their arguments, return values "
            "and times (self and total); -n counts root calls. Needs pip install 'ksnoop\\[graph]'.",
        ),
    ] = False,
    graph_depth: GraphDepthOption = None,
    graph_include: GraphIncludeOption = None,
    graph_exclude: GraphExcludeOption = None,
    graph_args: Annotated[
        str,
        typer.Option(
            "--graph-args",
            click_type=OneOf(("scalars", "full")),
            help="With -g: the callees' arguments as numbers, text and addresses (scalars, the default), or with "
            "the structs they point to (full).",
        ),
    ] = "scalars",
    call_path: Annotated[
        bool,
        typer.Option(
            "--stack",
            "-s",
            help="Call-path mode: the SPECs are functions in call order, outermost first; show "
            "their calls only when each runs inside the one before in the same task (not necessarily called "
            "directly), all together, in call order with durations, when the innermost returns.",
        ),
    ] = False,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            click_type=OneOf(("auto", "fentry", "kprobe")),  # ksnoop.run.backend.BACKENDS
            help="How functions are probed: fentry/fexit, kprobe/kretprobe (registers per the calling "
            "convention; where a kernel has no fentry), or auto (the default): fentry where the kernel takes it, "
            "else kprobes, saying so.",
        ),
    ] = "auto",
    zeros: ZerosOption = False,
    compact: CompactOption = False,
    btf: BTFOption = None,
) -> None:
    from ksnoop.run.trace import RunOptions, run as run_trace

    options = RunOptions(
        specs=tuple(specs),
        pid=pid,
        comm=comm,
        uid=uid,
        cgroup_path=cgroup,
        cgroup_id=cgroup_id,
        count=count,
        duration_s=duration,
        min_duration_ns=min_duration or 0,
        pages=pages,
        output=output,
        color=output == "text" and _use_color(),
        verbose=verbose,
        quiet=quiet,
        btf_path=btf,
        kstack_depth=kstack_depth if kstack_depth is not None else (DEFAULT_KSTACK_DEPTH if kstack else 0),
        max_probes=max_probes,
        summary=summary_view,
        call_path=call_path,
        calls_only=calls_only,
        count_by=count_by or "",
        hist=hist or "",
        top=top,
        interval_s=interval,
        max_keys=max_keys,
        metrics=metrics,
        records=records,
        graph=graph,
        graph_depth=graph_depth,
        graph_include=tuple(graph_include or ()),
        graph_exclude=tuple(graph_exclude or ()),
        graph_args=graph_args,
        zeros=zeros,
        compact=compact,
        backend=backend,
    )
    with _reported_errors(verbose):
        # Its summary line is the run's own last word, said while a signal still only stops it.
        run_trace(options, _stdout(), sys.stderr)


@app.command(
    short_help="Print every kernel object of a kind (tasks, files, sockets...) by a BPF iterator.",
    help="Walk every kernel object of a kind with a BPF iterator and print each, as trace prints a call. "
    "The values, comparisons and output are trace's; the names are the iterator context's members "
    "(ksnoop info dump:TARGET shows them).\n\n"
    "Examples:\n\n"
    "ksnoop dump --pid PID 'task_file(fd, file->f_path.dentry->d_name.name)'  # a process's open files\n"
    "ksnoop dump -o json --pid PID 'task_vma(vma->vm_start, vma->vm_end)' | jq -c .args  # its memory map",
)
def dump(
    specs: Annotated[
        List[str],
        typer.Argument(
            metavar="SPEC...",
            help="An iterator target (see ksnoop list 'dump:*'), optionally with (ITEM, ...) as "
            "for trace, the names being its context's members, e.g. 'task_file(task->pid, fd, file)'.",
        ),
    ],
    *,
    pid: Annotated[
        Optional[int],
        typer.Option(
            "--pid",
            "-p",
            click_type=WholeNumber(1, metavar="PID"),
            help="Task iterators: only this process's tasks (task, task_file, task_vma).",
        ),
    ] = None,
    tid: Annotated[
        Optional[int],
        typer.Option("--tid", click_type=WholeNumber(1, metavar="TID"), help="Task iterators: only this thread."),
    ] = None,
    map_id: Annotated[
        Optional[int],
        typer.Option(
            "--map-id",
            click_type=WholeNumber(1, metavar="ID"),
            help="Map element iterators: the map whose elements to walk (bpf_map_elem, sockmap...).",
        ),
    ] = None,
    cgroup_id: Annotated[
        Optional[int],
        typer.Option(
            "--cgroup-id",
            click_type=WholeNumber(1, metavar="ID"),
            help="The cgroup iterator: start at the cgroup with this id.",
        ),
    ] = None,
    cgroup: Annotated[
        Optional[str],
        typer.Option("--cgroup", metavar="PATH", help="The cgroup iterator: start at this cgroup directory."),
    ] = None,
    cgroup_order: Annotated[
        Optional[str],
        typer.Option(
            "--cgroup-order",
            metavar="ORDER",  # checked against the kernel's enum bpf_cgroup_iter_order by the resolver
            help="The cgroup iterator's walk: self-only, descendants-pre (the default), descendants-post or "
            "ancestors-up.",
        ),
    ] = None,
    count: Annotated[
        Optional[int], typer.Option("--count", "-n", click_type=WholeNumber(1), help="Stop after N records.")
    ] = None,
    output: OutputOption = "text",
    verbose: VerboseOption = 0,
    zeros: ZerosOption = False,
    compact: CompactOption = False,
    btf: BTFOption = None,
) -> None:
    from ksnoop.run.dump import DumpOptions, run as run_dump
    from ksnoop.spec.resolve_dump import IterParams

    options = DumpOptions(
        specs=tuple(specs),
        params=IterParams(
            map_id=map_id, pid=pid, tid=tid, cgroup_id=cgroup_id, cgroup_path=cgroup, cgroup_order=cgroup_order
        ),
        count=count,
        output=output,
        color=output == "text" and _use_color(),
        verbose=verbose,
        btf_path=btf,
        zeros=zeros,
        compact=compact,
    )
    with _reported_errors(verbose):
        summary = run_dump(options, _stdout(), sys.stderr)
        print(f"ksnoop: {summary.records} record{'' if summary.records == 1 else 's'}", file=sys.stderr)


def _use_color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def _unknown_command(args: List[str]) -> Optional[str]:
    """The error for a first word that is no command (click's wording, and typer's, vary by version)."""
    if not args or args[0].startswith("-") or args[0] in COMMANDS:
        return None
    close = difflib.get_close_matches(args[0], COMMANDS, n=1, cutoff=0.5)
    hint = f"{did_you_mean(close)} " if close else ""
    return f"no command '{args[0]}'; {hint}the commands are {', '.join(COMMANDS)} (see ksnoop --help)"


def run(args: Optional[List[str]] = None) -> None:
    """Run the app: every error one line, a closed stdout (`| head`) quiet with status 1, as click does."""
    args = sys.argv[1:] if args is None else args
    status = 0
    try:
        if stdout_closed():
            raise OutputFailed(OSError(errno.EBADF, "standard output is closed"))
        unknown = _unknown_command(args)
        if unknown is not None:
            raise UsageError(unknown)
        try:
            # Not standalone: click's errors come back here, to be worded once (ksnoop.usage).
            result = app(args=args or ["--help"], prog_name="ksnoop", standalone_mode=False)
            status = result if isinstance(result, int) else 0
        finally:
            # Output still buffered when the app returns would otherwise meet the closed pipe only
            # at interpreter exit, outside any handler.
            if sys.stdout is not None:
                checked(sys.stdout).flush()
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit; point it at /dev/null first.
        silence_stdout()
        status = 1
    except OutputFailed as err:
        if not stdout_closed():
            silence_stdout()  # what the failed write left buffered must not fail again at exit
        _say_error(str(err))
        status = err.exit_status
    except KsnoopError as err:
        _say_error(str(err))
        status = err.exit_status
    except click.ClickException as err:
        _say_error(usage_line(err))
        status = err.exit_code
    except click.exceptions.Exit as err:
        status = err.exit_code
    except click.Abort:
        status = 1
    sys.exit(status)
