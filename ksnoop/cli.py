# SPDX-License-Identifier: GPL-2.0-only
"""The typer app: parses options, calls one function per command, turns errors into one line.

Usage errors exit 2, runtime failures 1; no traceback reaches the user.
"""
# No `from __future__ import annotations` here: on Python 3.9 typer reads the parameters' annotations
# unevaluated, as strings, and then loses every Annotated[..., typer.Option(...)] (`--json` became `--as-json`).

import contextlib
import enum
import json
import os
import sys
from typing import Annotated, Iterator, List, Optional

import typer


from bpf.plan import DEFAULT_KSTACK_DEPTH, MAX_KSTACK_DEPTH
from btf import BTFError

from ksnoop import __version__
from ksnoop.errors import KsnoopError, NothingMatched, RuntimeFailure
from ksnoop.spec.resolve import DEFAULT_MAX_PROBES, MULTI_MAX_PROBES
from ksnoop.sanitize import sanitize, sanitize_layout

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    help="Show the arguments and return values of Linux kernel functions as they run.",
)

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
def _reported_errors() -> Iterator[None]:
    """Turn ksnoop's and the BTF library's errors into `ksnoop: error: ...` and an exit status."""
    try:
        yield
    except KsnoopError as err:
        _fail(str(err), err.exit_status)
    except BTFError as err:
        _fail(str(RuntimeFailure(f"corrupt BTF: {err}")), 1)


def _fail(message: str, status: int) -> None:
    # A spec error adds the spec and a caret under the fault: lines of their own, each sanitised.
    first, *rest = message.split("\n")
    lines = [f"ksnoop: error: {sanitize(first)}"] + [sanitize(line) for line in rest]
    print("\n".join(lines), file=sys.stderr, flush=True)
    raise typer.Exit(status)


def _write(line: str) -> None:
    sys.stdout.write(sanitize_layout(line) + "\n")


@app.command()
def info(
    targets: Annotated[
        List[str],
        typer.Argument(
            metavar="TARGET...",
            help="A function, tp:TRACEPOINT, 'struct NAME', 'union NAME', 'enum NAME' or a typedef.",
        ),
    ],
    *,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per target per line.")] = False,
    btf: BTFOption = None,
) -> None:
    """Show a function's or tracepoint's signature, or a type's layout, from the kernel's BTF."""
    from ksnoop.info import describe
    from ksnoop.spec.targets import KernelBTF

    with _reported_errors():
        kernel = KernelBTF.load(btf)
        for text in targets:
            result = describe(kernel, text.strip(), as_json)
            _write(json.dumps(result) if as_json else result)


@app.command("list")
def list_(
    pattern: Annotated[
        str,
        typer.Argument(
            metavar="[GLOB]", help="Shell glob over names; 'tp:*' for tracepoints only, 'dump:*' for iterator targets."
        ),
    ] = "*",
    *,
    btf: BTFOption = None,
) -> None:
    """List traceable kernel functions and tp: tracepoints matching a glob, sorted; 'dump:*' lists the
    iterator targets ksnoop dump can walk, marking those this kernel refuses (asked when run as root)."""
    from ksnoop.spec.targets import ITER_PREFIX, KernelBTF

    with _reported_errors():
        kernel = KernelBTF.load(btf)
        if pattern.startswith(ITER_PREFIX):
            from ksnoop.spec.iter_targets import IterTargets, refusal_note

            iters = IterTargets(kernel)
            found = [(t.target.label, t.target.module, refusal_note(iters.refusal(t))) for t in iters.glob(pattern)]
        else:
            found = [(label, module, "") for label, module in kernel.list_targets(pattern)]
        if not found:
            what = (
                "iterator target"
                if pattern.startswith(ITER_PREFIX)
                else ("tracepoint" if pattern.startswith("tp:") else "traceable function or tracepoint")
            )
            raise NothingMatched(f"no {what} matches '{pattern}' (ksnoop list '*' lists them all)")
        for label, module, note in found:
            # One line per name: a newline or tab inside a BTF name is escaped like any control character.
            sys.stdout.write(sanitize((label if module == "vmlinux" else f"{label} [{module}]") + note) + "\n")


class OutputFormat(str, enum.Enum):
    text = "text"
    json = "json"


class Backend(str, enum.Enum):  # ksnoop.run.backend.BACKENDS
    auto = "auto"
    fentry = "fentry"
    kprobe = "kprobe"


