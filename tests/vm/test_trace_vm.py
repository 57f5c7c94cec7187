# SPDX-License-Identifier: GPL-2.0-only
"""`ksnoop trace` with fentry/fexit and with kprobes/kretprobes (`--backend`), end to end in the VM
(this machine's kernel refuses fentry and has no kprobes). Every test runs once per backend: the
records, text and JSON must be the same whichever probes took them.

One guest run (trace_driver.py) starts every ksnoop below at once, waits until each has attached,
then two sender processes with their own comms send UDP datagrams on loopback one after another:
the ground truth (pids, comms, ports, sizes, which send failed) comes back in a manifest, and each
test checks one ksnoop's JSON or text output against it. One run, because each Python start in the
guest costs seconds under TCG and ksnoop's own start about ten.

The VM kernel (Debian 6.1): `int ip_send_skb(struct net *net, struct sk_buff *skb)` sees
skb->len = payload + 28 (UDP + IP headers); `int udp_sendmsg(struct sock *sk, struct msghdr *msg,
size_t len)` returns len, or -EINVAL (-22) before any skb exists for a datagram to port 0.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.vm import harness
from tests.vm.trace_driver import KERNEL_FAULT
from tests.support.ready import split_ready

pytestmark = pytest.mark.vm

DRIVER = Path(__file__).with_name("trace_driver.py")
# All ten ksnoops attach within about 100 s under TCG on an idle 2-CPU host, 4 minutes on a busy one.
SCENARIO_TIMEOUT = 600
HEADERS = 28  # UDP + IPv4 headers, in skb->len at ip_send_skb
EINVAL = -errno.EINVAL

# Sender a sends 200 and 50 bytes, then 77 to port 0 (udp_sendmsg fails); b sends 300 and 60 bytes.
SENDERS = [
    {"name": "a", "comm": "ksnoop-snd-a", "sends": [{"size": 200}, {"size": 50}, {"size": 77, "port": 0}]},
    {"name": "b", "comm": "ksnoop-snd-b", "sends": [{"size": 300}, {"size": 60}]},
    # Sleeps under and over --min-duration's 100 ms (a TCG guest overshoots a 1 ms sleep by far less).
    {
        "name": "c",
        "comm": "ksnoop-sleeper",
        "sends": [{"sleep": 0.001}, {"sleep": 0.3}, {"sleep": 0.001}, {"sleep": 0.4}],
    },
]
JQ = ["jq", "-c", '.args["skb->len"]']


def _instance(name: str, links: int, stop: str, *args: str, pipe: list[str] | None = None) -> dict[str, Any]:
    """`links`: BPF links that make it attached (an fentry, or an fentry+fexit pair, per spec).
    `stop`: "term"/"int" (that signal after the traffic) or "self" (-n)."""
    return {"name": name, "links": links, "stop": stop, "args": list(args), "pipe": pipe}


INSTANCES = [
    _instance("gt100", 1, "int", "-o", "json", "ip_send_skb(skb->len > 100)"),
    _instance("all_args", 2, "term", "-o", "json", "ip_send_skb"),
    _instance("return_ne0", 2, "int", "-o", "json", "ip_send_skb(return != 0)"),
    _instance("return_eq0", 2, "term", "-o", "json", "ip_send_skb(return == 0)"),
    _instance("udp_failed", 2, "int", "-o", "json", "udp_sendmsg(return < 0)"),
    _instance("two_funcs", 4, "term", "-o", "json", "ip_send_skb", "udp_sendmsg"),
    _instance("pid_a", 1, "int", "-o", "json", "-p", "{a_pid}", "ip_send_skb(skb->len)"),
    _instance("comm_b", 1, "term", "-o", "json", "--comm", "{b_comm}", "ip_send_skb(skb->len)"),
    _instance("count3_jq", 1, "self", "-o", "json", "-n", "3", "ip_send_skb(skb->len)", pipe=JQ),
    _instance("count2_calls", 2, "self", "-o", "json", "-n", "2", "udp_sendmsg(len, return)"),
    _instance("slow", 2, "int", "-o", "json", "--min-duration", "100ms", "-p", "{c_pid}", "hrtimer_nanosleep(rqtp)"),
    _instance("text", 1, "int", "-o", "text", "ip_send_skb(skb->len > 100)"),
    _instance("failed_text", 2, "term", "-o", "text", "udp_sendmsg(return < 0, sk)"),
]


@dataclasses.dataclass
class Datagram:
    sender: str
    comm: str
    pid: int
    sport: int
    size: int
    error: int | None  # errno of a failed sendto

    @property
    def skb_len(self) -> int:
        return self.size + HEADERS


@dataclasses.dataclass
class Scenario:
    manifest: dict[str, Any]
    datagrams: list[Datagram]  # in the order they were sent
    outputs: dict[str, str]
    errors: dict[str, str]  # less the ready line
    ready: dict[str, list[str]]  # the ready line(s)
    seconds: float

    def sent(self) -> list[Datagram]:
        """The datagrams that reached ip_send_skb."""
        return [d for d in self.datagrams if d.error is None]

    def sender(self, name: str) -> dict[str, Any]:
        return next(s for s in self.manifest["senders"] if s["name"] == name)

    def instance(self, name: str) -> dict[str, Any]:
        return self.manifest["instances"][name]

    def explain(self, name: str) -> str:
        inst = self.instance(name)
        return (
            f"\n--- ksnoop trace {' '.join(inst['argv'])}: {json.dumps(inst)}\n--- stderr:\n"
            f"{self.errors[name]}--- stdout:\n{self.outputs[name][:3000]}"
        )

    def records(self, name: str) -> list[dict[str, Any]]:
        """The instance's JSON lines, after checking it ended as planned: exit 0 and a summary line."""
        self.check_exit(name)
        records = []
        for line in self.outputs[name].splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                pytest.fail(f"not a JSON line: {line[:300]!r}{self.explain(name)}")
        summary = f"ksnoop: {len(records)} records\n"
        assert self.errors[name].endswith(summary), self.explain(name)
        return records

    def check_exit(self, name: str) -> None:
        inst = self.instance(name)
        assert inst["attached_s"] is not None, f"{name} never attached{self.explain(name)}"
        assert not inst["timed_out"], f"{name} did not exit{self.explain(name)}"
        assert inst["returncode"] == 0, self.explain(name)


