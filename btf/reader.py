# SPDX-License-Identifier: GPL-2.0-only
"""Raw BTF bytes -> header, string table and one record position per type id.

This pass only indexes: it checks the header and section bounds and that each
record lies wholly inside the type section. It builds no type objects; fields
are checked when btf.py builds a type from its record.
"""

from __future__ import annotations

import array
import sys
from dataclasses import dataclass

from .errors import BTFError
from .uapi import (
    BTF_MAGIC,
    FIXED_EXTRA_WORDS,
    HEADER_BE,
    HEADER_LE,
    HEADER_SIZE,
    KIND_MAX,
    PER_VLEN_EXTRA_WORDS,
    TYPE_WORDS,
)

# Word counts indexed by kind number, for the hot loop below.
_FIXED = [FIXED_EXTRA_WORDS.get(k, 0) for k in range(KIND_MAX + 1)]  # type: ignore[call-overload]
_PER_VLEN = [PER_VLEN_EXTRA_WORDS.get(k, 0) for k in range(KIND_MAX + 1)]  # type: ignore[call-overload]


@dataclass(frozen=True)
class Index:
    """One BTF blob, indexed. Local type number n (1-based) is global id start_id + n - 1."""

    byteorder: str  # "little" or "big"
    words: "array.array[int]"  # the type section as host-order u32 words
    type_starts: "array.array[int]"  # word index of each record, local number 1 at position 0
    kinds: bytes  # kind number of each record, same positions
    strings: bytes
    types_file_offset: int  # byte offset of the type section in the blob, for error messages
    start_id: int  # first id this blob defines (1, or the base's count for split BTF)
    start_str_off: int  # string offsets below this belong to the base


def parse_header(data: bytes) -> tuple[str, int, int, int, int, int]:
    """Check the magic, version and section bounds.

    Returns (byteorder, hdr_len, type_off, type_len, str_off, str_len).
    """
    if len(data) < HEADER_SIZE:
        raise BTFError(f"BTF is {len(data)} bytes, shorter than its {HEADER_SIZE}-byte header", offset=0)
    for layout, order in ((HEADER_LE, "little"), (HEADER_BE, "big")):
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = layout.unpack_from(data)
        if magic == BTF_MAGIC:
            break
    else:
        raise BTFError(f"bad BTF magic 0x{int.from_bytes(data[:2], 'little'):04x}, expected 0x{BTF_MAGIC:x}", offset=0)
    if version != 1:
        raise BTFError(f"unsupported BTF version {version}", offset=2)
    if hdr_len < HEADER_SIZE or hdr_len > len(data):
        raise BTFError(f"header length {hdr_len} is out of range", offset=4)
    body = len(data) - hdr_len
    if type_off % 4:
        raise BTFError(f"type section offset {type_off} is not 4-byte aligned", offset=8)
    if type_len % 4:
        raise BTFError(f"type section length {type_len} is not a multiple of 4", offset=12)
    if type_off + type_len > body:
        raise BTFError(f"type section [{type_off}, {type_off + type_len}) runs past the data's {body} bytes", offset=8)
    if str_off + str_len > body:
        raise BTFError(f"string section [{str_off}, {str_off + str_len}) runs past the data's {body} bytes", offset=16)
    if type_off < str_off + str_len and str_off < type_off + type_len:
        raise BTFError("type and string sections overlap", offset=8)
    return order, hdr_len, type_off, type_len, str_off, str_len


def index(data: bytes, *, start_id: int = 1, start_str_off: int = 0) -> Index:
    """Index one blob; for split BTF pass the base's type count and string length."""
    order, hdr_len, type_off, type_len, str_off, str_len = parse_header(data)
    strings = bytes(data[hdr_len + str_off : hdr_len + str_off + str_len])
    if start_str_off == 0 and str_len and strings[0] != 0:
        raise BTFError("string section does not start with an empty string", offset=hdr_len + str_off)
    if str_len and strings[-1] != 0:
        raise BTFError("string section does not end in NUL", offset=hdr_len + str_off + str_len - 1)
    words = array.array("I")
    if words.itemsize != 4:  # pragma: no cover - every platform CPython runs on has a 4-byte unsigned int
        raise BTFError("host has no 4-byte array type")
    words.frombytes(data[hdr_len + type_off : hdr_len + type_off + type_len])
    if order != sys.byteorder:
        words.byteswap()
    type_starts, kinds = _walk(words, hdr_len + type_off, start_id)
    return Index(order, words, type_starts, kinds, strings, hdr_len + type_off, start_id, start_str_off)


# Words each kind's record takes before its vlen entries; None for kind numbers that do not exist.
_BASE_WORDS = [None] + [TYPE_WORDS + _FIXED[k] for k in range(1, KIND_MAX + 1)] + [None] * (31 - KIND_MAX)
_VLEN_WORDS = _PER_VLEN + [0] * (31 - KIND_MAX)


def _walk(words: "array.array[int]", file_offset: int, start_id: int) -> tuple["array.array[int]", bytes]:
    """Where each type record starts, and its kind. The loop checks nothing it need not: a record
    cut short or of no known kind makes it fail (IndexError, TypeError) or overrun, and then the
    checking walk below finds what is wrong and says where."""
    starts = array.array("I")
    kinds = bytearray()
    add_start = starts.append
    add_kind = kinds.append
    base, per_vlen = _BASE_WORDS, _VLEN_WORDS
    n = len(words)
    i = 0
    try:
        while i < n:
            info = words[i + 1]
            kind = info >> 24 & 0x1F
            add_start(i)
            add_kind(kind)
            i += base[kind] + per_vlen[kind] * (info & 0xFFFF)
    except (IndexError, TypeError):
        i = -1
    if i != n:
        _walk_checked(words, file_offset, start_id)
        raise AssertionError("the checking walk found nothing wrong where the fast one failed")
    return starts, bytes(kinds)


def _walk_checked(words: "array.array[int]", file_offset: int, start_id: int) -> None:
    """The walk with every check: raises BTFError for the first record that is wrong."""
    fixed, per_vlen = _FIXED, _PER_VLEN
    n = len(words)
    i = count = 0
    while i < n:
        if i + TYPE_WORDS > n:
            raise BTFError("type record cut short", offset=file_offset + 4 * i)
        info = words[i + 1]
        kind = (info >> 24) & 0x1F
        if kind > KIND_MAX or kind == 0:
            raise BTFError(f"unknown BTF kind {kind}", offset=file_offset + 4 * i, type_id=start_id + count)
        last = i
        count += 1
        i += TYPE_WORDS + fixed[kind] + per_vlen[kind] * (info & 0xFFFF)
    if i != n:
        raise BTFError(
            f"last type record runs {4 * (i - n)} bytes past the type section",
            offset=file_offset + 4 * last,
            type_id=start_id + count - 1,
        )
