# SPDX-License-Identifier: GPL-2.0-only
"""The plan: plain data the resolver fills in from BTF and the code generator turns into BPF.

Everything here is numbers (context slots, offsets, sizes, constants); bpf/ never sees a BTF
object. RecordLayout is the one place a record's byte offsets are defined: the generated
program writes records by it and the decoder reads them by it.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from functools import cached_property
from typing import Dict, List, Optional, Tuple, Union

# A whole struct copied into a record is cut at this size, and the cut is flagged.
MAX_CAPTURE_SIZE = 4096
# The failed-read mask is one u64 in the header.
MAX_CAPTURES = 64
# String predicates compare in a stack buffer of this size (the literal plus its NUL).
MAX_STRING_PREDICATE = 128
COMM_SIZE = 16  # TASK_COMM_LEN
# Kernel stacks: frames a record holds unless told otherwise, and at most (the default of the
# kernel.perf_event_max_stack sysctl, PERF_MAX_STACK_DEPTH, which bpf_get_stack also obeys).
DEFAULT_KSTACK_DEPTH = 32
MAX_KSTACK_DEPTH = 127


class ProbeKind(enum.Enum):
    FENTRY = "fentry"
    FEXIT = "fexit"
    TP_BTF = "tp_btf"
    # A BPF iterator program (`ksnoop dump`): run once per kernel object, its context a struct
    # bpf_iter__<target> whose u64 slots hold the object's pointers and scalars; records go to the
    # iterator's seq_file (bpf_seq_write), not the ring buffer.
    ITER = "iter"
    # Where fentry is missing: a kprobe (entry) or kretprobe (return) program, its context the
    # struct pt_regs at that moment; arguments and the return value are read from the registers
    # the calling convention puts them in (Probe.context_offsets).
    KPROBE = "kprobe"
    KRETPROBE = "kretprobe"

    @property
    def is_entry(self) -> bool:
        """A function's entry: fentry or kprobe."""
        return self in (ProbeKind.FENTRY, ProbeKind.KPROBE)

    @property
    def is_return(self) -> bool:
        """A function's return: fexit or kretprobe."""
        return self in (ProbeKind.FEXIT, ProbeKind.KRETPROBE)

    @property
    def return_kind(self) -> "ProbeKind":
        """The return side of an entry kind (fentry -> fexit, kprobe -> kretprobe)."""
        return {ProbeKind.FENTRY: ProbeKind.FEXIT, ProbeKind.KPROBE: ProbeKind.KRETPROBE}[self]


class CompareOp(enum.Enum):
    EQ = "=="
    NE = "!="
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="


@dataclass(frozen=True)
class Predicate:
    """Keep the event only if `value <op> constant`. A bytes constant compares a string
    (char array or char pointer) for equality up to and including its terminating NUL."""

    op: CompareOp
    constant: Union[int, bytes]
    signed: bool = False


@dataclass(frozen=True)
class Bitfield:
    bit_offset: int  # within the `size` bytes read, counted as the target's compiler counts them
    bit_size: int


@dataclass(frozen=True)
class Capture:
    """One value to read: from context slot `slot`, follow `hops`, then read `size` bytes.

    If `in_memory` is False the value is the slot itself (an argument or the return value).
    Otherwise the slot holds a pointer: for each offset in `hops`, load the pointer stored
    at that offset and follow it; then read `size` bytes at `offset` (a NUL-terminated
    string of at most `size` bytes if `string`).
    """

    label: str  # the expression as the user wrote it, for display only
    slot: int
    hops: Tuple[int, ...] = ()
    in_memory: bool = False
    offset: int = 0
    size: int = 8
    bitfield: Optional[Bitfield] = None
    string: bool = False
    user_memory: bool = False  # the final read is of user memory (a __user pointer)
    full_size: int = 0  # the value's real size when `size` was capped below it; 0 if not capped
    type_id: int = 0  # the value's BTF type, for the decoder; the generator ignores it
    # The slot holds a pointer to something the verifier will not type (an enum, a pointer, a
    # function...): it refuses a direct load from the context, so the slot is copied out instead.
    opaque_slot: bool = False
    # A struct followed from a pointer: the record holds that address (a u64) before the struct's
    # bytes, for the output to say where the struct is, as upstream ksnoop does.
    address: bool = False

    @property
    def truncated(self) -> bool:
        return self.full_size > self.size

    @property
    def record_size(self) -> int:
        """The bytes the capture takes in a record: its value's, after the address if it has one."""
        return self.size + 8 if self.address else self.size


