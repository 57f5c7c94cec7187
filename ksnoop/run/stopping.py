# SPDX-License-Identifier: GPL-2.0-only
"""Being told to stop: SIGINT and SIGTERM set a flag the loops poll, so they drain what is
buffered and detach before they end."""

from __future__ import annotations

import contextlib
import signal
from typing import Any, Optional


class StopFlag:
    """Set by SIGINT or SIGTERM, so the reader can drain what is buffered before it stops."""

    def __init__(self) -> None:
        self.signal: Optional[int] = None

    def __bool__(self) -> bool:
        return self.signal is not None

    @contextlib.contextmanager
    def installed(self) -> Any:
        def handler(signum: int, _frame: Any) -> None:
            self.signal = signum

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
