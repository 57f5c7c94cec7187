# SPDX-License-Identifier: GPL-2.0-only
"""Entry point for `ksnoop` and `python -m ksnoop`."""

from __future__ import annotations


def main() -> None:
    from ksnoop.cli import run

    run()


if __name__ == "__main__":
    main()