@dataclass(frozen=True)
class Test:
    """A predicate on a value: the event is dropped, before anything is copied, unless it holds."""

    value: Capture
    predicate: Predicate


class Stash(enum.Enum):
    """What an fentry probe leaves, per task, for the fexit probe of the same function."""

    NONE = "none"  # no fexit pair
    TIME = "time"  # the entry's ktime, so the return record carries duration_ns
    RECORD = "record"  # the whole entry record, emitted by fexit only if its tests pass


@dataclass(frozen=True)
class Count:
    """Summary mode: the probe adds to its function's counters instead of writing a record.

    Counters are slot `key` of a PERCPU_ARRAY of COUNTERS values: calls, errors, then one log2
    bucket per bit of a duration in ns (bucket 0 holds 0 and 1 ns, bucket k [2**k, 2**(k+1)))."""

    key: int
    # The return value, counted as an error when negative: a signed integer in a register.
    errors: Optional[Capture] = None
    latency: bool = False  # bucket the time since the stashed entry (an fexit with Stash.TIME)


class Builtin(enum.Enum):
    """A value of the running task, not of the function: what an aggregation key can hold besides
    the function's own values (the helper that gives it is the generator's business)."""

    COMM = "comm"  # char[COMM_SIZE], bpf_get_current_comm
    PID = "pid"  # the process (tgid), a u32
    TID = "tid"  # the thread, a u32
    UID = "uid"  # the real uid, a u32
    CPU = "cpu"  # a u32

    @property
    def size(self) -> int:
        return COMM_SIZE if self is Builtin.COMM else 4


# What a log2 histogram counts when it is not a value of the function: the call's duration in ns.
DURATION = "duration"


@dataclass(frozen=True)
class Aggregate:
    """Aggregation mode: the probe adds one to the count of the key it builds, in a PERCPU_HASH
    laid out by AggregateLayout, instead of writing a record.

    The key is this function's number `key`, each of `parts` (a value of the function read as a
    record's capture is, or a Builtin) at its offset, and, with a `hist`, the log2 bucket of that
    value (a Capture holding an integer, or DURATION: the ns since the stashed entry time)."""

    key: int
    parts: Tuple[Union[Capture, Builtin], ...] = ()
    hist: Union[Capture, str, None] = None
    hist_signed: bool = False  # the hist value is a signed integer: a negative one has its own bucket


@dataclass(frozen=True)
class PathStep:
    """Call-path mode: this function is step `level` (0 outermost) of a path of `length` functions,
    shown only when each is called, directly or not, from the one before, in one task."""

    level: int
    length: int


@dataclass(frozen=True)
class GraphStep:
    """Function-graph mode (`trace -g`): the root function's probe (its entry, after the spec's
    tests, makes the task's graph state; its return ends it), or a callee's (recorded only while
    its task's state exists, that is inside a root call)."""

    root: bool


# ---- function-graph state ---------------------------------------------------------------------
# Per task, in the call-path state's map (a HASH keyed by pid_tgid, made when a root call passes
# its tests, deleted when it returns or the task exits): u64 depth (calls open inside the root,
# the root's own included), u64 recorded (the open calls whose entries were recorded: always the
# outermost ones, so a return is recorded exactly when depth == recorded), u64 nodes (entries
# recorded), u64 the root's open calls (recursion), u64 the root call's entry time.
GRAPH_DEPTH_OFFSET = 0
GRAPH_RECORDED_OFFSET, GRAPH_NODES_OFFSET, GRAPH_ROOTS_OFFSET, GRAPH_ENTRY_TS_OFFSET = 8, 16, 24, 32
GRAPH_STATE_SIZE = 40
# Calls recorded of one root call. The first call past the bound has its entry recorded (and not
# its return): that extra entry tells the reader the tree was cut.
GRAPH_MAX_NODES = 4096


