# SPDX-License-Identifier: GPL-2.0-only
"""BPF iterator targets, found in the kernel's BTF: what `ksnoop dump` can walk, and with what.

A target NAME exists where BTF has both the FUNC bpf_iter_NAME, which an iterator program attaches
to, and struct bpf_iter__NAME, the program's context: `meta` (struct bpf_iter_meta *, the
seq_file to write to), then the object's pointers and scalars, one u64 slot each. The members
after meta are the names a dump spec uses. Which parameters a target takes (a map, a task, a
cgroup) follows from its members and from what this kernel's union bpf_iter_link_info offers.
"""

from __future__ import annotations

import difflib
import enum
import fnmatch
import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from btf import BTF, Func, FuncProto, Kind, Ptr, Struct, Union

from ksnoop.errors import UnknownTarget
from ksnoop.spec.targets import ITER_PREFIX, Argument, KernelBTF, Target, TargetKind

log = logging.getLogger(__name__)

CONTEXT_PREFIX = "bpf_iter__"  # struct bpf_iter__<target>: the context
FUNC_PREFIX = "bpf_iter_"  # FUNC bpf_iter_<target>: what the program attaches to
META = "meta"  # the context's first member, the kernel's bookkeeping: not a name a spec may use
META_STRUCT = "bpf_iter_meta"
LINK_INFO_UNION = "bpf_iter_link_info"
CGROUP_ORDER_ENUM = "bpf_cgroup_iter_order"
_CGROUP_ORDER_PREFIX = "BPF_CGROUP_ITER_"


class ParamKind(enum.Enum):
    """Which member of union bpf_iter_link_info a target takes."""

    MAP = "map"  # the map whose elements to walk: required (the kernel says EBADF without one)
    TASK = "task"  # one thread (tid) or process (pid) instead of every task
    CGROUP = "cgroup"  # where to start (an id or an fd) and which way to walk


@dataclass(frozen=True)
class LinkInfo:
    """What this kernel's union bpf_iter_link_info has: per member, its fields' names, in order."""

    members: Dict[str, Tuple[str, ...]]
    cgroup_orders: Tuple[str, ...] = ()  # enum bpf_cgroup_iter_order's names, without the prefix, lower case

    def has(self, member: str, field: str) -> bool:
        return field in self.members.get(member, ())


@dataclass(frozen=True)
class IterTarget:
    """An iterator target: its Target (kind ITER; args are the context's members, meta first, so
    that argument k is u64 slot k) and what the kernel needs to walk it."""

    target: Target
    context_id: int  # struct bpf_iter__<name>
    object_slot: int  # the member the kernel passes as NULL in the call after the last object
    params: Optional[ParamKind] = None

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def members(self) -> Tuple[Argument, ...]:
        """The names a spec may use: every context member but meta."""
        return self.target.args[1:]

    @property
    def object_name(self) -> str:
        return self.target.args[self.object_slot].name


class IterTargets:
    """The iterator targets of one KernelBTF (vmlinux, then modules), found on first use."""

    def __init__(self, kernel: KernelBTF):
        self.kernel = kernel
        self._found: Optional[Dict[str, IterTarget]] = None
        self._link_info: Optional[LinkInfo] = None

    def exist(self) -> bool:
        """Does this kernel have BPF iterators at all (struct bpf_iter_meta in its BTF)?"""
        return self.kernel.vmlinux.find("struct " + META_STRUCT) is not None

    def all(self) -> Dict[str, IterTarget]:
        """name -> target, every one this kernel has (a name in vmlinux and a module: vmlinux's)."""
        if self._found is None:
            found: Dict[str, IterTarget] = {}
            for module, btf in self.kernel.blobs():
                for name, type_id in btf.glob(CONTEXT_PREFIX + "*", [Kind.STRUCT], inherited=False):
                    target_name = name[len(CONTEXT_PREFIX) :]
                    if target_name in found:
                        continue
                    target = iter_target(btf, module, target_name, type_id)
                    if target is not None:
                        found[target_name] = target
            self._found = found
        return self._found

    @property
    def link_info(self) -> LinkInfo:
        if self._link_info is None:
            self._link_info = link_info_of(self.kernel.vmlinux)
        return self._link_info

    def find(self, name: str) -> IterTarget:
        """The target `name` (`task`, or `dump:task`); UnknownTarget naming the closest real ones."""
        bare = name[len(ITER_PREFIX) :] if name.startswith(ITER_PREFIX) else name
        if self._found is None and bare:
            # Two lookups by name, rather than every context in BTF: what a dump of one target needs.
            for module, btf in self.kernel.blobs():
                for context in btf.find_all(CONTEXT_PREFIX + bare, Kind.STRUCT):
                    if context.id >= btf.start_id or module == "vmlinux":
                        target = iter_target(btf, module, bare, context.id)
                        if target is not None:
                            return target
        found = self.all()
        if bare in found:
            return found[bare]
        if not found:
            raise UnknownTarget(f"no iterator target '{bare}': {no_iterators_reason(self.kernel.vmlinux)}")
        close = difflib.get_close_matches(bare, sorted(found), n=5, cutoff=0.5)
        if not close:  # a name nothing like any of them: show them all, there are few
            close = sorted(found)
        raise UnknownTarget(f"no iterator target '{bare}' in this kernel's BTF", close)

    def refusal(self, target: IterTarget) -> str:
        """How this kernel refuses an iterator program for `target` ("EPERM before verification"),
        asked by loading the smallest one; "" where it takes it, where the BTF is not the running
        kernel's (--btf FILE), and where this process may not ask (without privileges every load fails)."""
        from bpf.features import check_privileges, probe_iter

        if not self.kernel.running or not check_privileges():
            return ""
        found = probe_iter(target.target.attach_btf_id, target.target.module)
        return "" if found else found.reason

    def glob(self, pattern: str) -> List[IterTarget]:
        """Targets whose name matches a shell glob (`dump:` prefix optional), sorted by name."""
        bare = pattern[len(ITER_PREFIX) :] if pattern.startswith(ITER_PREFIX) else pattern
        return [t for name, t in sorted(self.all().items()) if fnmatch.fnmatchcase(name, bare)]


