# SPDX-License-Identifier: GPL-2.0-only
"""`ksnoop trace -s` (call-path mode) end to end in the VM, against traffic and exits made there.

One guest run of trace_driver.py: the ksnoops below attach, then sender a sends UDP datagrams to its
receiver, one to a port nobody listens on (the ICMP reply goes out through ip_send_skb from the
softirq the send raised: a nested, second ip_send_skb in the same task, which the path must not
mistake for its own), and an ICMP echo on a raw socket (ip_send_skb outside udp_sendmsg: shown by
no path); sender b sends a 300-byte datagram, then forks children that exit at once. While every
ksnoop still runs, the driver counts the entries left in each ksnoop's per-task path map.

The VM kernel (Debian 6.1): udp_sendmsg(sk, msg, len) -> ... -> ip_send_skb(net, skb) sees
skb->len = len + 28; `void do_exit(long code)` never returns and calls `exit_signals(tsk)` before
the sched_process_exit tracepoint; a child's _exit(7) reaches do_exit with code 7 << 8.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.vm import harness
from tests.vm.trace_driver import KERNEL_FAULT
from tests.support.ready import split_ready

pytestmark = pytest.mark.vm

DRIVER = Path(__file__).with_name("trace_driver.py")
SCENARIO_TIMEOUT = 600
HEADERS = 28
EXIT_CODE = 7 << 8
CHILDREN = 6
# The exit hook, and an fentry and an fexit per function of a two-function path.
PATH_LINKS = 5
# Does the guest's verifier refuse an fexit on do_exit (v6.10 on: "Attaching fexit/fmod_ret to
# __noreturn functions is rejected")? Asked by loading the smallest one.
NORETURN_PROBE = """
from bpf.insn import exit_, mov64_imm
from bpf.loader import VerifierError, load_program
from bpf.uapi import AttachType, ProgType
from btf import BTF
func = BTF.vmlinux().find("do_exit")
try:
    with load_program([mov64_imm(0, 0), exit_()], ProgType.TRACING, AttachType.TRACE_FEXIT, func.id, name="t"):
        print("loads")
except VerifierError as error:
    print("refused" if "__noreturn" in error.log else "refused otherwise: " + error.log[-300:])