@dataclass(frozen=True)
class Probe:
    kind: ProbeKind
    target: str  # function or tracepoint name, for messages and listings
    attach_btf_id: int  # the FUNC (fentry/fexit) or btf_trace_<tp> TYPEDEF (tp_btf)
    module: str = "vmlinux"  # whose BTF attach_btf_id is in
    tests: Tuple[Test, ...] = ()  # all must hold (ANDed)
    captures: Tuple[Capture, ...] = ()  # what each record carries
    stash: Stash = Stash.NONE
    stash_group: int = 0  # the fentry/fexit pair sharing a stash map
    emits: bool = True  # False for an fentry that only stashes its time
    # An fexit whose fentry has tests: emit only for calls whose entry passed them (and left a
    # stash), rather than testing arguments again when what they point to may be gone.
    requires_entry: bool = False
    # A return probe that requires its entry: only calls that took at least this long (ns since
    # the stashed entry time) emit or count; a call path's innermost return: only paths that took
    # that long so far (ns since the outermost entry) are shown. 0 for every call.
    min_duration_ns: int = 0
    # Frames of the kernel stack (bpf_get_stack) each record carries; 0 for none.
    kstack_depth: int = 0
    count: Optional[Count] = None  # summary mode: count, emit nothing
    aggregate: Optional[Aggregate] = None  # aggregation mode: count by key, emit nothing
    # Call-path mode: the fentry holds its record in the task's path state, the fexit pops it.
    path: Optional[PathStep] = None
    # Call-path mode: a program on the sched_process_exit tracepoint that drops the exiting
    # task's path state, for paths left open by a function that never returns (do_exit...).
    # Function-graph mode keeps its state in the same map, and has this probe too.
    forgets_path: bool = False
    graph: Optional[GraphStep] = None  # function-graph mode: the root, or a callee
    # Where each context slot lies, in bytes from the start of the program's context: for a
    # kprobe, the pt_regs member holding argument i (or, for a kretprobe, the return value, at the
    # slot after the arguments); -1 where no register holds it. Empty: slot i is the u64 at 8 * i
    # (fentry, fexit, tp_btf, iter).
    context_offsets: Tuple[int, ...] = ()

    def context_offset(self, slot: int) -> int:
        """Where context slot `slot` lies; PlanError for a slot the probe's context does not hold."""
        if not self.context_offsets:
            return 8 * slot
        if not 0 <= slot < len(self.context_offsets) or self.context_offsets[slot] < 0:
            raise PlanError(f"{self.kind.value}:{self.target}: no register holds context slot {slot}")
        return self.context_offsets[slot]


@dataclass(frozen=True)
class Filters:
    pid: Optional[int] = None  # a process (tgid), as upstream ksnoop's -p
    comm: Optional[bytes] = None  # at most COMM_SIZE - 1 bytes
    uid: Optional[int] = None  # the task's real uid, as bcc trace's --uid
    cgroup: Optional["CgroupFilter"] = None  # the task's cgroup (v2) is this one or below it


@dataclass(frozen=True)
class CgroupFilter:
    """A cgroup v2 directory: its id (the kernfs node id, its inode number) and its level (the
    number of directories between it and the cgroup2 root; the root is level 0). A task is in it
    or below it when its cgroup's ancestor at `level` has this `id`."""

    id: int
    level: int


@dataclass(frozen=True)
class Pair:
    """One function traced at entry and at return: plan.probes[entry] is its FENTRY probe and
    plan.probes[exit] its FEXIT probe. They are attached together (a function the kernel refuses
    loses both) and share a stash when they have one."""

    entry: int
    exit: int


