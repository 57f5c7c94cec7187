# SPDX-License-Identifier: GPL-2.0-only
"""bpf.features without a kernel: capability parsing and what counts as enough privilege."""

from __future__ import annotations

import pytest

from bpf import features
from bpf.features import CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN, parse_cap_eff, privileges_from_caps

STATUS = "Name:\tpython3\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\n"


def test_cap_eff_is_read_as_hex() -> None:
    assert parse_cap_eff(STATUS) == 0x000001FFFEFFFFFF
    with pytest.raises(ValueError):
        parse_cap_eff("Name:\tx\n")


@pytest.mark.parametrize(
    ("caps", "ok", "missing"),
    [
        (1 << CAP_SYS_ADMIN, True, ""),
        (1 << CAP_BPF | 1 << CAP_PERFMON, True, ""),
        (1 << CAP_BPF, False, "CAP_PERFMON"),
        (1 << CAP_PERFMON, False, "CAP_BPF"),
        (0, False, "CAP_BPF and CAP_PERFMON"),
    ],
)
def test_privileges(caps: int, ok: bool, missing: str) -> None:
    found = privileges_from_caps(caps)
    assert found.ok is ok and bool(found) is ok
    if not ok:
        assert found.reason == f"this process lacks {missing}" and found.missing == tuple(missing.split(" and "))


def test_feature_is_falsy_when_missing() -> None:
    assert not features.Feature(False, "why")
