# SPDX-License-Identifier: GPL-2.0-only
"""Golden listings: one plan per template shape, from the mini kernel's BTF only, never the host's.

Each tests/golden/listings/<case>.txt holds a header line (the spec and filters), then for each
probe a line naming it and its listing in bpftool's xlated notation, template names as `;`
lines the way bpftool shows source lines. Maps are bound to fixed stand-in fds (events 1,
drops 2, stash 3, scratch 4) so a listing shows which map each load names.
`pytest --update-golden` rewrites the files; review the diff like code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bpf.codegen import MapRole, Program, generate
from bpf.insn import Insn, decode, encode
from bpf.listing import format_insns
from bpf.plan import Filters, Plan
from ksnoop.spec.resolve import resolve, resolve_path
from ksnoop.spec.language import parse_spec
from tests.support import records

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "listings"
FDS = {MapRole.EVENTS: 1, MapRole.DROPS: 2, MapRole.STASH: 3, MapRole.SCRATCH: 4, MapRole.PATH: 6, MapRole.PATH_ZERO: 7}
CALL_PATH = "-s "  # a case whose spec starts so is a call path, its specs separated by " | "

CASES = {
    "plain_capture": ("tp:net_dev_queue(skb->len)", Filters()),
    "pid_comm_filter": ("tp:net_dev_queue(skb->len)", Filters(pid=4242, comm=b"curl")),
    "int_predicate": (
        "tp:net_dev_queue(skb->len >= 100, skb->dev->ifindex < -1, skb->pkt_type == 5)",
        Filters(),
    ),
    "string_predicate": ('seven_args(e->dev->name == "lo", f != "/etc/passwd")', Filters()),
    "multi_hop": ("tp:net_dev_queue(skb->next->dev->name, skb->next->len, skb->dev)", Filters()),
    "fentry_fexit_time": ("ip_send_skb(skb->len, return)", Filters()),
    "fentry_fexit_record": ("ip_send_skb(skb->len > 5, return != 0)", Filters()),
    "kstack": ("tp:net_dev_queue(skb->len)", Filters(), 8),
    "call_path": ("-s strncpy_from_user(count == 64) | ip_send_skb(skb->len, return < 0)", Filters(pid=4242)),
}


def _case(case: str) -> tuple[str, Filters, int]:
    """(spec, filters, kernel stack depth) of a case; the depth is 0 unless the case names one."""
    spec, filters, *depth = CASES[case]
    return spec, filters, depth[0] if depth else 0


def _header(spec: str, filters: Filters, kstack_depth: int = 0) -> str:
    parts = []
    if filters.pid is not None:
        parts.append(f"pid {filters.pid}")
    if filters.comm is not None:
        parts.append(f"comm {filters.comm.decode()}")
    if kstack_depth:
        parts.append(f"kstack {kstack_depth}")
    return f"# {spec}" + (f"  ({', '.join(parts)})" if parts else "")


def _listing(program: Program, insns: list[Insn]) -> list[str]:
    """format_insns() with `; template` lines before each template's first instruction."""
    starts = {}
    for first, name in program.sections:
        starts.setdefault(first, []).append(name)
    out = []
    for line in format_insns(insns):
        slot = int(line.split(":", 1)[0])
        out.extend(f"; {name}" for name in starts.get(slot, []))
        out.append(line)
    return out


def _plan(spec: str, filters: Filters, kstack_depth: int) -> Plan:
    if spec.startswith(CALL_PATH):
        specs = [parse_spec(s) for s in spec[len(CALL_PATH) :].split(" | ")]
        return resolve_path(specs, records.path_kernel(), filters, kstack_depth=kstack_depth).plan
    return resolve([parse_spec(spec)], records.kernel(), filters, kstack_depth=kstack_depth).plan


def render_plan(header: str, plan: Plan) -> str:
    """The golden text of a plan: `header`, then each probe's line and its listing."""
    lines = [header]
    for index, probe in enumerate(plan.probes):
        program = generate(plan, index)
        roles = sorted({role for _, role in program.map_slots}, key=lambda r: FDS[r])
        maps = ", ".join(f"{role.value} fd {FDS[role]}" for role in roles)
        lines.append(
            f"# probe {index}: {probe.kind.value} {probe.target}, record {program.layout.size} bytes, maps: {maps}"
        )
        lines.extend(_listing(program, program.bind_maps(FDS)))
    return "\n".join(lines) + "\n"


def render(case: str) -> str:
    spec, filters, kstack_depth = _case(case)
    return render_plan(_header(spec, filters, kstack_depth), _plan(spec, filters, kstack_depth))


def check_golden(path: Path, text: str, request: pytest.FixtureRequest) -> None:
    """`text` is what `path` holds; with --update-golden, write it there first."""
    if request.config.getoption("--update-golden"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing; `pytest --update-golden` writes it"
    assert text == path.read_text(), f"{path} differs from the generated listing; review, then --update-golden"


def check_round_trip(plan: Plan, golden: list[str]) -> None:
    """The plan's instructions survive encode/decode, and the decoded ones print as `golden` lists them."""
    listed = [line for line in golden if not line.startswith(("#", ";"))]
    printed = []
    for index in range(len(plan.probes)):
        insns = generate(plan, index).bind_maps(FDS)
        again = decode(encode(insns))
        assert again == insns
        printed.extend(format_insns(again))
    assert printed == listed


@pytest.mark.parametrize("case", sorted(CASES))
def test_listing_matches_golden(case: str, request: pytest.FixtureRequest) -> None:
    check_golden(GOLDEN / f"{case}.txt", render(case), request)


def test_no_stray_golden_listings() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.txt")) == sorted(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_listing_round_trips(case: str) -> None:
    """The instructions survive encode/decode, and the decoded ones print as the golden file says."""
    spec, filters, kstack_depth = _case(case)
    plan = _plan(spec, filters, kstack_depth)
    golden = (GOLDEN / f"{case}.txt").read_text().splitlines()
    check_round_trip(plan, golden)
    assert golden[0] == _header(spec, filters, kstack_depth)
