# SPDX-License-Identifier: GPL-2.0-only
"""The contract every output format keeps, so that the record loop, the summary and dump can use
any of them without asking what it is: a header, a line (or lines) per Event, and the line of one
record, or the lines of a buffer of whole records, of one probe."""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Protocol

from ksnoop.output.decode import Decoder, Event, RecordFields


class Formatter(Protocol):
    def header(self) -> str:
        """What goes out before the first record ("" for none)."""

    def format(self, event: Event, duration_ns: Optional[int] = None) -> str:
        """The event's text, without a final newline; `duration_ns` defaults to the event's own."""

    def record(self, probe_index: int, fields: RecordFields, decode: Decoder) -> Callable[[Any], str]:
        """A function from one whole record of probe `probe_index` to its text: format(decode(record))."""

    def batch(self, probe_index: int, fields: RecordFields, decode: Decoder) -> Callable[[Any], List[str]]:
        """A function from a buffer of whole records of probe `probe_index` to their texts."""


def each_record(line: Callable[[Any], str], size: int) -> Callable[[Any], List[str]]:
    """A batch function made of a record function: the buffer cut into records of `size` bytes."""

    def lines(buffer: Any) -> List[str]:
        return [line(buffer[offset : offset + size]) for offset in range(0, len(buffer), size)]

    return lines