@pytest.fixture(scope="module", params=["fentry", "kprobe"])
def scenario(vm: harness.VM, request: pytest.FixtureRequest) -> Scenario:
    backend = request.param
    work = vm.shared_dir / f"trace-{backend}"
    work.mkdir(exist_ok=True)
    plan = work / "plan.json"
    instances = [{**i, "args": [*i["args"], "--backend", backend]} for i in INSTANCES]
    plan.write_text(json.dumps({"senders": SENDERS, "instances": instances}))
    started = time.monotonic()
    result = vm.run(["python3", str(DRIVER), str(plan)], SCENARIO_TIMEOUT, cwd=str(harness.REPO))
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr + result.console_log
    manifest = json.loads((work / "manifest.json").read_text())
    outputs = {i["name"]: (work / f"{i['name']}.out").read_text() for i in INSTANCES}
    said = {i["name"]: split_ready((work / f"{i['name']}.err").read_text()) for i in INSTANCES}
    errors = {name: rest for name, (_, rest) in said.items()}
    ready = {name: lines for name, (lines, _) in said.items()}
    if manifest["not_attached"]:
        pytest.fail(
            f"not attached: {manifest['not_attached']}\n"
            + "".join(f"{n}: {errors[n]}\n" for n in manifest["not_attached"])
            + result.console_log
        )
    assert [s["name"] for s in manifest["senders"]] == [s["name"] for s in SENDERS]
    datagrams = [
        Datagram(sender["name"], sender["comm"], sender["pid"], sender["sport"], send["size"], send["error"])
        for sender in manifest["senders"]
        for send in sender["sends"]
        if "size" in send
    ]
    # The ground truth itself: the port-0 datagram failed in udp_sendmsg, the rest went out.
    sizes = [(d.size, d.error) for d in datagrams]
    assert sizes == [(200, None), (50, None), (77, errno.EINVAL), (300, None), (60, None)]
    # Kernel warnings and oopses (a BPF splat, say) show on the console; a soft lockup or RCU stall
    # only means TCG was starved on a busy host.
    faults = [line for line in result.console_log.splitlines() if KERNEL_FAULT.search(line)]
    assert not faults, result.console_log
    return Scenario(manifest, datagrams, outputs, errors, ready, seconds)


