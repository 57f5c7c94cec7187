# SPDX-License-Identifier: GPL-2.0-only
"""C declarations from BTF types, written the way kernel sources and `bpftool btf dump format c` do.

`declaration(btf, id, "skb")` -> "struct sk_buff *skb"; function pointers, arrays of pointers,
qualifiers (`const char *`, `char * const`), type tags as the kernel spells them (`__user`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Sequence, Tuple

from . import types as t
from .errors import BTFError
from .uapi import Kind

if TYPE_CHECKING:
    from .btf import BTF

# Deeper declarator nesting than this only comes from loops in corrupt BTF.
_MAX_DEPTH = 64

_QUALIFIER_WORDS = {Kind.CONST: "const", Kind.VOLATILE: "volatile", Kind.RESTRICT: "restrict"}


def declaration(btf: "BTF", type_id: int, declarator: str = "") -> str:
    """`type_id` declared as `declarator` (empty for an abstract type name)."""
    return _decl(btf, type_id, declarator, 0)


def function_declaration(
    btf: "BTF", name: str, return_type_id: int, params: Sequence[Tuple[str, int]], variadic: bool = False
) -> str:
    """`int ip_send_skb(struct net *net, struct sk_buff *skb)` from its parts."""
    parts = [_decl(btf, type_id, pname, 1) for pname, type_id in params]
    if variadic:
        parts.append("...")
    return _decl(btf, return_type_id, f"{name}({', '.join(parts) or 'void'})", 1)


def _decl(btf: "BTF", type_id: int, inner: str, depth: int) -> str:
    if depth > _MAX_DEPTH:
        raise BTFError("type nests too deeply to declare", type_id=type_id)
    typ = btf.type_by_id(type_id)
    if typ.kind in (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG):
        return _qualified(btf, typ, inner, depth)
    if isinstance(typ, t.Ptr):
        return _decl(btf, typ.type_id, "*" + inner, depth + 1)
    if isinstance(typ, t.Array):
        if inner.startswith("*"):
            inner = f"({inner})"
        return _decl(btf, typ.type_id, f"{inner}[{typ.nelems}]", depth + 1)
    if isinstance(typ, t.FuncProto):
        if inner.startswith("*"):
            inner = f"({inner})"
        return _decl(btf, typ.return_type_id, f"{inner}({_params(btf, typ, depth)})", depth + 1)
    if isinstance(typ, t.Func):
        return _decl(btf, typ.type_id, inner or typ.name, depth + 1)
    if isinstance(typ, t.Var):
        return _decl(btf, typ.type_id, inner or typ.name, depth + 1)
    return _join(base_name(typ), inner)


def _qualified(btf: "BTF", typ: t.Type, inner: str, depth: int) -> str:
    # Gather the whole run of qualifiers: C writes them before a base type but after a pointer's star.
    words: List[str] = []
    tags: List[str] = []
    for _ in range(_MAX_DEPTH):
        if typ.kind == Kind.TYPE_TAG:
            tags.append("__" + typ.name)
        elif typ.kind in _QUALIFIER_WORDS:
            words.append(_QUALIFIER_WORDS[typ.kind])
        else:
            break
        typ = btf.type_by_id(typ.type_id)  # type: ignore[union-attr]
    else:
        raise BTFError("qualifier chain loops", type_id=typ.id)
    quals = " ".join(dict.fromkeys(words + tags))
    if isinstance(typ, t.Ptr):
        # `char * const p`: the qualifiers belong to the pointer itself.
        return _decl(btf, typ.type_id, "* " + quals + (" " + inner if inner else ""), depth + 1)
    if isinstance(typ, (t.Array, t.FuncProto)):
        return _decl(btf, typ.id, inner, depth + 1)  # C cannot qualify these; the BTF is odd, drop it
    base = _decl(btf, typ.id, "", depth + 1)
    c_quals = " ".join(dict.fromkeys(words))
    tag_words = " ".join(dict.fromkeys(tags))
    text = " ".join(x for x in (c_quals, base, tag_words) if x)  # `const char __user`
    return _join(text, inner)


def _params(btf: "BTF", proto: t.FuncProto, depth: int) -> str:
    if not proto.params and not proto.variadic:
        return "void"
    parts = [_decl(btf, p.type_id, p.name, depth + 1) for p in proto.params]
    if proto.variadic:
        parts.append("...")
    return ", ".join(parts)


def base_name(typ: t.Type) -> str:
    """The C name of a non-derived type: `struct sk_buff`, `unsigned int`, `u32`, `void`."""
    if isinstance(typ, t.Void):
        return "void"
    if isinstance(typ, t.Struct):
        return f"struct {typ.name or '{...}'}"
    if isinstance(typ, t.Union):
        return f"union {typ.name or '{...}'}"
    if isinstance(typ, (t.Enum, t.Enum64)):
        return f"enum {typ.name or '{...}'}"
    if isinstance(typ, t.Fwd):
        return f"{'union' if typ.union else 'struct'} {typ.name}"
    if isinstance(typ, (t.Int, t.Float, t.Typedef)):
        return typ.name
    return typ.name or typ.kind.name.lower()


def _join(base: str, inner: str) -> str:
    if not inner:
        return base
    if inner.startswith("["):
        return base + inner  # an abstract array type, `char[16]`, as the kernel's BTF printer writes it
    return f"{base} {inner}"