@dataclass(frozen=True)
class MultiAttach:
    """Kprobes attached together by one kprobe_multi link: plan.probes[i] for each i in `probes`
    (all KPROBE, or all KRETPROBE, of distinct functions) become the branches of one program,
    chosen by the link's cookie for the function that fired. The stash and scratch maps of their
    pairs are shared by every multi of one `share` (a glob's entries and returns): one program can
    load only so many maps, and the stash key tells the functions apart."""

    probes: Tuple[int, ...]
    share: int


class PlanError(ValueError):
    """A plan whose probes say things that do not go together (a generator or resolver bug)."""


@dataclass(frozen=True)
class Plan:
    """What to trace: the probes, which of them pair up, and what every record carries.

    Probe flags combine only as follows (checked when a Plan is made; PlanError otherwise):
    - `stash` (TIME or RECORD): an FENTRY or FEXIT probe in exactly one of `pairs`; both halves of
      a pair have the same stash and stash_group.
    - `requires_entry`: an FEXIT probe with a stash.
    - `emits=False`: an FENTRY that only stashes its time, a counting probe, or the tracepoint
      that forgets call-path state.
    - `count`: no captures, no kernel stack, no call path.
    - `path`: an FENTRY or FEXIT probe with no stash and no count.
    - `forgets_path`: a TP_BTF probe that emits nothing.
    - ITER probes: none of stash, count, path, forgets_path, kstack_depth.
    - `multi`: each of KPROBE probes only, or KRETPROBE probes only, of distinct functions, none on
      a call path, each probe in one multi at most.
    """

    probes: Tuple[Probe, ...]
    filters: Filters = field(default_factory=Filters)
    with_comm: bool = True  # copy the task's comm into every record header
    ringbuf_size: int = 1 << 22  # bytes; a power of two and a multiple of the page size
    # Submit without waking the reader until this much is pending; the reader also polls.
    wakeup_bytes: int = 1 << 16
    pairs: Tuple[Pair, ...] = ()
    multi: Tuple[MultiAttach, ...] = ()
    # Where the kernel takes kprobe session links (v6.10): the BTF id of the kfunc
    # bpf_session_is_return in vmlinux, and a glob's entries and returns go by one link; else 0.
    session_is_return: int = 0
    # Aggregation mode: the distinct keys the hash holds; the calls of any more are counted as dropped.
    aggregate_entries: int = 10240
    # Function-graph mode: calls recorded of one root call (see GRAPH_MAX_NODES).
    graph_max_nodes: int = GRAPH_MAX_NODES

    def __post_init__(self) -> None:
        _check_plan(self)

    def partner(self, index: int) -> Optional[int]:
        """The other half of probe `index`'s pair, or None."""
        return self._partners.get(index)

    def partner_of(self, index: int) -> int:
        """The other half of probe `index`'s pair, which must have one (PlanError otherwise)."""
        partner = self._partners.get(index)
        if partner is None:
            raise PlanError(f"probe {index} ({self.probes[index].target}) is not half of a pair")
        return partner

    @property
    def is_graph(self) -> bool:
        """Function-graph mode: the task state in the path map is a graph's (GRAPH_STATE_SIZE)."""
        return any(p.graph is not None for p in self.probes)

    def multi_of(self, index: int) -> Optional[MultiAttach]:
        """The multi attachment probe `index` is a branch of, or None."""
        return self._multi_of.get(index)

    def pair_value_size(self, index: int, scratch: bool) -> int:
        """The value size of the stash (the entry's ktime, or its whole record held for the return
        probe) or, with `scratch`, of the scratch record of probe `index`'s pair; for a branch of a
        multi attachment, of the maps its whole share uses: the largest of its pairs'."""
        multi = self.multi_of(index)
        if multi is not None:
            return self._share_value_sizes[(multi.share, scratch)]
        return self._own_value_size(index, scratch)

    def entry_layout(self, index: int) -> "RecordLayout":
        """The record layout of probe `index`'s entry: its own, or its pair's entry probe's."""
        probe = self.probes[index]
        entry = index if probe.kind.is_entry else self.partner(index)
        assert entry is not None, "Plan checks that a probe with a stash has a pair"
        return RecordLayout.of(self.probes[entry], self.with_comm)

    def _own_value_size(self, index: int, scratch: bool) -> int:
        if not scratch and self.probes[index].stash is not Stash.RECORD:
            return 8
        return self.entry_layout(index).size

    @cached_property
    def counter_slots(self) -> int:
        """Summary mode: the slots of the counters map, one past the largest Count.key."""
        return 1 + max((p.count.key for p in self.probes if p.count is not None), default=0)

    @cached_property
    def aggregate_layout(self) -> "AggregateLayout":
        """Aggregation mode: the key every probe that aggregates builds (PlanError if none does)."""
        return AggregateLayout.of(self)

    # Looked up for every probe's program: worked out once per plan (hundreds of probes in a glob).
    @cached_property
    def _partners(self) -> Dict[int, int]:
        partners = {}
        for pair in self.pairs:
            partners[pair.entry], partners[pair.exit] = pair.exit, pair.entry
        return partners

    @cached_property
    def _multi_of(self) -> Dict[int, MultiAttach]:
        return {index: multi for multi in self.multi for index in multi.probes}

    @cached_property
    def _share_value_sizes(self) -> Dict[Tuple[int, bool], int]:
        sizes: Dict[Tuple[int, bool], int] = {}
        for multi in self.multi:
            for index in multi.probes:
                if self.probes[index].stash is Stash.NONE:
                    continue
                for scratch in (False, True):
                    key = (multi.share, scratch)
                    sizes[key] = max(sizes.get(key, 0), self._own_value_size(index, scratch))
        return sizes


