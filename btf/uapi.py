# SPDX-License-Identifier: GPL-2.0-only
"""Mirror of include/uapi/linux/btf.h: kinds, INT encoding bits, the header layout.

Layouts are struct.Struct objects built for either byte order; nothing here
reads data, it only names the numbers the format fixes.
"""

from __future__ import annotations

import enum
import struct

BTF_MAGIC = 0xEB9F

# struct btf_header: magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
HEADER_LE = struct.Struct("<HBBIIIII")
HEADER_BE = struct.Struct(">HBBIIIII")
HEADER_SIZE = HEADER_LE.size

# struct btf_type is three u32 words: name_off, info, size-or-type.
TYPE_WORDS = 3

BTF_MAX_VLEN = 0xFFFF


class Kind(enum.IntEnum):
    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


KIND_MAX = max(Kind)

# Words that follow struct btf_type: a fixed count for some kinds ...
FIXED_EXTRA_WORDS = {
    Kind.INT: 1,  # u32 encoding | offset | bits
    Kind.ARRAY: 3,  # struct btf_array
    Kind.VAR: 1,  # struct btf_var
    Kind.DECL_TAG: 1,  # struct btf_decl_tag
}
# ... and a count per vlen entry for the others.
PER_VLEN_EXTRA_WORDS = {
    Kind.STRUCT: 3,  # struct btf_member
    Kind.UNION: 3,
    Kind.ENUM: 2,  # struct btf_enum
    Kind.FUNC_PROTO: 2,  # struct btf_param
    Kind.DATASEC: 3,  # struct btf_var_secinfo
    Kind.ENUM64: 3,  # struct btf_enum64
}


def info_kind(info: int) -> int:
    return (info >> 24) & 0x1F


def info_vlen(info: int) -> int:
    return info & 0xFFFF


def info_kind_flag(info: int) -> bool:
    return bool(info >> 31)


# INT encoding: the u32 after an INT's btf_type.
BTF_INT_SIGNED = 1 << 0
BTF_INT_CHAR = 1 << 1
BTF_INT_BOOL = 1 << 2


def int_encoding(word: int) -> int:
    return (word & 0x0F000000) >> 24


def int_offset(word: int) -> int:
    return (word & 0x00FF0000) >> 16


def int_bits(word: int) -> int:
    return word & 0x000000FF


# A member's offset word when the struct's kind_flag is set: bitfield size in the top 8 bits.
def member_bitfield_size(word: int) -> int:
    return word >> 24


def member_bit_offset(word: int) -> int:
    return word & 0xFFFFFF


class FuncLinkage(enum.IntEnum):
    STATIC = 0
    GLOBAL = 1
    EXTERN = 2


class VarLinkage(enum.IntEnum):
    STATIC = 0
    GLOBAL_ALLOCATED = 1
    GLOBAL_EXTERN = 2
