# SPDX-License-Identifier: GPL-2.0-only
"""The BTF class: types by id and by name, sizes and alignment, split-BTF id arithmetic.

Built on a reader.Index, it makes type objects only when asked and caches them,
so opening vmlinux BTF (126k types) costs one indexing pass and no more.
"""

from __future__ import annotations

import bisect
import difflib
import fnmatch
import itertools
import operator
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from . import reader, types as t
from .errors import BTFError, BTFLookupError
from .uapi import (
    BTF_INT_BOOL,
    BTF_INT_CHAR,
    BTF_INT_SIGNED,
    Kind,
    int_bits,
    int_encoding,
    int_offset,
    member_bit_offset,
    member_bitfield_size,
)

# Typedef and qualifier chains longer than this are loops in corrupt BTF, never real C.
MAX_CHAIN = 64

_TAG_KINDS = {"struct": (Kind.STRUCT,), "union": (Kind.UNION,), "enum": (Kind.ENUM, Kind.ENUM64)}
# A bare name means what C code means by it: a function, typedef or base type before a tag.
_PLAIN_NAME_ORDER = (
    Kind.FUNC,
    Kind.TYPEDEF,
    Kind.INT,
    Kind.FLOAT,
    Kind.VAR,
    Kind.STRUCT,
    Kind.UNION,
    Kind.ENUM,
    Kind.ENUM64,
    Kind.DATASEC,
    Kind.FWD,
)
# include/uapi/linux/types.h: integers whose byte order is part of their type.
_FIXED_ORDER_TYPEDEFS = {
    "__be16": "big",
    "__be32": "big",
    "__be64": "big",
    "__le16": "little",
    "__le32": "little",
    "__le64": "little",
}
_MODIFIERS = (Kind.TYPEDEF, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG)
_QUALIFIERS = (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG)
# How C spells `long`: gcc's DWARF (so pahole's BTF) says "long int", clang "long"; libbpf's long_aliases.
_LONG_NAMES = (
    "long",
    "long int",
    "unsigned long",
    "long unsigned int",
    "unsigned long int",
    "int long",
    "long unsigned",
    "unsigned int long",
    "long int unsigned",
    "int unsigned long",
    "int long unsigned",
)