def _check_plan(plan: Plan) -> None:
    probes = plan.probes
    in_multi: Dict[int, MultiAttach] = {}
    for multi in plan.multi:
        kinds = {probes[i].kind for i in multi.probes if 0 <= i < len(probes)}
        if (
            len(kinds) != 1
            or len(multi.probes) != len(set(multi.probes))
            or any(not 0 <= i < len(probes) for i in multi.probes)
        ):
            raise PlanError(f"{multi}: a multi attachment is distinct probes of the plan, all of one kind")
        if kinds - {ProbeKind.KPROBE, ProbeKind.KRETPROBE}:
            raise PlanError(f"{multi}: only kprobes attach together")
        targets = [(probes[i].target, probes[i].module) for i in multi.probes]
        if len(set(targets)) != len(targets):
            raise PlanError(f"{multi}: a function twice")
        for i in multi.probes:
            if i in in_multi:
                raise PlanError(f"probe {i} ({probes[i].target}) is in two multi attachments")
            if probes[i].path is not None:
                raise PlanError(f"probe {i} ({probes[i].target}) is a call-path step, attached alone")
            in_multi[i] = multi
    paired: Dict[int, Pair] = {}
    for pair in plan.pairs:
        if not (0 <= pair.entry < len(probes) and 0 <= pair.exit < len(probes)):
            raise PlanError(f"{pair} names a probe the plan does not have")
        entry, exit_ = probes[pair.entry], probes[pair.exit]
        if not entry.kind.is_entry or exit_.kind is not entry.kind.return_kind:
            raise PlanError(f"{pair}: an entry/return pair is an fentry and an fexit, or a kprobe and a kretprobe")
        if (entry.attach_btf_id, entry.module) != (exit_.attach_btf_id, exit_.module):
            raise PlanError(f"{pair}: {entry.target} and {exit_.target} are not one function")
        if (entry.stash, entry.stash_group) != (exit_.stash, exit_.stash_group):
            raise PlanError(f"{pair}: the two halves of {entry.target} disagree on their stash")
        for index in (pair.entry, pair.exit):
            if index in paired:
                raise PlanError(f"probe {index} ({probes[index].target}) is in two pairs")
            paired[index] = pair
    for index, probe in enumerate(probes):
        what = f"probe {index} ({probe.kind.value}:{probe.target})"
        if probe.stash is not Stash.NONE and index not in paired:
            partners = {
                ProbeKind.FENTRY: "fexit",
                ProbeKind.FEXIT: "fentry",
                ProbeKind.KPROBE: "kretprobe",
                ProbeKind.KRETPROBE: "kprobe",
            }
            other = partners.get(probe.kind, "return probe")
            raise PlanError(f"{what} has a {probe.stash.value} stash but no {other} to pair with")
        if probe.requires_entry and not (probe.kind.is_return and probe.stash is not Stash.NONE):
            raise PlanError(f"{what} requires its entry, which only a return probe with a stash can")
        innermost_return = probe.path is not None and probe.kind.is_return and probe.path.level == probe.path.length - 1
        root_return = probe.graph is not None and probe.graph.root and probe.kind.is_return
        if probe.min_duration_ns and not (probe.requires_entry or innermost_return or root_return):
            raise PlanError(
                f"{what} has a minimum duration, which needs an entry's time: it must require its entry, "
                "or be a call path's innermost return or a function graph's root return"
            )
        if not 0 <= probe.min_duration_ns < 1 << 63:
            raise PlanError(f"{what}: a minimum duration of {probe.min_duration_ns} ns")
        if not probe.emits and not (
            probe.count is not None
            or probe.aggregate is not None
            or probe.forgets_path
            or (probe.kind.is_entry and probe.stash is Stash.TIME)
        ):
            raise PlanError(f"{what} emits nothing and neither counts, stashes its time nor forgets paths")
        if probe.count is not None and (probe.captures or probe.kstack_depth or probe.path is not None):
            raise PlanError(f"{what} counts, so it captures nothing, takes no stack and is on no call path")
        if probe.aggregate is not None and (
            probe.captures or probe.kstack_depth or probe.path is not None or probe.count is not None or probe.emits
        ):
            raise PlanError(
                f"{what} aggregates, so it emits nothing, captures nothing, counts no summary, takes no stack"
            )
        if probe.aggregate is not None and probe.aggregate.hist == DURATION and not probe.requires_entry:
            raise PlanError(f"{what} takes a duration, which needs a return probe that requires its entry's time")
        if probe.path is not None and (
            not (probe.kind.is_entry or probe.kind.is_return)
            or probe.stash is not Stash.NONE
            or probe.count is not None
        ):
            raise PlanError(f"{what} is a call-path step: an entry or return probe with no stash and no count")
        if probe.graph is not None and (
            not (probe.kind.is_entry or probe.kind.is_return)
            or probe.stash is not Stash.NONE
            or probe.count is not None
            or probe.aggregate is not None
            or probe.path is not None
            or not probe.emits
        ):
            raise PlanError(f"{what} is in a function graph: an entry or return probe that emits, no stash, no count")
        if probe.context_offsets and probe.kind not in (ProbeKind.KPROBE, ProbeKind.KRETPROBE):
            raise PlanError(f"{what}: only a kprobe's context is registers at their own offsets")
        if probe.forgets_path and (probe.kind is not ProbeKind.TP_BTF or probe.emits):
            raise PlanError(f"{what} forgets call paths: a tracepoint probe that emits nothing")
        if probe.kind is ProbeKind.ITER and (
            probe.stash is not Stash.NONE
            or probe.count is not None
            or probe.path is not None
            or probe.forgets_path
            or probe.kstack_depth
        ):
            raise PlanError(f"{what}: an iterator program only tests and captures")
    if any(p.aggregate is not None for p in probes):
        AggregateLayout.of(plan)  # every key fits, and all have the same parts
    graph = [p for p in probes if p.graph is not None]
    if graph:
        roots = sorted(p.kind.is_return for p in graph if p.graph is not None and p.graph.root)
        if roots != [False, True] or any(p.path is not None for p in probes):
            raise PlanError("a function graph has one root, with an entry and a return probe, and no call path")


