# SPDX-License-Identifier: GPL-2.0-only
"""Find what the user names: a kernel function (vmlinux or a module), a `tp:` tracepoint, a type.

KernelBTF holds the vmlinux BTF and opens module BTF only when a name is not in vmlinux.
A tracepoint's argument names come from `__probestub_<tp>` / `__traceiter_<tp>`, since the
`btf_trace_<tp>` prototype the kernel attaches to carries none.
"""

from __future__ import annotations

import difflib
import enum
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

from btf import BTF, BTFError, Func, FuncProto, Kind, Ptr, Typedef
from btf.sources import loaded_modules

from ksnoop.errors import RuntimeFailure, UnknownTarget

TRACEPOINT_PREFIX = "tp:"
ITER_PREFIX = "dump:"  # how list and info name an iterator target
_BTF_TRACE = "btf_trace_"
# Functions whose prototypes name a tracepoint's arguments, first choice first.
_TP_NAME_SOURCES = ("__probestub_", "__traceiter_")


class TargetKind(enum.Enum):
    FUNCTION = "func"
    TRACEPOINT = "tracepoint"
    ITER = "iter"  # a BPF iterator target (`ksnoop dump`); its arguments are its context's members


@dataclass(frozen=True)
class Argument:
    name: str
    type_id: int


@dataclass(frozen=True)
class Target:
    """A traceable place with its typed arguments, resolved from one BTF blob."""

    name: str  # as the kernel names it: "ip_send_skb", "net_dev_queue"
    kind: TargetKind
    module: str  # "vmlinux" or the module's name
    btf: BTF  # the blob the ids below belong to (module BTF is split on vmlinux)
    attach_btf_id: int  # the FUNC for fentry/fexit; the btf_trace_<name> TYPEDEF for tp_btf
    return_type_id: int  # 0 (void) for tracepoints
    args: Tuple[Argument, ...]
    variadic: bool = False

    @property
    def label(self) -> str:
        """The name as the user writes it: `ip_send_skb`, `tp:net_dev_queue` or `dump:task`."""
        if self.kind is TargetKind.ITER:
            return ITER_PREFIX + self.name
        return TRACEPOINT_PREFIX + self.name if self.kind is TargetKind.TRACEPOINT else self.name