@app.command()
def trace(
    specs: Annotated[
        List[str],
        typer.Argument(
            metavar="SPEC...",
            help="FUNCTION or tp:TRACEPOINT, optionally with (ITEM, ...): values to show, "
            "each optionally compared with a literal to filter, e.g. 'ip_send_skb(skb->len > 100, skb)'.",
        ),
    ],
    *,
    pid: Annotated[Optional[int], typer.Option("--pid", "-p", help="Only this process (tgid).")] = None,
    comm: Annotated[Optional[str], typer.Option("--comm", help="Only tasks with this command name.")] = None,
    count: Annotated[Optional[int], typer.Option("--count", "-n", min=1, help="Stop after N records.")] = None,
    duration: Annotated[Optional[float], typer.Option("--duration", min=0.0, help="Stop after SECONDS.")] = None,
    pages: Annotated[
        int, typer.Option("--pages", "-P", min=1, help="Ring buffer size in pages (a power of two).")
    ] = 1024,
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="text, or json (one object per line).")
    ] = OutputFormat.text,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show the resolved plan and the generated programs on stderr.")
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
            metavar="N",
            min=1,
            max=MAX_KSTACK_DEPTH,
            help=f"Frames of kernel stack to keep (implies --kstack; default {DEFAULT_KSTACK_DEPTH}).",
        ),
    ] = None,
    max_probes: Annotated[
        Optional[int],
        typer.Option(
            "--max-probes",
            metavar="N",
            min=1,
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
        Backend,
        typer.Option(
            "--backend",
            case_sensitive=False,
            help="How functions are probed: fentry/fexit, kprobe/kretprobe (registers per the calling "
            "convention; where a kernel has no fentry), or auto: fentry where the kernel takes it, else "
            "kprobes, saying so.",
        ),
    ] = Backend.auto,
    zeros: ZerosOption = False,
    compact: CompactOption = False,
    btf: BTFOption = None,
) -> None:
    """Trace kernel functions and tracepoints: print their arguments and return values as they run.

    A SPEC's name may be a glob ('tcp_v4_*', 'tp:net_dev_*'): every function (or tracepoint) it matches
    is traced, each with the values that fit it; functions the kernel will not attach to are left out
    with a warning."""
    from ksnoop.run.trace import RunOptions, run as run_trace

    options = RunOptions(
        specs=tuple(specs),
        pid=pid,
        comm=comm,
        count=count,
        duration_s=duration,
        pages=pages,
        output=output.value,
        color=output is OutputFormat.text and _use_color(),
        verbose=verbose,
        btf_path=btf,
        kstack_depth=kstack_depth if kstack_depth is not None else (DEFAULT_KSTACK_DEPTH if kstack else 0),
        max_probes=max_probes,
        summary=summary_view,
        call_path=call_path,
        calls_only=calls_only,
        zeros=zeros,
        compact=compact,
        backend=backend.value,
    )
    with _reported_errors():
        summary = run_trace(options, sys.stdout, sys.stderr)
        if summary.calls is not None:
            print(f"ksnoop: {summary.calls} call{'' if summary.calls == 1 else 's'} counted", file=sys.stderr)
            return
        lost = f", {summary.lost} lost (ring buffer full)" if summary.lost else ""
        noun = "record" if summary.records == 1 else "records"
        print(f"ksnoop: {summary.records} {noun}{lost}", file=sys.stderr)


@app.command()
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
        typer.Option("--pid", "-p", help="Task iterators: only this process's tasks (task, task_file, task_vma)."),
    ] = None,
    tid: Annotated[Optional[int], typer.Option("--tid", help="Task iterators: only this thread.")] = None,
    map_id: Annotated[
        Optional[int],
        typer.Option(
            "--map-id", help="Map element iterators: the map whose elements to walk (bpf_map_elem, sockmap...)."
        ),
    ] = None,
    cgroup_id: Annotated[
        Optional[int], typer.Option("--cgroup-id", help="The cgroup iterator: start at the cgroup with this id.")
    ] = None,
    cgroup: Annotated[
        Optional[str],
        typer.Option("--cgroup", metavar="PATH", help="The cgroup iterator: start at this cgroup directory."),
    ] = None,
    cgroup_order: Annotated[
        Optional[str],
        typer.Option(
            "--cgroup-order",
            metavar="ORDER",
            help="The cgroup iterator's walk: self-only, descendants-pre (the "
            "default), descendants-post or ancestors-up.",
        ),
    ] = None,
    count: Annotated[Optional[int], typer.Option("--count", "-n", help="Stop after N records.")] = None,
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="text, or json (one object per line).")
    ] = OutputFormat.text,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show the resolved plan and the generated programs on stderr.")
    ] = False,
    zeros: ZerosOption = False,
    compact: CompactOption = False,
    btf: BTFOption = None,
) -> None:
    """Walk every kernel object of a kind with a BPF iterator and print each, as trace prints a call.

    The values, comparisons and output are trace's; the names are the iterator context's members
    (ksnoop info dump:TARGET shows them)."""
    from ksnoop.run.dump import DumpOptions, run as run_dump
    from ksnoop.spec.resolve_dump import IterParams

    options = DumpOptions(
        specs=tuple(specs),
        params=IterParams(
            map_id=map_id, pid=pid, tid=tid, cgroup_id=cgroup_id, cgroup_path=cgroup, cgroup_order=cgroup_order
        ),
        count=count,
        output=output.value,
        color=output is OutputFormat.text and _use_color(),
        verbose=verbose,
        btf_path=btf,
        zeros=zeros,
        compact=compact,
    )
    with _reported_errors():
        summary = run_dump(options, sys.stdout, sys.stderr)
        print(f"ksnoop: {summary.records} record{'' if summary.records == 1 else 's'}", file=sys.stderr)


def _use_color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def run() -> None:
    """Run the app; a closed stdout (`| head`) ends it quietly with status 1, as click does."""
    try:
        try:
            app()
        finally:
            # Output still buffered when the app returns would otherwise meet the closed pipe only
            # at interpreter exit, outside any handler.
            sys.stdout.flush()
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit; point it at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
