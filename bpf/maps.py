# SPDX-License-Identifier: GPL-2.0-only
"""BPF maps as context managers that own their fd: create, lookup, update, delete, iterate keys.

Keys and values are bytes of exactly key_size / value_size. Per-CPU maps read back one
value per possible CPU (the kernel pads each to 8 bytes).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import struct
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from . import syscall
from .fd import FdOwner
from .uapi import BPF_ANY, MapType

if TYPE_CHECKING:
    from .codegen import MapRole, MapSpec, Program

_PERCPU_TYPES = frozenset((MapType.PERCPU_ARRAY, MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH))


def parse_cpu_list(text: str) -> list[int]:
    """CPU numbers from a sysfs cpu list such as "0-3,8,10-11"."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


@functools.cache
def possible_cpus() -> tuple[int, ...]:
    """The possible CPUs, in the order per-CPU map values come back (/sys/devices/system/cpu/possible)."""
    with open("/sys/devices/system/cpu/possible") as f:
        return tuple(parse_cpu_list(f.read()))


def _round8(size: int) -> int:
    return (size + 7) & ~7


def element_value_size(map_type: int, value_size: int) -> int:
    """The bytes of one element's value as userspace (and a map element iterator) sees it: for a
    per-CPU map, one value per possible CPU, each padded to 8 bytes."""
    if map_type in _PERCPU_TYPES:
        return _round8(value_size) * len(possible_cpus())
    return value_size


class Map(FdOwner):
    """A BPF map owning its fd; close it (or leave the `with` block) to drop it.

    `fd` stays valid until close(); programs that reference the map keep it alive in the
    kernel after that. Raises OSError from BPF_MAP_CREATE (e.g. EINVAL for bad sizes).
    """

    _what = "map"

    def __init__(
        self,
        map_type: MapType,
        key_size: int,
        value_size: int,
        max_entries: int,
        *,
        map_flags: int = 0,
        name: str = "",
    ) -> None:
        self.map_type = MapType(map_type)
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.name = name
        self._fd = syscall.map_create(self.map_type, key_size, value_size, max_entries, map_flags, name)

    @classmethod
    def ringbuf(cls, size: int, name: str = "") -> Map:
        """A BPF_MAP_TYPE_RINGBUF of `size` data bytes (a power of 2 and a multiple of the page size)."""
        return cls(MapType.RINGBUF, 0, 0, size, name=name)

    def __repr__(self) -> str:
        return f"<Map {self.map_type.name} {self.name!r} {self._state}>"

    @property
    def is_percpu(self) -> bool:
        return self.map_type in _PERCPU_TYPES

    def _key(self, key: bytes) -> ctypes.Array[ctypes.c_char]:
        if len(key) != self.key_size:
            raise ValueError(f"key is {len(key)} bytes, map {self.name!r} takes {self.key_size}")
        return ctypes.create_string_buffer(key, len(key))

    def _value_buffer_size(self) -> int:
        return element_value_size(self.map_type, self.value_size)

    def lookup(self, key: bytes) -> bytes | None:
        """The value for `key`, or None if absent. On a per-CPU map use lookup_percpu()."""
        if self.is_percpu:
            raise TypeError("lookup() of a per-CPU map: use lookup_percpu()")
        value = ctypes.create_string_buffer(self.value_size)
        try:
            syscall.map_lookup_elem(self.fd, self._key(key), value)
        except FileNotFoundError:
            return None
        return value.raw

    def lookup_percpu(self, key: bytes) -> list[bytes] | None:
        """One value per possible CPU (in possible_cpus() order), or None if absent."""
        if not self.is_percpu:
            raise TypeError("lookup_percpu() of a map that is not per-CPU")
        value = ctypes.create_string_buffer(self._value_buffer_size())
        try:
            syscall.map_lookup_elem(self.fd, self._key(key), value)
        except FileNotFoundError:
            return None
        return self._per_cpu(value.raw)

    def _per_cpu(self, raw: bytes) -> list[bytes]:
        """One element's per-CPU values as the kernel lays them out: each rounded up to 8 bytes."""
        return [raw[i : i + self.value_size] for i in range(0, len(raw), _round8(self.value_size))]

    def lookup_all_percpu(self) -> dict[bytes, list[bytes]]:
        """Every element of a per-CPU map, key -> one value per possible CPU, read with
        BPF_MAP_LOOKUP_BATCH: one system call for an array's whole counters, where a glob's
        hundreds of keys one at a time cost a call each. (Batch lookup came in v5.6, before the
        ring buffer every trace needs.)"""
        element = self._value_buffer_size()
        found: dict[bytes, list[bytes]] = {}
        for keys, values, got in self._batches():
            for n in range(got):
                found[keys[n]] = self._per_cpu(values[n * element : (n + 1) * element])
        return found

    def sum_all_percpu(self) -> dict[bytes, int]:
        """Every element of a per-CPU map of one u64 each (a counter), key -> its sum over the
        CPUs. As lookup_all_percpu, without a list of bytes per key: a --metrics scrape reads
        10,000 keys."""
        if self.value_size != 8:
            raise TypeError(f"sum_all_percpu() of map {self.name!r}: its value is {self.value_size} bytes, not a u64")
        per_element = struct.Struct(f"={self._value_buffer_size() // 8}Q")
        found: dict[bytes, int] = {}
        for keys, values, got in self._batches():
            found.update(zip(keys, map(sum, per_element.iter_unpack(values[: got * per_element.size]))))
        return found

    def _batches(self) -> Iterator[tuple[list[bytes], bytes, int]]:
        """The whole per-CPU map in BPF_MAP_LOOKUP_BATCH batches: each batch's keys, its values
        (each element's per-CPU values, as lookup_percpu's buffer holds them) and how many."""
        if not self.is_percpu:
            raise TypeError("a whole-map lookup of a map that is not per-CPU")
        count = max(1, self.max_entries)
        keys = ctypes.create_string_buffer(self.key_size * count)
        values = ctypes.create_string_buffer(self._value_buffer_size() * count)
        out_batch = ctypes.create_string_buffer(max(self.key_size, 8))
        in_batch: ctypes.Array[ctypes.c_char] | None = None
        size = self.key_size
        while True:
            got, done = syscall.map_lookup_batch(self.fd, in_batch, out_batch, keys, values, count)
            raw_keys = keys.raw
            yield [raw_keys[n * size : (n + 1) * size] for n in range(got)], values.raw, got
            if done or got == 0:
                return
            in_batch = ctypes.create_string_buffer(out_batch.raw, len(out_batch))

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        """Set `key` to `value` (flags BPF_ANY, BPF_NOEXIST, BPF_EXIST from uapi).

        On a per-CPU map, `value` is value_size bytes given to every CPU.
        """
        if len(value) != self.value_size:
            raise ValueError(f"value is {len(value)} bytes, map {self.name!r} takes {self.value_size}")
        if self.is_percpu:
            padded = value.ljust(_round8(self.value_size), b"\0")
            value = padded * len(possible_cpus())
        syscall.map_update_elem(self.fd, self._key(key), ctypes.create_string_buffer(value, len(value)), flags)

    def delete(self, key: bytes) -> bool:
        """Remove `key`; False if it was not there. Array maps refuse with EINVAL."""
        try:
            syscall.map_delete_elem(self.fd, self._key(key))
        except FileNotFoundError:
            return False
        return True

    def iter_keys(self) -> Iterator[bytes]:
        """The keys, lazily (BPF_MAP_GET_NEXT_KEY). Keys deleted meanwhile may restart a hash walk."""
        key: ctypes.Array[ctypes.c_char] | None = None
        while True:
            next_key = ctypes.create_string_buffer(self.key_size)
            try:
                syscall.map_get_next_key(self.fd, key, next_key)
            except FileNotFoundError:
                return
            yield next_key.raw
            key = next_key


