# SPDX-License-Identifier: GPL-2.0-only
"""bpf.maps without a kernel: the sysfs CPU list format per-CPU values are laid out by."""

from __future__ import annotations

import pytest

from bpf.maps import parse_cpu_list


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0\n", [0]), ("0-1\n", [0, 1]), ("0-3,8,10-11", [0, 1, 2, 3, 8, 10, 11]), ("", [])],
)
def test_parse_cpu_list(text: str, cpus: list[int]) -> None:
    assert parse_cpu_list(text) == cpus
