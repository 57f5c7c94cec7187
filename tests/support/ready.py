# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop's ready line ("ksnoop: tracing 2 functions (fentry/fexit); Ctrl-C to stop", or with
--summary "ksnoop: counting calls of ..."), told apart from the rest of its stderr, so that tests
can wait for it and still compare the rest exactly."""

from __future__ import annotations

import re
from typing import IO, List, Tuple

READY = re.compile(r"ksnoop: (tracing|counting calls of) .*; .*Ctrl-C.*")


def split_ready(stderr: str) -> Tuple[List[str], str]:
    """(the ready lines, the rest of `stderr` as it was, less those lines)."""
    ready, rest = [], []
    for line in stderr.splitlines(keepends=True):
        (ready if READY.fullmatch(line.rstrip("\n")) else rest).append(line)
    return [line.rstrip("\n") for line in ready], "".join(rest)


def wait_ready(stderr: IO[str]) -> Tuple[str, List[str]]:
    """Read a running ksnoop's stderr (text, a pipe) up to its ready line: (that line, the lines
    before it). AssertionError if the stream ends first. A test that must not hang bounds the
    wait itself (pytest's timeout, or the process's own --duration)."""
    before: List[str] = []
    for line in stderr:
        if READY.fullmatch(line.rstrip("\n")):
            return line.rstrip("\n"), before
        before.append(line)
    raise AssertionError(f"ksnoop ended before it was ready: {''.join(before)}")
