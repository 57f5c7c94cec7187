# SPDX-License-Identifier: GPL-2.0-only
"""`ksnoop trace -g` (function graphs) end to end in the VM, on each kernel the harness boots: where
the kernel has kprobe_multi (Debian's 6.12, with kprobe sessions) the graph's functions attach by
it, where it has not (Debian 12's 6.1) by an fentry/fexit each, saying so; the trees are the same.

One guest run of trace_driver.py: sender a sends datagrams of known sizes on loopback, sender b
one more. `ip_send_skb(net, skb)` sends each (skb->len = size + 28) through the transmit path its
static graph holds. The instances watch sender a by its comm (b's calls of the same functions must
not appear), or b with -n 1; one is killed and must leave nothing attached. The static graph
`ksnoop info -g` reads in the same guest is the ground truth of which functions may appear.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List

import pytest

from tests.vm import harness
from tests.vm.test_trace_vm import HEADERS
from tests.vm.trace_driver import explain, run_scenario

pytestmark = pytest.mark.vm

SCENARIO_TIMEOUT = 900
SIZES = [120, 230, 340]
SENDERS = [
    {"name": "a", "comm": "ksnoop-graph-a", "sends": [{"size": size} for size in SIZES]},
    {"name": "b", "comm": "ksnoop-graph-b", "sends": [{"size": 77}]},
]
ROOT = "ip_send_skb(skb->len)"
INSTANCES = [
    {"name": "json", "ready": "stderr", "stop": "int", "args": ["-g", "-v", "-o", "json", "--comm", "{a_comm}", ROOT]},
    {
        "name": "full",
        "ready": "stderr",
        "stop": "term",
        "args": ["-g", "--graph-depth", "2", "--graph-args", "full", "-o", "json", "--comm", "{a_comm}", ROOT],
    },
    {
        "name": "text",
        "ready": "stderr",
        "stop": "int",
        "args": ["-g", "--graph-depth", "1", "--comm", "{a_comm}", ROOT],
    },
    {
        "name": "count1",
        "ready": "stderr",
        "stop": "self",
        "args": ["-g", "-o", "json", "-n", "1", "--comm", "{b_comm}", ROOT],
    },
    {"name": "killed", "ready": "stderr", "stop": "kill", "args": ["-g", "--comm", "nobody", ROOT]},
]
STATIC = ["python3", "-m", "ksnoop", "info", "-g", "-o", "json", "ip_send_skb"]


@pytest.fixture(scope="module")
def scenario(vm: harness.VM) -> Dict[str, Any]:
    static = vm.run(STATIC, timeout=300, cwd=str(harness.REPO))
    assert static.returncode == 0, static.stdout + static.stderr
    manifest = run_scenario(vm, "graph", {"senders": SENDERS, "instances": INSTANCES}, SCENARIO_TIMEOUT)
    manifest["static"] = {node["name"]: node for node in json.loads(static.stdout)["functions"]}
    manifest["multi"] = vm.run("grep -qw register_fprobe /proc/kallsyms", timeout=60).returncode == 0
    for sender in manifest["senders"]:
        assert [send["error"] for send in sender["sends"]] == [None] * len(sender["sends"])
    return manifest


def _trees(scenario: Dict[str, Any], name: str) -> List[Dict[str, Any]]:
    inst = scenario["instances"][name]
    assert inst["returncode"] == 0, explain(scenario, name)
    return [json.loads(line) for line in scenario["out"][name].splitlines()]


def _calls(node: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    """Every call below `node`, depth first in call order."""
    for call in node["calls"]:
        yield call
        yield from _calls(call)


def test_one_tree_per_root_call_of_the_watched_task_only(scenario: Dict[str, Any]) -> None:
    trees = _trees(scenario, "json")
    a = next(s for s in scenario["senders"] if s["name"] == "a")
    assert [t["entry"]["args"]["skb->len"] for t in trees] == [size + HEADERS for size in SIZES], explain(
        scenario, "json"
    )
    for tree in trees:
        assert tree["cut"] is False and tree["return"]["func"] == "ip_send_skb"
        nodes = [tree, *_calls(tree)]
        assert {(n["entry"]["pid"], n["entry"]["comm"]) for n in nodes} == {(a["pid"], a["comm"])}
    assert "ksnoop: 3 records" in scenario["err"]["json"]


def test_the_tree_holds_the_transmit_path_the_code_calls_in_order(scenario: Dict[str, Any]) -> None:
    static = scenario["static"]
    for tree in _trees(scenario, "json"):
        callees = [c["entry"]["func"] for c in tree["calls"]]
        # The root's own calls are calls its code makes directly (or through a pointer the static
        # graph counts): the local out path first, then the output of the route.
        local_out = [f for f in callees if f in ("ip_local_out", "__ip_local_out")]
        assert local_out, callees
        assert set(callees) <= set(static["ip_send_skb"]["calls"]), (callees, static["ip_send_skb"])
        below = [c["entry"]["func"] for c in _calls(tree)]
        assert below.index(local_out[0]) < below.index("ip_output") if "ip_output" in below else True
        # Every function traced is one of the static graph's.
        assert set(below) <= set(static), set(below) - set(static)


def test_durations_nest_and_self_time_is_what_calls_leave(scenario: Dict[str, Any]) -> None:
    for tree in _trees(scenario, "json"):
        for node in [tree, *_calls(tree)]:
            if node["return"] is None:
                continue
            start, end = node["entry"]["ts"], node["return"]["ts"]
            assert node["duration_ns"] == end - start > 0
            done = [c for c in node["calls"] if c["return"] is not None]
            for child in node["calls"]:
                assert start <= child["entry"]["ts"] and (child["return"] is None or child["return"]["ts"] <= end)
            assert node["self_ns"] == node["duration_ns"] - sum(c["duration_ns"] for c in done) >= 0


def test_full_args_show_the_roots_skb_in_its_callees(scenario: Dict[str, Any]) -> None:
    trees = _trees(scenario, "full")
    assert len(trees) == len(SIZES), explain(scenario, "full")
    for tree, size in zip(trees, SIZES):
        seen = []
        for call in _calls(tree):
            skb = call["entry"]["args"].get("skb")
            if isinstance(skb, dict) and "len" in skb:
                seen.append(skb["len"])
        assert seen and set(seen) == {size + HEADERS}, (size, seen)


def test_text_is_an_indented_tree(scenario: Dict[str, Any]) -> None:
    inst = scenario["instances"]["text"]
    assert inst["returncode"] == 0, explain(scenario, "text")
    header, trees = scenario["out"]["text"].split("\n", 1)
    assert header.split() == ["TIME", "CPU", "PID", "FUNCTION/ARGS"]
    blocks = [b for b in trees.split("\n\n") if b.strip()]
    assert len(blocks) == len(SIZES), explain(scenario, "text")
    for block in blocks:
        lines = block.splitlines()
        assert "→ ip_send_skb(" in lines[0] and "← ip_send_skb(" in lines[-1]
        assert all("  → " in line or "  ← " in line for line in lines[1:-1]), block
        assert lines[-1].endswith(" ns */") and ", self " in lines[-1]


def test_count_stops_after_one_root_call_of_the_other_task(scenario: Dict[str, Any]) -> None:
    (tree,) = _trees(scenario, "count1")
    b = next(s for s in scenario["senders"] if s["name"] == "b")
    assert tree["entry"]["pid"] == b["pid"] and tree["entry"]["args"]["skb->len"] == 77 + HEADERS


def test_kprobe_multi_where_the_kernel_has_it_else_an_fentry_each(scenario: Dict[str, Any]) -> None:
    err, verbose = scenario["err"]["count1"], scenario["err"]["json"]  # depth 3: more than a handful
    if scenario["multi"]:
        assert "one fentry/fexit per graph function" not in err, err
        assert "(kprobe session)" in err or "(kprobe_multi)" in err, err
        assert scenario["instances"]["json"]["links_attached"] < 2 * len(scenario["static"]), explain(scenario, "json")
    else:
        assert "ksnoop: one fentry/fexit per graph function (this kernel has no kprobe_multi" in err, err
        assert "one per graph function: no kprobe_multi" in verbose, verbose  # -v: the backend and why
    # -v says which calls the code makes through pointers.
    assert "leaves out calls through pointers, which code does not show" in verbose, verbose


def test_kill_9_leaves_nothing_attached(scenario: Dict[str, Any]) -> None:
    assert scenario["instances"]["killed"]["returncode"] == -9, explain(scenario, "killed")
    left = scenario["links_after_exit"]
    assert left is not None, "bpftool could not list links in the guest"
    assert not {"kprobe_multi", "perf_event", "tracing", "raw_tracepoint"} & set(left), left