def iter_target(btf: BTF, module: str, name: str, context_id: int) -> Optional[IterTarget]:
    """The target `name` whose context is struct bpf_iter__<name> [context_id] in `btf`, or None
    when BTF has no FUNC bpf_iter_<name> (`bpf_iter__task__safe_trusted` is a verifier type, not a
    target) or the context is not laid out as DEFINE_BPF_ITER_FUNC lays it out."""
    funcs = [f for f in btf.find_all(FUNC_PREFIX + name, Kind.FUNC) if f.id >= btf.start_id or module == "vmlinux"]
    if not funcs:
        return None
    func = funcs[0]
    assert isinstance(func, Func)
    context = btf.type_by_id(context_id)
    proto = btf.type_by_id(func.type_id)
    if not isinstance(context, Struct) or not isinstance(proto, FuncProto):
        return None
    members = context_members(btf, context)
    # Member k must be at byte 8 * k: it is argument k of bpf_iter_<name>, and the program reads
    # it from u64 slot k of its context.
    if (
        not members
        or members[0][0] != META
        or len(members) != len(proto.params)
        or any(offset != 8 * k for k, (_, _, offset) in enumerate(members))
    ):
        log.debug(
            "%s: context %s does not have meta then one u64 slot per argument; left out",
            name,
            [(n, o) for n, _, o in members],
        )
        return None
    args = tuple(Argument(member_name, type_id) for member_name, type_id, _ in members)
    pointers = [k for k, (_, type_id, _) in enumerate(members) if k and isinstance(btf.skip_modifiers(type_id), Ptr)]
    if not pointers:
        return None  # no object to walk: nothing to tell the stop call by
    # What the kernel passes as NULL after the last object, and never before: the object, which
    # is the last pointer (a task's file or vma comes after the task). A map's elements come after
    # the map, which stays set; of an element's pointers only the first (a key, a socket) is never
    # NULL: an array sockmap's empty slot has a key but no socket.
    object_slot = pointers[-1]
    maps = [k for k in pointers if _struct_name(btf, args[k].type_id) == "bpf_map"]
    if maps and maps[0] != pointers[-1]:
        object_slot = next(k for k in pointers if k > maps[0])
    target = Target(name, TargetKind.ITER, module, btf, func.id, 0, args)
    return IterTarget(target, context_id, object_slot, _params(btf, args, object_slot))


