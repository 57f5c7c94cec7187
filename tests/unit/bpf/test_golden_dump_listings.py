"""Golden listings of iterator programs (`ksnoop dump`), from the mini kernel's iterators only.

Like tests/unit/bpf/test_golden_listings.py, in their own folder tests/golden/listings/dump/: the
spec as a header line, then each probe's listing with its templates as `;` lines; scratch is map
fd 4. `pytest --update-golden` rewrites them; review the diff like code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bpf.codegen import generate
from bpf.insn import decode, encode
from bpf.listing import format_insns
from ksnoop.dump_resolve import IterParams, ResolvedDump, parse_dump_spec, resolve_dump
from ksnoop.iter_targets import IterTargets
from tests.support import miniiter
from tests.unit.bpf.test_golden_listings import FDS, _listing

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "listings" / "dump"
MAX_RECORD_SIZE = 32760

CASES = {
    "task_scalars": "task(task->pid, task->comm, task->mm->total_vm > 10000)",
    "task_file_string": 'task_file(fd, file->f_path.dentry->d_name.name == "null", file->f_path.dentry->d_name.name)',
    "map_elem_struct": "bpf_map_elem(map, key)",
}


def _resolve(case: str) -> ResolvedDump:
    params = IterParams(map_id=1) if case.startswith("map_") else IterParams()
    return resolve_dump([parse_dump_spec(CASES[case])], IterTargets(miniiter.kernel()), params,
                        max_record_size=MAX_RECORD_SIZE)


def render(case: str) -> str:
    plan = _resolve(case).resolved.plan
    lines = [f"# dump {CASES[case]}"]
    for index, probe in enumerate(plan.probes):
        program = generate(plan, index)
        roles = sorted({role for _, role in program.map_slots}, key=lambda r: FDS[r])
        maps = ", ".join(f"{role.value} fd {FDS[role]}" for role in roles)
        lines.append(f"# probe {index}: {probe.kind.value} {probe.target}, record {program.layout.size} bytes, "
                     f"maps: {maps}")
        lines.extend(_listing(program, program.bind_maps(FDS)))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("case", sorted(CASES))
def test_listing_matches_golden(case: str, request: pytest.FixtureRequest) -> None:
    path = GOLDEN / f"{case}.txt"
    text = render(case)
    if request.config.getoption("--update-golden"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing; `pytest --update-golden` writes it"
    assert text == path.read_text(), f"{path} differs from the generated listing; review, then --update-golden"


def test_no_stray_golden_listings() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.txt")) == sorted(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_listing_round_trips(case: str) -> None:
    plan = _resolve(case).resolved.plan
    golden = (GOLDEN / f"{case}.txt").read_text().splitlines()
    listed = [line for line in golden if not line.startswith(("#", ";"))]
    printed = []
    for index in range(len(plan.probes)):
        insns = generate(plan, index).bind_maps(FDS)
        again = decode(encode(insns))
        assert again == insns
        printed.extend(format_insns(again))
    assert printed == listed
