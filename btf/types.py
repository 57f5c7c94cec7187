# SPDX-License-Identifier: GPL-2.0-only
"""One frozen dataclass per BTF kind, built on demand from a record by btf.py.

References to other types are ids (`*_id` fields), never objects, so a type
is cheap to build and cycles (a struct pointing at itself) need no care here.
"""

from __future__ import annotations

from dataclasses import dataclass
import typing
from typing import Tuple

from .uapi import Kind


@dataclass(frozen=True)
class Void:
    id: int = 0
    name: str = ""
    kind = Kind.UNKN


@dataclass(frozen=True)
class Int:
    id: int
    name: str
    size: int
    bits: int
    bit_offset: int  # the INT's own encoding offset, almost always 0
    signed: bool
    is_char: bool
    is_bool: bool
    kind = Kind.INT


@dataclass(frozen=True)
class Ptr:
    id: int
    name: str
    type_id: int
    kind = Kind.PTR


@dataclass(frozen=True)
class Array:
    id: int
    name: str
    type_id: int
    index_type_id: int
    nelems: int
    kind = Kind.ARRAY


@dataclass(frozen=True)
class Member:
    name: str  # "" for an anonymous struct or union member
    type_id: int
    bit_offset: int  # from the start of the enclosing struct
    bitfield_size: int  # 0 unless a bitfield


@dataclass(frozen=True)
class Struct:
    id: int
    name: str
    size: int
    members: Tuple[Member, ...]
    kind = Kind.STRUCT


@dataclass(frozen=True)
class Union:
    id: int
    name: str
    size: int
    members: Tuple[Member, ...]
    kind = Kind.UNION


@dataclass(frozen=True)
class Enumerator:
    name: str
    value: int


@dataclass(frozen=True)
class Enum:
    id: int
    name: str
    size: int
    signed: bool
    values: Tuple[Enumerator, ...]
    kind = Kind.ENUM


@dataclass(frozen=True)
class Enum64:
    id: int
    name: str
    size: int
    signed: bool
    values: Tuple[Enumerator, ...]
    kind = Kind.ENUM64


@dataclass(frozen=True)
class Fwd:
    id: int
    name: str
    union: bool
    kind = Kind.FWD


@dataclass(frozen=True)
class Typedef:
    id: int
    name: str
    type_id: int
    kind = Kind.TYPEDEF


@dataclass(frozen=True)
class Volatile:
    id: int
    name: str
    type_id: int
    kind = Kind.VOLATILE


@dataclass(frozen=True)
class Const:
    id: int
    name: str
    type_id: int
    kind = Kind.CONST


@dataclass(frozen=True)
class Restrict:
    id: int
    name: str
    type_id: int
    kind = Kind.RESTRICT


@dataclass(frozen=True)
class TypeTag:
    id: int
    name: str  # the tag: "user", "percpu", "rcu" ...
    type_id: int
    kind = Kind.TYPE_TAG


@dataclass(frozen=True)
class Func:
    id: int
    name: str
    type_id: int  # a FuncProto
    linkage: int
    kind = Kind.FUNC


@dataclass(frozen=True)
class Param:
    name: str
    type_id: int


@dataclass(frozen=True)
class FuncProto:
    id: int
    name: str
    return_type_id: int
    params: Tuple[Param, ...]  # without the trailing "..." entry
    variadic: bool
    kind = Kind.FUNC_PROTO


@dataclass(frozen=True)
class Var:
    id: int
    name: str
    type_id: int
    linkage: int
    kind = Kind.VAR


@dataclass(frozen=True)
class VarSecinfo:
    type_id: int
    offset: int
    size: int


@dataclass(frozen=True)
class Datasec:
    id: int
    name: str
    size: int
    vars: Tuple[VarSecinfo, ...]
    kind = Kind.DATASEC


@dataclass(frozen=True)
class Float:
    id: int
    name: str
    size: int
    kind = Kind.FLOAT


@dataclass(frozen=True)
class DeclTag:
    id: int
    name: str
    type_id: int
    component_idx: int  # -1 for the type itself, else a member or parameter index
    kind = Kind.DECL_TAG


Type = typing.Union[
    Void,
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Enum64,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    TypeTag,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
]
Composite = typing.Union[Struct, Union]
Qualifier = typing.Union[Volatile, Const, Restrict, TypeTag]