class KernelBTF:
    """vmlinux BTF plus the modules' split BTF, opened on demand."""

    def __init__(self, vmlinux: BTF, module_names: Optional[List[str]] = None, running: bool = False):
        self.vmlinux = vmlinux
        self._module_names = module_names
        self._modules: Dict[str, BTF] = {}
        self._globbed: Dict[str, List[Target]] = {}
        # Is this the running kernel's own BTF (not --btf FILE)? Only then may its ids be put to the
        # kernel, as when asking which targets it refuses.
        self.running = running

    @classmethod
    def load(cls, btf_path: Optional[str] = None) -> "KernelBTF":
        """The running kernel's BTF, or with `btf_path` one file standing in for vmlinux (no modules)."""
        try:
            if btf_path is not None:
                return cls(BTF.from_file(btf_path), [])
            return cls(BTF.vmlinux(), running=True)
        except BTFError as err:
            if btf_path is not None:  # named with the option, so the user sees which file it was
                named = f"--btf: {err}" if btf_path in str(err) else f"--btf {btf_path}: {err}"
                raise RuntimeFailure(named) from None
            raise RuntimeFailure(f"cannot read BTF: {err} (is the kernel built with CONFIG_DEBUG_INFO_BTF?)") from None

    @property
    def module_names(self) -> List[str]:
        if self._module_names is None:
            self._module_names = loaded_modules()
        return self._module_names

    def module(self, name: str) -> BTF:
        btf = self._modules.get(name)
        if btf is None:
            try:
                btf = self._modules[name] = BTF.module(name, self.vmlinux)
            except BTFError as err:
                raise RuntimeFailure(f"cannot read BTF of module {name}: {err}") from None
        return btf

    def blobs(self) -> Iterator[Tuple[str, BTF]]:
        """("vmlinux", vmlinux BTF), then each module's, opening them as the caller goes on."""
        yield "vmlinux", self.vmlinux
        for name in self.module_names:
            yield name, self.module(name)

    # ---- functions and tracepoints ----------------------------------------------------------------
    def find_target(self, text: str) -> Target:
        """`tp:NAME` or a function name -> Target; UnknownTarget with the closest names otherwise."""
        if text.startswith(TRACEPOINT_PREFIX):
            return self.find_tracepoint(text[len(TRACEPOINT_PREFIX) :])
        return self.find_function(text)

    def find_function(self, name: str) -> Target:
        for module, btf in self.blobs():
            for typ in btf.find_all(name, Kind.FUNC):
                if typ.id >= btf.start_id:  # a module blob also sees vmlinux's ids; take only its own
                    return _function_target(btf, module, typ)  # type: ignore[arg-type]
        if any(btf.find(_BTF_TRACE + name, Kind.TYPEDEF) is not None for _module, btf in self.blobs()):
            raise UnknownTarget(f"'{name}' is a tracepoint, not a kernel function", [TRACEPOINT_PREFIX + name])
        close = self.closest(name, Kind.FUNC)
        raise UnknownTarget(f"no kernel function '{name}' in BTF", close)

    def find_tracepoint(self, name: str) -> Target:
        for module, btf in self.blobs():
            for typ in btf.find_all(_BTF_TRACE + name, Kind.TYPEDEF):
                if typ.id >= btf.start_id:
                    return _tracepoint_target(btf, module, name, typ)  # type: ignore[arg-type]
        close = [
            TRACEPOINT_PREFIX + n[len(_BTF_TRACE) :]
            for n in self.closest(_BTF_TRACE + name, Kind.TYPEDEF)
            if n.startswith(_BTF_TRACE)
        ]
        raise UnknownTarget(f"no tracepoint '{name}' in BTF", close)

    def closest(self, name: str, kind: Kind) -> List[str]:
        found: List[str] = []
        for _module, btf in self.blobs():
            found.extend(btf.closest_names(name, [kind], n=5))
        return difflib.get_close_matches(name, sorted(set(found)), n=5, cutoff=0.0)

    def glob_targets(self, pattern: str) -> List[Target]:
        """Every target a glob names, sorted by name: `tp:GLOB` over tracepoints, otherwise over
        function names (FUNCs of vmlinux, then of each module; a name seen twice is taken once).
        UnknownTarget with names close to the pattern when nothing matches. Kept per pattern:
        choosing the backend and resolving both ask."""
        found = self._globbed.get(pattern)
        if found is None:
            found = self._globbed[pattern] = self._glob_targets(pattern)
        return list(found)

    def _glob_targets(self, pattern: str) -> List[Target]:
        tracepoint = pattern.startswith(TRACEPOINT_PREFIX)
        bare = pattern[len(TRACEPOINT_PREFIX) :] if tracepoint else pattern
        found: Dict[str, Target] = {}
        for module, btf in self.blobs():
            if tracepoint:
                for n, i in btf.glob(_BTF_TRACE + bare, [Kind.TYPEDEF], inherited=False):
                    name = n[len(_BTF_TRACE) :]
                    if name not in found:
                        found[name] = _tracepoint_target(btf, module, name, btf.type_by_id(i))  # type: ignore[arg-type]
            else:
                for n, i in btf.glob(bare, [Kind.FUNC], inherited=False):
                    if n not in found:
                        found[n] = _function_target(btf, module, btf.type_by_id(i))  # type: ignore[arg-type]
        if not found:
            # Without its wildcards the pattern is a fair stand-in for the names it meant.
            stem = "".join(ch for ch in bare if ch not in "*?")
            if tracepoint:
                close = [
                    TRACEPOINT_PREFIX + n[len(_BTF_TRACE) :]
                    for n in self.closest(_BTF_TRACE + stem, Kind.TYPEDEF)
                    if n.startswith(_BTF_TRACE)
                ]
                raise UnknownTarget(f"no tracepoint matches '{pattern}'", close)
            raise UnknownTarget(f"no kernel function matches '{pattern}'", self.closest(stem, Kind.FUNC))
        return [found[name] for name in sorted(found)]

    def list_targets(self, pattern: str = "*") -> List[Tuple[str, str]]:
        """(label, module) of functions and tracepoints matching a glob, sorted by label.

        A pattern starting with `tp:` matches tracepoints only; any other matches function names
        and tracepoint names alike.
        """
        tracepoints_only = pattern.startswith(TRACEPOINT_PREFIX)
        bare = pattern[len(TRACEPOINT_PREFIX) :] if tracepoints_only else pattern
        out: List[Tuple[str, str]] = []
        for module, btf in self.blobs():
            if not tracepoints_only:
                out.extend((n, module) for n, _ in btf.glob(bare, [Kind.FUNC], inherited=False))
            for n, _ in btf.glob(_BTF_TRACE + bare, [Kind.TYPEDEF], inherited=False):
                out.append((TRACEPOINT_PREFIX + n[len(_BTF_TRACE) :], module))
        return sorted(set(out))

    # ---- types ------------------------------------------------------------------------------------
    def find_type(self, text: str) -> Tuple[str, BTF, int]:
        """(module, blob, id) for `struct NAME`, `union NAME`, `enum NAME` or a typedef name."""
        for module, btf in self.blobs():
            typ = btf.find(text)
            if typ is not None and (module == "vmlinux" or typ.id >= btf.start_id):
                return module, btf, typ.id
        words = text.split()
        kinds = {"struct": [Kind.STRUCT], "union": [Kind.UNION], "enum": [Kind.ENUM, Kind.ENUM64]}
        kind_list = kinds.get(words[0], [Kind.TYPEDEF]) if words else [Kind.TYPEDEF]
        bare = words[-1] if words else text
        prefix = words[0] + " " if len(words) == 2 else ""
        close = [prefix + n for n in self.vmlinux.closest_names(bare, kind_list)]
        raise UnknownTarget(f"no type '{text}' in BTF", close)