def _pid_tid_comm(record: dict[str, Any]) -> tuple[int, int, str]:
    return record["pid"], record["tid"], record["comm"]


def _who(d: Datagram) -> tuple[int, int, str]:
    return d.pid, d.pid, d.comm  # single-threaded senders: tid == pid


def _check_header(record: dict[str, Any], func: str, probe: str) -> None:
    assert record["func"] == func and record["probe"] == probe, record
    assert isinstance(record["ts"], int) and record["ts"] > 0
    assert isinstance(record["cpu"], int) and 0 <= record["cpu"] < 64
    assert ("duration_ns" in record) == (probe == "return"), record


def test_predicate_sees_200_byte_datagram_and_not_50(scenario: Scenario) -> None:
    records = scenario.records("gt100")
    expected = [d for d in scenario.sent() if d.skb_len > 100]
    assert [r["args"] for r in records] == [{"skb->len": d.skb_len} for d in expected]
    # 200 and 300 bytes of payload, seen as 228 and 328; not 50 and 60 (78 and 88).
    assert [r["args"]["skb->len"] for r in records] == [228, 328]
    assert [_pid_tid_comm(r) for r in records] == [_who(d) for d in expected]
    for r in records:
        _check_header(r, "ip_send_skb", "entry")


def test_default_entry_has_every_argument_and_return_has_return_and_duration(scenario: Scenario) -> None:
    records = scenario.records("all_args")
    sent = scenario.sent()
    assert [(r["probe"], r["tid"]) for r in records] == [
        (probe, d.pid) for d in sent for probe in ("entry", "return")
    ], scenario.explain("all_args")
    for d, entry, ret in zip(sent, records[::2], records[1::2]):
        _check_header(entry, "ip_send_skb", "entry")
        _check_header(ret, "ip_send_skb", "return")
        assert list(entry["args"]) == ["net", "skb"]
        net, skb = entry["args"]["net"], entry["args"]["skb"]
        # Pointers to structs are followed: the structs themselves, decoded member by member.
        assert isinstance(net, dict) and isinstance(net["ifindex"], int), net
        assert isinstance(skb, dict) and skb["len"] == d.skb_len, skb
        assert re.fullmatch(r"0x[0-9a-f]+", skb["sk"]) and skb["sk"] != "0x0", skb["sk"]
        assert ret["args"] == {"return": 0}
        assert ret["duration_ns"] > 0
        # The entry stashed its record's time: the duration is exactly the gap between the two.
        assert ret["duration_ns"] == ret["ts"] - entry["ts"]
        assert _pid_tid_comm(entry) == _pid_tid_comm(ret) == _who(d)


def test_return_predicate_that_never_holds_shows_nothing(scenario: Scenario) -> None:
    assert scenario.records("return_ne0") == []
    # Attached and running alongside the others, which saw every send (ip_send_skb returned 0 each time).
    assert len(scenario.records("return_eq0")) == 2 * len(scenario.sent())


def test_return_predicate_emits_held_entry_then_return(scenario: Scenario) -> None:
    records = scenario.records("return_eq0")
    sent = scenario.sent()
    assert [r["probe"] for r in records] == ["entry", "return"] * len(sent), scenario.explain("return_eq0")
    for d, entry, ret in zip(sent, records[::2], records[1::2]):
        _check_header(entry, "ip_send_skb", "entry")
        _check_header(ret, "ip_send_skb", "return")
        # Only `return` named: the held entry still shows every argument.
        assert list(entry["args"]) == ["net", "skb"] and entry["args"]["skb"]["len"] == d.skb_len
        assert ret["args"] == {"return": 0}
        assert _pid_tid_comm(entry) == _pid_tid_comm(ret) == _who(d)
        assert entry["ts"] < ret["ts"] and ret["duration_ns"] == ret["ts"] - entry["ts"]


def test_return_predicate_shows_only_the_failed_call(scenario: Scenario) -> None:
    records = scenario.records("udp_failed")
    failed = [d for d in scenario.datagrams if d.error is not None]
    assert [r["probe"] for r in records] == ["entry", "return"] * len(failed), scenario.explain("udp_failed")
    (entry, ret), d = records, failed[0]
    _check_header(entry, "udp_sendmsg", "entry")
    _check_header(ret, "udp_sendmsg", "return")
    assert list(entry["args"]) == ["sk", "msg", "len"]
    assert entry["args"]["len"] == str(d.size)  # a size_t: 64 bits, a decimal string in JSON
    assert ret["args"] == {"return": EINVAL}  # signed: compared and shown as a negative int
    assert _pid_tid_comm(entry) == _pid_tid_comm(ret) == _who(d)


