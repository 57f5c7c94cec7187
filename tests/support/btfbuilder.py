# SPDX-License-Identifier: GPL-2.0-only
"""A declarative BTF writer for tests: add types, get their ids, emit a real BTF blob.

Each method appends one record laid out as include/uapi/linux/btf.h fixes it and
returns the new type id. Referenced ids are not checked, so tests can also build
broken BTF on purpose; `raw()` writes any record at all.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Union

from btf.uapi import BTF_INT_BOOL, BTF_INT_CHAR, BTF_INT_SIGNED, BTF_MAGIC, Kind

# (name, type_id, bit_offset) or (name, type_id, bit_offset, bitfield_size); name "" is anonymous
Member = Union[tuple[str, int, int], tuple[str, int, int, int]]

_U32 = 0xFFFFFFFF


class BTFBuilder:
    """Types for one BTF blob; with `base=`, split BTF whose ids and strings continue the base's.

    For split BTF the defaults follow what libbpf's btf__add_str() and btf_dedup_strings()
    write for kernel modules: a name the base already has points into the base's strings,
    and the module's own string section does not start with "\\0" (empty names use offset 0,
    the base's empty string). `split_leading_nul=True` writes the leading "\\0" instead.
    """

    def __init__(self, base: BTFBuilder | None = None, *, split_leading_nul: bool = False):
        self.base = base
        # One list of u32 words per type, local number n at index n - 1; None until reserve() is filled.
        self._records: list[list[int] | None] = []
        self._strings = bytearray()
        self._string_offsets: dict[str, int] = {}  # local offsets
        if base is None:
            self.start_id = 1
            self.start_str_off = 0
            self._add_local_str("")
        else:
            self.start_id = base.next_id
            self.start_str_off = base.start_str_off + len(base._strings)
            if split_leading_nul:
                self._add_local_str("")

    @property
    def next_id(self) -> int:
        """The id the next added type will get."""
        return self.start_id + len(self._records)

    @property
    def last_id(self) -> int:
        return self.next_id - 1

    # -- strings -----------------------------------------------------------

    def find_str(self, name: str) -> int | None:
        """Offset of `name` in this blob's string space (base first), or None."""
        if self.base is not None:
            offset = self.base.find_str(name)
            if offset is not None:
                return offset
        local = self._string_offsets.get(name)
        return None if local is None else self.start_str_off + local

    def add_str(self, name: str) -> int:
        """Offset of `name`, adding it to this blob's strings if neither it nor its base has it."""
        if name == "":
            return 0  # the empty string is at offset 0 of the first blob
        offset = self.find_str(name)
        if offset is None:
            offset = self.start_str_off + self._add_local_str(name)
        return offset

    def _add_local_str(self, name: str) -> int:
        local = len(self._strings)
        self._strings += name.encode() + b"\0"
        self._string_offsets[name] = local
        return local

    # -- records -----------------------------------------------------------

    def reserve(self) -> int:
        """An id for a type added later with `at=`, so a struct can point to itself."""
        self._records.append(None)
        return self.last_id

    def raw(
        self,
        kind: int,
        name: str = "",
        *,
        vlen: int = 0,
        kind_flag: bool = False,
        size_or_type: int = 0,
        extra: Iterable[int] = (),
        at: int | None = None,
    ) -> int:
        """Append (or fill a reserved id with) one struct btf_type plus its trailing u32 words."""
        info = (int(kind_flag) << 31) | (kind << 24) | vlen
        words = [self.add_str(name), info, size_or_type & _U32] + [w & _U32 for w in extra]
        if at is None:
            self._records.append(words)
            return self.last_id
        local = at - self.start_id
        if not 0 <= local < len(self._records) or self._records[local] is not None:
            raise ValueError(f"[{at}] is not a reserved, unfilled id")
        self._records[local] = words
        return at

    def int_(
        self,
        name: str,
        size: int,
        signed: bool = False,
        char: bool = False,
        bool_: bool = False,
        bits: int | None = None,
        offset: int = 0,
        *,
        at: int | None = None,
    ) -> int:
        """INT of `size` bytes; `bits` and `offset` (in bits) fill the encoding word."""
        encoding = (BTF_INT_SIGNED if signed else 0) | (BTF_INT_CHAR if char else 0) | (BTF_INT_BOOL if bool_ else 0)
        nr_bits = size * 8 if bits is None else bits
        word = (encoding << 24) | (offset << 16) | nr_bits
        return self.raw(Kind.INT, name, size_or_type=size, extra=[word], at=at)

    def ptr(self, type_id: int, *, at: int | None = None) -> int:
        return self.raw(Kind.PTR, size_or_type=type_id, at=at)

    def array(self, type_id: int, nelems: int, index_type_id: int | None = None, *, at: int | None = None) -> int:
        """ARRAY of `nelems`; the index type defaults to an "unsigned int", added if missing."""
        if index_type_id is None:
            index_type_id = self._find_or_add_index_type()
        return self.raw(Kind.ARRAY, extra=[type_id, index_type_id, nelems], at=at)

    def _find_or_add_index_type(self) -> int:
        builder: BTFBuilder | None = self
        name_off = self.find_str("unsigned int")
        while builder is not None and name_off is not None:
            for number, words in enumerate(builder._records):
                if words is not None and words[0] == name_off and words[1] >> 24 & 0x1F == Kind.INT:
                    return builder.start_id + number
            builder = builder.base
        return self.int_("unsigned int", 4)

    def struct(
        self,
        name: str,
        size: int,
        members: Sequence[Member],
        *,
        kind_flag: bool | None = None,
        at: int | None = None,
    ) -> int:
        """STRUCT of `size` bytes; member offsets are in bits from the struct's start.

        A member with a bitfield_size makes kind_flag 1 (offset word = bitfield_size << 24 | bit_offset).
        `kind_flag=False` forces the old encoding, where a bitfield is a member whose type is an
        int_(bits=...) and giving a bitfield_size is an error.
        """
        return self._composite(Kind.STRUCT, name, size, members, kind_flag, at)

    def union(
        self,
        name: str,
        size: int,
        members: Sequence[Member],
        *,
        kind_flag: bool | None = None,
        at: int | None = None,
    ) -> int:
        """UNION; members as for struct()."""
        return self._composite(Kind.UNION, name, size, members, kind_flag, at)

    def _composite(
        self,
        kind: Kind,
        name: str,
        size: int,
        members: Sequence[Member],
        kind_flag: bool | None,
        at: int | None,
    ) -> int:
        bitfield_sizes = [m[3] if len(m) == 4 else 0 for m in members]
        if kind_flag is None:
            kind_flag = any(bitfield_sizes)
        elif not kind_flag and any(bitfield_sizes):
            raise ValueError(f"{name or '(anon)'}: kind_flag=False has no bitfield_size; use an int_(bits=...) type")
        extra: list[int] = []
        for (member_name, type_id, bit_offset, *_), bitfield_size in zip(members, bitfield_sizes):
            if kind_flag:
                if bit_offset >= 1 << 24 or bitfield_size >= 1 << 8:
                    raise ValueError(f"{member_name}: offset {bit_offset} or bitfield size {bitfield_size} too large")
                offset_word = bitfield_size << 24 | bit_offset
            else:
                offset_word = bit_offset
            extra += [self.add_str(member_name), type_id, offset_word]
        return self.raw(kind, name, vlen=len(members), kind_flag=kind_flag, size_or_type=size, extra=extra, at=at)

    def enum(
        self,
        name: str,
        size: int,
        values: Sequence[tuple[str, int]],
        signed: bool = False,
        *,
        at: int | None = None,
    ) -> int:
        """ENUM with 32-bit values; kind_flag says the values are signed."""
        extra: list[int] = []
        for value_name, value in values:
            extra += [self.add_str(value_name), value]
        return self.raw(Kind.ENUM, name, vlen=len(values), kind_flag=signed, size_or_type=size, extra=extra, at=at)

    def enum64(
        self,
        name: str,
        size: int,
        values: Sequence[tuple[str, int]],
        signed: bool = False,
        *,
        at: int | None = None,
    ) -> int:
        """ENUM64: each value split into val_lo32 and val_hi32."""
        extra: list[int] = []
        for value_name, value in values:
            value &= (1 << 64) - 1
            extra += [self.add_str(value_name), value & _U32, value >> 32]
        return self.raw(Kind.ENUM64, name, vlen=len(values), kind_flag=signed, size_or_type=size, extra=extra, at=at)

    def fwd(self, name: str, union: bool = False, *, at: int | None = None) -> int:
        return self.raw(Kind.FWD, name, kind_flag=union, at=at)

    def typedef(self, name: str, type_id: int, *, at: int | None = None) -> int:
        return self.raw(Kind.TYPEDEF, name, size_or_type=type_id, at=at)

    def volatile(self, type_id: int, *, at: int | None = None) -> int:
        return self.raw(Kind.VOLATILE, size_or_type=type_id, at=at)

    def const(self, type_id: int, *, at: int | None = None) -> int:
        return self.raw(Kind.CONST, size_or_type=type_id, at=at)

    def restrict(self, type_id: int, *, at: int | None = None) -> int:
        return self.raw(Kind.RESTRICT, size_or_type=type_id, at=at)

    def type_tag(self, name: str, type_id: int, *, at: int | None = None) -> int:
        return self.raw(Kind.TYPE_TAG, name, size_or_type=type_id, at=at)

    def func_proto(
        self,
        ret_type_id: int,
        params: Sequence[tuple[str, int]],
        variadic: bool = False,
        *,
        at: int | None = None,
    ) -> int:
        """FUNC_PROTO; a param named "" is unnamed, and `variadic` adds the final {0, 0} entry for "..."."""
        extra: list[int] = []
        for param_name, type_id in params:
            extra += [self.add_str(param_name), type_id]
        if variadic:
            extra += [0, 0]
        vlen = len(params) + variadic
        return self.raw(Kind.FUNC_PROTO, vlen=vlen, size_or_type=ret_type_id, extra=extra, at=at)

    def func(self, name: str, proto_id: int, linkage: int = 1, *, at: int | None = None) -> int:
        """FUNC; the linkage (uapi FuncLinkage) goes in vlen."""
        return self.raw(Kind.FUNC, name, vlen=linkage, size_or_type=proto_id, at=at)

    def var(self, name: str, type_id: int, linkage: int = 1, *, at: int | None = None) -> int:
        return self.raw(Kind.VAR, name, size_or_type=type_id, extra=[linkage], at=at)

    def datasec(self, name: str, size: int, vars: Sequence[tuple[int, int, int]], *, at: int | None = None) -> int:
        """DATASEC of `size` bytes; `vars` are (var_type_id, offset, size) in bytes."""
        extra = [word for secinfo in vars for word in secinfo]
        return self.raw(Kind.DATASEC, name, vlen=len(vars), size_or_type=size, extra=extra, at=at)

    def float_(self, name: str, size: int, *, at: int | None = None) -> int:
        return self.raw(Kind.FLOAT, name, size_or_type=size, at=at)

    def decl_tag(self, name: str, type_id: int, component_idx: int = -1, *, at: int | None = None) -> int:
        """DECL_TAG on a type (component_idx -1) or on one of its members or params."""
        return self.raw(Kind.DECL_TAG, name, size_or_type=type_id, extra=[component_idx], at=at)

    # -- output ------------------------------------------------------------

    def to_bytes(self, byteorder: str = "little") -> bytes:
        """The blob: struct btf_header, then the type section, then the string section."""
        if self.base is not None and (
            self.start_id != self.base.next_id
            or self.start_str_off != self.base.start_str_off + len(self.base._strings)
        ):
            raise ValueError("the base grew after this split builder was made")
        unfilled = [self.start_id + n for n, words in enumerate(self._records) if words is None]
        if unfilled:
            raise ValueError(f"reserved ids never filled: {unfilled}")
        order = {"little": "<", "big": ">"}[byteorder]
        words = [word for record in self._records for word in record]  # type: ignore[union-attr]
        types = struct.pack(f"{order}{len(words)}I", *words)
        header = struct.pack(f"{order}HBBIIIII", BTF_MAGIC, 1, 0, 24, 0, len(types), len(types), len(self._strings))
        return header + types + bytes(self._strings)
