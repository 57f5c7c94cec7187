# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop: show the arguments and return values of Linux kernel functions as they run."""

__version__ = "0.1.0"
