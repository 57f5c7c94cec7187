"""The typer app: parses options, calls one function per command, turns errors into one line.

Usage errors exit 2, runtime failures 1; no traceback reaches the user.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Annotated, Iterator, List, Optional

import typer


from btf import BTFError

from . import __version__
from .errors import KsnoopError, RuntimeFailure
from .sanitize import sanitize, sanitize_layout

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    help="Show the arguments and return values of Linux kernel functions as they run.",
)

BTFOption = Annotated[
    Optional[str],
    typer.Option("--btf", metavar="PATH", help="Read BTF from this file (raw BTF or an ELF with .BTF) "
                 "instead of /sys/kernel/btf/vmlinux."),
]


def _version(value: bool) -> None:
    if value:
        print(f"ksnoop {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
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
    print(f"ksnoop: error: {sanitize(message)}", file=sys.stderr)
    raise typer.Exit(status)


def _write(line: str) -> None:
    sys.stdout.write(sanitize_layout(line) + "\n")


@app.command()
def info(
    targets: Annotated[List[str], typer.Argument(
        metavar="TARGET...", help="A function, tp:TRACEPOINT, 'struct NAME', 'union NAME', 'enum NAME' or a "
        "typedef.")],
    *,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per target per line.")] = False,
    btf: BTFOption = None,
) -> None:
    """Show a function's or tracepoint's signature, or a type's layout, from the kernel's BTF."""
    from .info import describe
    from .targets import KernelBTF

    with _reported_errors():
        kernel = KernelBTF.load(btf)
        for text in targets:
            result = describe(kernel, text.strip(), as_json)
            _write(json.dumps(result) if as_json else result)


@app.command("list")
def list_(
    pattern: Annotated[str, typer.Argument(metavar="[GLOB]", help="Shell glob over names; 'tp:*' for "
                                           "tracepoints only.")] = "*",
    *,
    btf: BTFOption = None,
) -> None:
    """List traceable kernel functions and tp: tracepoints matching a glob, sorted."""
    from .targets import KernelBTF

    with _reported_errors():
        kernel = KernelBTF.load(btf)
        for label, module in kernel.list_targets(pattern):
            _write(label if module == "vmlinux" else f"{label} [{module}]")


def run() -> None:
    """Run the app; a closed stdout (`| head`) ends it quietly."""
    try:
        app()
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit; point it at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt:
        sys.exit(130)
