# SPDX-License-Identifier: GPL-2.0-only
"""Entry point for `ksnoop` and `python -m ksnoop`."""

from __future__ import annotations


def main() -> None:
    # First of all, before the imports that take most of a start-up: a signal from here on ends
    # ksnoop quietly (a KeyboardInterrupt traceback from inside typer's import is no answer).
    from ksnoop.run.stopping import exit_on_signals

    exit_on_signals()
    from ksnoop.cli import run

    run()


if __name__ == "__main__":
    main()
