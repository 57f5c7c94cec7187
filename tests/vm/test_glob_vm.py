# SPDX-License-Identifier: GPL-2.0-only
"""Glob targets with fentry/fexit, end to end in the VM: `udp_send*` against UDP datagrams sent
on loopback, and the time to attach a large glob (`tcp_*`) measured from the first link to the
text header (printed once every program is attached).

One guest run of trace_driver.py, as in test_trace_vm.py. The VM kernel (Debian 6.1):
`int udp_sendmsg(struct sock *sk, struct msghdr *msg, size_t len)` returns len. Hundreds of probes
hold more fds than the usual soft RLIMIT_NOFILE of 1024: ksnoop raises it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.vm import harness
from tests.vm.trace_driver import explain, run_scenario

pytestmark = pytest.mark.vm

SCENARIO_TIMEOUT = 900
SENDERS = [{"name": "a", "comm": "ksnoop-glob-a", "sends": [{"size": 200}, {"size": 50}]}]
INSTANCES = [
    {"name": "udp_glob", "links": 4, "stop": "int", "args": ["-o", "json", "-p", "{a_pid}", "udp_send*"]},
    {
        "name": "tcp_many",
        "links": 1,
        "stop": "int",
        "ready": "stdout",
        "args": ["-o", "text", "--max-probes", "1000", "tcp_*"],
    },
]
TRACING = re.compile(r"ksnoop: tracing (\d+) functions matching '(.*)'")
REFUSED = re.compile(
    r"ksnoop: warning: the kernel refused (\d+) of (\d+) functions matching '(.*)', left out "
    r"\(.*\): (.*)"
)


@pytest.fixture(scope="module")
def scenario(vm: harness.VM) -> dict[str, Any]:
    return run_scenario(vm, "glob", {"senders": SENDERS, "instances": INSTANCES}, SCENARIO_TIMEOUT)


def _explain(scenario: dict[str, Any], name: str) -> str:
    return explain(scenario, name)


def test_udp_send_glob_sees_every_datagram_at_each_function(scenario: dict[str, Any]) -> None:
    inst = scenario["instances"]["udp_glob"]
    assert inst["returncode"] == 0, _explain(scenario, "udp_glob")
    err = scenario["err"]["udp_glob"].splitlines()
    m = TRACING.fullmatch(err[0])
    # udp_sendmsg, udp_send_skb, and udp_sendpage where the kernel still has it.
    assert m and int(m[1]) >= 2 and m[2] == "udp_send*", _explain(scenario, "udp_glob")
    records = [json.loads(line) for line in scenario["out"]["udp_glob"].splitlines()]
    assert err[-1] == f"ksnoop: {len(records)} records"
    (sender,) = scenario["senders"]
    sizes = [send["size"] for send in sender["sends"]]
    calls = [(r["func"], r["probe"]) for r in records]
    # Each datagram: udp_sendmsg enters, udp_send_skb runs inside it, udp_sendmsg returns len.
    expected = [
        ("udp_sendmsg", "entry"),
        ("udp_send_skb", "entry"),
        ("udp_send_skb", "return"),
        ("udp_sendmsg", "return"),
    ]
    assert calls == expected * len(sizes), _explain(scenario, "udp_glob")
    sendmsg_returns = [r["args"]["return"] for r in records if r["func"] == "udp_sendmsg" and r["probe"] == "return"]
    assert sendmsg_returns == sizes
    # len is a size_t: a decimal string in JSON
    assert [int(r["args"]["len"]) for r in records if r["func"] == "udp_sendmsg" and r["probe"] == "entry"] == sizes
    assert all(r["pid"] == sender["pid"] and r["comm"] == sender["comm"] for r in records)


def test_a_large_glob_attaches_quickly(scenario: dict[str, Any]) -> None:
    inst = scenario["instances"]["tcp_many"]
    assert inst["returncode"] == 0, _explain(scenario, "tcp_many")
    err = scenario["err"]["tcp_many"].splitlines()
    m = TRACING.fullmatch(err[0])
    assert m and m[2] == "tcp_*", _explain(scenario, "tcp_many")
    matched = int(m[1])
    refused = 0
    for line in err[1:]:
        r = REFUSED.fullmatch(line)
        if r:
            refused, tried = int(r[1]), int(r[2])
            assert tried == matched and refused < matched
    functions = matched - refused
    links = inst["links_attached"]
    assert functions >= 100 and functions <= links <= 2 * functions, _explain(scenario, "tcp_many")
    seconds = inst["attached_s"] - inst["first_link_s"]
    per_hundred = seconds / functions * 100
    print(
        f"\ntcp_*: {matched} matched, {refused} refused, {links} links in {seconds:.1f} s: "
        f"{per_hundred:.2f} s per hundred functions (TCG)"
    )
    # Under TCG everything runs some 10-50 times slower than on hardware; the issue's "well under
    # a second per hundred" is a hardware figure.
    assert per_hundred < 30, _explain(scenario, "tcp_many")
