# SPDX-License-Identifier: GPL-2.0-only
"""A function graph's records (`trace -g`) as one tree per root call: indented text, or one JSON
object with its calls nested.

Records come in the order the kernel wrote them to the one ring buffer, and a task runs on one
CPU at a time, so each task's records are in call order: an entry opens a call under the task's
innermost open one; a return closes the innermost open call of its function (and any a lost
return left open above it). A root call's tree is written when the root call returns. A root
entry record whose entry time is set (decode.record_head) begins a new tree, and drops one the
task left open: a root call whose return failed the spec's tests or --min-duration has no return
record. The kernel records at most plan.graph_max_nodes calls of a root call, then one entry more
to say the tree was cut.

Values are the records' own, through the formatter's value model: a text node's lines are the
TextFormatter's (compact, with the tree's indentation before the function), a JSON node holds the
entry and return records' JSON objects as the JsonFormatter writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from ksnoop.output.decode import build_decoder, record_fields, record_head
from ksnoop.output.text import TextFormatter
from ksnoop.spec.resolve import ResolvedTrace

ENTRY_MARK, RETURN_MARK, INDENT = "→ ", "← ", "  "


@dataclass
class _Call:
    entry: int  # its entry probe's index
    ts: int
    record: Any  # the entry: an Event (text) or its JSON object (JSON)
    calls: List["_Call"] = field(default_factory=list)
    end: Optional[int] = None  # the return's time, once it returned
    returned: Any = None  # the return, as `record`

    def total(self) -> Optional[int]:
        return None if self.end is None else self.end - self.ts

    def self_time(self) -> Optional[int]:
        total = self.total()
        if total is None:
            return None
        return total - sum(t for t in (c.total() for c in self.calls) if t is not None)


@dataclass
class _Tree:
    root: _Call
    open: List[_Call]  # the open calls, the root first
    nodes: int = 1
    cut: bool = False


class GraphTrees:
    """Per probe, a function from one record to the text of a finished tree, or None while the
    record's root call goes on."""

    def __init__(self, resolved: ResolvedTrace, formatter: Any) -> None:
        plan = resolved.plan
        self._max_nodes = plan.graph_max_nodes
        self._entry_of = {pair.exit: pair.entry for pair in plan.pairs}
        self._root_entry = next(
            i for i, p in enumerate(plan.probes) if p.graph is not None and p.graph.root and p.kind.is_entry
        )
        self._text = formatter if isinstance(formatter, TextFormatter) else None
        self._payloads: List[Callable[[Any], Any]] = []
        for index, target in enumerate(resolved.targets):
            decode = build_decoder(plan, index, target.btf)
            if self._text is not None:
                self._payloads.append(decode)
            else:
                self._payloads.append(formatter.record(index, record_fields(plan, index, target.btf), decode))
        self._trees: Dict[int, _Tree] = {}  # by thread id: the task's open root call

    def lines(self) -> List[Callable[[Any], Optional[str]]]:
        return [self._taker(index) for index in range(len(self._payloads))]

    def unfinished(self) -> int:
        """Root calls begun and not returned (still running when the trace ended)."""
        return len(self._trees)

    def _taker(self, probe: int) -> Callable[[Any], Optional[str]]:
        payload = self._payloads[probe]
        entry = self._entry_of.get(probe)  # None for an entry probe
        root_entry = probe == self._root_entry

        def take(record: Any) -> Optional[str]:
            ts, tid, _probe, started = record_head(record)
            if entry is None:
                if root_entry and started:
                    call = _Call(probe, ts, payload(record))
                    self._trees[tid] = _Tree(call, [call])
                    return None
                tree = self._trees.get(tid)
                if tree is None:  # its root call's entry was lost
                    return None
                if tree.nodes >= self._max_nodes:
                    tree.cut = True
                    return None
                tree.nodes += 1
                call = _Call(probe, ts, payload(record))
                tree.open[-1].calls.append(call)
                tree.open.append(call)
                return None
            tree = self._trees.get(tid)
            if tree is None:
                return None
            for depth in range(len(tree.open) - 1, -1, -1):
                if tree.open[depth].entry == entry:
                    break
            else:
                return None  # a return whose entry was not recorded
            call = tree.open[depth]
            del tree.open[depth:]
            call.end, call.returned = ts, payload(record)
            if depth:
                return None
            del self._trees[tid]
            return self._render(tree)

        return take

    def _render(self, tree: _Tree) -> str:
        if self._text is not None:
            return self._render_text(self._text, tree)
        return self._render_json(tree)

    def _render_text(self, text: TextFormatter, tree: _Tree) -> str:
        lines: List[str] = []
        # Depth first without recursion (a recursive callee may nest thousands deep): a call's
        # entry line, its calls, then its return line.
        stack: List[Any] = [(tree.root, 0, False)]
        while stack:
            call, depth, closing = stack.pop()
            indent = INDENT * depth
            if not closing:
                lines.append(text.format(call.record, prefix=indent + ENTRY_MARK))
                stack.append((call, depth, True))
                stack.extend((child, depth + 1, False) for child in reversed(call.calls))
            elif call.returned is not None:
                took = text.note(f" /* {call.total()} ns, self {call.self_time()} ns */")
                lines.append(text.format(call.returned._replace(duration_ns=None), prefix=indent + RETURN_MARK) + took)
        if tree.cut:
            lines.append(text.note(f"/* more than {self._max_nodes} calls: the tree is cut there */"))
        return "\n".join(lines) + "\n"

    def _render_json(self, tree: _Tree) -> str:
        # Post-order without recursion: each call's object once its calls' are made.
        made: Dict[int, str] = {}
        stack: List[Any] = [(tree.root, False)]
        while stack:
            call, ready = stack.pop()
            if not ready:
                stack.append((call, True))
                stack.extend((child, False) for child in call.calls)
                continue
            parts = ['{"entry":', call.record, ',"return":', "null" if call.returned is None else call.returned]
            if call.returned is not None:
                parts += [',"duration_ns":', str(call.total()), ',"self_ns":', str(call.self_time())]
            parts += [',"calls":[', ",".join(made.pop(id(child)) for child in call.calls), "]"]
            if call is tree.root:
                parts.append(',"cut":true' if tree.cut else ',"cut":false')
            made[id(call)] = "".join(parts) + "}"
        return made[id(tree.root)]