# ---- aggregation keys ---------------------------------------------------------------------------
# A PERCPU_HASH from a key to a u64 count. The key: u32 the function's number (Aggregate.key), u16
# a mask of the parts that could not be read (bit i = part i, its bytes left zero), u16 the log2
# bucket (0 without a histogram), then each part at its offset, zeros between.
AGGREGATE_FUNCTION_OFFSET, AGGREGATE_FAILED_OFFSET, AGGREGATE_BUCKET_OFFSET = 0, 4, 6
AGGREGATE_HEADER_SIZE = 8
MAX_KEY_VALUES_SIZE = 64  # the parts' bytes, as bpftrace's map keys are kept small
MAX_KEY_PARTS = 16  # bits of the failed mask
# Buckets: 0 holds the value 0, k in 1..64 holds [2**(k-1), 2**k); and two of their own.
HIST_NEGATIVE = 0xFFFF  # a negative value of a signed integer
HIST_UNREADABLE = 0xFFFE  # the value could not be read
# Where a full hash's calls are counted: a PERCPU_ARRAY of one value, u64 calls not counted and
# u64 distinct keys among them (a key is new when the overflow HASH takes it).
DROPPED_CALLS_OFFSET, DROPPED_KEYS_OFFSET = 0, 8
AGGREGATE_DROPS_SIZE = 16


