# SPDX-License-Identifier: GPL-2.0-only
"""A static call graph (graph.static.StaticGraph) as `ksnoop info -g` shows it: a tree, or JSON.

In the tree each function's callees are shown once, under its first call at its shallowest depth;
elsewhere it says at which depth they are. Names come from the kernel (kallsyms): sanitised.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Set

from ksnoop.graph.static import GraphNode, StaticGraph
from ksnoop.run.describe import plural
from ksnoop.sanitize import sanitize


def graph_text(graph: StaticGraph) -> str:
    nodes = {node.name: node for node in graph.nodes}
    indirect = sum(node.indirect for node in graph.nodes)
    lines = [
        f"{sanitize(graph.root)}: {plural(len(nodes), 'function')} within {plural(graph.depth, 'call')}, "
        f"{plural(indirect, 'indirect call')} not followed"
    ]
    expanded: Set[str] = set()

    def walk(node: GraphNode, prefix: str, branch: str, level: int) -> None:
        # Breadth first, each function's node is at its shallowest depth: its callees are shown
        # there, once.
        here = node.name not in expanded and level == node.depth
        # A function that calls nothing traceable is said in full wherever it is.
        lines.append(prefix + branch + _node_text(node, None if here or not node.calls else node.depth))
        if not here or level >= graph.depth:
            return
        expanded.add(node.name)
        below = prefix + ("" if not branch else "   " if branch.startswith("└") else "│  ")
        children = [nodes[name] for name in node.calls if name in nodes]
        for n, child in enumerate(children):
            walk(child, below, "└─ " if n == len(children) - 1 else "├─ ", level + 1)

    walk(nodes[graph.root], "", "", 0)
    if graph.included:
        lines.append("added by --graph-include: " + ", ".join(sanitize(name) for name in graph.included))
    return "\n".join(lines)


def _node_text(node: GraphNode, shown_at: Optional[int]) -> str:
    """The function, and what it does that the tree cannot show; or where its callees are shown."""
    text = sanitize(node.name) + (f" [{sanitize(node.module)}]" if node.module else "")
    if shown_at is not None:
        return text + f" (its calls: at depth {shown_at})"
    notes = []
    if node.indirect:
        notes.append(f"{node.indirect} indirect")
    if node.untraceable:
        notes.append("cannot trace " + ", ".join(sanitize(name) for name in node.untraceable))
    return text + (f"  ({'; '.join(notes)})" if notes else "")


def graph_json(graph: StaticGraph) -> Dict[str, Any]:
    nodes: List[Dict[str, Any]] = [
        {
            "name": node.name,
            "module": node.module or "vmlinux",
            "depth": node.depth,
            "calls": list(node.calls),
            "untraceable": list(node.untraceable),
            "indirect": node.indirect,
        }
        for node in graph.nodes
    ]
    return {"root": graph.root, "depth": graph.depth, "functions": nodes, "included": list(graph.included)}
