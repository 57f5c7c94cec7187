# SPDX-License-Identifier: GPL-2.0-only
"""A small BPF interpreter for unit tests: runs a generated program over memory the test lays out.

It knows the instructions and helpers the templates use and checks what the verifier would
(a register read before it is written or after a call clobbered it, stack read before it is
written, a jump out of the program, memory outside every region), so a wrong offset, shift or
jump shows up as a wrong record or a VMError rather than only on a live kernel. Helpers act as
the kernel's do, including the zero fill of a failed probe-read's destination.

One VM is one CPU: its per-CPU maps hold this CPU's values (tests/support/memring.PerCPUArray
reads several VMs back as one map's CPUs). The aggregation maps take their key size, value size
and capacity from the MapSpecs of the programs run (bpf.codegen.Program.maps), as the kernel's
maps would be created from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from bpf import uapi
from bpf.codegen import MapRole, MapSpec, Program
from bpf.insn import Insn
from bpf.plan import COUNTERS, COUNTERS_SIZE
from bpf.uapi import Helper

MASK64 = (1 << 64) - 1
EFAULT, ENOSPC, EEXIST, E2BIG = 14, 28, 17, 7
CTX_BASE = 0x1000_0000
STACK_SIZE = 512
STACK_BASE = 0x7FFF_0000
RECORD_BASE = 0x5000_0000
MAP_BASE = 0x4000_0000
MAP_VALUE_BASE = 0x3000_0000
MAX_STEPS = 100_000
_FDS = {
    MapRole.EVENTS: 1,
    MapRole.DROPS: 2,
    MapRole.STASH: 3,
    MapRole.SCRATCH: 4,
    MapRole.COUNTS: 5,
    MapRole.PATH: 6,
    MapRole.PATH_ZERO: 7,
    MapRole.AGGREGATE: 8,
    MapRole.AGGREGATE_DROPS: 9,
    MapRole.AGGREGATE_OVERFLOW: 10,
    MapRole.TEXT: 11,
    MapRole.GRAPH_ROOTS: 12,
}
# Maps keyed by a u64 (pid_tgid); the others are arrays, keyed by a u32 index.
_U64_KEYS = (MapRole.STASH, MapRole.PATH)
_ARRAYS = (MapRole.DROPS, MapRole.SCRATCH, MapRole.COUNTS, MapRole.PATH_ZERO)
# Maps made as a program's MapSpec says (key and value size, capacity, array or hash) when a
# program that uses one first runs; the other roles' sizes are the VM's arguments.
_FROM_SPEC = (MapRole.AGGREGATE, MapRole.AGGREGATE_DROPS, MapRole.AGGREGATE_OVERFLOW, MapRole.TEXT, MapRole.GRAPH_ROOTS)
_ARRAY_TYPES = (uapi.MapType.ARRAY, uapi.MapType.PERCPU_ARRAY)


class VMError(AssertionError):
    """Something the verifier would refuse, or a crash: the program is wrong."""


def s64(value: int) -> int:
    value &= MASK64
    return value - (1 << 64) if value >> 63 else value


def sext32(imm: int) -> int:
    return imm & MASK64  # imm is already a signed s32; masking gives its 64-bit sign extension


@dataclass
class _Region:
    base: int
    data: bytearray
    writable: bool
    initialized: Optional[bytearray] = None  # the stack: which bytes were written


@dataclass
class _MapState:
    role: MapRole
    value_size: int
    values: Dict[bytes, int] = field(default_factory=dict)  # key -> address of the value region
    # From a MapSpec (_FROM_SPEC): the key size, the entries it holds (an insert beyond them fails
    # with -E2BIG; an array's index must be below it), whether it is an array; else None.
    spec: Optional[MapSpec] = None


@dataclass
class Run:
    """What one run of a program left behind."""

    records: List[bytes]
    drops: int
    stash: Dict[bytes, bytes]
    r0: int
    helpers: List[int]  # helper ids in call order


class VM:
    """Memory and kernel state one program runs against; reusable across runs (the maps persist)."""

    def __init__(
        self,
        memory: Mapping[int, bytes] = (),
        *,
        pid_tgid: int = (4242 << 32) | 4243,
        comm: bytes = b"curl",
        cpu: int = 1,
        ktime: int = 1_000_000,
        ringbuf_room: Optional[int] = None,
        stash_value_size: int = 8,
        scratch_value_size: int = 8,
        path_value_size: int = 8,
        path_room: Optional[int] = None,
        user_memory: Mapping[int, bytes] = (),
        comm_pads: bool = True,
        uid_gid: int = 0,
        cgroup_ancestors: Sequence[int] = (1,),
        kstack: Sequence[int] = (),
        kstack_error: int = 0,
        ringbuf_backlog: int = 0,
    ):
        self.kernel = [_Region(base, bytearray(data), False) for base, data in dict(memory).items()]
        self.user = [_Region(base, bytearray(data), False) for base, data in dict(user_memory).items()]
        self.pid_tgid, self.comm, self.cpu, self.ktime = pid_tgid, comm, cpu, ktime
        # bpf_get_current_comm pads with NULs, except on kernels 5.19 to 6.3 (strscpy, not strscpy_pad).
        self.comm_pads = comm_pads
        # bpf_get_current_uid_gid: gid << 32 | uid. The task's cgroup v2 and its ancestors, as ids
        # from the root (level 0) down to its own cgroup.
        self.uid_gid, self.cgroup_ancestors = uid_gid, tuple(cgroup_ancestors)
        # What bpf_get_stack finds: these return addresses, innermost first, or this errno.
        self.kstack, self.kstack_error = tuple(kstack), kstack_error
        self.ringbuf_room = ringbuf_room  # records the ringbuf takes before it is full; None: unlimited
        # What bpf_ringbuf_query(BPF_RB_AVAIL_DATA) answers, and the flags each submit was given.
        self.ringbuf_backlog = ringbuf_backlog
        self.submit_flags: List[int] = []
        self.maps = {
            _FDS[MapRole.DROPS]: _MapState(MapRole.DROPS, 8),
            _FDS[MapRole.STASH]: _MapState(MapRole.STASH, stash_value_size),
            _FDS[MapRole.SCRATCH]: _MapState(MapRole.SCRATCH, scratch_value_size),
            _FDS[MapRole.COUNTS]: _MapState(MapRole.COUNTS, COUNTERS_SIZE),
            _FDS[MapRole.PATH]: _MapState(MapRole.PATH, path_value_size),
            _FDS[MapRole.PATH_ZERO]: _MapState(MapRole.PATH_ZERO, path_value_size),
        }
        self.path_room = path_room  # tasks the path map takes before it is full; None: unlimited
        # Aggregation mode: this many of the next lookups in the aggregate hash that miss find
        # another CPU making the key just then (it exists, this CPU's count 0, when the program
        # tries to insert it): the race AGGREGATE_INSERT's `raced` path is for.
        self.aggregate_races = 0
        self.map_regions: List[_Region] = []
        self.records: List[bytes] = []

    def path_states(self) -> Dict[bytes, bytes]:
        """Call-path mode: pid_tgid (8 bytes) -> the task's path state, for every task that has one."""
        m = self.maps[_FDS[MapRole.PATH]]
        return {k: self._read(a, m.value_size) for k, a in m.values.items()}

    def aggregate_counts(self) -> Dict[bytes, int]:
        """Aggregation mode: key bytes -> this CPU's count, for every key in the aggregate hash."""
        return {key: int.from_bytes(value, "little") for key, value in self._values(MapRole.AGGREGATE).items()}

    def aggregate_drops(self) -> Tuple[int, int]:
        """Aggregation mode: (calls, distinct keys) this CPU counted as dropped by a full hash."""
        value = self._values(MapRole.AGGREGATE_DROPS).get(bytes(4), bytes(16))
        return int.from_bytes(value[:8], "little"), int.from_bytes(value[8:16], "little")

    def overflow_keys(self) -> List[bytes]:
        """Aggregation mode: the keys the overflow hash took (those a full hash dropped), in order."""
        return list(self._values(MapRole.AGGREGATE_OVERFLOW))

    def map_spec(self, role: MapRole) -> Optional[MapSpec]:
        """The MapSpec a map of `role` was made from (None: not made yet, or not from a spec)."""
        m = self.maps.get(_FDS[role])
        return m.spec if m is not None else None

    def _values(self, role: MapRole) -> Dict[bytes, bytes]:
        m = self.maps.get(_FDS[role])
        if m is None:
            return {}
        return {k: self._read(a, m.value_size) for k, a in m.values.items()}

    def counters(self, key: int) -> Tuple[int, ...]:
        """Summary mode: slot `key` of the counts map (calls, errors, the buckets), zeros if untouched."""
        address = self.maps[_FDS[MapRole.COUNTS]].values.get(key.to_bytes(4, "little"))
        return COUNTERS.unpack(bytes(COUNTERS_SIZE) if address is None else self._read(address, COUNTERS_SIZE))

    # ---- running ------------------------------------------------------------------------------
    # The BTF id kfunc calls to bpf_session_is_return carry (a kprobe session program's).
    session_is_return_id = 4242

    def run(self, program: Program, ctx: Sequence[int], cookie: int = 0, returning: bool = False) -> Run:
        """Run `program` on a context of u64s (`ctx`); bpf_get_attach_cookie gives `cookie`, and
        the kfunc bpf_session_is_return `returning`."""
        self._cookie = cookie
        self._returning = returning
        self._make_maps(program)
        insns = program.bind_maps(_FDS)
        self._ctx = _Region(CTX_BASE, bytearray(b"".join((v & MASK64).to_bytes(8, "little") for v in ctx)), False)
        self._stack = _Region(STACK_BASE, bytearray(STACK_SIZE), True, bytearray(STACK_SIZE))
        self._reserved: List[_Region] = []
        self._helpers: List[int] = []
        regs: List[Optional[int]] = [None] * 11
        regs[1], regs[10] = CTX_BASE, STACK_BASE + STACK_SIZE
        pc = 0
        for _ in range(MAX_STEPS):
            if not 0 <= pc < len(insns):
                raise VMError(f"pc {pc} is outside the program ({len(insns)} slots)")
            insn = insns[pc]
            pc = self._step(insns, pc, insn, regs)
            if pc < 0:
                drops = self.maps[_FDS[MapRole.DROPS]].values.get(b"\0\0\0\0")
                count = int.from_bytes(self._read(drops, 8), "little") if drops is not None else 0
                stash = {
                    k: self._read(a, self.maps[_FDS[MapRole.STASH]].value_size)
                    for k, a in self.maps[_FDS[MapRole.STASH]].values.items()
                }
                if self._reserved:
                    raise VMError("exit with a reserved record neither submitted nor discarded")
                return Run(list(self.records), count, stash, regs[0] or 0, self._helpers)
        raise VMError(f"no exit after {MAX_STEPS} steps: a loop")

    def _make_maps(self, program: Program) -> None:
        """The maps of _FROM_SPEC roles that `program` uses, made from its MapSpecs at its first
        run; a later program's spec of the same map must agree, as one map serves the plan."""
        for spec in program.maps:
            if spec.role not in _FROM_SPEC:
                continue
            fd = _FDS[spec.role]
            made = self.maps.get(fd)
            if made is None:
                self.maps[fd] = _MapState(spec.role, spec.value_size, spec=spec)
            elif made.spec != spec:
                raise VMError(f"{program.name}: map {spec.role.value} is {made.spec}, but this program wants {spec}")

    def _reg(self, regs: List[Optional[int]], n: int) -> int:
        value = regs[n]
        if value is None:
            raise VMError(f"r{n} read before it was written")
        return value

    def _step(self, insns: Sequence[Insn], pc: int, insn: Insn, regs: List[Optional[int]]) -> int:
        cls, op, code = insn.code & 0x07, insn.code & 0xF0, insn.code
        if cls == uapi.BPF_ALU64:
            if insn.dst == 10:
                raise VMError(f"{pc}: r10 is read-only")
            src = self._reg(regs, insn.src) if code & uapi.BPF_X else sext32(insn.imm)
            dst = 0 if op == uapi.BPF_MOV else self._reg(regs, insn.dst)
            regs[insn.dst] = _alu64(op, dst, src, pc)
            return pc + 1
        if cls == uapi.BPF_LDX:
            if code & 0xE0 != uapi.BPF_MEM:
                raise VMError(f"{pc}: unknown load {code:#x}")
            size = _SIZES[code & 0x18]
            addr = (self._reg(regs, insn.src) + insn.off) & MASK64
            regs[insn.dst] = int.from_bytes(self._read(addr, size, direct=True), "little")
            return pc + 1
        if cls == uapi.BPF_STX and code & 0xE0 == uapi.BPF_ATOMIC:
            if insn.imm != uapi.BPF_ADD:  # only the plain add (no fetch) is generated
                raise VMError(f"{pc}: unknown atomic operation {insn.imm:#x}")
            size = _SIZES[code & 0x18]
            addr = (self._reg(regs, insn.dst) + insn.off) & MASK64
            old = int.from_bytes(self._read(addr, size, direct=True), "little")
            added = (old + self._reg(regs, insn.src)) & ((1 << 8 * size) - 1)
            self._write(addr, added.to_bytes(size, "little"))
            return pc + 1
        if cls in (uapi.BPF_STX, uapi.BPF_ST):
            if code & 0xE0 != uapi.BPF_MEM:
                raise VMError(f"{pc}: unknown store {code:#x}")
            size = _SIZES[code & 0x18]
            value = self._reg(regs, insn.src) if cls == uapi.BPF_STX else sext32(insn.imm)
            addr = (self._reg(regs, insn.dst) + insn.off) & MASK64
            self._write(addr, (value & ((1 << 8 * size) - 1)).to_bytes(size, "little"))
            return pc + 1
        if cls == uapi.BPF_LD:
            if not insn.is_ld_imm64 or pc + 1 >= len(insns):
                raise VMError(f"{pc}: unknown or cut ld {code:#x}")
            if insn.src == uapi.BPF_PSEUDO_MAP_FD:
                regs[insn.dst] = MAP_BASE + insn.imm
            elif insn.src == 0:
                regs[insn.dst] = (insn.imm & 0xFFFFFFFF) | (insns[pc + 1].imm & 0xFFFFFFFF) << 32
            else:
                raise VMError(f"{pc}: ld_imm64 with src {insn.src}")
            return pc + 2
        if cls == uapi.BPF_JMP32:  # conditional jumps on the low 32 bits (no call, exit or ja)
            a = self._reg(regs, insn.dst) & 0xFFFFFFFF
            b = (self._reg(regs, insn.src) if code & uapi.BPF_X else insn.imm) & 0xFFFFFFFF
            return self._target(insns, pc, insn) if _jump_taken(op, a, b, pc, bits=32) else pc + 1
        if cls != uapi.BPF_JMP:
            raise VMError(f"{pc}: instruction class {cls} not modelled")
        if code == uapi.BPF_JMP | uapi.BPF_EXIT:
            self._reg(regs, 0)
            return -1
        if code == uapi.BPF_JMP | uapi.BPF_CALL and insn.src == uapi.BPF_PSEUDO_KFUNC_CALL:
            if insn.imm != self.session_is_return_id:
                raise VMError(f"{pc}: a kfunc call to BTF id {insn.imm}, not bpf_session_is_return's")
            regs[0] = int(self._returning)
            for n in range(1, 6):
                regs[n] = None
            return pc + 1
        if code == uapi.BPF_JMP | uapi.BPF_CALL:
            args = [regs[n] for n in range(1, 6)]
            regs[0] = self._call(insn.imm, args, pc) & MASK64
            for n in range(1, 6):
                regs[n] = None
            return pc + 1
        if code == uapi.BPF_JMP | uapi.BPF_JA:
            return self._target(insns, pc, insn)
        a = self._reg(regs, insn.dst)
        b = self._reg(regs, insn.src) if code & uapi.BPF_X else sext32(insn.imm)
        return self._target(insns, pc, insn) if _jump_taken(op, a, b, pc) else pc + 1

    def _target(self, insns: Sequence[Insn], pc: int, insn: Insn) -> int:
        target = pc + insn.off + 1
        if not 0 <= target < len(insns) or target == pc:
            raise VMError(f"{pc}: jump to {target}, outside the program or to itself")
        if target > 0 and insns[target - 1].is_ld_imm64 and _is_pair_start(insns, target - 1):
            raise VMError(f"{pc}: jump into the middle of the ld_imm64 at {target - 1}")
        return target

    # ---- memory -------------------------------------------------------------------------------
    def _regions(self, direct: bool) -> List[_Region]:
        # Direct loads and stores reach the ctx, the stack, reserved records and map values;
        # kernel memory only through probe-read helpers.
        return [self._ctx, self._stack, *self._reserved, *self.map_regions]

    def _find(self, addr: int, size: int, regions: Sequence[_Region]) -> Optional[Tuple[_Region, int]]:
        for region in regions:
            off = addr - region.base
            if 0 <= off and off + size <= len(region.data):
                return region, off
        return None

    def _read(self, addr: int, size: int, direct: bool = False) -> bytes:
        found = self._find(addr, size, self._regions(direct))
        if found is None:
            raise VMError(f"load of {size} bytes at {addr:#x}: no such memory")
        region, off = found
        if region.initialized is not None and not all(region.initialized[off : off + size]):
            raise VMError(f"stack read at {off - STACK_SIZE} before it was written")
        return bytes(region.data[off : off + size])

    def _write(self, addr: int, data: bytes) -> None:
        found = self._find(addr, len(data), self._regions(True))
        if found is None or not found[0].writable:
            raise VMError(f"store of {len(data)} bytes at {addr:#x}: no writable memory there")
        region, off = found
        region.data[off : off + len(data)] = data
        if region.initialized is not None:
            region.initialized[off : off + len(data)] = b"\1" * len(data)

    def _probe(self, addr: int, size: int, user: bool) -> Optional[bytes]:
        found = self._find(addr, size, self.user if user else self.kernel)
        return None if found is None else bytes(found[0].data[found[1] : found[1] + size])

    def _probe_str(self, addr: int, size: int, user: bool) -> Optional[bytes]:
        out = bytearray()
        while len(out) < size - 1:
            byte = self._probe(addr + len(out), 1, user)
            if byte is None:
                return None if not out else bytes(out) + b"\0"  # the kernel stops at the fault
            if byte == b"\0":
                break
            out += byte
        return bytes(out) + b"\0"

    # ---- helpers ------------------------------------------------------------------------------
    def _map(self, value: Optional[int], pc: int) -> _MapState:
        if value is None or value - MAP_BASE not in (*self.maps, _FDS[MapRole.EVENTS]):
            raise VMError(f"{pc}: r1 is not a map")
        fd = value - MAP_BASE
        if fd == _FDS[MapRole.EVENTS]:
            raise VMError(f"{pc}: the ringbuf passed where a map with values was wanted")
        return self.maps[fd]

    def _arg(self, args: List[Optional[int]], n: int, pc: int) -> int:
        value = args[n - 1]
        if value is None:
            raise VMError(f"{pc}: helper argument r{n} not set")
        return value

    def _call(self, helper: int, args: List[Optional[int]], pc: int) -> int:
        self._helpers.append(helper)
        a = lambda n: self._arg(args, n, pc)
        if helper == Helper.ktime_get_ns:
            self.ktime += 1000
            return self.ktime
        if helper == Helper.get_current_pid_tgid:
            return self.pid_tgid
        if helper == Helper.get_attach_cookie:
            if a(1) != CTX_BASE:
                raise VMError(f"{pc}: bpf_get_attach_cookie wants the context, got {a(1):#x}")
            return self._cookie
        if helper == Helper.get_smp_processor_id:
            return self.cpu
        if helper == Helper.get_current_uid_gid:
            return self.uid_gid
        if helper == Helper.get_current_ancestor_cgroup_id:
            level = a(1)
            return self.cgroup_ancestors[level] if level < len(self.cgroup_ancestors) else 0
        if helper == Helper.get_current_comm:
            comm = self.comm[: a(2) - 1] + b"\0"
            self._write(a(1), comm.ljust(a(2), b"\0") if self.comm_pads else comm)
            return 0
        if helper in (Helper.probe_read_kernel, Helper.probe_read_user):
            data = self._probe(a(3), a(2), helper == Helper.probe_read_user)
            self._write(a(1), data if data is not None else bytes(a(2)))
            return 0 if data is not None else -EFAULT
        if helper in (Helper.probe_read_kernel_str, Helper.probe_read_user_str):
            data = self._probe_str(a(3), a(2), helper == Helper.probe_read_user_str)
            if data is None:
                self._write(a(1), bytes(a(2)))
                return -EFAULT
            self._write(a(1), data)
            return len(data)
        if helper == Helper.get_stack:
            if a(1) != CTX_BASE:
                raise VMError(f"{pc}: get_stack wants the program's ctx in r1")
            size, flags = a(3), a(4)
            if flags != 0:
                raise VMError(f"{pc}: get_stack flags {flags:#x}: only a kernel stack is modelled")
            if self.kstack_error:  # the kernel zeroes the whole buffer on failure
                self._write(a(2), bytes(size))
                return -self.kstack_error
            data = b"".join(address.to_bytes(8, "little") for address in self.kstack)[: size - size % 8]
            self._write(a(2), data.ljust(size, b"\0"))
            return len(data)
        if helper == Helper.ringbuf_reserve:
            if a(1) != MAP_BASE + _FDS[MapRole.EVENTS]:
                raise VMError(f"{pc}: ringbuf_reserve on something not the events ringbuf")
            if not self._ringbuf_take():
                return 0
            region = _Region(
                RECORD_BASE + 0x10000 * (len(self.records) + len(self._reserved) + 1),
                bytearray(b"\xa5" * a(2)),
                True,
            )  # not zeroed, as the kernel's isn't
            self._reserved.append(region)
            return region.base
        if helper == Helper.ringbuf_submit:
            region = next((r for r in self._reserved if r.base == a(1)), None)
            if region is None:
                raise VMError(f"{pc}: ringbuf_submit of something not reserved")
            self._reserved.remove(region)
            self.records.append(bytes(region.data))
            self.submit_flags.append(a(2))
            return 0
        if helper == Helper.ringbuf_output:
            if a(1) != MAP_BASE + _FDS[MapRole.EVENTS]:
                raise VMError(f"{pc}: ringbuf_output on something not the events ringbuf")
            data = self._read(a(2), a(3))
            if not self._ringbuf_take():
                return -ENOSPC
            self.records.append(data)
            return 0
        if helper == Helper.ringbuf_query:
            a(1)
            if a(2) != uapi.BPF_RB_AVAIL_DATA:
                raise VMError(f"{pc}: ringbuf_query for something other than BPF_RB_AVAIL_DATA")
            return self.ringbuf_backlog
        if helper == Helper.map_lookup_elem:
            m = self._map(args[0], pc)
            key = self._key(m, a(2))
            if self._is_array(m) and key not in m.values:
                if m.spec is not None and int.from_bytes(key, "little") >= m.spec.max_entries:
                    return 0  # an index past the array's end
                m.values[key] = self._new_value(m)  # an array: every index exists
            if m.role is MapRole.AGGREGATE and key not in m.values and self.aggregate_races > 0:
                self.aggregate_races -= 1
                m.values[key] = self._new_value(m)  # another CPU makes it; this CPU's count is 0
                return 0  # ... but only after this lookup missed
            return m.values.get(key, 0)
        if helper == Helper.map_update_elem:
            m = self._map(args[0], pc)
            key = self._key(m, a(2))
            value = self._read(a(3), m.value_size)
            flags = a(4)
            if flags == uapi.BPF_NOEXIST and key in m.values:
                return -EEXIST
            if flags == uapi.BPF_EXIST and key not in m.values:
                return -2
            if key not in m.values:
                if m.role is MapRole.PATH and self.path_room is not None and len(m.values) >= self.path_room:
                    return -E2BIG
                if m.spec is not None and self._is_array(m):
                    if int.from_bytes(key, "little") >= m.spec.max_entries:
                        return -E2BIG  # an index past the array's end
                elif m.spec is not None and len(m.values) >= m.spec.max_entries:
                    return -E2BIG  # a full hash: preallocated or not, the kernel says E2BIG
                m.values[key] = self._new_value(m)
            self._write(m.values[key], value)
            return 0
        if helper == Helper.map_delete_elem:
            m = self._map(args[0], pc)
            return 0 if m.values.pop(self._key(m, a(2)), None) is not None else -2
        raise VMError(f"{pc}: helper {helper} not modelled")

    def _ringbuf_take(self) -> bool:
        if self.ringbuf_room is None:
            return True
        if self.ringbuf_room <= 0:
            return False
        self.ringbuf_room -= 1
        return True

    def _key(self, m: _MapState, addr: int) -> bytes:
        if m.spec is not None:
            return self._read(addr, m.spec.key_size)
        return self._read(addr, 8 if m.role in _U64_KEYS else 4)

    @staticmethod
    def _is_array(m: _MapState) -> bool:
        return m.spec.map_type in _ARRAY_TYPES if m.spec is not None else m.role in _ARRAYS

    def _new_value(self, m: _MapState) -> int:
        region = _Region(MAP_VALUE_BASE + 0x10000 * (len(self.map_regions) + 1), bytearray(m.value_size), True)
        self.map_regions.append(region)
        return region.base


