# SPDX-License-Identifier: GPL-2.0-only
"""A function's static call graph: what it calls, and what those call, to a depth, read from the
running kernel's code (graph.text) and decoded (graph.calls).

A call's target is named by /proc/kallsyms. Some targets are not functions of their own and are
looked through: a compiler's `.cold` part of the same function, and its clones (`.isra.0`,
`.constprop.0`, `.part.0`), which have no BTF and so cannot be traced, but whose calls are the
caller's as if inlined. Retpoline thunks are indirect calls. A static call's trampoline
(`__SCT__*`) jumps to its current target, which is read from it.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

from ksnoop.graph.calls import CallSites, Decoder, call_sites
from ksnoop.graph.text import KernelText
from ksnoop.output.kallsyms import Kallsyms, Symbol

# The most code read of one function: the largest in a distribution kernel are some tens of KiB.
MAX_FUNCTION_SIZE = 1 << 17
INDIRECT_THUNKS = (
    "__x86_indirect_thunk_",
    "__x86_indirect_call_thunk_",
    "__x86_indirect_jump_thunk_",
    "__pi___x86_indirect_thunk_",
)
STATIC_CALL_TRAMPOLINE = "__SCT__"
_TRAMPOLINE_SIZE = 16


@dataclass(frozen=True)
class GraphNode:
    name: str
    module: str  # "" for vmlinux
    depth: int  # calls below the root (the root 0)
    calls: Tuple[str, ...]  # traceable functions it calls or tail-calls, in code order, each once
    untraceable: Tuple[str, ...]  # functions it calls that cannot be traced (no BTF, notrace, denied)
    indirect: int  # calls through a pointer: code does not say where they go


@dataclass(frozen=True)
class StaticGraph:
    root: str
    depth: int
    nodes: Tuple[GraphNode, ...]  # breadth first from the root, each function once
    included: Tuple[str, ...] = ()  # added by name or glob (--graph-include), not found in code

    def functions(self) -> Tuple[str, ...]:
        """Every function of the graph: the nodes, then the included ones not among them."""
        names = [node.name for node in self.nodes]
        return tuple(dict.fromkeys(names + list(self.included)))

    def node(self, name: str) -> GraphNode:
        return next(node for node in self.nodes if node.name == name)


Traceable = Callable[[str, str], bool]  # (function, module) -> may ksnoop attach to it


def discover(
    root: Symbol,
    depth: int,
    text: KernelText,
    kallsyms: Kallsyms,
    traceable: Traceable,
    decoder: Decoder,
    exclude: Sequence[str] = (),
    leaves: bool = True,
) -> StaticGraph:
    """The graph below `root` to `depth` calls; functions matching an `exclude` glob are left out
    (and not walked). Without `leaves`, the functions at `depth` are not read: their nodes say
    nothing of what they call (a trace attaches nothing there, and most of a graph is leaves)."""
    walker = _Walker(text, kallsyms, traceable, decoder, exclude)
    nodes: List[GraphNode] = []
    queue: List[Tuple[Symbol, int]] = [(root, 0)]
    seen = {root.name}
    while queue:
        symbol, level = queue.pop(0)
        if level == depth and not leaves:
            nodes.append(GraphNode(symbol.name, symbol.module, level, (), (), 0))
            continue
        node = walker.node(symbol, level)
        nodes.append(node)
        if level < depth:
            for name in node.calls:
                if name not in seen:
                    seen.add(name)
                    queue.append((walker.called[name], level + 1))
    return StaticGraph(root.name, depth, tuple(nodes))


class _Walker:
    def __init__(
        self, text: KernelText, kallsyms: Kallsyms, traceable: Traceable, decoder: Decoder, exclude: Sequence[str]
    ) -> None:
        self._text, self._kallsyms, self._traceable, self._decoder = text, kallsyms, traceable, decoder
        self._exclude = tuple(exclude)
        self._sites: Dict[int, CallSites] = {}
        # The code each name was called at: of two static functions of one name, the one called.
        self.called: Dict[str, Symbol] = {}

    def node(self, symbol: Symbol, depth: int) -> GraphNode:
        calls: Dict[str, None] = {}
        untraceable: Dict[str, None] = {}
        indirect = 0
        looked_through: Set[int] = {symbol.address}
        pending = [symbol]
        while pending:
            part = pending.pop(0)
            sites = self._code_sites(part)
            indirect += sites.indirect
            for branch in sites.branches:
                callee = self._kallsyms.find(branch.target)
                if callee is None:
                    continue
                if callee.name.startswith(INDIRECT_THUNKS):
                    indirect += 1
                    continue
                if callee.address != branch.target or _is_part_of(callee.name, symbol.name):
                    # Into the middle of code: a label of this function's, or of a part split off it.
                    if _is_part_of(callee.name, symbol.name) and callee.address not in looked_through:
                        looked_through.add(callee.address)
                        pending.append(callee)
                    continue
                if callee.name.startswith(STATIC_CALL_TRAMPOLINE):
                    callee = self._static_call_target(callee)
                    if callee is None:  # a static call to nothing, now
                        continue
                if callee.address in looked_through:
                    continue
                if any(fnmatch.fnmatchcase(callee.name, glob) for glob in self._exclude):
                    continue
                if self._traceable(callee.name, callee.module):
                    calls[callee.name] = None
                    self.called.setdefault(callee.name, callee)
                elif _is_clone(callee.name):
                    looked_through.add(callee.address)
                    pending.append(callee)
                elif branch.call:  # a jump to what cannot be traced is a return thunk or the like
                    untraceable[callee.name] = None
        return GraphNode(symbol.name, symbol.module, depth, tuple(calls), tuple(untraceable), indirect)

    def _static_call_target(self, trampoline: Symbol) -> Optional[Symbol]:
        code = self._text.read(trampoline.address, _TRAMPOLINE_SIZE)
        jumps = [b for b in call_sites(self._decoder, code, trampoline.address).branches if not b.call]
        return self._kallsyms.function_at(jumps[0].target) if jumps else None

    def _code_sites(self, symbol: Symbol) -> CallSites:
        sites = self._sites.get(symbol.address)
        if sites is None:
            end = self._kallsyms.end_of(symbol)
            size = min(MAX_FUNCTION_SIZE, (end or symbol.address + MAX_FUNCTION_SIZE) - symbol.address)
            code = self._text.read(symbol.address, size)
            sites = self._sites[symbol.address] = call_sites(self._decoder, code, symbol.address)
        return sites


def _is_part_of(name: str, function: str) -> bool:
    """Is `name` a part of `function` the compiler split off (`function.cold`, `function.part.0`)?"""
    return name.startswith(function + ".")


def _is_clone(name: str) -> bool:
    """A compiler's copy or part of a function (`f.isra.0`, `f.constprop.0`, `f.cold`): a suffix
    after a dot, which no C function name has."""
    return "." in name


def included(patterns: Sequence[str], names: Callable[[str], List[str]]) -> Tuple[str, ...]:
    """The functions `--graph-include` names (each a name or a glob; `names` expands one)."""
    out: Dict[str, None] = {}
    for pattern in patterns:
        for name in names(pattern):
            out[name] = None
    return tuple(out)