def test_two_functions_at_once(scenario: Scenario) -> None:
    records = scenario.records("two_funcs")
    expected = []
    for d in scenario.datagrams:
        if d.error is None:
            expected += [
                ("udp_sendmsg", "entry"),
                ("ip_send_skb", "entry"),
                ("ip_send_skb", "return"),
                ("udp_sendmsg", "return"),
            ]
        else:
            expected += [("udp_sendmsg", "entry"), ("udp_sendmsg", "return")]
    assert [(r["func"], r["probe"]) for r in records] == expected, scenario.explain("two_funcs")
    stream = iter(records)
    for d in scenario.datagrams:
        udp_entry = next(stream)
        _check_header(udp_entry, "udp_sendmsg", "entry")
        assert list(udp_entry["args"]) == ["sk", "msg", "len"]
        assert udp_entry["args"]["len"] == str(d.size)  # a size_t: a decimal string in JSON
        sock = udp_entry["args"]["sk"]["__sk_common"]
        assert (sock["skc_family"], sock["skc_num"]) == (2, d.sport)  # AF_INET, the sender's local port
        assert udp_entry["args"]["msg"]["msg_namelen"] == 16  # a sockaddr_in from sendto
        nested = []
        if d.error is None:
            nested = [next(stream), next(stream)]
            _check_header(nested[0], "ip_send_skb", "entry")
            _check_header(nested[1], "ip_send_skb", "return")
            assert nested[0]["args"]["skb"]["len"] == d.skb_len
            assert nested[1]["args"] == {"return": 0}
        udp_return = next(stream)
        _check_header(udp_return, "udp_sendmsg", "return")
        assert udp_return["args"] == {"return": d.size if d.error is None else -d.error}
        assert udp_return["duration_ns"] == udp_return["ts"] - udp_entry["ts"]
        # The inner call lies within the outer one.
        assert [r["ts"] for r in (udp_entry, *nested, udp_return)] == sorted(
            r["ts"] for r in (udp_entry, *nested, udp_return)
        )
        for r in (udp_entry, *nested, udp_return):
            assert _pid_tid_comm(r) == _who(d)


def test_pid_filter_keeps_one_sender(scenario: Scenario) -> None:
    a = scenario.sender("a")
    assert scenario.instance("pid_a")["argv"][3] == str(a["pid"])
    records = scenario.records("pid_a")
    expected = [d for d in scenario.sent() if d.sender == "a"]
    assert [(r["args"]["skb->len"], *_pid_tid_comm(r)) for r in records] == [(d.skb_len, *_who(d)) for d in expected]


def test_comm_filter_keeps_one_sender(scenario: Scenario) -> None:
    records = scenario.records("comm_b")
    expected = [d for d in scenario.sent() if d.sender == "b"]
    assert [(r["args"]["skb->len"], *_pid_tid_comm(r)) for r in records] == [(d.skb_len, *_who(d)) for d in expected]


def test_count_stops_after_n_records(scenario: Scenario) -> None:
    # Four datagrams reach ip_send_skb; -n 3 ends the run by itself (no signal was sent to it).
    assert len(scenario.sent()) > 3
    scenario.check_exit("count3_jq")
    assert scenario.errors["count3_jq"] == "ksnoop: 3 records\n", scenario.explain("count3_jq")


def test_with_returns_traced_count_stops_after_n_calls_each_with_its_return(scenario: Scenario) -> None:
    # -n 2 on entries and returns: two calls, the last record their second return, never an
    # entry left waiting for a return the count cut off.
    records = scenario.records("count2_calls")
    returns = [n for n, r in enumerate(records) if r["probe"] == "return"]
    assert len(returns) == 2 and returns[-1] == len(records) - 1, scenario.explain("count2_calls")
    for n in returns:
        entries = [r for r in records[:n] if r["probe"] == "entry" and r["tid"] == records[n]["tid"]]
        assert entries, f"a return with no entry before it{scenario.explain('count2_calls')}"