class BTF:
    """One BTF blob, optionally split on a base (module BTF on vmlinux)."""

    def __init__(self, index: reader.Index, base: Optional["BTF"] = None, name: str = "vmlinux"):
        self._index = index
        self.base = base
        self.name = name
        self._cache: Dict[int, t.Type] = {}
        self._type_bytes: Optional[bytes] = None
        self._names_by_kind: Dict[Tuple[int, ...], List[Tuple[str, int]]] = {}
        # name -> ids, per kind, once named_index() made one: then lookups by name use it.
        self._kind_index: Dict[Kind, NameIndex] = {}
        self._glob_strings: Dict[str, Optional[Dict[int, str]]] = {}
        self._pointer_size: Optional[int] = None
        # What btf.compiled and btf.values build once per type: readers and renderers, by a key
        # whose first item says which.
        self.compiled: Dict[Tuple[Any, ...], Any] = {}

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, data: bytes, base: Optional["BTF"] = None, name: str = "") -> "BTF":
        """Parse raw BTF; with `base`, `data` is split BTF whose ids continue the base's."""
        if base is None:
            return cls(reader.index(data), None, name or "vmlinux")
        index = reader.index(data, start_id=base.nr_types, start_str_off=base._strings_end)
        return cls(index, base, name)

    @classmethod
    def from_file(cls, path: str, base: Optional["BTF"] = None, name: str = "") -> "BTF":
        """Raw BTF or the .BTF section of an ELF file (vmlinux, .ko, BPF object)."""
        from . import sources

        return cls.from_bytes(sources.read_btf_bytes(path), base, name or sources.default_name(path))

    @classmethod
    def vmlinux(cls) -> "BTF":
        """The running kernel's BTF, from /sys/kernel/btf/vmlinux."""
        from . import sources

        return cls.from_bytes(sources.read_btf_bytes(sources.VMLINUX_PATH), None, "vmlinux")

    @classmethod
    def module(cls, name: str, base: Optional["BTF"] = None) -> "BTF":
        """A loaded module's split BTF from /sys/kernel/btf/<name>, on `base` (vmlinux if None)."""
        from . import sources

        base = base or cls.vmlinux()
        return cls.from_bytes(sources.read_btf_bytes(sources.module_path(name)), base, name)

    # ---- ids and records ----------------------------------------------------------------------
    @property
    def start_id(self) -> int:
        return self._index.start_id

    @property
    def byteorder(self) -> str:
        """ "little" or "big": the byte order of the BTF, and so of the target's data."""
        return self._index.byteorder

    @property
    def nr_types(self) -> int:
        """One more than the highest id defined here, counting void (id 0) and any base."""
        return self._index.start_id + len(self._index.type_starts)

    @property
    def _strings_end(self) -> int:
        return self._index.start_str_off + len(self._index.strings)

    def _owner(self, type_id: int) -> "BTF":
        btf: Optional[BTF] = self
        while btf is not None:
            if type_id >= btf.start_id:
                if type_id >= btf.nr_types:
                    break
                return btf
            btf = btf.base
        raise BTFLookupError(f"type id {type_id} is out of range (this BTF has ids 1..{self.nr_types - 1})")

    def kind_of(self, type_id: int) -> Kind:
        if type_id == 0:
            return Kind.UNKN
        owner = self._owner(type_id)
        return Kind(owner._index.kinds[type_id - owner.start_id])

    def _words(self, type_id: int) -> Tuple[int, int, int, int]:
        """(word position of the record, name_off, info, size_or_type) of a type defined here."""
        pos = self._index.type_starts[type_id - self.start_id]
        w = self._index.words
        return pos, w[pos], w[pos + 1], w[pos + 2]

    def string_at(self, offset: int) -> str:
        """The NUL-terminated string at a (split-aware) string offset."""
        if offset < self._index.start_str_off:
            assert self.base is not None
            return self.base.string_at(offset)
        local = offset - self._index.start_str_off
        strings = self._index.strings
        if local >= len(strings):
            raise BTFError(f"string offset {offset} is past the string section's end")
        end = strings.find(b"\0", local)
        return strings[local:end].decode("utf-8", "backslashreplace")

    def name_of(self, type_id: int) -> str:
        if type_id == 0:
            return "void"
        owner = self._owner(type_id)
        return owner.string_at(owner._words(type_id)[1])

    # ---- type objects -------------------------------------------------------------------------
    def type_by_id(self, type_id: int) -> t.Type:
        """The type object for an id; raises BTFLookupError for an id out of range, BTFError if corrupt."""
        if type_id == 0:
            return t.Void()
        owner = self._owner(type_id)
        cached = owner._cache.get(type_id)
        if cached is None:
            cached = owner._cache[type_id] = owner._build(type_id)
        return cached

    def _ref(self, type_id: int, ref: int) -> int:
        if ref >= self.nr_types:
            raise BTFError(
                f"refers to type id {ref}, past the last id {self.nr_types - 1}",
                type_id=type_id,
                offset=self._record_offset(type_id),
            )
        return ref

    def _record_offset(self, type_id: int) -> int:
        return self._index.types_file_offset + 4 * self._index.type_starts[type_id - self.start_id]

    def _build(self, type_id: int) -> t.Type:
        try:
            return self._build_record(type_id)
        except BTFError as err:
            if err.type_id is not None:
                raise
            # A bad name offset in a member, parameter or enumerator: say which record holds it.
            raise BTFError(str(err), type_id=type_id, offset=self._record_offset(type_id)) from None

    def _build_record(self, type_id: int) -> t.Type:
        pos, name_off, info, size_or_type = self._words(type_id)
        kind = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        kind_flag = bool(info >> 31)
        w = self._index.words
        extra = pos + 3
        name = self.string_at(name_off)
        ref = self._ref
        if kind == Kind.INT:
            enc = w[extra]
            bits = int_bits(enc)
            # As the kernel's btf_int_check_meta: the encoding offset plus the bits must fit the size.
            if size_or_type not in (1, 2, 4, 8, 16) or int_offset(enc) + bits > size_or_type * 8:
                raise BTFError(
                    f"INT '{name}' has size {size_or_type} and {bits} bits at bit {int_offset(enc)}",
                    type_id=type_id,
                    offset=self._record_offset(type_id),
                )
            e = int_encoding(enc)
            return t.Int(
                type_id,
                name,
                size_or_type,
                bits,
                int_offset(enc),
                bool(e & BTF_INT_SIGNED),
                bool(e & BTF_INT_CHAR),
                bool(e & BTF_INT_BOOL),
            )
        if kind == Kind.PTR:
            return t.Ptr(type_id, name, ref(type_id, size_or_type))
        if kind == Kind.ARRAY:
            return t.Array(type_id, name, ref(type_id, w[extra]), ref(type_id, w[extra + 1]), w[extra + 2])
        if kind in (Kind.STRUCT, Kind.UNION):
            members = []
            for i in range(vlen):
                m = extra + 3 * i
                offset_word = w[m + 2]
                if kind_flag:
                    bit_offset, bitfield_size = member_bit_offset(offset_word), member_bitfield_size(offset_word)
                else:
                    bit_offset, bitfield_size = offset_word, 0
                members.append(t.Member(self.string_at(w[m]), ref(type_id, w[m + 1]), bit_offset, bitfield_size))
            cls = t.Struct if kind == Kind.STRUCT else t.Union
            return cls(type_id, name, size_or_type, tuple(members))
        if kind == Kind.ENUM:
            values = []
            for i in range(vlen):
                raw = w[extra + 2 * i + 1]
                value = raw - (1 << 32) if kind_flag and raw >= 1 << 31 else raw
                values.append(t.Enumerator(self.string_at(w[extra + 2 * i]), value))
            return t.Enum(type_id, name, size_or_type, kind_flag, tuple(values))
        if kind == Kind.ENUM64:
            values = []
            for i in range(vlen):
                e = extra + 3 * i
                raw = w[e + 1] | (w[e + 2] << 32)
                value = raw - (1 << 64) if kind_flag and raw >= 1 << 63 else raw
                values.append(t.Enumerator(self.string_at(w[e]), value))
            return t.Enum64(type_id, name, size_or_type, kind_flag, tuple(values))
        if kind == Kind.FWD:
            return t.Fwd(type_id, name, kind_flag)
        if kind == Kind.TYPEDEF:
            return t.Typedef(type_id, name, ref(type_id, size_or_type))
        if kind == Kind.VOLATILE:
            return t.Volatile(type_id, name, ref(type_id, size_or_type))
        if kind == Kind.CONST:
            return t.Const(type_id, name, ref(type_id, size_or_type))
        if kind == Kind.RESTRICT:
            return t.Restrict(type_id, name, ref(type_id, size_or_type))
        if kind == Kind.TYPE_TAG:
            return t.TypeTag(type_id, name, ref(type_id, size_or_type))
        if kind == Kind.FUNC:
            proto = ref(type_id, size_or_type)
            if self.kind_of(proto) != Kind.FUNC_PROTO:
                raise BTFError(
                    f"FUNC '{name}' refers to [{proto}], which is not a FUNC_PROTO",
                    type_id=type_id,
                    offset=self._record_offset(type_id),
                )
            return t.Func(type_id, name, proto, vlen)
        if kind == Kind.FUNC_PROTO:
            params = []
            variadic = False
            for i in range(vlen):
                p_name_off, p_type = w[extra + 2 * i], w[extra + 2 * i + 1]
                if p_type == 0 and i == vlen - 1:
                    variadic = True
                    break
                params.append(t.Param(self.string_at(p_name_off), ref(type_id, p_type)))
            return t.FuncProto(type_id, name, ref(type_id, size_or_type), tuple(params), variadic)
        if kind == Kind.VAR:
            return t.Var(type_id, name, ref(type_id, size_or_type), w[extra])
        if kind == Kind.DATASEC:
            secinfos = tuple(
                t.VarSecinfo(ref(type_id, w[extra + 3 * i]), w[extra + 3 * i + 1], w[extra + 3 * i + 2])
                for i in range(vlen)
            )
            return t.Datasec(type_id, name, size_or_type, secinfos)
        if kind == Kind.FLOAT:
            return t.Float(type_id, name, size_or_type)
        if kind == Kind.DECL_TAG:
            idx = w[extra]
            return t.DeclTag(type_id, name, ref(type_id, size_or_type), idx - (1 << 32) if idx >= 1 << 31 else idx)
        raise BTFError(f"unknown BTF kind {kind}", type_id=type_id, offset=self._record_offset(type_id))

    def validate(self) -> None:
        """Build every type defined here, so any bad reference or string offset raises now."""
        for type_id in range(self.start_id, self.nr_types):
            self.type_by_id(type_id)

    # ---- names --------------------------------------------------------------------------------
    def _ids_named(self, name: str) -> List[int]:
        """Ids (here and in the base) whose name is exactly `name`, found without decoding every name."""
        found = self.base._ids_named(name) if self.base is not None else []
        if not name:
            return found
        needle = b"\0" + name.encode() + b"\0"
        offsets = []
        btf: Optional[BTF] = self
        while btf is not None:
            # Split BTF strings need not start with "\0" (libbpf writes module BTF without it): give
            # them one so the needle matches the first string too. A base's reader checked its own.
            lead = 1 if btf._index.start_str_off else 0
            strings = b"\0" + btf._index.strings if lead else btf._index.strings
            pos = strings.find(needle)
            while pos >= 0:
                offsets.append(btf._index.start_str_off + pos + 1 - lead)
                pos = strings.find(needle, pos + 1)
            btf = btf.base
        if not offsets:
            return found
        if self._type_bytes is None:
            self._type_bytes = self._index.words.tobytes()
        blob, starts = self._type_bytes, self._index.type_starts
        for off in offsets:
            # A record's name_off is its first word: find the value, keep hits at record starts.
            key = off.to_bytes(4, sys.byteorder)
            pos = blob.find(key)
            while pos >= 0:
                if pos % 4 == 0:
                    word = pos // 4
                    i = bisect.bisect_left(starts, word)
                    if i < len(starts) and starts[i] == word:
                        found.append(self.start_id + i)
                pos = blob.find(key, pos + 1)
        return found

    def find(self, name: str, kind: Optional[Kind] = None) -> Optional[t.Type]:
        """The type a C name means (`struct sk_buff`, `u32`, `ip_send_skb`), or None."""
        kinds, bare = _parse_type_name(name)
        if kind is not None:
            kinds = (kind,)
            index = self._kind_index.get(kind)
            if index is not None:  # made by named_index: a dict lookup, not a scan of the strings
                ids = index.get(bare) if bare else []
                return self.type_by_id(ids[0]) if ids else None
        ids = self._ids_named(bare)
        for k in kinds:
            for type_id in ids:
                if self.kind_of(type_id) == k:
                    return self.type_by_id(type_id)
        return None

    def find_all(self, name: str, kind: Optional[Kind] = None) -> List[t.Type]:
        """Every type with this bare name (and kind, if given)."""
        index = self._kind_index.get(kind) if kind is not None else None
        if index is not None:
            return [self.type_by_id(i) for i in index.get(name)]
        return [self.type_by_id(i) for i in self._ids_named(name) if kind is None or self.kind_of(i) == kind]

    def named_index(self, kind: Kind) -> "NameIndex":
        """The ids of the types of `kind` here and in the base, by name, made once; from then on
        find_all of that kind looks names up in it. A lookup by name otherwise scans the strings,
        which is right for a few and slow for the hundreds a function graph asks about."""
        index = self._kind_index.get(kind)
        if index is None:
            ids, offsets = self._named_records([kind])
            base = self.base.named_index(kind) if self.base is not None else None
            index = self._kind_index[kind] = NameIndex(self._names_at(offsets), ids, base)
        return index

    def lookup(self, name: str, kind: Optional[Kind] = None) -> t.Type:
        """Like find, but raises BTFLookupError naming the closest real names."""
        found = self.find(name, kind)
        if found is not None:
            return found
        kinds, bare = _parse_type_name(name)
        if kind is not None:
            kinds = (kind,)
        parts = name.split()
        prefix = parts[0] + " " if len(parts) == 2 and parts[0] in _TAG_KINDS else ""
        suggestions = [prefix + s for s in self.closest_names(bare, kinds)]
        what = name if kind is None else f"{kind.name} '{name}'"
        hint = "; did you mean " + ", ".join(repr(s) for s in suggestions) + "?" if suggestions else ""
        raise BTFLookupError(f"no type or function named '{what}' in {self.name} BTF{hint}", suggestions)

    def names(self, kinds: Sequence[Kind]) -> List[Tuple[str, int]]:
        """(name, id) of every named type of these kinds, here and in the base, in id order."""
        key = tuple(sorted(kinds))
        cached = self._names_by_kind.get(key)
        if cached is None:
            cached = list(self.base.names(kinds)) if self.base is not None else []
            ids, offsets = self._named_records(kinds)
            names = list(map(_decode, self._names_at(offsets)))
            cached.extend(filter(operator.itemgetter(0), zip(names, ids)))
            self._names_by_kind[key] = cached
        return cached

    def _names_at(self, offsets: List[int]) -> List[bytes]:
        """The strings at these offsets, undecoded."""
        first, strings = self._index.start_str_off, self._index.strings
        if offsets and min(offsets) >= first:
            # Cut by C-level iterators, not a string_at call a name: tens of thousands of names
            # take seconds in Python under emulation.
            starts = list(map(operator.sub, offsets, itertools.repeat(first))) if first else offsets
            try:
                ends = list(map(strings.index, itertools.repeat(b"\0"), starts))
            except ValueError:  # an offset past the section, or no NUL after it: string_at says which
                pass
            else:
                return list(map(strings.__getitem__, map(slice, starts, ends)))
        # Names in the base's strings (a module's types named by vmlinux's strings).
        return [self.string_at(offset).encode() for offset in offsets]

    def closest_names(self, name: str, kinds: Sequence[Kind], n: int = 5) -> List[str]:
        """Up to n names of these kinds that look most like `name` (for 'did you mean')."""
        slack = max(3, len(name) // 3)
        candidates = {nm for nm, _ in self.names(kinds) if abs(len(nm) - len(name)) <= slack}
        return difflib.get_close_matches(name, sorted(candidates), n=n, cutoff=0.7)

    def glob(self, pattern: str, kinds: Sequence[Kind], inherited: bool = True) -> List[Tuple[str, int]]:
        """(name, id) of types of these kinds whose name matches a shell glob, sorted by name;
        with inherited=False only the types this blob defines (a module's own, not vmlinux's).

        A glob with a literal part (`tcp_*`) looks for that text in the string section and
        matches just the strings holding it, instead of naming every type: tens of thousands
        of names cost seconds in Python under emulation, and `trace 'tcp_*'` starts with this.
        """
        found = self.base.glob(pattern, kinds) if inherited and self.base is not None else []
        strings = self._strings_matching(pattern)
        if strings is None:  # nothing literal to look for: every name is a candidate
            match = fnmatch.fnmatchcase
            own = self.start_id
            found.extend((nm, i) for nm, i in self.names(kinds) if i >= own and match(nm, pattern))
        elif strings:
            ids, name_offsets = self._named_records(kinds)
            found.extend((strings[off], i) for off, i in zip(name_offsets, ids) if off in strings)
        return sorted(found)

    def _strings_matching(self, pattern: str) -> Optional[Dict[int, str]]:
        """{string offset: string} of the strings here and in the base that match a glob; None
        when the glob has no literal text (then every string is a candidate)."""
        cached = self._glob_strings.get(pattern)
        if cached is not None or pattern in self._glob_strings:
            return cached
        before_class = pattern.split("[", 1)[0]  # what a [...] class holds is not literal
        literal = max(before_class.replace("?", "*").split("*"), key=len)
        if not literal:
            self._glob_strings[pattern] = None
            return None
        found = dict(self.base._strings_matching(pattern) or {}) if self.base is not None else {}
        match = fnmatch.fnmatchcase
        strings, first = self._index.strings, self._index.start_str_off
        needle = literal.encode("utf-8", "backslashreplace")
        at = strings.find(needle)
        while at != -1:
            start = strings.rfind(b"\0", 0, at) + 1
            end = strings.find(b"\0", at)
            if end == -1:  # the section ends in NUL (checked on reading): only a bad blob gets here
                end = len(strings)
            name = strings[start:end].decode("utf-8", "backslashreplace")
            if match(name, pattern):
                found[first + start] = name
            at = strings.find(needle, end)
        self._glob_strings[pattern] = found
        return found

    def _named_records(self, kinds: Sequence[Kind]) -> Tuple[List[int], List[int]]:
        """(ids, name offsets) of the types of these kinds defined here, gathered by C-level
        iterators (compress, itemgetter) rather than a Python loop over every record."""
        index = self._index
        table = bytearray(256)
        for k in kinds:
            table[int(k)] = 1
        select = index.kinds.translate(table)  # 1 where the kind is wanted, in one C pass
        ids = list(itertools.compress(range(self.start_id, self.start_id + len(index.kinds)), select))
        starts = list(itertools.compress(index.type_starts, select))
        if len(starts) == 1:
            return ids, [index.words[starts[0]]]
        return ids, list(operator.itemgetter(*starts)(index.words)) if starts else []

    def iter_types(self, kind: Optional[Kind] = None) -> Iterator[t.Type]:
        """Every type defined in this blob (not the base), in id order, built lazily."""
        for i, k in enumerate(self._index.kinds):
            if kind is None or k == kind:
                yield self.type_by_id(self.start_id + i)

    # ---- sizes --------------------------------------------------------------------------------
    def skip_modifiers(self, type_id: int) -> t.Type:
        """Follow typedefs, qualifiers and type tags to the type underneath."""
        for _ in range(MAX_CHAIN):
            typ = self.type_by_id(type_id)
            if typ.kind not in _MODIFIERS:
                return typ
            type_id = typ.type_id  # type: ignore[union-attr]
        raise BTFError("typedef or qualifier chain loops", type_id=type_id)

    def skip_qualifiers(self, type_id: int) -> t.Type:
        """Follow const/volatile/restrict and type tags, keeping typedefs."""
        for _ in range(MAX_CHAIN):
            typ = self.type_by_id(type_id)
            if typ.kind not in _QUALIFIERS:
                return typ
            type_id = typ.type_id  # type: ignore[union-attr]
        raise BTFError("qualifier chain loops", type_id=type_id)

    def value_byteorder(self, type_id: int) -> str:
        """The byte order a value of `type_id` is stored in: the BTF's own, but for the kernel's
        fixed-order typedefs (`__be16`/`__be32`/`__be64`, network order, and `__le*`) met anywhere
        in its chain of typedefs and qualifiers."""
        for _ in range(MAX_CHAIN):
            typ = self.type_by_id(type_id)
            if typ.kind not in _MODIFIERS:
                return self.byteorder
            if typ.kind == Kind.TYPEDEF and typ.name in _FIXED_ORDER_TYPEDEFS:
                return _FIXED_ORDER_TYPEDEFS[typ.name]
            type_id = typ.type_id  # type: ignore[union-attr]
        raise BTFError("typedef or qualifier chain loops", type_id=type_id)

    @property
    def pointer_size(self) -> int:
        """BTF does not record it; like libbpf, take it from `long`, else assume 8."""
        if self._pointer_size is None:
            btf: BTF = self
            while btf.base is not None:
                btf = btf.base
            long_type = next(filter(None, (btf.find(name, Kind.INT) for name in _LONG_NAMES)), None)
            self._pointer_size = long_type.size if isinstance(long_type, t.Int) and long_type.size in (4, 8) else 8
        return self._pointer_size

    def resolve_size(self, type_id: int) -> int:
        """Size in bytes of a type that has one; BTFError for void, functions and loops."""
        nelems = 1
        for _ in range(MAX_CHAIN):
            typ = self.skip_modifiers(type_id)
            if isinstance(typ, t.Array):
                nelems *= typ.nelems
                type_id = typ.type_id
                continue
            if isinstance(typ, t.Ptr):
                return nelems * self.pointer_size
            if isinstance(typ, (t.Int, t.Struct, t.Union, t.Enum, t.Enum64, t.Float, t.Datasec)):
                return nelems * typ.size
            if isinstance(typ, t.Var):
                type_id = typ.type_id
                continue
            raise BTFError(f"{typ.kind.name} has no size", type_id=typ.id)
        raise BTFError("array chain loops", type_id=type_id)

    def alignment(self, type_id: int, _depth: int = 0) -> int:
        """Alignment in bytes, as libbpf's btf__align_of reckons it (packed structs align to 1)."""
        if _depth > MAX_CHAIN:
            raise BTFError("type nests too deeply", type_id=type_id)
        typ = self.skip_modifiers(type_id)
        if isinstance(typ, (t.Int, t.Enum, t.Enum64, t.Float)):
            return min(typ.size, self.pointer_size) or 1
        if isinstance(typ, t.Ptr):
            return self.pointer_size
        if isinstance(typ, t.Array):
            return self.alignment(typ.type_id, _depth + 1)
        if isinstance(typ, (t.Struct, t.Union)):
            align = 1
            for m in typ.members:
                a = self.alignment(m.type_id, _depth + 1)
                if m.bitfield_size == 0 and m.bit_offset % (8 * a):
                    return 1  # a misaligned member means __attribute__((packed))
                align = max(align, a)
            return 1 if typ.size % align else align
        raise BTFError(f"{typ.kind.name} has no alignment", type_id=typ.id)

    # ---- presentation, delegated ----------------------------------------------------------------
    def decl(self, type_id: int, name: str = "") -> str:
        """A C declaration of `name` with this type, as kernel sources write it (`const char *fmt`)."""
        from . import cdecl

        return cdecl.declaration(self, type_id, name)

    def type_name(self, type_id: int) -> str:
        """A type's C spelling without a declarator (`struct sk_buff *`)."""
        return self.decl(type_id, "")

    def signature(self, func: t.Func) -> str:
        """`int ip_send_skb(struct net *net, struct sk_buff *skb)` for a FUNC."""
        from . import cdecl

        return cdecl.declaration(self, func.type_id, func.name)

    def resolve_path(self, type_id: int, path: str) -> Any:
        """Resolve a member path (`->dev->name`, `.b[2].c`) from a value of this type; see members.py."""
        from . import members

        return members.resolve(self, type_id, members.parse_path(path))

    def decode(self, typ: Any, data: bytes) -> Any:
        """Bytes of a type -> a plain Python value (dict, list, str, int, float, bool)."""
        from . import values

        return values.decode(self, _type_id(self, typ), data)

    def render(self, typ: Any, data: bytes, **options: Any) -> str:
        """Bytes of a type -> ksnoop's text form, `(unsigned int)228`, structs nested and indented."""
        from . import values

        return values.render(self, _type_id(self, typ), data, **options)

    def __repr__(self) -> str:
        return f"<BTF {self.name}: ids {self.start_id}..{self.nr_types - 1}>"


def _type_id(btf: BTF, typ: Any) -> int:
    if isinstance(typ, int):
        return typ
    if isinstance(typ, str):
        return btf.lookup(typ).id
    return int(typ.id)


def _parse_type_name(name: str) -> Tuple[Sequence[Kind], str]:
    parts = name.split()
    if len(parts) == 2 and parts[0] in _TAG_KINDS:
        return _TAG_KINDS[parts[0]], parts[1]
    return _PLAIN_NAME_ORDER, " ".join(parts)


class NameIndex:
    """Names -> the ids of one kind's types, in id order (a split blob's: the base's first).

    Built by C-level iterators from undecoded names: one id a name in a dict, and lists only for
    the few names more than one type has (static functions of one name in two files). Tens of
    thousands of names, each decoded and given a list, cost half a second under emulation.
    """

    def __init__(self, names: List[bytes], ids: List[int], base: Optional["NameIndex"] = None):
        self._first = dict(zip(reversed(names), reversed(ids)))
        self._more: Dict[bytes, List[int]] = {}
        if len(self._first) < len(names):
            last = dict(zip(names, ids))
            shared = {name for name, _ in last.items() - self._first.items()}
            is_shared = list(map(shared.__contains__, names))
            for name, type_id in zip(itertools.compress(names, is_shared), itertools.compress(ids, is_shared)):
                self._more.setdefault(name, []).append(type_id)
        self._base = base

    def get(self, name: str) -> List[int]:
        key = name.encode("utf-8", "surrogatepass")  # a name from argv may hold any code point
        own = self._more.get(key)
        if own is None:
            first = self._first.get(key)
            own = [] if first is None else [first]
        return self._base.get(name) + own if self._base is not None else list(own)


_decode = operator.methodcaller("decode", "utf-8", "backslashreplace")  # C-level, as map() wants
