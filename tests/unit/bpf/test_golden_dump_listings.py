# SPDX-License-Identifier: GPL-2.0-only
"""Golden listings of iterator programs (`ksnoop dump`), from the mini kernel's iterators only.

Like tests/unit/bpf/test_golden_listings.py, in their own folder tests/golden/listings/dump/: the
spec as a header line, then each probe's listing with its templates as `;` lines; scratch is map
fd 4. `pytest --update-golden` rewrites them; review the diff like code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ksnoop.spec.resolve_dump import IterParams, ResolvedDump, parse_dump_spec, resolve_dump
from ksnoop.spec.iter_targets import IterTargets
from tests.support import miniiter
from tests.unit.bpf.test_golden_listings import check_golden, check_round_trip, render_plan

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "listings" / "dump"
MAX_RECORD_SIZE = 32760

CASES = {
    "task_scalars": "task(task->pid, task->comm, task->mm->total_vm > 10000)",
    "task_file_string": 'task_file(fd, file->f_path.dentry->d_name.name == "null", file->f_path.dentry->d_name.name)',
    "map_elem_struct": "bpf_map_elem(map, key)",
}


def _resolve(case: str) -> ResolvedDump:
    params = IterParams(map_id=1) if case.startswith("map_") else IterParams()
    return resolve_dump(
        [parse_dump_spec(CASES[case])], IterTargets(miniiter.kernel()), params, max_record_size=MAX_RECORD_SIZE
    )


def render(case: str) -> str:
    return render_plan(f"# dump {CASES[case]}", _resolve(case).resolved.plan)


@pytest.mark.parametrize("case", sorted(CASES))
def test_listing_matches_golden(case: str, request: pytest.FixtureRequest) -> None:
    check_golden(GOLDEN / f"{case}.txt", render(case), request)


def test_no_stray_golden_listings() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.txt")) == sorted(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_listing_round_trips(case: str) -> None:
    check_round_trip(_resolve(case).resolved.plan, (GOLDEN / f"{case}.txt").read_text().splitlines())
