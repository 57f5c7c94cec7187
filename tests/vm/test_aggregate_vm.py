# SPDX-License-Identifier: GPL-2.0-only
"""`ksnoop trace --count-by` / `--hist` on functions, end to end in the VM, by fentry/fexit and by
kprobes, against UDP sends and sleeps we make: counts by return value (at the return probe), by
an argument's member (at entry alone), histograms of a size and of durations, --min-duration.

One guest run of trace_driver.py per kernel. Sender a sends 100, 200, 77 (to port 0: udp_sendmsg
fails with -EINVAL), 300 and 200 bytes, then sleeps 20 ms and 1 ms. Every instance watches only
sender a (-p), so the counts are exactly its calls. `int udp_sendmsg(struct sock *sk, struct
msghdr *msg, size_t len)` returns len; `int ip_send_skb(struct net *net, struct sk_buff *skb)`
sees skb->len = payload + 28 (UDP and IPv4 headers).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest

from tests.vm import harness
from tests.vm.test_trace_vm import HEADERS
from tests.vm.trace_driver import run_scenario

pytestmark = pytest.mark.vm

SCENARIO_TIMEOUT = 900
EINVAL = 22
SIZES = [100, 200, 77, 300, 200]
SENDS: List[Dict[str, Any]] = [{"size": 100}, {"size": 200}, {"size": 77, "port": 0}, {"size": 300}, {"size": 200}]
SENDERS = [{"name": "a", "comm": "ksnoop-agg-a", "sends": [*SENDS, {"sleep": 0.02}, {"sleep": 0.001}]}]
WATCH = ["-o", "json", "-p", "{a_pid}"]


def _instance(name: str, *args: str) -> Dict[str, Any]:
    return {"name": name, "ready": "stderr", "stop": "int", "args": [*args, *WATCH]}


INSTANCES = [
    _instance("ret", "--count-by", "return", "udp_sendmsg"),
    _instance("duration", "--count-by", "comm", "--hist", "duration", "udp_sendmsg", "ip_send_skb"),
    _instance("len", "--count-by", "skb->len", "--hist", "skb->len", "ip_send_skb"),
    _instance("slow", "--count-by", "comm", "--min-duration", "10ms", "hrtimer_nanosleep"),
    _instance("kp_ret", "--backend", "kprobe", "--count-by", "return", "udp_sendmsg"),
    _instance("kp_len", "--backend", "kprobe", "--count-by", "comm", "--hist", "len", "udp_sendmsg"),
]


@pytest.fixture(scope="module")
def counts(vm: harness.VM) -> Dict[str, Any]:
    manifest = run_scenario(vm, "aggregate", {"senders": SENDERS, "instances": INSTANCES}, SCENARIO_TIMEOUT)
    (sender,) = manifest["senders"]
    assert [s.get("error") is None for s in sender["sends"][:5]] == [True, True, False, True, True]
    out: Dict[str, Any] = {}
    for inst in INSTANCES:
        name = inst["name"]
        info = manifest["instances"][name]
        assert info["returncode"] == 0 and not info["timed_out"], (name, info, manifest["err"][name])
        (report,) = [json.loads(line) for line in manifest["out"][name].splitlines()]
        assert report["dropped"] == {"keys": 0, "calls": 0}, report
        out[name] = report["counts"]
    return out


def _by(counts: List[Dict[str, Any]], value: str) -> Dict[Any, int]:
    return {c["key"][value]: c["count"] for c in counts}


def _buckets(values: List[int]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for v in values:
        low = str(1 << (v.bit_length() - 1))
        out[low] = out.get(low, 0) + 1
    return out


@pytest.mark.parametrize("name", ["ret", "kp_ret"])
def test_count_by_return_counts_each_return_value(counts: Dict[str, Any], name: str) -> None:
    assert _by(counts[name], "return") == {100: 1, 200: 2, -EINVAL: 1, 300: 1}
    assert {c["func"] for c in counts[name]} == {"udp_sendmsg"}


def test_hist_of_duration_counts_every_call_per_function(counts: Dict[str, Any]) -> None:
    by_func = {c["func"]: c for c in counts["duration"]}
    udp, ip = by_func["udp_sendmsg"], by_func["ip_send_skb"]
    assert (udp["key"], udp["count"], sum(udp["hist_log2"].values())) == ({"comm": "ksnoop-agg-a"}, 5, 5)
    assert (ip["key"], ip["count"], sum(ip["hist_log2"].values())) == ({"comm": "ksnoop-agg-a"}, 4, 4)
    assert all(int(low) >= 256 for low in udp["hist_log2"])  # a send takes more than 256 ns, even in TCG


def test_an_arguments_member_keys_and_buckets_at_entry(counts: Dict[str, Any]) -> None:
    sent = [size + HEADERS for size in SIZES if size != 77]
    assert _by(counts["len"], "skb->len") == {size: sent.count(size) for size in sent}
    for c in counts["len"]:
        assert c["hist_log2"] == _buckets([c["key"]["skb->len"]] * c["count"])


def test_kprobe_reads_the_argument_from_its_register(counts: Dict[str, Any]) -> None:
    (c,) = counts["kp_len"]
    assert (c["key"], c["count"], c["hist_log2"]) == ({"comm": "ksnoop-agg-a"}, 5, _buckets(SIZES))


def test_min_duration_counts_only_the_slow_calls(counts: Dict[str, Any]) -> None:
    assert [(c["func"], c["key"], c["count"]) for c in counts["slow"]] == [
        ("hrtimer_nanosleep", {"comm": "ksnoop-agg-a"}, 1)
    ]
