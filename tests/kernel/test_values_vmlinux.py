# SPDX-License-Identifier: GPL-2.0-only
"""The compiled readers (btf/compiled.py) against the reference walker (tests/support/reference_values.py)
over every struct and union of this machine's vmlinux: for random bytes, whole and cut short at a
random place, decode gives the same values and render the same text; JSON of the decoded value
parses back to it. A mismatch names the type and the first differing line."""

from __future__ import annotations

import json
import os
import random
import time

import pytest

from btf import BTF, Kind, Struct, Union
from btf.values import decode, render
from tests.support import reference_values

pytestmark = pytest.mark.kernel

VMLINUX = "/sys/kernel/btf/vmlinux"


@pytest.fixture(scope="module")
def vmlinux() -> BTF:
    if not os.access(VMLINUX, os.R_OK):
        pytest.skip(f"{VMLINUX} is missing or unreadable: the kernel has no CONFIG_DEBUG_INFO_BTF")
    return BTF.from_file(VMLINUX)


def _first_difference(ours: str, theirs: str) -> str:
    for n, (a, b) in enumerate(zip(ours.splitlines(), theirs.splitlines())):
        if a != b:
            return f"line {n + 1}: ours {a!r}, reference {b!r}"
    return f"ours {len(ours.splitlines())} lines, reference {len(theirs.splitlines())}"


def test_every_struct_and_union_decodes_and_renders_as_the_reference(vmlinux: BTF) -> None:
    rng = random.Random(20261204)
    checked = 0
    start = time.monotonic()
    for typ in vmlinux.iter_types():
        if not isinstance(typ, (Struct, Union)) or typ.kind not in (Kind.STRUCT, Kind.UNION) or not typ.size:
            continue
        for available in (typ.size, rng.randrange(typ.size)):
            data = rng.randbytes(available)
            ours, theirs = decode(vmlinux, typ.id, data), reference_values.decode(vmlinux, typ.id, data)
            assert ours == theirs, f"decode of [{typ.id}] {vmlinux.type_name(typ.id)}, {available} bytes"
            assert json.loads(json.dumps(ours)) == ours
            text, reference = render(vmlinux, typ.id, data), reference_values.render(vmlinux, typ.id, data)
            assert text == reference, (
                f"render of [{typ.id}] {vmlinux.type_name(typ.id)}, {available} bytes: "
                + _first_difference(text, reference)
            )
        checked += 1
    assert checked > 5000, f"only {checked} structs and unions in {VMLINUX}"
    print(f"\n{checked} structs and unions in {time.monotonic() - start:.1f} s")


def test_a_cut_short_buffer_flags_exactly_what_it_cuts(vmlinux: BTF) -> None:
    """Every member that ends within the data has its whole value; the first one that does not is the
    last shown, cut (a struct or array partly there, text as far as it goes) or left out, and the
    `...` key says so."""
    from btf.compiled import compile_type

    skb = vmlinux.lookup("struct sk_buff")
    data = random.Random(1).randbytes(skb.size)
    whole = decode(vmlinux, skb.id, data)
    ends = {f.name: f.offset + f.size for f in compile_type(vmlinux, skb.id, skb.size).root.fields}  # type: ignore[union-attr]
    for available in range(0, skb.size):
        cut = decode(vmlinux, skb.id, data[:available])
        assert cut.pop("...") == "truncated", available
        names = list(cut)
        for name in names:
            if ends[name] <= available:
                assert cut[name] == whole[name], (available, name)
            else:
                assert name == names[-1], (available, name)
        following = [name for name in whole if name not in cut]
        assert following and ends[following[0]] > available, available


def _json_numbers(value: object) -> object:
    """ksnoop's JSON as plain numbers: pointers are "0x..." strings (NULL null), 64-bit integers
    decimal strings, NaNs and infinities strings."""
    if value is None:
        return 0
    if isinstance(value, str) and value.startswith("0x"):
        return int(value, 16)
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    if isinstance(value, dict):
        return {k: _json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_numbers(v) for v in value]
    return value


def test_every_struct_and_unions_json_is_the_reference_value(vmlinux: BTF) -> None:
    """ksnoop's generated JSON encoders (ksnoop/output/json_compiled.py), one per type, whole and cut: the
    text parses to the reference walker's value, bitfields written a unit at a time included."""
    from ksnoop.output.json_compiled import struct_encoder

    rng = random.Random(4)
    checked = 0
    for typ in vmlinux.iter_types():
        if not isinstance(typ, (Struct, Union)) or typ.kind not in (Kind.STRUCT, Kind.UNION) or not typ.size:
            continue
        for available in (typ.size, rng.randrange(typ.size)):
            encode = struct_encoder(vmlinux, typ.id, available, False)
            for data in (rng.randbytes(available), bytes(available)):
                ours = _json_numbers(json.loads(encode(data)))
                theirs = _json_numbers(reference_values.decode(vmlinux, typ.id, data))
                if ours != theirs and "nan" in json.dumps(theirs).lower():  # NaN != NaN
                    ours, theirs = json.dumps(ours), json.dumps(theirs)
                assert ours == theirs, f"JSON of [{typ.id}] {vmlinux.type_name(typ.id)}, {available} bytes"
        checked += 1
    assert checked > 5000