def context_members(btf: BTF, context: Struct) -> List[Tuple[str, int, int]]:
    """(name, type id, byte offset) of each member of a bpf_iter__<target> context: a pointer member
    is an anonymous union (`__bpf_md_ptr(type, name)`: the pointer and a u64) named by its pointer."""
    out = []
    for member in context.members:
        name, type_id = member.name, member.type_id
        if not name:
            inner = btf.skip_modifiers(type_id)
            if not isinstance(inner, (Struct, Union)):
                continue
            named = [m for m in inner.members if m.name]
            if not named:
                continue
            name, type_id = named[0].name, named[0].type_id
        out.append((name, type_id, member.bit_offset // 8))
    return out


def _struct_name(btf: BTF, type_id: int) -> str:
    """`bpf_map` for a `struct bpf_map *`, else ""."""
    typ = btf.skip_modifiers(type_id)
    if not isinstance(typ, Ptr):
        return ""
    pointee = btf.skip_modifiers(typ.type_id)
    return pointee.name if isinstance(pointee, Struct) else ""


def _params(btf: BTF, args: Tuple[Argument, ...], object_slot: int) -> Optional[ParamKind]:
    """Which parameter the target takes, from its context: the elements of one map are walked by a
    target whose context has the map besides its object (bpf_map_elem, sockmap...); task iterators
    have the task (task, task_file, task_vma); the cgroup iterator's object is a cgroup."""
    kinds = [_struct_name(btf, a.type_id) for a in args]
    if any(kind == "bpf_map" and k != object_slot for k, kind in enumerate(kinds)):
        return ParamKind.MAP
    if "task_struct" in kinds:
        return ParamKind.TASK
    if kinds[object_slot] == "cgroup":
        return ParamKind.CGROUP
    return None


def link_info_of(btf: BTF) -> LinkInfo:
    """The members and fields of union bpf_iter_link_info in this kernel's BTF (map since v5.9;
    cgroup and task since v6.1), and the cgroup walk orders it names."""
    union = btf.find("union " + LINK_INFO_UNION)
    members: Dict[str, Tuple[str, ...]] = {}
    if isinstance(union, Union):
        for member in union.members:
            inner = btf.skip_modifiers(member.type_id)
            if member.name and isinstance(inner, Struct):
                members[member.name] = tuple(m.name for m in inner.members if m.name)
    orders: Tuple[str, ...] = ()
    enum_type = btf.find("enum " + CGROUP_ORDER_ENUM)
    values = getattr(enum_type, "values", ())
    orders = tuple(
        v.name[len(_CGROUP_ORDER_PREFIX) :].lower().replace("_", "-")
        for v in values
        if v.name.startswith(_CGROUP_ORDER_PREFIX) and v.value != 0
    )
    return LinkInfo(members, orders)


def no_iterators_reason(btf: BTF) -> str:
    if btf.find("struct " + META_STRUCT) is None:
        return "this kernel has no BPF iterators (they came in 5.8; its BTF has no struct bpf_iter_meta)"
    return "this kernel's BTF describes no iterator target (no bpf_iter_<name> FUNC with a struct bpf_iter__<name>)"


# ---- info and list -------------------------------------------------------------------------------

PARAM_OPTIONS = {
    ParamKind.MAP: (("map", "map_fd", "--map-id ID"),),
    ParamKind.TASK: (("task", "pid", "--pid PID"), ("task", "tid", "--tid TID")),
    ParamKind.CGROUP: (
        ("cgroup", "cgroup_id", "--cgroup-id ID"),
        ("cgroup", "cgroup_fd", "--cgroup PATH"),
        ("cgroup", "order", "--cgroup-order ORDER"),
    ),
}


def options_of(target: IterTarget, link_info: LinkInfo) -> List[str]:
    """The dump options `target` takes on this kernel (`--pid PID`...)."""
    if target.params is None:
        return []
    return [option for member, field, option in PARAM_OPTIONS[target.params] if link_info.has(member, field)]


def refusal_note(refused: str) -> str:
    """` (refused by this kernel: EPERM before verification)` after a target's name in a list, or ""."""
    return f" (refused by this kernel: {refused})" if refused else ""


def signature_text(target: IterTarget, link_info: LinkInfo, refused: str = "") -> str:
    """`dump:task_file(struct task_struct *task, u32 fd, struct file *file);`, then the options it takes,
    and whether this kernel refuses it."""
    from btf.cdecl import function_declaration

    from ksnoop.sanitize import sanitize

    t = target.target
    params = [(a.name, a.type_id) for a in target.members]
    text = function_declaration(t.btf, t.label, 0, params)[len("void ") :] + ";"
    options = options_of(target, link_info)
    if options:
        needs = " (required)" if target.params is ParamKind.MAP else ""
        text += f" /* options: {', '.join(options)}{needs} */"
    if refused:
        text += f" /* refused by this kernel: {refused} */"
    if t.module != "vmlinux":
        text += f" [{t.module}]"
    return sanitize(text)


def signature_json(target: IterTarget, link_info: LinkInfo, refused: str = "") -> Dict[str, Any]:
    t = target.target
    btf = t.btf
    return {
        "name": t.name,
        "kind": t.kind.value,
        "module": t.module,
        "params": [{"name": a.name, "type": btf.type_name(a.type_id)} for a in target.members],
        "object": target.object_name,
        "options": [option.split()[0] for option in options_of(target, link_info)],
        "refused": refused or None,  # null where it loads, or where nobody could ask
    }