@dataclass(frozen=True)
class AggregateLayout:
    """Byte offsets of the aggregation key: where each part goes (as large as its largest over the
    plan's functions, aligned to its size up to 8) and the key's size, a multiple of 8."""

    part_offsets: Tuple[int, ...]
    part_sizes: Tuple[int, ...]
    size: int

    @classmethod
    def of(cls, plan: "Plan") -> "AggregateLayout":
        aggregates = [p.aggregate for p in plan.probes if p.aggregate is not None]
        if not aggregates:
            raise PlanError("no probe of the plan aggregates")
        counts = {len(a.parts) for a in aggregates}
        if len(counts) != 1:
            raise PlanError("the probes that aggregate build keys of different parts")
        sizes = [max(key_part_size(a.parts[n]) for a in aggregates) for n in range(counts.pop())]
        if len(sizes) > MAX_KEY_PARTS:
            raise PlanError(f"a key of {len(sizes)} values; at most {MAX_KEY_PARTS}")
        offsets = _key_offsets(sizes)
        end = offsets[-1] + sizes[-1] if sizes else AGGREGATE_HEADER_SIZE
        if end - AGGREGATE_HEADER_SIZE > MAX_KEY_VALUES_SIZE:
            raise PlanError(f"a key of {end - AGGREGATE_HEADER_SIZE} bytes of values; at most {MAX_KEY_VALUES_SIZE}")
        return cls(tuple(offsets), tuple(sizes), _align8(end))


def key_values_size(parts: Tuple[Union[Capture, "Builtin"], ...]) -> int:
    """The bytes `parts` take in a key after its header, padding between them included."""
    sizes = [key_part_size(part) for part in parts]
    return _key_offsets(sizes)[-1] + sizes[-1] - AGGREGATE_HEADER_SIZE if sizes else 0


def _key_offsets(sizes: List[int]) -> List[int]:
    offsets = []
    offset = AGGREGATE_HEADER_SIZE
    for size in sizes:
        align = size if size in (1, 2, 4) else 8
        offset = (offset + align - 1) & ~(align - 1)
        offsets.append(offset)
        offset += size
    return offsets


def key_part_size(part: Union[Capture, Builtin]) -> int:
    """The bytes a part takes in a key."""
    if isinstance(part, Builtin):
        return part.size
    return 8 if part.bitfield is not None else part.record_size  # a bitfield's value is cut out into a u64


# ---- summary counters -------------------------------------------------------------------------
# One PERCPU_ARRAY value per counted function: u64 calls, u64 errors, LATENCY_BUCKETS u64s, then
# the u64 sum of the durations in ns (a Prometheus histogram's _sum: mean latency = sum / calls).
LATENCY_BUCKETS = 64
CALLS_OFFSET, ERRORS_OFFSET, BUCKETS_OFFSET = 0, 8, 16
DURATION_SUM_OFFSET = BUCKETS_OFFSET + 8 * LATENCY_BUCKETS
COUNTERS = struct.Struct(f"=QQ{LATENCY_BUCKETS}QQ")
COUNTERS_SIZE = COUNTERS.size


