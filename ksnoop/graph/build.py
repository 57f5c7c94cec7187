# SPDX-License-Identifier: GPL-2.0-only
"""A root function's static graph from the user's words: the root checked, the traceable
functions told apart, the kernel's code read and walked (graph.static)."""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

from btf import Kind
from btf.btf import NameIndex

from ksnoop.errors import RuntimeFailure, UsageError
from ksnoop.graph.calls import decoder
from ksnoop.graph import DEFAULT_DEPTH, MAX_DEPTH
from ksnoop.graph.static import StaticGraph, Traceable, discover, included
from ksnoop.graph.text import KernelText
from ksnoop.output.kallsyms import Kallsyms
from ksnoop.run.runner import ftrace_functions, require_privileges
from ksnoop.spec.targets import KernelBTF

# The functions the kernel lets no BPF trampoline attach to, whatever else says they are traceable:
# btf_id_deny in kernel/bpf/verifier.c (those a trampoline itself calls, or that run with
# preemption counted): fentry and kprobe_multi alike would recurse or be refused there.
DENIED = frozenset(
    {
        "migrate_disable",
        "migrate_enable",
        "rcu_read_unlock_strict",
        "preempt_count_add",
        "preempt_count_sub",
        "__rcu_read_lock",
        "__rcu_read_unlock",
    }
)


def check_depth(depth: int) -> None:
    if not 1 <= depth <= MAX_DEPTH:
        raise UsageError(f"--graph-depth {depth}: from 1 to {MAX_DEPTH}")  # as the option's own check says


def traceable_in(kernel: KernelBTF) -> Traceable:
    """Whether ksnoop may attach to a function: it has BTF (vmlinux's, or its module's), ftrace
    lists it (where tracefs says; a notrace function is not listed) and the kernel does not deny it."""
    hookable = ftrace_functions()
    # Each blob's FUNCs by name, indexed once when first asked: a graph asks of hundreds of
    # names (and resolving its functions then finds them in the same index).
    indexes: Dict[str, Tuple[int, Optional[NameIndex]]] = {}

    def traceable(name: str, module: str) -> bool:
        if name in DENIED or (hookable is not None and name.encode() not in hookable):
            return False
        found = indexes.get(module)
        if found is None:
            try:
                btf = kernel.module(module) if module else kernel.vmlinux
            except RuntimeFailure:  # a module without BTF
                found = indexes[module] = (0, None)
            else:
                found = indexes[module] = (btf.start_id, btf.named_index(Kind.FUNC))
        own, index = found
        return index is not None and any(i >= own for i in index.get(name))

    return traceable


def static_graph(
    kernel: KernelBTF,
    root: str,
    depth: Optional[int] = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    leaves: bool = True,
) -> StaticGraph:
    """The graph of `root` to `depth` (DEFAULT_DEPTH if None); without `leaves`, what the functions
    at `depth` call is not read (graph.static.discover). UsageError for a root that is no
    traceable function or a depth out of range; RuntimeFailure when the kernel's code cannot be read."""
    depth = DEFAULT_DEPTH if depth is None else depth
    check_depth(depth)
    if not kernel.running:
        raise UsageError("-g reads the running kernel's code, and --btf names another kernel's types: leave --btf out")
    target = kernel.find_function(root)  # UnknownTarget, with the closest names
    traceable = traceable_in(kernel)
    module = "" if target.module == "vmlinux" else target.module
    if not traceable(root, module):
        raise UsageError(f"'{root}' cannot be traced: ftrace does not list it (notrace) or the kernel denies it")
    md = decoder()  # UsageError without capstone: before anything is loaded
    require_privileges("reading kernel code")
    try:
        kallsyms = Kallsyms.load()
    except OSError as error:
        raise RuntimeFailure(f"cannot read /proc/kallsyms: {error.strerror or error}") from None
    if kallsyms.hidden:
        raise RuntimeFailure("/proc/kallsyms hides kernel addresses (kernel.kptr_restrict): the code cannot be found")
    symbol = kallsyms.by_name(root, module)
    if symbol is None:
        raise RuntimeFailure(f"'{root}' has BTF but no code in /proc/kallsyms (inlined everywhere?)")
    with KernelText() as text:
        graph = discover(symbol, depth, text, kallsyms, traceable, md, exclude, leaves)
    extra = included(include, lambda pattern: [t.name for t in kernel.glob_targets(pattern)])
    return StaticGraph(graph.root, graph.depth, graph.nodes, tuple(n for n in extra if traceable(n, "")))