class MapCreationFailed(OSError):
    """BPF_MAP_CREATE refused a map a program needs: `spec` says which, the errno why."""

    def __init__(self, spec: MapSpec, error: OSError):
        super().__init__(error.errno, error.strerror)
        self.spec = spec


class ProgramMaps:
    """The maps of a set of generated programs, created once each as their MapSpecs share them."""

    def __init__(self, fds: list[dict[MapRole, int]], shared: dict[MapRole, Map]):
        self._fds = fds
        self._shared = shared

    def fds(self, program_index: int) -> dict[MapRole, int]:
        """Role -> fd of every map the program loads, for Program.bind_maps."""
        return self._fds[program_index]

    def fds_of(self, program_indices: Sequence[int]) -> dict[MapRole, int]:
        """Role -> fd of every map those programs load: for one program made of them (kprobe_multi's,
        whose branches share their maps)."""
        return {role: fd for index in program_indices for role, fd in self._fds[index].items()}

    def shared(self, role: MapRole) -> Map:
        """The one map of a role every program shares (the ring buffer, the drop counter...)."""
        return self._shared[role]


def create_maps(stack: contextlib.ExitStack, programs: Sequence[Program]) -> ProgramMaps:
    """Create what the programs' MapSpecs ask for, each map entering `stack`: one per plan, per
    fentry/fexit pair or per program, as the spec's Sharing says. Two specs of one shared map
    must agree (a generator bug otherwise: ValueError). MapCreationFailed names the spec refused."""
    from .codegen import Sharing

    made: dict[tuple[object, ...], tuple[MapSpec, Map]] = {}
    shared: dict[MapRole, Map] = {}
    fds: list[dict[MapRole, int]] = []
    for index, program in enumerate(programs):
        mine: dict[MapRole, int] = {}
        for spec in program.maps:
            key: tuple[object, ...] = (spec.role,)
            if spec.sharing is Sharing.PAIR:
                key = (spec.role, spec.group)
            elif spec.sharing is Sharing.MULTI:
                key = (spec.role, "multi", spec.group)
            elif spec.sharing is Sharing.PROGRAM:
                key = (spec.role, "program", index)
            if key in made:
                if made[key][0] != spec:
                    raise ValueError(f"programs disagree on the {spec.role.value} map: {made[key][0]} and {spec}")
            else:
                try:
                    made[key] = (
                        spec,
                        stack.enter_context(
                            Map(
                                spec.map_type,
                                spec.key_size,
                                spec.value_size,
                                spec.max_entries,
                                map_flags=spec.flags,
                                name=spec.name,
                            )
                        ),
                    )
                except OSError as error:
                    raise MapCreationFailed(spec, error) from None
                if spec.sharing is Sharing.PLAN:
                    shared[spec.role] = made[key][1]
            mine[spec.role] = made[key][1].fd
        fds.append(mine)
    return ProgramMaps(fds, shared)


def map_fd_by_id(map_id: int) -> int:
    """An fd of the map with id `map_id` (the caller closes it). FileNotFoundError for an id no map
    has, PermissionError without CAP_SYS_ADMIN."""
    return syscall.map_get_fd_by_id(map_id)


def map_shape(fd: int) -> tuple[int, int, int]:
    """(type, key size, value size) of the map `fd` refers to (the type as a number: it may be
    newer than MapType)."""
    info = syscall.bpf_map_info()
    syscall.obj_get_info_by_fd(fd, info)
    return int(info.type), int(info.key_size), int(info.value_size)
