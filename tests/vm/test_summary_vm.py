# SPDX-License-Identifier: GPL-2.0-only
"""`ksnoop trace --summary` on functions (fentry/fexit), end to end in the VM, against UDP sends
we count: the full summary (calls, errors, latency) and --calls-only (one fentry, calls alone).

One guest run of trace_driver.py. Sender a sends three datagrams to its receiver and one to port 0,
which udp_sendmsg refuses with -EINVAL (an error); every instance watches only sender a (-p), so
the counts are exactly the sends. The VM kernel (Debian 6.1): `int udp_sendmsg(struct sock *sk,
struct msghdr *msg, size_t len)`, `int ip_send_skb(struct net *net, struct sk_buff *skb)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.vm import harness
from tests.vm.trace_driver import KERNEL_FAULT

pytestmark = pytest.mark.vm

DRIVER = Path(__file__).with_name("trace_driver.py")
SCENARIO_TIMEOUT = 600
SENDS = [{"size": 100}, {"size": 200}, {"size": 77, "port": 0}, {"size": 300}]
SENDERS = [{"name": "a", "comm": "ksnoop-sum-a", "sends": SENDS}]
INSTANCES = [
    {
        "name": "full",
        "links": 4,
        "stop": "int",
        "args": ["--summary", "-o", "json", "-p", "{a_pid}", "udp_sendmsg", "ip_send_skb"],
    },
    {
        "name": "calls",
        "links": 2,
        "stop": "term",
        "args": ["--summary", "--calls-only", "-o", "json", "-p", "{a_pid}", "udp_sendmsg", "ip_send_skb"],
    },
    {
        "name": "big",
        "links": 2,
        "stop": "int",
        "args": ["--summary", "-o", "json", "-p", "{a_pid}", "udp_sendmsg(len >= 200)"],
    },
]


@pytest.fixture(scope="module")
def run(vm: harness.VM) -> dict[str, Any]:
    work = vm.shared_dir / "summary"
    work.mkdir(exist_ok=True)
    plan = work / "plan.json"
    plan.write_text(json.dumps({"senders": SENDERS, "instances": INSTANCES}))
    result = vm.run(["python3", str(DRIVER), str(plan)], SCENARIO_TIMEOUT, cwd=str(harness.REPO))
    assert result.returncode == 0, result.stdout + result.stderr + result.console_log
    manifest = json.loads((work / "manifest.json").read_text())
    assert not manifest["not_attached"], manifest
    faults = [line for line in result.console_log.splitlines() if KERNEL_FAULT.search(line)]
    assert not faults, result.console_log
    out: dict[str, Any] = {}
    for inst in INSTANCES:
        name = inst["name"]
        stdout, stderr = (work / f"{name}.out").read_text(), (work / f"{name}.err").read_text()
        info = manifest["instances"][name]
        assert info["returncode"] == 0 and not info["timed_out"], (name, info, stderr, stdout)
        out[name] = {c["func"]: c for c in json.loads(stdout)["summary"]}
        out[name]["stderr"] = stderr
    (sender,) = manifest["senders"]
    assert [s["error"] is None for s in sender["sends"]] == [True, True, False, True]
    return out


def test_the_full_summary_counts_calls_errors_and_latency(run: dict[str, Any]) -> None:
    udp, ip = run["full"]["udp_sendmsg"], run["full"]["ip_send_skb"]
    assert (udp["calls"], udp["errors"]) == (4, 1)  # the port-0 send fails with -EINVAL
    assert (ip["calls"], ip["errors"]) == (3, 0)  # only the sends that got an skb
    assert sum(udp["latency_ns_log2"].values()) == 4 and sum(ip["latency_ns_log2"].values()) == 3
    assert "ksnoop: 7 calls counted" in run["full"]["stderr"]


def test_calls_only_counts_the_same_calls_without_errors_or_latency(run: dict[str, Any]) -> None:
    udp, ip = run["calls"]["udp_sendmsg"], run["calls"]["ip_send_skb"]
    assert (udp["calls"], udp["errors"], udp["latency_ns_log2"]) == (4, None, None)
    assert (ip["calls"], ip["errors"], ip["latency_ns_log2"]) == (3, None, None)


def test_an_entry_test_decides_what_is_counted(run: dict[str, Any]) -> None:
    udp = run["big"]["udp_sendmsg"]
    assert (udp["calls"], udp["errors"]) == (2, 0)  # 200 and 300 bytes; 77 and 100 are not counted
