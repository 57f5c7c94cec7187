# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop's errors: usage errors exit 2, runtime failures exit 1; the CLI prints one line for each."""

from __future__ import annotations

from typing import Sequence


class KsnoopError(Exception):
    """Base of every error ksnoop reports to the user as one line."""

    exit_status = 1


class UsageError(KsnoopError):
    """The command line asks for something that does not exist or does not fit."""

    exit_status = 2


def did_you_mean(suggestions: Sequence[str]) -> str:
    """The one way ksnoop offers the closest right names: "did you mean 'a', 'b'?" (each quoted, as
    the name in error is), or "" when there are none."""
    return "did you mean " + ", ".join(f"'{s}'" for s in suggestions) + "?" if suggestions else ""


class UnknownTarget(UsageError):
    """A function, tracepoint or type that the BTF does not have; `suggestions` are the closest real ones."""

    def __init__(self, message: str, suggestions: Sequence[str] = ()):
        hint = f"; {did_you_mean(suggestions)}" if suggestions else ""
        super().__init__(message + hint)
        self.suggestions = tuple(suggestions)


class NothingMatched(KsnoopError):
    """A search the user asked for found nothing (`ksnoop list` of a glob no name matches)."""

    exit_status = 1


class RuntimeFailure(KsnoopError):
    """The request was sound but the system could not carry it out (permissions, kernel, corrupt data)."""

    exit_status = 1


class NotPermitted(RuntimeFailure):
    """Not root, or without CAP_BPF and CAP_PERFMON."""


class NotTraceable(RuntimeFailure):
    """The kernel will not attach to this target (no BTF, notrace, or fentry refused)."""


class Refused(RuntimeFailure):
    """The kernel refused a program before verifying it, whatever the privileges: its policy (a
    security module, lockdown) for that kind of program or that target. `log` is what the verifier
    wrote, if anything (its statistics line at most; -v prints it)."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


class VerifierRejected(RuntimeFailure):
    """The kernel's verifier refused a generated program; the message carries its reason line,
    `log` the whole verifier log (-v prints it)."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log
