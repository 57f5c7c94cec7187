# SPDX-License-Identifier: GPL-2.0-only
"""bpf.uapi against the installed <linux/bpf.h> (linux-libc-dev), an independent copy of the numbers.

Names our enums have and that header lacks (it may be older than the running kernel) are
not checked; every name both have must agree.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path

import pytest

from bpf import uapi

HEADERS = [Path("/usr/include/linux/bpf.h"), Path("/usr/include/linux/bpf_common.h")]


def _eval(expr: str, known: dict[str, int]) -> int | None:
    expr = re.sub(r"(?<=[0-9a-fA-F])[uU]?[lL]{0,2}\b", "", expr.strip())
    expr = re.sub(r"\b[A-Za-z_]\w*\b", lambda m: str(known[m.group()]) if m.group() in known else "?", expr)
    if not re.fullmatch(r"[0-9a-fA-Fx()<>|& +]+", expr):
        return None
    return int(eval(expr))  # digits and operators only, checked above


@pytest.fixture(scope="module")
def header() -> tuple[dict[str, int], dict[str, int]]:
    """(every #define and enum constant, helper name -> id) from the installed headers."""
    if not all(h.exists() for h in HEADERS):
        pytest.skip("linux-libc-dev headers are not installed")
    text = "\n".join(h.read_text() for h in HEADERS)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    known: dict[str, int] = {}
    for name, value in re.findall(r"^#define\s+(BPF_\w+)\s+(.+)$", text, re.MULTILINE):
        parsed = _eval(value, known)
        if parsed is not None:
            known[name] = parsed
    for body in re.findall(r"enum(?:\s+\w+)?\s*\{(.*?)\}", text, re.DOTALL):
        next_value = 0
        for entry in body.split(","):
            entry = entry.strip()
            if not entry or entry.startswith("#"):
                continue
            name, _, value = entry.partition("=")
            parsed = _eval(value, known) if value else next_value
            if parsed is None:
                continue
            known[name.strip()] = parsed
            next_value = parsed + 1
    helpers: dict[str, int] = {}
    mapper = re.search(r"#define ___?BPF_FUNC_MAPPER\(FN(?:, ctx\.\.\.)?\)(.*?)\n\n", text, re.DOTALL)
    assert mapper is not None
    for index, (name, number) in enumerate(re.findall(r"FN\((\w+)(?:, (\d+))?", mapper.group(1))):
        helpers[name] = int(number) if number else index
    return known, helpers


@pytest.mark.parametrize(
    ("enum_type", "prefix"),
    [
        (uapi.Cmd, "BPF_"),
        (uapi.MapType, "BPF_MAP_TYPE_"),
        (uapi.ProgType, "BPF_PROG_TYPE_"),
        (uapi.AttachType, "BPF_"),
        (uapi.LinkType, "BPF_LINK_TYPE_"),
        (uapi.StatsType, "BPF_STATS_"),
        (uapi.CgroupIterOrder, "BPF_CGROUP_ITER_"),
    ],
)
def test_enums(header: tuple[dict[str, int], dict[str, int]], enum_type: type[enum.IntEnum], prefix: str) -> None:
    known, _ = header
    compared = 0
    for member in enum_type:
        if member.name == "UNSPEC" and enum_type is uapi.AttachType:
            continue  # 0 is BPF_CGROUP_INET_INGRESS there
        if prefix + member.name in known:
            assert known[prefix + member.name] == member.value, member.name
            compared += 1
    assert compared >= len(enum_type) // 2


def test_helpers(header: tuple[dict[str, int], dict[str, int]]) -> None:
    _, helpers = header
    both = [h for h in uapi.Helper if h.name in helpers]
    assert len(both) >= 40
    for helper in both:
        assert helpers[helper.name] == helper.value, helper.name


def test_constants(header: tuple[dict[str, int], dict[str, int]]) -> None:
    known, _ = header
    ours = {name: value for name, value in vars(uapi).items() if name.startswith("BPF_") and isinstance(value, int)}
    both = sorted(set(ours) & set(known))
    assert len(both) >= 60
    for name in both:
        assert known[name] == ours[name], name
