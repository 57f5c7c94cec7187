# SPDX-License-Identifier: GPL-2.0-only
"""The running kernel's BTF read by btf/, checked type by type against bpftool's reading of it.

`bpftool btf dump file /sys/kernel/btf/vmlinux format raw` is parsed once per module; every type's
kind, name and fields, every FUNC_PROTO's parameters and every STRUCT/UNION's members must agree.
`format c` checks our C declarations of every struct member and typedef. Real structs are then
decoded and rendered from bytes laid out at offsets taken from bpftool's dump, not from btf/.
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from btf import BTF, Kind
from btf.values import TRUNCATED_KEY

pytestmark = pytest.mark.kernel

VMLINUX = "/sys/kernel/btf/vmlinux"
BPFTOOL = "/usr/sbin/bpftool"


@dataclass
class RawType:
    """One `[id] KIND 'name' key=value ...` block of bpftool's raw dump."""

    kind: str
    name: str  # "" for '(anon)'
    attrs: dict
    entries: list = field(default_factory=list)  # (name or None, {key: value}) per member/param/enumerator


_HEADER = re.compile(r"^\[(\d+)\] (\w+) '([^']*)'(.*)$")
_ENTRY_NAME = re.compile(r"^'([^']*)'\s*(.*)$")


def _pairs(text):
    text = re.sub(r"\s*\((VAR|FUNC) '[^']*'\)\s*$", "", text)  # DATASEC entries end in "(VAR 'name')"
    pairs = {}
    for word in text.replace(",", " ").split():
        key, _, value = word.partition("=")
        pairs[key] = value
    return pairs


class RawDump(dict):
    """{id: RawType}, plus an index by (kind, name) and the target's pointer size (that of `long`)."""

    def __init__(self, types):
        super().__init__(types)
        self.by_name = {}
        for type_id, r in types.items():
            self.by_name.setdefault((r.kind, r.name), []).append(type_id)
        self.pointer_size = int(self[self.by_name[("INT", "long int")][0]].attrs["size"])


def parse_raw_dump(text):
    types = {}
    current = None
    for line in text.splitlines():
        if line.startswith("["):
            m = _HEADER.match(line)
            assert m, f"unexpected bpftool line: {line!r}"
            name = "" if m.group(3) == "(anon)" else m.group(3)
            current = types[int(m.group(1))] = RawType(m.group(2), name, _pairs(m.group(4)))
        elif line.strip():
            entry = line.strip()
            m = _ENTRY_NAME.match(entry)
            if m:
                name = "" if m.group(1) == "(anon)" else m.group(1)
                current.entries.append((name, _pairs(m.group(2))))
            else:
                current.entries.append((None, _pairs(entry)))
    return RawDump(types)