def test_min_duration_shows_only_slow_calls_each_entry_with_its_return(scenario: Scenario) -> None:
    # The sleeper's two 1 ms sleeps are quicker than --min-duration 100ms; its 300 and 400 ms ones not.
    records = scenario.records("slow")
    pid = scenario.sender("c")["pid"]
    assert [(r["probe"], r["pid"]) for r in records] == [("entry", pid), ("return", pid)] * 2, scenario.explain("slow")
    # rqtp is the wake-up time (Python sleeps to an absolute deadline, TIMER_ABSTIME): 400 ms and
    # the 1 ms sleep between them apart.
    first, second = (int(r["args"]["rqtp"]) for r in records[::2])
    assert 401_000_000 <= second - first, (first, second)
    assert [r["duration_ns"] >= ms * 1_000_000 for r, ms in zip(records[1::2], (300, 400))] == [True, True]
    assert all("duration_ns" not in r for r in records[::2])


def test_the_ready_line_says_what_is_attached_and_how(scenario: Scenario) -> None:
    argv = scenario.instance("two_funcs")["argv"]
    how = {"fentry": "fentry/fexit", "kprobe": "kprobes"}[argv[argv.index("--backend") + 1]]
    assert scenario.ready["two_funcs"] == [f"ksnoop: tracing 2 functions ({how}); Ctrl-C to stop"]
    # Every instance said it once, before its first record (the driver's wait saw it come).
    assert all(len(lines) == 1 for lines in scenario.ready.values()), scenario.ready


def test_json_through_jq(scenario: Scenario) -> None:
    # ksnoop trace -o json -n 3 'ip_send_skb(skb->len)' | jq -c '.args["skb->len"]'
    scenario.check_exit("count3_jq")
    assert scenario.instance("count3_jq")["pipe_returncode"] == 0, scenario.explain("count3_jq")
    expected = [d.skb_len for d in scenario.sent()[:3]]
    assert scenario.outputs["count3_jq"] == "".join(f"{n}\n" for n in expected)  # 228, 78, 328


@pytest.mark.parametrize("stop", ["int", "term"])
def test_signal_drains_and_exits_0(scenario: Scenario, stop: str) -> None:
    # The signal came right after the last datagram, so the exact record lists the other tests
    # check prove the drain; here: each run so stopped exits 0 after its summary line.
    names = [i["name"] for i in INSTANCES if i["stop"] == stop]
    assert names
    for name in names:
        if name.endswith("text"):
            scenario.check_exit(name)
        else:
            scenario.records(name)


def test_text_output(scenario: Scenario) -> None:
    scenario.check_exit("text")
    lines = scenario.outputs["text"].splitlines()
    assert re.fullmatch(r"\s*TIME\s+CPU\s+PID\s+FUNCTION/ARGS", lines[0]), lines[:1]
    expected = [d for d in scenario.sent() if d.skb_len > 100]
    blocks = [lines[i : i + 3] for i in range(1, len(lines), 3)]
    assert len(blocks) == len(expected), scenario.explain("text")
    for block, d in zip(blocks, expected):
        opener = re.fullmatch(r"\s*(\d+)\s+(\d+)\s+(\d+) ip_send_skb\( /\* (\S+) \*/", block[0])
        assert opener is not None, block
        assert (int(opener[3]), opener[4]) == (d.pid, d.comm)
        assert block[1:] == [f"    skb->len = (unsigned int){d.skb_len}", ");"]
    assert scenario.errors["text"] == f"ksnoop: {len(expected)} records\n", scenario.explain("text")


def test_text_reads_as_the_kernel_writes_it(scenario: Scenario) -> None:
    """The sendto to port 0 fails in udp_sendmsg with EINVAL: its return shows the errno's name,
    and the socket it was given, shown whole, has sk_data_ready pointing at sock_def_readable
    (sock_init_data's default), named from the guest's /proc/kallsyms."""
    scenario.check_exit("failed_text")
    out = scenario.outputs["failed_text"]
    failed = [d for d in scenario.datagrams if d.error is not None]
    assert out.count(f"    return = (int){EINVAL} /* -EINVAL */") == len(failed), scenario.explain("failed_text")
    assert out.count("      .sk_data_ready = (void (*)(struct sock *))sock_def_readable,") == len(failed), (
        scenario.explain("failed_text")
    )
    assert "zero members */" in out  # the socket's zero members are counted, not shown
