# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.run.stopping.StopFlag with real signals sent to this process."""

from __future__ import annotations

import os
import signal
import time

import pytest

from ksnoop.run.stopping import StopFlag


def _signalled(flag: StopFlag) -> bool:
    # A Python handler runs at the main thread's next bytecode boundary: give it that chance.
    deadline = time.monotonic() + 2.0
    while not flag and time.monotonic() < deadline:
        time.sleep(0.001)
    return bool(flag)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_set_the_flag(signum: int) -> None:
    flag = StopFlag()
    assert not flag and flag.signal is None
    with flag.installed() as installed:
        assert installed is flag
        os.kill(os.getpid(), signum)
        assert _signalled(flag)
    assert flag.signal == signum


def test_the_previous_handlers_come_back_even_after_an_error() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    flag = StopFlag()
    with pytest.raises(RuntimeError), flag.installed():
        assert {s: signal.getsignal(s) for s in before} != before
        raise RuntimeError("the loop failed")
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_second_signal_while_draining_raises_nothing() -> None:
    """A second Ctrl-C while the loop drains and detaches is caught as the first was: no KeyboardInterrupt."""
    flag = StopFlag()
    with flag.installed():
        os.kill(os.getpid(), signal.SIGINT)
        assert _signalled(flag)
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 2.0
        while flag.signal != signal.SIGTERM and time.monotonic() < deadline:
            time.sleep(0.001)
    assert flag.signal == signal.SIGTERM
