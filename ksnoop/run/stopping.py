# SPDX-License-Identifier: GPL-2.0-only
"""Being told to stop. Until everything is attached, SIGINT, SIGTERM and SIGHUP end ksnoop at
once, quietly, with 128 + the signal's number; once a trace runs, they set a flag the loops poll,
so they drain what is buffered, detach and summarise before they end."""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any, Iterator, Optional

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def exit_on_signals() -> None:
    """From here on a stop signal ends the process where it stands, with no traceback.

    An exception raised from a handler could surface anywhere (in an import, in a `finally`, in
    a ctypes callback that prints it as "Exception ignored"); leaving with os._exit cannot. What
    ksnoop holds in the kernel is held by file descriptors, which the kernel closes as the process
    ends: nothing stays loaded.
    """

    def handler(signum: int, _frame: Any) -> None:
        os._exit(128 + signum)

    for s in STOP_SIGNALS:
        signal.signal(s, handler)


class StopFlag:
    """Set by a stop signal, so the reader can drain what is buffered before it stops."""

    def __init__(self) -> None:
        self.signal: Optional[int] = None

    def __bool__(self) -> bool:
        return self.signal is not None

    def _handler(self, signum: int, _frame: Any) -> None:
        self.signal = signum

    @contextlib.contextmanager
    def installed(self, armed: bool = True) -> Iterator["StopFlag"]:
        """Within the block, once armed (now, or at arm()), stop signals set the flag; the handlers
        before it come back as the block ends. Entered before attaching and armed after, it keeps
        the flag through the detaching and the summary that follow a stop."""
        previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        if armed:
            self.arm()
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def arm(self) -> None:
        for s in STOP_SIGNALS:
            signal.signal(s, self._handler)
