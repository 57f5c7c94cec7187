# SPDX-License-Identifier: GPL-2.0-only
"""A pure-Python BTF library: parse kernel and module BTF, declare types in C, walk member
paths and turn typed bytes into values. `from btf import BTF, BTFError`."""

from .btf import BTF
from .errors import BTFError, BTFLookupError
from .members import MemberPath, MemberPathError
from .types import (
    Array,
    Const,
    Datasec,
    DeclTag,
    Enum,
    Enum64,
    Enumerator,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Member,
    Param,
    Ptr,
    Restrict,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarSecinfo,
    Void,
    Volatile,
)
from .uapi import Kind

__all__ = [
    "BTF",
    "BTFError",
    "BTFLookupError",
    "MemberPath",
    "MemberPathError",
    "Kind",
    "Type",
    "Array",
    "Const",
    "Datasec",
    "DeclTag",
    "Enum",
    "Enum64",
    "Enumerator",
    "Float",
    "Func",
    "FuncProto",
    "Fwd",
    "Int",
    "Member",
    "Param",
    "Ptr",
    "Restrict",
    "Struct",
    "Typedef",
    "TypeTag",
    "Union",
    "Var",
    "VarSecinfo",
    "Void",
    "Volatile",
]
__version__ = "0.1.0"