_SIZES = {uapi.BPF_B: 1, uapi.BPF_H: 2, uapi.BPF_W: 4, uapi.BPF_DW: 8}


def _is_pair_start(insns: Sequence[Insn], index: int) -> bool:
    # Walk from the start: slot `index` begins an ld_imm64 pair only if it is not itself a second half.
    pc = 0
    while pc < index:
        pc += 2 if insns[pc].is_ld_imm64 else 1
    return pc == index


def _alu64(op: int, dst: int, src: int, pc: int) -> int:
    if op == uapi.BPF_MOV:
        return src & MASK64
    if op == uapi.BPF_ADD:
        return (dst + src) & MASK64
    if op == uapi.BPF_SUB:
        return (dst - src) & MASK64
    if op == uapi.BPF_OR:
        return dst | src
    if op == uapi.BPF_AND:
        return dst & src
    if op == uapi.BPF_XOR:
        return dst ^ src
    if op in (uapi.BPF_LSH, uapi.BPF_RSH, uapi.BPF_ARSH):
        if not 0 <= src < 64:
            raise VMError(f"{pc}: shift by {src}")
        if op == uapi.BPF_LSH:
            return (dst << src) & MASK64
        if op == uapi.BPF_RSH:
            return dst >> src
        return (s64(dst) >> src) & MASK64
    raise VMError(f"{pc}: ALU op {op:#x} not modelled")


def _jump_taken(op: int, a: int, b: int, pc: int, bits: int = 64) -> bool:
    mask = (1 << bits) - 1
    a, b = a & mask, b & mask
    sa, sb = (a - (1 << bits) if a >> (bits - 1) else a), (b - (1 << bits) if b >> (bits - 1) else b)
    table = {
        uapi.BPF_JEQ: a == b,
        uapi.BPF_JNE: a != b,
        uapi.BPF_JGT: a > b,
        uapi.BPF_JGE: a >= b,
        uapi.BPF_JLT: a < b,
        uapi.BPF_JLE: a <= b,
        uapi.BPF_JSGT: sa > sb,
        uapi.BPF_JSGE: sa >= sb,
        uapi.BPF_JSLT: sa < sb,
        uapi.BPF_JSLE: sa <= sb,
        uapi.BPF_JSET: bool(a & b),
    }
    if op not in table:
        raise VMError(f"{pc}: jump op {op:#x} not modelled")
    return table[op]