def _function_target(btf: BTF, module: str, func: Func) -> Target:
    proto = btf.type_by_id(func.type_id)
    assert isinstance(proto, FuncProto)  # btf.py checks FUNC -> FUNC_PROTO when it builds the FUNC
    args = tuple(Argument(p.name or f"arg{i}", p.type_id) for i, p in enumerate(proto.params))
    return Target(func.name, TargetKind.FUNCTION, module, btf, func.id, proto.return_type_id, args, proto.variadic)


def _tracepoint_target(btf: BTF, module: str, name: str, typedef: Typedef) -> Target:
    ptr = btf.skip_modifiers(typedef.type_id)
    proto = btf.skip_modifiers(ptr.type_id) if isinstance(ptr, Ptr) else None
    if not isinstance(proto, FuncProto) or not proto.params:
        raise RuntimeFailure(
            f"btf_trace_{name} [{typedef.id}] is not a pointer to a prototype with a "
            "context argument; this BTF is not what the kernel's tracepoints produce"
        )
    types = [p.type_id for p in proto.params[1:]]  # the first is the tracepoint's `void *__data`
    names = _tracepoint_arg_names(btf, name, len(types))
    args = tuple(Argument(n, tid) for n, tid in zip(names, types))
    return Target(name, TargetKind.TRACEPOINT, module, btf, typedef.id, 0, args)


def _tracepoint_arg_names(btf: BTF, name: str, count: int) -> List[str]:
    for prefix in _TP_NAME_SOURCES:
        for func in btf.find_all(prefix + name, Kind.FUNC):
            proto = btf.type_by_id(func.type_id)  # type: ignore[union-attr]
            if isinstance(proto, FuncProto) and len(proto.params) == count + 1:
                names = [p.name for p in proto.params[1:]]
                if all(names):
                    return names
    return [f"arg{i}" for i in range(count)]
