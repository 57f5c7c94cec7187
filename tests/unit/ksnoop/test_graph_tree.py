# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.output.graph_tree: the records the graph programs write in the BPF interpreter (the
driver of tests/unit/bpf/test_codegen_graph.py) made into one tree per root call, as text and as
JSON, with each call's times; a root call left open is dropped when the task's next one begins."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any, List, Optional

from ksnoop.output.graph_tree import GraphTrees
from ksnoop.output.json_lines import JsonFormatter
from ksnoop.output.text import TextFormatter, TextLayout
from tests.unit.bpf.test_codegen_graph import DST, NET, SKB, SRC, TASK_A, TASK_B, Driver, _graph, _root_call


def _feed(d: Driver, trees: GraphTrees) -> List[str]:
    lines = trees.lines()
    out: List[str] = []
    for record in d.vm.records:
        from bpf.plan import HEADER

        text: Optional[str] = lines[HEADER.unpack_from(record)[3]](record)
        if text is not None:
            out.append(text)
    return out


def _text(resolved: Any) -> TextFormatter:
    return TextFormatter(resolved, color=False, layout=TextLayout(compact=True, tree=True))


def test_a_root_call_is_one_indented_tree_with_times() -> None:
    d = _root_call(Driver(_graph()))
    (tree,) = _feed(d, GraphTrees(d.resolved, _text(d.resolved)))
    lines = tree.rstrip("\n").split("\n")
    marks = [re.search(r" (\s*[→←] \w+)\(", line).group(1) for line in lines]  # type: ignore[union-attr]
    assert marks == [
        "→ ip_send_skb",
        "  → strncpy_from_user",
        "    → noargs",
        "    ← noargs",
        "  ← strncpy_from_user",
        "  → noargs",
        "  ← noargs",
        "← ip_send_skb",
    ]
    # The time column stays aligned: the tree is indented after it.
    assert len({line.index("→") if "→" in line else line.index("←") for line in lines[:1] + lines[-1:]}) == 1
    times = [
        tuple(map(int, m.groups()))
        for m in (re.search(r"/\* (\d+) ns, self (\d+) ns \*/$", line) for line in lines)
        if m
    ]
    assert len(times) == 4  # each return: total and self
    root_total, root_self = times[-1]
    assert root_self == root_total - times[1][0] - times[2][0]  # less strncpy_from_user's and the second noargs's
    assert "return = (long int)5" in lines[4]


def test_json_nests_calls_in_one_object_per_root_call() -> None:
    d = _root_call(Driver(_graph()))
    (line,) = _feed(d, GraphTrees(d.resolved, JsonFormatter(d.resolved)))
    tree = json.loads(line)
    assert tree["entry"]["func"] == "ip_send_skb" and tree["return"]["func"] == "ip_send_skb" and tree["cut"] is False
    assert [c["entry"]["func"] for c in tree["calls"]] == ["strncpy_from_user", "noargs"]
    inner = tree["calls"][0]
    assert [c["entry"]["func"] for c in inner["calls"]] == ["noargs"] and inner["return"]["args"][
        "return"
    ] == "5"  # a long: a string, as 64-bit numbers are in JSON
    assert tree["self_ns"] == tree["duration_ns"] - sum(c["duration_ns"] for c in tree["calls"])


def test_a_cut_tree_says_so() -> None:
    resolved = _graph()
    resolved = replace(resolved, plan=replace(resolved.plan, graph_max_nodes=2))
    d = Driver(resolved)
    d.enter("ip_send_skb", NET, SKB).enter("noargs").leave("noargs", 0).enter("noargs").leave("noargs", 0)
    d.leave("ip_send_skb", NET, SKB, 0)
    (text,) = _feed(d, GraphTrees(d.resolved, _text(d.resolved)))
    assert text.rstrip("\n").split("\n")[-1] == "/* more than 2 calls: the tree is cut there */"
    (line,) = _feed(d, GraphTrees(d.resolved, JsonFormatter(d.resolved)))
    tree = json.loads(line)
    assert tree["cut"] is True and len(tree["calls"]) == 1


def test_a_root_call_without_its_return_is_dropped_when_the_next_begins() -> None:
    d = Driver(_graph("ip_send_skb(return != 0)"))
    _root_call(d)  # returns 0: no return record, the tree stays open
    d.enter("ip_send_skb", NET, SKB).enter("noargs").leave("noargs", 0).leave("ip_send_skb", NET, SKB, 3)
    trees = GraphTrees(d.resolved, JsonFormatter(d.resolved))
    (line,) = _feed(d, trees)
    tree = json.loads(line)
    assert [c["entry"]["func"] for c in tree["calls"]] == ["noargs"] and tree["return"]["args"]["return"] == 3
    assert trees.unfinished() == 0


def test_tasks_have_their_own_trees() -> None:
    d = Driver(_graph())
    d.task(TASK_A).enter("ip_send_skb", NET, SKB)
    d.task(TASK_B).enter("ip_send_skb", NET, SKB).enter("strncpy_from_user", DST, SRC, 8)
    d.task(TASK_A).enter("noargs").leave("noargs", 0)
    d.task(TASK_B).leave("strncpy_from_user", DST, SRC, 8, 1).leave("ip_send_skb", NET, SKB, 0)
    trees = GraphTrees(d.resolved, JsonFormatter(d.resolved))
    (line,) = _feed(d, trees)
    assert [c["entry"]["func"] for c in json.loads(line)["calls"]] == ["strncpy_from_user"]
    assert trees.unfinished() == 1  # task A's root call goes on
