# SPDX-License-Identifier: GPL-2.0-only
"""Usage errors in ksnoop's words: the option types that check a value and name what is accepted,
and click's own errors (unknown option, missing value, extra argument) as one line.

Click words its errors differently from one version to the next ("'abc' is not a valid integer
range.", a second "Did you mean" from typer); ksnoop words them once, here, so every usage error
is one `ksnoop: error:` line whatever versions are installed.
"""

from __future__ import annotations

import difflib
from typing import Any, Optional, Sequence

import click

from ksnoop.errors import did_you_mean
from ksnoop.run.options import ListenAt


class BadValue(click.BadParameter):
    """A value an option cannot take: said as `--count abc: not a whole number`, the value as given."""

    def __init__(self, value: Any, reason: str, param: Any, ctx: Any) -> None:
        super().__init__(reason, ctx=ctx, param=param)
        self.value = value


class WholeNumber(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 only
    """An integer in [minimum, maximum]."""

    name = "integer"

    def __init__(self, minimum: Optional[int] = None, maximum: Optional[int] = None, metavar: str = "N") -> None:
        self.minimum, self.maximum, self.metavar = minimum, maximum, metavar

    def get_metavar(self, param: Any, ctx: Any = None) -> str:
        return self.metavar

    def _range(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f"from {self.minimum} to {self.maximum}"
        return f"at least {self.minimum}" if self.minimum is not None else "any"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            number = value
        else:
            try:
                number = int(str(value).strip(), 0)
            except ValueError:
                raise BadValue(value, f"not a whole number ({self._range()})", param, ctx) from None
        too_small = self.minimum is not None and number < self.minimum
        if too_small or (self.maximum is not None and number > self.maximum):
            raise BadValue(value, self._range(), param, ctx)
        return number


_UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def _time_ns(text: str, bare_unit: str = "") -> float:
    """`10ms`, `1.5s`, `200ns` in ns; a bare number in `bare_unit` (none: ValueError)."""
    text = text.strip().lower()
    number = text.rstrip("nsuµm")
    unit = text[len(number) :] or bare_unit
    if unit not in _UNITS_NS:
        raise ValueError(text)
    return float(number) * _UNITS_NS[unit]


class Seconds(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 only
    """A number of seconds (or a time with its unit, 500ms), 0 or more (more than 0 if `positive`)."""

    name = "seconds"

    def __init__(self, positive: bool = False) -> None:
        self.positive = positive

    def get_metavar(self, param: Any, ctx: Any = None) -> str:
        return "SECONDS"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        if isinstance(value, float):
            return value
        try:
            seconds = _time_ns(str(value), "s") / _UNITS_NS["s"]
        except ValueError:
            raise BadValue(value, "not a number of seconds (such as 5 or 0.5)", param, ctx) from None
        if not 0 <= seconds < float("inf") or (self.positive and not seconds):
            raise BadValue(value, "more than 0 seconds" if self.positive else "0 seconds or more", param, ctx)
        return seconds


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 only
    """A time with its unit (10ms, 500us, 1.5s, 200ns), as nanoseconds."""

    name = "duration"

    def get_metavar(self, param: Any, ctx: Any = None) -> str:
        return "TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        try:
            nanoseconds = round(_time_ns(str(value)))
        except (ValueError, OverflowError):
            raise BadValue(value, "a time with its unit: 10ms, 500us, 2s or 200ns", param, ctx) from None
        if not 0 < nanoseconds < 1 << 63:
            raise BadValue(value, "more than 0 and less than 292 years", param, ctx)
        return nanoseconds


class ListenAddress(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 only
    """Where a server listens: HOST:PORT (an IPv6 address in brackets), or :PORT for every
    address; port 0 takes any free port."""

    name = "address"
    _SAY = "HOST:PORT, as 127.0.0.1:9435, [::1]:9435, or :9435 for every address"

    def get_metavar(self, param: Any, ctx: Any = None) -> str:
        return "HOST:PORT"

    def convert(self, value: Any, param: Any, ctx: Any) -> ListenAt:
        if isinstance(value, ListenAt):
            return value
        text = str(value).strip()
        host, colon, port_text = text.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            raise BadValue(value, f"an IPv6 address goes in brackets: {self._SAY}", param, ctx)
        if not colon or not port_text.isdigit() or any(c.isspace() or c in "[]/" for c in host):
            raise BadValue(value, self._SAY, param, ctx)
        port = int(port_text)
        if port > 65535:
            raise BadValue(value, "a port is at most 65535", param, ctx)
        return ListenAt(host or "0.0.0.0", port)


class OneOf(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 only
    """One of a few words, in any case."""

    name = "choice"

    def __init__(self, choices: Sequence[str]) -> None:
        self.choices = tuple(choices)

    def get_metavar(self, param: Any, ctx: Any = None) -> str:
        return "|".join(self.choices).upper()

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        word = str(value).strip().lower()
        if word in self.choices:
            return word
        close = difflib.get_close_matches(word, self.choices, n=1, cutoff=0.5)
        hint = f"; {did_you_mean(close)}" if close else ""
        raise BadValue(value, f"one of {', '.join(self.choices)}{hint}", param, ctx)


def option_name(param: Optional[click.Parameter]) -> str:
    """How an error names a parameter: its long name (`--count`), or an argument's metavar."""
    if param is None:
        return "a parameter"
    if isinstance(param, click.Option):
        longs = [o for o in param.opts if o.startswith("--")]
        return (longs or param.opts)[0]
    return param.human_readable_name


def usage_line(error: click.ClickException) -> str:
    """A click error as ksnoop words it, with no `ksnoop: error:` yet (the CLI adds it)."""
    ctx = getattr(error, "ctx", None)
    command = ctx.command_path if ctx is not None else "ksnoop"
    see = f"see {command} --help"
    if isinstance(error, click.MissingParameter):
        if isinstance(error.param, click.Argument):
            return f"{command} needs {error.param.human_readable_name} ({see})"
        return f"{option_name(error.param)} is required ({see})"
    # After MissingParameter, which is a BadParameter.
    if isinstance(error, BadValue):
        return f"{option_name(error.param)} {error.value}: {error.message}"
    if isinstance(error, click.BadParameter):  # click's own types
        return f"{option_name(error.param)}: {error.message}"
    if isinstance(error, click.NoSuchOption):
        hint = f"; {did_you_mean(sorted(error.possibilities))}" if error.possibilities else ""
        return f"no option {error.option_name}{hint} ({see})"
    if isinstance(error, click.BadOptionUsage) and "requires an argument" in error.message:
        return f"{error.option_name} needs a value ({see})"
    message = error.format_message().strip().rstrip(".")
    message = message[:1].lower() + message[1:]
    return f"{message} ({see})"
