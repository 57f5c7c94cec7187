"""The contract every output format keeps, so that the record loop, the summary and dump can use
any of them without asking what it is: a header, a line (or lines) per Event, and the lines of a
buffer of whole records of one probe at a time."""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Protocol

from .decode import Decoder, Event, RecordFields


class Formatter(Protocol):
    def header(self) -> str:
        """What goes out before the first record ("" for none)."""

    def format(self, event: Event, duration_ns: Optional[int] = None) -> str:
        """The event's text, without a final newline; `duration_ns` defaults to the event's own."""

    def batch(self, probe_index: int, fields: RecordFields, decode: Decoder) -> Callable[[Any], List[str]]:
        """A function from a buffer of whole records of probe `probe_index` to their texts."""
