# SPDX-License-Identifier: GPL-2.0-only
"""Where lines go: stdout as ksnoop writes it, with output errors said once, and lines in batches.

A full disk or a dead terminal is one `ksnoop: error: writing output: ...` line, exit 1; a reader
that went away (EPIPE, `| head`) stays BrokenPipeError, which the CLI ends quietly.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, List, TextIO, cast

from ksnoop.errors import RuntimeFailure

# With a tty or PYTHONUNBUFFERED a write per record is a system call each.
BATCH_LINES = 512


class OutputFailed(RuntimeFailure):
    """stdout refused a write (ENOSPC, EIO, EBADF...)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(f"writing output: {error.strerror or error}")


class _CheckedStream:
    """A text stream whose OSErrors, but for EPIPE, become OutputFailed."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        with _output_errors():
            return self._stream.write(text)

    def flush(self) -> None:
        with _output_errors():
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding...
        return getattr(self._stream, name)


@contextlib.contextmanager
def _output_errors() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as error:
        raise OutputFailed(error) from None


def checked(stream: TextIO) -> TextIO:
    """`stream` with its write errors turned into OutputFailed."""
    return cast(TextIO, _CheckedStream(stream))


def stdout_closed() -> bool:
    """True when ksnoop was started with its stdout closed (`>&-`): Python then sets sys.stdout to
    None, and the first file ksnoop opened would take descriptor 1."""
    try:
        os.fstat(1)
    except OSError:
        return True
    return False


def silence_stdout() -> None:
    """Point descriptor 1 at /dev/null, so that Python's own flush at exit, of what a failed write
    left buffered, has nowhere to fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


class LineWriter:
    """Lines out in batches of BATCH_LINES."""

    def __init__(self, out: TextIO):
        self.out = out
        self.pending: List[str] = []

    def add(self, line: str) -> None:
        self.pending.append(line)
        if len(self.pending) >= BATCH_LINES:
            self.flush()

    def extend(self, lines: List[str]) -> None:
        self.pending.extend(lines)
        if len(self.pending) >= BATCH_LINES:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.out.write("\n".join(self.pending) + "\n")
            self.pending.clear()
        self.out.flush()