# ---- records ----------------------------------------------------------------------------------
# Header: u64 ktime_ns, u64 pid_tgid, u32 cpu, u32 probe index, u64 failed-read mask (bit i =
# capture i), u64 the matching entry's ktime_ns (return records; 0 if unknown), then the comm
# when the plan asks for it. Host byte order, as the program writes.
HEADER = struct.Struct("=QQIIQQ")
HEADER_SIZE = HEADER.size
TS_OFFSET, PID_TGID_OFFSET, CPU_OFFSET, PROBE_OFFSET, FAILED_OFFSET, ENTRY_TS_OFFSET = 0, 8, 16, 20, 24, 32
COMM_OFFSET = HEADER_SIZE
# Stash maps are LRU, so tasks that die inside a traced call cannot fill them.
STASH_ENTRIES = 10240


@dataclass(frozen=True)
class RecordLayout:
    """Byte offsets of one probe's records: the header, the comm if any, each capture, then the
    kernel stack if the probe wants one: an s64 (bpf_get_stack's result: bytes written, or a
    negative error) at `kstack_offset`, then room for `kstack_depth` u64 frames."""

    capture_offsets: Tuple[int, ...]
    size: int
    with_comm: bool
    kstack_offset: int = 0  # 0: no stack
    kstack_depth: int = 0

    @classmethod
    def of(cls, probe: Probe, with_comm: bool) -> "RecordLayout":
        offset = HEADER_SIZE + (COMM_SIZE if with_comm else 0)
        offsets = []
        for capture in probe.captures:
            offsets.append(offset)
            offset += _align8(capture.record_size)
        if not probe.kstack_depth:
            return cls(tuple(offsets), offset, with_comm)
        return cls(tuple(offsets), offset + 8 + 8 * probe.kstack_depth, with_comm, offset, probe.kstack_depth)

    @property
    def kstack_frames_offset(self) -> int:
        """Where the first frame (the innermost return address) goes."""
        return self.kstack_offset + 8


# ---- call-path state ---------------------------------------------------------------------------
# Per task (a HASH keyed by pid_tgid, allocated on use): u64 depth (path functions entered and not
# yet returned), u64 a mask of levels whose entry record has been emitted, then per level a u64
# count of calls to that function nested inside its own open call (recursion: their returns must
# not pop), then per level the entry record the fentry wrote, held until the innermost returns.
MAX_PATH_LENGTH = 16
PATH_DEPTH_OFFSET, PATH_SHOWN_OFFSET, PATH_NESTED_OFFSET = 0, 8, 16
# Tasks inside a path at one time; the state of each is deleted when its outermost call returns.
PATH_TASKS = 4096


@dataclass(frozen=True)
class PathLayout:
    slot_offsets: Tuple[int, ...]  # per level, where its entry record goes
    slot_sizes: Tuple[int, ...]
    size: int

    @classmethod
    def of(cls, plan: "Plan") -> "PathLayout":
        """The layout for the plan's call path; ValueError if it has none or a level is missing."""
        entries = {p.path.level: p for p in plan.probes if p.path is not None and p.kind.is_entry}
        if not entries or sorted(entries) != list(range(len(entries))):
            raise ValueError("the plan has no complete call path")
        offset = PATH_NESTED_OFFSET + 8 * len(entries)
        offsets, sizes = [], []
        for level in range(len(entries)):
            size = RecordLayout.of(entries[level], plan.with_comm).size
            offsets.append(offset)
            sizes.append(size)
            offset += _align8(size)
        return cls(tuple(offsets), tuple(sizes), offset)

    @staticmethod
    def nested_offset(level: int) -> int:
        return PATH_NESTED_OFFSET + 8 * level


def _align8(size: int) -> int:
    return (size + 7) & ~7
