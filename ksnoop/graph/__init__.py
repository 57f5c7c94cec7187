# SPDX-License-Identifier: GPL-2.0-only
"""Function graphs: what a kernel function calls, found in the running kernel's machine code."""

MAX_DEPTH = 10  # calls below the root
DEFAULT_DEPTH = 3