"""

SENDERS = [
    {
        "name": "a",
        "comm": "ksnoop-path-a",
        "sends": [{"size": 200}, {"size": 50, "port": "closed"}, {"icmp": True}, {"size": 70}],
    },
    {"name": "b", "comm": "ksnoop-path-b", "sends": [{"size": 300}, {"exits": CHILDREN}]},
    # Sleeps under and over --min-duration's 100 ms.
    {"name": "c", "comm": "ksnoop-path-c", "sends": [{"sleep": 0.001}, {"sleep": 0.3}, {"sleep": 0.001}]},
]
INSTANCES = [
    {
        "name": "json",
        "links": PATH_LINKS,
        "stop": "int",
        "args": ["-s", "-o", "json", "udp_sendmsg(len, return)", "ip_send_skb(skb->len, return)"],
    },
    {
        "name": "pred",
        "links": PATH_LINKS,
        "stop": "term",
        "args": ["-s", "-o", "json", "udp_sendmsg(len == 300)", "ip_send_skb(skb->len)"],
    },
    {"name": "text", "links": PATH_LINKS, "stop": "int", "args": ["-s", "udp_sendmsg(len)", "ip_send_skb(skb->len)"]},
    {
        "name": "count1",
        "links": PATH_LINKS,
        "stop": "self",
        "args": ["-s", "-o", "json", "-n", "1", "udp_sendmsg(len == 300, return)", "ip_send_skb(skb->len, return)"],
    },
    {
        "name": "slow",
        "links": PATH_LINKS,
        "stop": "int",
        "args": [
            "-s",
            "-o",
            "json",
            "--min-duration",
            "100ms",
            "-p",
            "{c_pid}",
            "__x64_sys_clock_nanosleep",
            "hrtimer_nanosleep(return)",
        ],
    },
    {
        "name": "exits",
        "links": PATH_LINKS,
        "stop": "term",
        "args": ["-s", "-o", "json", "do_exit(code)", "exit_signals"],
    },
]


class Run:
    def __init__(self, manifest: dict[str, Any], outputs: dict[str, str], errors: dict[str, str]) -> None:
        self.manifest, self.outputs, self.errors = manifest, outputs, errors

    def sender(self, name: str) -> dict[str, Any]:
        return next(s for s in self.manifest["senders"] if s["name"] == name)

    def explain(self, name: str) -> str:
        inst = self.manifest["instances"][name]
        return (
            f"\n--- ksnoop trace {' '.join(inst['argv'])}: {json.dumps(inst)}\n--- stderr:\n"
            f"{self.errors[name]}--- stdout:\n{self.outputs[name][:4000]}"
        )

    def records(self, name: str) -> list[dict[str, Any]]:
        inst = self.manifest["instances"][name]
        assert inst["attached_s"] is not None and not inst["timed_out"], self.explain(name)
        assert inst["returncode"] == 0, self.explain(name)
        records = [json.loads(line) for line in self.outputs[name].splitlines()]
        assert self.errors[name].endswith(f"ksnoop: {len(records)} records\n"), self.explain(name)
        return records


@pytest.fixture(scope="module")
def run(vm: harness.VM) -> Run:
    asked = vm.run(["python3", "-c", NORETURN_PROBE], 300, cwd=str(harness.REPO))
    assert asked.returncode == 0 and asked.stdout.strip() in ("loads", "refused"), asked.stdout + asked.stderr
    noreturn_refused = asked.stdout.strip() == "refused"
    work = vm.shared_dir / "path"
    work.mkdir(exist_ok=True)
    plan = work / "plan.json"
    # Where the kernel refuses a return probe on do_exit, ksnoop traces its entry alone: one link fewer.
    instances = [{**i, "links": i["links"] - 1} if i["name"] == "exits" and noreturn_refused else i for i in INSTANCES]
    plan.write_text(json.dumps({"senders": SENDERS, "instances": instances, "count_map_entries": ["ksnoop_path"]}))
    started = time.monotonic()
    result = vm.run(["python3", str(DRIVER), str(plan)], SCENARIO_TIMEOUT, cwd=str(harness.REPO))
    assert result.returncode == 0, result.stdout + result.stderr + result.console_log
    manifest = json.loads((work / "manifest.json").read_text())
    outputs = {i["name"]: (work / f"{i['name']}.out").read_text() for i in INSTANCES}
    # The ready line is checked where it matters (tests/kernel/test_endings.py); the rest exactly.
    errors = {i["name"]: split_ready((work / f"{i['name']}.err").read_text())[1] for i in INSTANCES}
    if manifest["not_attached"]:
        pytest.fail(
            f"not attached: {manifest['not_attached']}\n"
            + "".join(f"{n}: {errors[n]}\n" for n in manifest["not_attached"])
            + result.console_log
        )
    faults = [line for line in result.console_log.splitlines() if KERNEL_FAULT.search(line)]
    assert not faults, result.console_log
    print(f"path scenario: {time.monotonic() - started:.0f} s")
    manifest["noreturn_refused"] = noreturn_refused
    return Run(manifest, outputs, errors)


def _outline(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["func"], r["probe"]) for r in records]


ONE_PATH = [("udp_sendmsg", "entry"), ("ip_send_skb", "entry"), ("ip_send_skb", "return"), ("udp_sendmsg", "return")]


def test_each_datagram_shows_its_whole_path_in_call_order_and_nothing_else(run: Run) -> None:
    records = run.records("json")
    a, b = run.sender("a"), run.sender("b")
    sizes = [(a["pid"], 200), (a["pid"], 50), (a["pid"], 70), (b["pid"], 300)]
    assert _outline(records) == ONE_PATH * len(sizes), run.explain("json")
    for n, (pid, size) in enumerate(sizes):
        path = records[4 * n : 4 * n + 4]
        assert {(r["pid"], r["tid"]) for r in path} == {(pid, pid)}
        assert path[0]["args"] == {"len": str(size)}  # a size_t: a decimal string in JSON
        # The datagram's own skb: not the ICMP reply the closed port drew from inside this send.
        assert path[1]["args"] == {"skb->len": size + HEADERS}
        assert path[2]["args"] == {"return": 0} and path[3]["args"] == {"return": size}
        # Durations: each return has one, the outer call's spans the inner one's.
        assert 0 < path[2]["duration_ns"] < path[3]["duration_ns"]
        assert path[3]["ts"] - path[3]["duration_ns"] == path[0]["ts"]
        assert path[2]["ts"] - path[2]["duration_ns"] == path[1]["ts"]
        assert "duration_ns" not in path[0] and "duration_ns" not in path[1]


def test_an_entry_predicate_keeps_only_its_paths(run: Run) -> None:
    records = run.records("pred")
    assert _outline(records) == ONE_PATH, run.explain("pred")
    assert records[0]["pid"] == run.sender("b")["pid"] and records[0]["args"] == {"len": "300"}
    assert records[1]["args"] == {"skb->len": 300 + HEADERS}


def test_count_stops_after_one_whole_path(run: Run) -> None:
    # -n 1 counts call paths: the 300-byte datagram's path, its returns included, and nothing more.
    records = run.records("count1")
    assert _outline(records) == ONE_PATH, run.explain("count1")
    assert records[0]["args"] == {"len": "300"} and records[3]["args"] == {"return": 300}


def test_min_duration_shows_only_the_slow_path(run: Run) -> None:
    # Of the sleeper's three clock_nanosleep calls only the 300 ms one took 100 ms by the time
    # hrtimer_nanosleep returned: its whole path, nothing of the 1 ms ones.
    records = run.records("slow")
    outline = [("__x64_sys_clock_nanosleep", "entry"), ("hrtimer_nanosleep", "entry")]
    outline += [("hrtimer_nanosleep", "return"), ("__x64_sys_clock_nanosleep", "return")]
    assert _outline(records) == outline, run.explain("slow")
    assert {r["pid"] for r in records} == {run.sender("c")["pid"]}
    assert records[2]["args"] == {"return": "0"} and records[3]["duration_ns"] >= 300_000_000  # a long: a string


def test_text_shows_the_paths_with_durations(run: Run) -> None:
    inst = run.manifest["instances"]["text"]
    assert inst["returncode"] == 0, run.explain("text")
    out = run.outputs["text"]
    calls = [line for line in out.splitlines() if "udp_sendmsg(" in line or "ip_send_skb(" in line]
    assert len(calls) == 4 * 4, run.explain("text")
    assert "skb->len = (unsigned int)228" in out and "len = (size_t)200" in out
    assert out.count("/* duration ") == 2 * 4


def test_a_path_in_a_task_that_dies_inside_it_is_shown_and_its_state_forgotten(run: Run) -> None:
    records = run.records("exits")
    children = next(s for s in run.sender("b")["sends"] if "exited" in s)["exited"]
    assert len(children) == CHILDREN
    by_pid: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        by_pid.setdefault(record["pid"], []).append(record)
    for child in children:
        path = by_pid.get(child)
        assert path is not None, f"child {child} exited unseen{run.explain('exits')}"
        # do_exit never returns: its entry and exit_signals' entry and return, nothing more.
        assert _outline(path) == [("do_exit", "entry"), ("exit_signals", "entry"), ("exit_signals", "return")]
        assert path[0]["args"] == {"code": str(EXIT_CODE)}  # a long: a decimal string in JSON
    # Where the kernel refuses a return probe on a function that never returns, ksnoop says so once.
    said = run.errors["exits"].count("ksnoop: do_exit never returns: its entry is traced alone\n")
    assert said == (1 if run.manifest["noreturn_refused"] else 0), run.explain("exits")
    # Every path has ended (each datagram's returned) or its task has exited (do_exit's never
    # return): the sched_process_exit hook must have left no entry behind in any instance.
    entries = run.manifest["map_entries"]["ksnoop_path"]
    # The -n 1 instance may be gone already, or still exiting (its one path has ended: no entry).
    running = len([i for i in INSTANCES if i["stop"] != "self"])
    assert len(entries) in (running, running + 1), entries
    assert set(entries.values()) == {0}, entries
