# SPDX-License-Identifier: GPL-2.0-only
"""vm: the per-call cost of tracing close_fd, ksnoop against bpftrace, in the qemu guest
(vm_percall.py with its defaults, apart from --runs)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict

import vm_percall


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Per-call cost of close_fd traced by ksnoop and by bpftrace, in the qemu guest: vm_percall.py with
    its defaults (run it directly for its other options). Its table goes to stderr."""
    result = vm_percall.run_benchmark(rounds=args.runs)
    print(vm_percall.human_summary(result), file=sys.stderr)
    return result
