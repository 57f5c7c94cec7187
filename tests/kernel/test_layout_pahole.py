# SPDX-License-Identifier: GPL-2.0-only
"""`ksnoop info 'struct X'` against pahole (Debian's dwarves) on the running kernel's BTF, struct by struct.

One `pahole -F btf /sys/kernel/btf/vmlinux` prints every named struct (in about 0.1 s); ksnoop.output.layout
lays out the same structs from btf/. Every struct whose name is unique both in vmlinux and in pahole's
output is compared (about 9,500 on a 6.x x86 kernel, in 2-3 s), on the lines that place members and
account for their bytes:
- the position comment of each member and of each anonymous struct or union (offset, bit offset,
  size): these anchor the comments between them;
- the gap comments, `XXX N bits hole`, `XXX N bytes hole` and `XXX last struct has N bytes of
  padding`, and the notes `Bitfield combined with next/previous fields`, in their order among members;
- the closing summary: size, cachelines, members, sum members, holes, bit holes, padding, paddings,
  bit_padding and last cacheline.
Left out, because they say nothing about holes and ksnoop does not print them: declarations (pahole
pads a type column and spells a few types differently, `[]` for `[0]`), cacheline boundaries,
alignment attributes and `forced alignments` (pahole infers them from offsets), the unnamed bitfield
pahole invents after `Force alignment to the next boundary:`, blank lines, and the members of a named
member of anonymous type, which pahole expands and ksnoop shows as `struct {...} b` (its closing
line is compared). pahole 1.24 also prints a summary inside a `const struct {...}` member; only the
outermost summary is compared. A mismatch names the struct and the first line that differs.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess

import pytest

from btf import Kind
from ksnoop.output.layout import layout_text, type_layout
from tests.unit.ksnoop.test_layout import unaccounted_bits

pytestmark = pytest.mark.kernel

VMLINUX = "/sys/kernel/btf/vmlinux"

_STRUCT = re.compile(r"^struct (\S+) \{$")
_POSITION = re.compile(r"/\*\s*(\d+)(?::\s*(\d+))?\s+(\d+) \*/$")
_GAP = re.compile(r"^/\* (XXX \d+ bits? hole|XXX \d+ bytes? hole|XXX last struct has|Bitfield combined)")
_SUMMARY = re.compile(r"^/\* (size|sum members|sum bitfield members|padding|paddings|bit_padding|last cacheline):? ")
_KINDS = ("bits hole", "bytes hole", "Bitfield combined", "last struct has", "/* padding:")
_END = ("<end>", "<end>")
_ATTRIBUTE = re.compile(r"\s*__attribute__\(\(\w+(\(\d+\))?\)\)")


def pahole_structs() -> dict[str, str]:
    """{name: pahole's text} for the structs pahole prints once."""
    pahole = shutil.which("pahole")
    if not os.path.exists(VMLINUX):
        pytest.skip(f"{VMLINUX} is missing: the kernel has no CONFIG_DEBUG_INFO_BTF")
    if pahole is None:
        pytest.skip("pahole is missing: install the Debian package dwarves (.ci/install-deps does)")
    if not os.access(VMLINUX, os.R_OK):
        pytest.skip(f"{VMLINUX} is not readable by this user")
    # pahole 1.24 warns on stderr of BTF kinds newer than it (DECL_TAG, TYPE_TAG); it skips them.
    result = subprocess.run([pahole, "-F", "btf", VMLINUX], capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    texts: dict[str, str] = {}
    seen = collections.Counter()
    name, lines = "", []
    for line in result.stdout.split("\n"):
        if not name:
            m = _STRUCT.match(line)
            if m:
                name, lines = m[1], [line]
            continue
        lines.append(line)
        if line.startswith("}"):
            texts[name] = "\n".join(lines)
            seen[name] += 1
            name = ""
    return {name: text for name, text in texts.items() if seen[name] == 1}


def comparable(text: str) -> list[tuple[str, str]]:
    """The lines of a layout text that are compared: (normalised line, the line as printed)."""
    out: list[tuple[str, str]] = []
    opened = []  # indexes into out where each open `{` began
    for line in text.split("\n")[1:-1]:
        stripped = line.strip()
        if stripped.endswith("{"):
            opened.append(len(out))
        elif stripped.startswith("}"):
            if not _ATTRIBUTE.sub("", stripped).startswith("};"):
                del out[opened[-1] :]  # pahole expanded a named member of anonymous type: keep its closing
            opened.pop()
            out.append((_position(stripped), line))
        elif _POSITION.search(stripped):
            out.append((_position(stripped), line))
        elif _GAP.match(stripped) or (_SUMMARY.match(stripped) and not line.startswith("\t\t")):
            out.append((stripped, line))
    return out


def _position(line: str) -> str:
    m = _POSITION.search(line)
    assert m, f"no offset comment in {line!r}"
    return f"at {m[1]}{':' + m[2] if m[2] else ''} size {m[3]}"


@pytest.fixture(scope="module")
def vmlinux(kernel):
    return kernel.vmlinux


def test_holes_and_padding_match_pahole(vmlinux):
    pahole = pahole_structs()
    names = collections.Counter(t.name for t in vmlinux.iter_types(Kind.STRUCT))
    ids = {t.name: t.id for t in vmlinux.iter_types(Kind.STRUCT) if names[t.name] == 1 and t.name in pahole}
    assert {"task_struct", "sk_buff", "net_device"} <= set(ids), "pahole printed none of the commonest structs"
    differ = []
    compared = collections.Counter()  # comment lines of each kind: a filter that dropped them would fail
    for name, type_id in sorted(ids.items()):
        expected, actual = comparable(pahole[name]), comparable(layout_text(vmlinux, type_id))
        compared.update(kind for line, _ in expected for kind in _KINDS if kind in line)
        if [line for line, _ in expected] != [line for line, _ in actual]:
            i = next(i for i, (e, a) in enumerate(zip(expected + [_END], actual + [_END])) if e[0] != a[0])
            pahole_line = (expected + [_END])[i][1]
            ksnoop_line = (actual + [_END])[i][1]
            differ.append(f"struct {name}: pahole {pahole_line.strip()!r}, ksnoop {ksnoop_line.strip()!r}")
    assert not differ, f"{len(differ)} of {len(ids)} structs differ from pahole:\n" + "\n".join(differ[:20])
    assert all(compared[kind] for kind in _KINDS), compared


def test_every_struct_accounts_for_every_bit_once(vmlinux):
    # Anonymous and duplicate-named structs too: members + holes + padding = size, in bits.
    problems = {}
    for typ in vmlinux.iter_types(Kind.STRUCT):
        missed = unaccounted_bits(type_layout(vmlinux, typ.id), typ)
        if missed:
            problems[f"struct {typ.name or '(anon)'} [{typ.id}]"] = missed
    assert not problems, f"{len(problems)} structs: " + ", ".join(f"{k}: {v}" for k, v in list(problems.items())[:20])