def _run_bpftool(fmt):
    if not os.path.exists(VMLINUX):
        pytest.skip(f"{VMLINUX} is missing: the kernel has no CONFIG_DEBUG_INFO_BTF")
    if not os.access(BPFTOOL, os.X_OK):
        pytest.skip(f"{BPFTOOL} is missing: install the Debian package bpftool")
    if not os.access(VMLINUX, os.R_OK):
        pytest.skip(f"{VMLINUX} is not readable by this user")
    result = subprocess.run(
        [BPFTOOL, "btf", "dump", "file", VMLINUX, "format", fmt], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def raw():
    """{id: RawType} for every type of the running kernel, as bpftool reads it."""
    return parse_raw_dump(_run_bpftool("raw"))


@pytest.fixture(scope="module")
def vmlinux(raw):
    return BTF.vmlinux()


def _int(value):
    return int(value.rstrip("LU"))


# ---- every type, field by field ------------------------------------------------------------------


def test_type_count(raw, vmlinux):
    assert sorted(raw) == list(range(1, len(raw) + 1))
    assert vmlinux.nr_types == len(raw) + 1
    assert vmlinux.byteorder == sys.byteorder
    assert vmlinux.pointer_size == raw.pointer_size


def test_every_kind_and_name(raw, vmlinux):
    wrong = [
        (i, r.kind, r.name, vmlinux.kind_of(i).name, vmlinux.name_of(i))
        for i, r in raw.items()
        if (vmlinux.kind_of(i).name, vmlinux.name_of(i)) != (r.kind, r.name)
    ]
    assert wrong == []
    wrong = [
        i for i, r in raw.items() if (vmlinux.type_by_id(i).kind.name, vmlinux.type_by_id(i).name) != (r.kind, r.name)
    ]
    assert wrong == []


def expected_fields(r):
    """What bpftool says about a type, in the shape of `actual_fields`."""
    a = r.attrs
    k = r.kind
    if k == "INT":
        encoding = a["encoding"]
        return (
            int(a["size"]),
            int(a["bits_offset"]),
            int(a["nr_bits"]),
            encoding == "SIGNED",
            encoding == "CHAR",
            encoding == "BOOL",
        )
    if k in ("PTR", "TYPEDEF", "VOLATILE", "CONST", "RESTRICT", "TYPE_TAG"):
        return (int(a["type_id"]),)
    if k == "ARRAY":
        return (int(a["type_id"]), int(a["index_type_id"]), int(a["nr_elems"]))
    if k in ("STRUCT", "UNION"):
        assert int(a["vlen"]) == len(r.entries)
        return (
            int(a["size"]),
            tuple((n, int(e["type_id"]), int(e["bits_offset"]), int(e.get("bitfield_size", 0))) for n, e in r.entries),
        )
    if k in ("ENUM", "ENUM64"):
        assert int(a["vlen"]) == len(r.entries)
        return (int(a["size"]), a["encoding"] == "SIGNED", tuple((n, _int(e["val"])) for n, e in r.entries))
    if k == "FWD":
        return (a["fwd_kind"] == "union",)
    if k == "FUNC":
        return (int(a["type_id"]), {"static": 0, "global": 1, "extern": 2}[a["linkage"]])
    if k == "FUNC_PROTO":
        params = [(n, int(e["type_id"])) for n, e in r.entries]
        variadic = bool(params) and params[-1] == ("", 0)
        return (int(a["ret_type_id"]), tuple(params[:-1] if variadic else params), variadic)
    if k == "VAR":
        return (int(a["type_id"]), {"static": 0, "global": 1, "extern": 2}[a["linkage"]])
    if k == "DATASEC":
        return (
            int(a["size"]),
            tuple((int(e["type_id"]), int(e["offset"]), int(e["size"])) for _, e in r.entries),
        )
    if k == "FLOAT":
        return (int(a["size"]),)
    if k == "DECL_TAG":
        return (int(a["type_id"]), int(a["component_idx"]))
    raise AssertionError(f"bpftool printed a kind this test does not know: {k}")


def actual_fields(typ):
    k = typ.kind.name
    if k == "INT":
        return (typ.size, typ.bit_offset, typ.bits, typ.signed, typ.is_char, typ.is_bool)
    if k in ("PTR", "TYPEDEF", "VOLATILE", "CONST", "RESTRICT", "TYPE_TAG"):
        return (typ.type_id,)
    if k == "ARRAY":
        return (typ.type_id, typ.index_type_id, typ.nelems)
    if k in ("STRUCT", "UNION"):
        return (typ.size, tuple((m.name, m.type_id, m.bit_offset, m.bitfield_size) for m in typ.members))
    if k in ("ENUM", "ENUM64"):
        return (typ.size, typ.signed, tuple((e.name, e.value) for e in typ.values))
    if k == "FWD":
        return (typ.union,)
    if k == "FUNC":
        return (typ.type_id, typ.linkage)
    if k == "FUNC_PROTO":
        return (typ.return_type_id, tuple((p.name, p.type_id) for p in typ.params), typ.variadic)
    if k == "VAR":
        return (typ.type_id, typ.linkage)
    if k == "DATASEC":
        return (typ.size, tuple((v.type_id, v.offset, v.size) for v in typ.vars))
    if k == "FLOAT":
        return (typ.size,)
    if k == "DECL_TAG":
        return (typ.type_id, typ.component_idx)
    raise AssertionError(k)


@pytest.mark.parametrize(
    "kinds",
    [
        ("FUNC_PROTO",),
        ("FUNC",),
        ("STRUCT", "UNION"),
        ("ENUM", "ENUM64"),
        ("INT", "FLOAT", "FWD"),
        ("PTR", "TYPEDEF", "VOLATILE", "CONST", "RESTRICT", "TYPE_TAG", "ARRAY"),
        ("VAR", "DATASEC", "DECL_TAG"),
    ],
    ids=lambda kinds: "+".join(kinds),
)
def test_every_type_field_by_field(raw, vmlinux, kinds):
    checked = 0
    wrong = []
    for type_id, r in raw.items():
        if r.kind not in kinds:
            continue
        expected = expected_fields(r)
        actual = actual_fields(vmlinux.type_by_id(type_id))
        if actual != expected:
            wrong.append((type_id, r.kind, r.name, expected, actual))
        checked += 1
    assert wrong[:10] == []
    assert checked == sum(1 for r in raw.values() if r.kind in kinds)


def test_func_protos_cover_every_function(raw, vmlinux):
    # Every FUNC's prototype, parameter names and ids as bpftool lists them, reached through the FUNC.
    funcs = [(i, r) for i, r in raw.items() if r.kind == "FUNC"]
    assert len(funcs) > 1000
    wrong = []
    for type_id, r in funcs:
        func = vmlinux.type_by_id(type_id)
        proto = vmlinux.type_by_id(func.type_id)
        raw_proto = raw[int(r.attrs["type_id"])]
        expected = [(n, int(e["type_id"])) for n, e in raw_proto.entries]
        if expected and expected[-1] == ("", 0):
            expected = expected[:-1]
        if [(p.name, p.type_id) for p in proto.params] != expected:
            wrong.append((r.name, expected))
    assert wrong == []


# ---- sizes, from bpftool's numbers ------------------------------------------------------------------


def raw_size(raw, type_id, depth=0):
    """sizeof a type, computed from the dump alone."""
    assert depth < 64
    r = raw[type_id]
    if r.kind in ("INT", "STRUCT", "UNION", "ENUM", "ENUM64", "FLOAT", "DATASEC"):
        return int(r.attrs["size"])
    if r.kind == "PTR":
        return raw.pointer_size
    if r.kind == "ARRAY":
        return int(r.attrs["nr_elems"]) * raw_size(raw, int(r.attrs["type_id"]), depth + 1)
    if r.kind in ("TYPEDEF", "VOLATILE", "CONST", "RESTRICT", "TYPE_TAG", "VAR"):
        return raw_size(raw, int(r.attrs["type_id"]), depth + 1)
    return None


def test_resolve_size_of_every_sized_type(raw, vmlinux):
    wrong = []
    sized = 0
    for type_id in raw:
        expected = raw_size(raw, type_id) if not _to_void(raw, type_id) else None
        if expected is None:
            continue
        sized += 1
        if vmlinux.resolve_size(type_id) != expected:
            wrong.append((type_id, raw[type_id].kind, raw[type_id].name, expected))
    assert sized > 20000
    assert wrong == []


def _to_void(raw, type_id):
    # typedef/qualifier chains that end at void (id 0) have no size
    for _ in range(64):
        if type_id == 0:
            return True
        r = raw[type_id]
        if r.kind not in ("TYPEDEF", "VOLATILE", "CONST", "RESTRICT", "TYPE_TAG", "VAR"):
            return False
        type_id = int(r.attrs["type_id"])
    return False


def test_struct_alignment_fits_member_offsets(raw, vmlinux):
    # Every struct's size is a multiple of its alignment, and in a struct that is not packed (alignment
    # above 1) each member that is not a bitfield sits at a multiple of its own alignment.
    wrong = []
    for type_id, r in raw.items():
        if r.kind not in ("STRUCT", "UNION"):
            continue
        align = vmlinux.alignment(type_id)
        if int(r.attrs["size"]) % align:
            wrong.append((type_id, "size", align))
        if align == 1:
            continue
        for name, e in r.entries:
            if "bitfield_size" not in e:
                member_align = vmlinux.alignment(int(e["type_id"]))
                if int(e["bits_offset"]) % (8 * member_align) or member_align > align:
                    wrong.append((type_id, name, member_align))
    assert wrong == []


# ---- names -------------------------------------------------------------------------------------------


def _unique_id(raw, kind, name):
    found = raw.by_name.get((kind, name), [])
    return found[0] if len(found) == 1 else None


def test_names_of_every_kind(raw, vmlinux):
    for kinds in (
        [Kind.FUNC],
        [Kind.STRUCT, Kind.UNION],
        [Kind.TYPEDEF],
        [Kind.ENUM, Kind.ENUM64],
        [Kind.VAR],
    ):
        wanted = {k.name for k in kinds}
        expected = [(r.name, i) for i, r in raw.items() if r.kind in wanted and r.name]
        assert vmlinux.names(kinds) == expected


@pytest.mark.parametrize(
    "pattern", ["tcp_*", "*_sendmsg", "ip_send_sk?", "tcp_v[46]_*", "*sk*_rcv*", "__x64_sys_*", "no_such_*", "*"]
)
@pytest.mark.parametrize("kinds", [[Kind.FUNC], [Kind.STRUCT, Kind.UNION], [Kind.TYPEDEF]])
def test_glob_finds_what_fnmatch_finds_in_bpftools_names(raw, vmlinux, pattern, kinds):
    """glob looks for a pattern's literal text in the string section, not at every name: it must
    still find exactly the names fnmatch accepts, of the kinds asked."""
    wanted = {k.name for k in kinds}
    named = ((r.name, i) for i, r in raw.items() if r.kind in wanted and r.name)  # glob, as names, skips anonymous
    expected = sorted((n, i) for n, i in named if fnmatch.fnmatchcase(n, pattern))
    assert vmlinux.glob(pattern, kinds) == expected


def test_lookup_finds_a_sample_of_names(raw, vmlinux):
    # Every 100th uniquely named struct, union, enum and function: about 800 lookups, each a full scan.
    prefix = {"STRUCT": "struct ", "UNION": "union ", "ENUM": "enum ", "ENUM64": "enum ", "FUNC": ""}
    names = sorted(
        (kind, name) for (kind, name), ids in raw.by_name.items() if name and kind in prefix and len(ids) == 1
    )
    sample = names[::100]
    assert len(sample) > 500
    wrong = []
    for kind, name in sample:
        if (
            kind.startswith("ENUM")
            and len(raw.by_name.get(("ENUM", name), []) + raw.by_name.get(("ENUM64", name), [])) > 1
        ):
            continue
        found = vmlinux.find(prefix[kind] + name)
        if found is None or found.id != raw.by_name[(kind, name)][0]:
            wrong.append((kind, name))
    assert wrong == []


# ---- C declarations against `format c` ------------------------------------------------------------------


@pytest.fixture(scope="module")
def format_c():
    return _run_bpftool("c").splitlines()


_PADDING = re.compile(r"^(long|int|short|char): \d+$")


def _normalise(decl):
    decl = re.sub(r" __attribute__\(\(.*?\)\)+", "", decl)
    decl = re.sub(r"___\d+\b", "", decl)  # bpftool's suffix for a second type of the same name
    # bpftool writes `struct dentry * (*mount)(...)`; kernel sources, and we, write `*(*mount)`.
    return decl.replace("* (", "*(")


def _format_c_structs(lines):
    """{('struct'|'union', name): ([member declarations, one line each, at the outer level], packed)}."""
    header = re.compile(r"^(struct|union) (\w+) \{$")
    out = {}
    i = 0
    while i < len(lines):
        m = header.match(lines[i])
        i += 1
        if not m:
            continue
        depth, members = 1, []
        while depth:
            line = lines[i]
            text = line.strip()
            if depth == 1 and text.endswith(";") and "{" not in text and not text.startswith("}"):
                members.append(text[:-1])
            depth += line.count("{") - line.count("}")
            i += 1
        out[(m.group(1), m.group(2))] = (members, lines[i - 1] == "} __attribute__((packed));")
    return out


def test_struct_member_declarations_match_format_c(raw, vmlinux, format_c):
    ids = {}
    for type_id, r in raw.items():
        if r.kind in ("STRUCT", "UNION") and r.name:
            ids.setdefault((r.kind.lower(), r.name), []).append(type_id)
    checked_structs = checked_members = 0
    wrong = []
    for key, (theirs, _) in _format_c_structs(format_c).items():
        if len(ids.get(key, ())) != 1:
            continue  # a name bpftool had to rename
        expected = []
        for decl in theirs:
            decl = _normalise(decl)
            if _PADDING.match(decl):
                continue
            expected.append(re.sub(r": \d+$", "", decl))  # the bitfield width: checked field by field above
        typ = vmlinux.type_by_id(ids[key][0])
        ours = [vmlinux.decl(m.type_id, m.name) for m in typ.members]
        ours = [d for d in ours if "{...}" not in d]  # bpftool writes anonymous types out in full
        checked_structs += 1
        checked_members += len(ours)
        if ours != expected:
            wrong.append((key, [(a, b) for a, b in zip(expected, ours) if a != b][:3]))
    assert checked_structs > 5000 and checked_members > 30000
    assert wrong[:10] == []


def test_packed_structs_align_to_1(raw, vmlinux, format_c):
    # bpftool marks a struct packed when its layout needs it; such a struct's alignment is 1.
    packed = [key for key, (_, is_packed) in _format_c_structs(format_c).items() if is_packed]
    assert len(packed) > 20
    for kind, name in packed:
        type_id = _unique_id(raw, kind.upper(), name)
        if type_id is not None:
            assert vmlinux.alignment(type_id) == 1, name


def test_typedef_declarations_match_format_c(raw, vmlinux, format_c):
    theirs = {
        _normalise(line)
        for line in format_c
        if line.startswith("typedef ") and line.endswith(";") and "{" not in line  # not `struct {}` inline
    }
    ours = set()
    for r in raw.values():
        # libbpf's btf_dump leaves out __builtin_va_list: compilers predefine it.
        if r.kind == "TYPEDEF" and r.name != "__builtin_va_list":
            line = f"typedef {vmlinux.decl(int(r.attrs['type_id']), r.name)};"
            if "{...}" not in line:
                ours.add(line)
    assert len(ours) > 1000
    assert sorted(ours - theirs)[:10] == []
    assert sorted(theirs - ours)[:10] == []


# ---- decode and render of real structs, bytes laid out from bpftool's offsets -----------------------------


def _through_modifiers(raw, type_id):
    while raw[type_id].kind in ("TYPEDEF", "VOLATILE", "CONST", "RESTRICT", "TYPE_TAG"):
        type_id = int(raw[type_id].attrs["type_id"])
    return type_id


def raw_members(raw, struct_id, bit_base=0, path=(), depth=0):
    """(path of names, absolute bit offset, bitfield_size, type_id) of every member, nested structs and
    unions included; an anonymous member adds no name, as C code writes `skb->dev` through one."""
    assert depth < 32
    for name, e in raw[struct_id].entries:
        bit = bit_base + int(e["bits_offset"])
        type_id = int(e["type_id"])
        member_path = path + (name,) if name else path
        if name:
            yield member_path, bit, int(e.get("bitfield_size", 0)), type_id
        inner = _through_modifiers(raw, type_id) if type_id else 0
        if inner and raw[inner].kind in ("STRUCT", "UNION"):
            yield from raw_members(raw, inner, bit, member_path, depth + 1)


def raw_member(raw, struct_name, path):
    struct_id = _unique_id(raw, "STRUCT", struct_name)
    assert struct_id is not None, struct_name
    for member_path, bit, bitfield_size, type_id in raw_members(raw, struct_id):
        if member_path == path:
            return bit, bitfield_size, type_id
    raise AssertionError(f"bpftool's dump has no {struct_name}.{'.'.join(path)}")


def put(data, bit, bit_size, value, byteorder=sys.byteorder):
    """Store `value` in `bit_size` bits at `bit`, as the compiler lays out a member or a bitfield."""
    start = bit // 8
    span = (bit % 8 + bit_size + 7) // 8
    word = int.from_bytes(data[start : start + span], byteorder)
    mask = (1 << bit_size) - 1
    shift = bit % 8 if byteorder == "little" else 8 * span - bit % 8 - bit_size
    word = word & ~(mask << shift) | (value & mask) << shift
    data[start : start + span] = word.to_bytes(span, byteorder)


def raw_label(raw, type_id):
    """The `(type)` label for the few member types checked below."""
    r = raw[type_id]
    if r.kind in ("TYPEDEF", "INT"):
        return r.name
    if r.kind == "PTR":
        target = raw[int(r.attrs["type_id"])]
        assert target.kind in ("STRUCT", "UNION") and target.name
        return f"{target.kind.lower()} {target.name} *"
    if r.kind == "ARRAY":
        return f"{raw_label(raw, int(r.attrs['type_id']))}[{r.attrs['nr_elems']}]"
    if r.kind == "VOLATILE":
        return "volatile " + raw_label(raw, int(r.attrs["type_id"]))
    raise AssertionError(f"no label for {r.kind}")


def value_at(decoded, path):
    for name in path:
        decoded = decoded[name]
    return decoded


def bitfields(raw, struct_name):
    """Every bitfield of a struct, nested ones too, minus any that overlaps a different one (unions)."""
    found = {}
    for path, bit, bitfield_size, _ in raw_members(raw, _unique_id(raw, "STRUCT", struct_name)):
        if bitfield_size:
            found.setdefault((bit, bitfield_size), []).append(path)
    spans = sorted(found)
    clash = set()
    for a, b in zip(spans, spans[1:]):
        if a[0] + a[1] > b[0]:
            clash.update((a, b))
    return {span: paths for span, paths in found.items() if span not in clash}


def fill(raw, struct_name, values):
    """Bytes of struct `struct_name` with `values` ({path: int or bytes}) at bpftool's offsets, and
    every bitfield set to a value of its own; returns (bytes, {bitfield path: value})."""
    size = int(raw[_unique_id(raw, "STRUCT", struct_name)].attrs["size"])
    data = bytearray(size)
    for path, value in values.items():
        bit, bitfield_size, type_id = raw_member(raw, struct_name, path)
        if isinstance(value, bytes):
            data[bit // 8 : bit // 8 + len(value)] = value
        else:
            put(data, bit, bitfield_size or 8 * raw_size(raw, type_id), value)
    expected_bits = {}
    for (bit, bitfield_size), paths in bitfields(raw, struct_name).items():
        value = (bit * 7 + 3) % (1 << bitfield_size) or 1
        put(data, bit, bitfield_size, value)
        for path in paths:
            target = raw[_through_modifiers(raw, raw_member(raw, struct_name, path)[2])]
            negative = target.attrs.get("encoding") == "SIGNED" and value >> (bitfield_size - 1)
            expected_bits[path] = value - (1 << bitfield_size) if negative else value
    return bytes(data), expected_bits


def check_decoded(vmlinux, raw, struct_name, values, expected_decoded):
    data, expected_bits = fill(raw, struct_name, values)
    decoded = vmlinux.decode(f"struct {struct_name}", data)
    assert TRUNCATED_KEY not in decoded
    for path, value in expected_decoded.items():
        assert value_at(decoded, path) == value, path
    copies = struct_group_copies(vmlinux, vmlinux.lookup(f"struct {struct_name}"))
    wrong = {
        path: (value, value_at(decoded, path))
        for path, value in expected_bits.items()
        if _decodes_as_int(raw, struct_name, path)
        and not copies.intersection(path)
        and value_at(decoded, path) != value
    }
    assert wrong == {}
    return data, decoded, expected_bits


def struct_group_copies(vmlinux, typ):
    """Names of the members that a struct_group() union holds besides its first (skb `headers`):
    shown once, as the first, so bpftool's paths through them have no value of their own."""
    from btf import Struct, Union
    from btf.compiled import is_struct_group

    names = set()
    for m in typ.members:
        inner = vmlinux.skip_modifiers(m.type_id)
        if not m.name and isinstance(inner, Union) and is_struct_group(vmlinux, inner):
            names.update(other.name for other in inner.members[1:])
            inner = vmlinux.type_by_id(inner.members[0].type_id)
        if not m.name and isinstance(inner, (Struct, Union)):
            names |= struct_group_copies(vmlinux, inner)
    return names


def _decodes_as_int(raw, struct_name, path):
    # bool and enum bitfields decode to True or a name; the others to the int that was stored
    target = raw[_through_modifiers(raw, raw_member(raw, struct_name, path)[2])]
    return target.kind == "INT" and target.attrs["encoding"] != "BOOL"


def test_sk_buff(raw, vmlinux):
    dev = 0xFFFF888012345678
    values = {("len",): 228, ("dev",): dev, ("data_len",): 60, ("protocol",): 0x0008, ("cb",): b"ksnoop\0"}
    data, decoded, bits = check_decoded(
        vmlinux,
        raw,
        "sk_buff",
        values,
        # protocol is a __be16: the bytes 08 00 written above read as ETH_P_IP, 0x0800, whatever the machine.
        {("len",): 228, ("dev",): dev, ("data_len",): 60, ("protocol",): 0x0800, ("cb",): "ksnoop"},
    )
    assert len(bits) >= 10  # sk_buff has dozens of bitfields: pkt_type, cloned, ip_summed...
    assert bits[("pkt_type",)] == value_at(decoded, ("pkt_type",))
    text = vmlinux.render("struct sk_buff", data)
    lines = text.splitlines()
    assert lines[0] == "(struct sk_buff){" and lines[-1] == "}"
    len_type = raw_member(raw, "sk_buff", ("len",))[2]
    dev_type = raw_member(raw, "sk_buff", ("dev",))[2]
    assert f"  .len = ({raw_label(raw, len_type)})228," in lines
    assert f"  .dev = ({raw_label(raw, dev_type)})0xffff888012345678," in lines
    assert f'  .cb = ({raw_label(raw, raw_member(raw, "sk_buff", ("cb",))[2])})"ksnoop",' in lines
    pkt_type = raw_member(raw, "sk_buff", ("pkt_type",))
    assert f"  .pkt_type:3 = ({raw_label(raw, pkt_type[2])}){bits[('pkt_type',)]}," in lines
    protocol_type = raw_member(raw, "sk_buff", ("protocol",))[2]
    assert f"  .protocol = ({raw_label(raw, protocol_type)})0x0800," in lines


def test_net_device_name(raw, vmlinux):
    values = {("name",): b"ksnoop0\0", ("ifindex",): 7, ("mtu",): 1500}
    data, decoded, _ = check_decoded(
        vmlinux, raw, "net_device", values, {("name",): "ksnoop0", ("ifindex",): 7, ("mtu",): 1500}
    )
    name_type = raw_member(raw, "net_device", ("name",))[2]
    assert raw_label(raw, name_type) == "char[16]"
    assert '  .name = (char[16])"ksnoop0",' in vmlinux.render("struct net_device", data).splitlines()


def test_task_struct(raw, vmlinux):
    values = {("comm",): b"kworker/u8:2\0", ("pid",): 4242, ("tgid",): 4240, ("prio",): 120}
    data, decoded, bits = check_decoded(
        vmlinux,
        raw,
        "task_struct",
        values,
        {("comm",): "kworker/u8:2", ("pid",): 4242, ("tgid",): 4240, ("prio",): 120},
    )
    assert len(bits) >= 5  # sched_reset_on_fork, sched_contributes_to_load, in_execve...
    lines = vmlinux.render("struct task_struct", data).splitlines()
    pid_type = raw_member(raw, "task_struct", ("pid",))[2]
    assert f"  .pid = ({raw_label(raw, pid_type)})4242," in lines
    assert '  .comm = (char[16])"kworker/u8:2",' in lines
    # A cut task_struct still shows what fits, and says so: pid is there, comm (further on) is not.
    pid_end = (raw_member(raw, "task_struct", ("pid",))[0] + 32) // 8
    assert pid_end < raw_member(raw, "task_struct", ("comm",))[0] // 8
    cut = vmlinux.decode("struct task_struct", data[:pid_end])
    assert cut["pid"] == 4242 and cut[TRUNCATED_KEY] == "truncated" and "comm" not in cut


def test_sock_common(raw, vmlinux):
    values = {
        ("skc_num",): 4242,
        ("skc_dport",): 0x5000,
        ("skc_family",): 2,
        ("skc_state",): 10,
        ("skc_daddr",): 0x0100007F,
    }
    data, decoded, bits = check_decoded(
        vmlinux,
        raw,
        "sock_common",
        values,
        {  # skc_dport and skc_daddr are __be16/__be32: the bytes written read in network order
            ("skc_num",): 4242,
            ("skc_dport",): 80,
            ("skc_family",): 2,
            ("skc_state",): 10,
            ("skc_daddr",): 0x7F000001,
        },
    )
    assert len(bits) >= 3  # skc_reuse:4, skc_reuseport:1, skc_ipv6only:1 ...
    lines = vmlinux.render("struct sock_common", data).splitlines()
    num_type = raw_member(raw, "sock_common", ("skc_num",))[2]
    state_type = raw_member(raw, "sock_common", ("skc_state",))[2]
    assert f"  .skc_num = ({raw_label(raw, num_type)})4242," in lines
    assert f"  .skc_state = ({raw_label(raw, state_type)})10," in lines
    assert "  .skc_daddr = (__be32)0x7f000001 /* 127.0.0.1 */," in lines
    assert "  .skc_dport = (__be16)0x0050," in lines


def test_member_paths_agree_with_bpftool(raw, vmlinux):
    # Every member of these structs, nested and anonymous ones included, as a `.a.b` path.
    for struct_name in ("sk_buff", "task_struct", "sock_common", "net_device", "sock", "file", "inode"):
        struct_id = _unique_id(raw, "STRUCT", struct_name)
        count = 0
        for path, bit, bitfield_size, type_id in raw_members(raw, struct_id):
            resolved = vmlinux.resolve_path(struct_id, "".join("." + name for name in path))
            assert resolved.type_id == type_id, path
            assert resolved.bitfield_size == bitfield_size, path
            assert 8 * resolved.offset + resolved.bit_offset == bit, path
            if not bitfield_size and not _to_void(raw, type_id) and raw_size(raw, type_id) is not None:
                assert resolved.size == raw_size(raw, type_id), path
            count += 1
        assert count > 10, struct_name
