# SPDX-License-Identifier: GPL-2.0-only
"""Globs by kprobes (`--backend kprobe`), end to end in the VM, on each kernel the harness boots:
where the kernel has kprobe sessions (v6.10: Debian's 6.12) a glob's entries and returns attach by
one link, where it has kprobe_multi alone (CONFIG_FPROBE) by one link a side, and where it has
neither (Debian 12's 6.1) one kprobe each, saying so; the records and counts are the same.
Whether the guest's kernel has fprobe and sessions is read from its /proc/kallsyms
(`register_fprobe`, `bpf_session_is_return`), not from ksnoop.

One guest run of trace_driver.py: sender a sends datagrams of known sizes on loopback. Every
instance watches only sender a (-p), so what the kernel does for it is exactly what is counted.
`int udp_sendmsg(struct sock *sk, struct msghdr *msg, size_t len)` returns len, and calls
`udp_send_skb` once per datagram.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.vm import harness
from tests.vm.test_trace_vm import HEADERS
from tests.vm.trace_driver import explain, run_scenario

pytestmark = pytest.mark.vm

SCENARIO_TIMEOUT = 900
SIZES = [120, 230, 340]
SENDERS = [{"name": "a", "comm": "ksnoop-kp-a", "sends": [{"size": size} for size in SIZES]}]
KPROBE_LINKS = {"kprobe_multi", "perf_event"}
FALLBACK = "ksnoop: warning: one kprobe_multi link"


def _instances(multi: bool, session: bool) -> list[dict[str, Any]]:
    glob = ["--backend", "kprobe", "--max-probes", "1000", "-p", "{a_pid}", "udp_*"]
    instances = [
        # Calls, errors and latency per function: entries and returns paired through one shared stash.
        {"name": "summary", "ready": "stderr", "stop": "int", "args": ["--summary", "-o", "json", *glob]},
        # Killed once attached: nothing may stay attached.
        {"name": "killed", "ready": "stderr", "stop": "kill", "args": ["--summary", "--calls-only", *glob]},
    ]
    if multi:  # one link a side (or one session) holds every hookable function: attached once there
        instances.append({"name": "records", "links": _sides(session), "stop": "term", "args": ["-o", "json", *glob]})
    return instances


@pytest.fixture(scope="module")
def scenario(vm: harness.VM) -> dict[str, Any]:
    multi = vm.run("grep -qw register_fprobe /proc/kallsyms", timeout=60).returncode == 0
    session = multi and vm.run("grep -qw bpf_session_is_return /proc/kallsyms", timeout=60).returncode == 0
    manifest = run_scenario(
        vm, "kprobe", {"senders": SENDERS, "instances": _instances(multi, session)}, SCENARIO_TIMEOUT
    )
    manifest["multi"], manifest["session"] = multi, session
    (sender,) = manifest["senders"]
    assert [send["error"] for send in sender["sends"]] == [None] * len(SIZES)
    return manifest


def _sides(session: bool) -> int:
    """The kprobe_multi links holding a glob's entries and returns: one kprobe session, or one a side."""
    return 1 if session else 2


def _explain(scenario: dict[str, Any], name: str) -> str:
    return f"\nmulti={scenario['multi']} session={scenario['session']}" + explain(scenario, name)


def test_one_session_or_one_link_a_side_where_the_kernel_has_them_else_one_kprobe_each(
    scenario: dict[str, Any],
) -> None:
    inst = scenario["instances"]["summary"]
    assert inst["returncode"] == 0, _explain(scenario, "summary")
    functions = int(scenario["err"]["summary"].split("ksnoop: counting calls of ")[1].split()[0])
    assert functions >= 8, _explain(scenario, "summary")
    if scenario["multi"]:
        # Entries and returns by one session link, or a link each; a function ftrace cannot hook
        # would add a kprobe pair.
        sides = _sides(scenario["session"])
        assert sides <= inst["links_attached"] < sides + functions, _explain(scenario, "summary")
        # Kprobe pairs come two links at a time: one session link leaves the count odd.
        assert inst["links_attached"] % 2 == sides % 2, _explain(scenario, "summary")
        assert FALLBACK not in scenario["err"]["summary"]
        assert "one kprobe per function" not in scenario["err"]["summary"]
    else:
        assert inst["links_attached"] > functions, _explain(scenario, "summary")  # a kprobe and a kretprobe each
        # Said once, with the kernel's reason.
        note = "ksnoop: 'udp_*': one kprobe per function, since this kernel has no kprobe_multi links ("
        assert scenario["err"]["summary"].count(note) == 1, _explain(scenario, "summary")


def test_counts_and_latency_match_the_datagrams_sent(scenario: dict[str, Any]) -> None:
    summary = {c["func"]: c for c in json.loads(scenario["out"]["summary"])["summary"]}
    for func in ("udp_sendmsg", "udp_send_skb"):
        counts = summary[func]
        assert counts["calls"] == len(SIZES), _explain(scenario, "summary")
        assert counts["errors"] == 0
        # Every return found its entry's time in the shared stash: one latency per call.
        assert sum(counts["latency_ns_log2"].values()) == len(SIZES), counts


def test_records_of_a_multi_linked_glob_nest_and_carry_their_values(scenario: dict[str, Any]) -> None:
    if not scenario["multi"]:
        assert "records" not in scenario["instances"]
        return  # 6.1: no kprobe_multi; single kprobes' records are the trace scenario's (test_trace_vm.py)
    inst = scenario["instances"]["records"]
    assert inst["returncode"] == 0 and inst["links_attached"] >= _sides(scenario["session"]), _explain(
        scenario, "records"
    )
    records = [json.loads(line) for line in scenario["out"]["records"].splitlines()]
    # Each return pops the entry of its own function, with the duration since that entry: calls
    # of different functions nested in one task keep their stash entries apart. (A function that
    # returns void has no return record: its entries stand alone.)
    returning = {r["func"] for r in records if r["probe"] == "return"}
    assert {"udp_sendmsg", "udp_send_skb"} <= returning, _explain(scenario, "records")
    stack: list[dict[str, Any]] = []
    for record in (r for r in records if r["func"] in returning):
        if record["probe"] == "entry":
            stack.append(record)
            continue
        entry = stack.pop()
        assert entry["func"] == record["func"], (entry, record)
        assert record["duration_ns"] == record["ts"] - entry["ts"]
    assert not stack
    sendmsg = [r for r in records if r["func"] == "udp_sendmsg"]
    assert [int(r["args"]["len"]) for r in sendmsg if r["probe"] == "entry"] == SIZES
    assert [r["args"]["return"] for r in sendmsg if r["probe"] == "return"] == SIZES
    skbs = [r for r in records if r["func"] == "udp_send_skb" and r["probe"] == "entry"]
    # The skb ip_make_skb built: payload, UDP and IPv4 headers, as ip_send_skb sees it after.
    assert [r["args"]["skb"]["len"] for r in skbs] == [size + HEADERS for size in SIZES]


def test_kill_9_leaves_no_kprobe_attached(scenario: dict[str, Any]) -> None:
    inst = scenario["instances"]["killed"]
    assert inst["returncode"] == -9, _explain(scenario, "killed")
    left = scenario["links_after_exit"]
    assert left is not None, "bpftool could not list links in the guest"
    assert not KPROBE_LINKS & set(left), left


# The first function on the guest kernel's kprobe blacklist that its BTF has (so ksnoop resolves
# it, and only the kprobe is refused): read from debugfs, mounted for the purpose.
BLACKLISTED = """
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug || exit 3
python3 - <<'PY'
from btf import BTF
btf = BTF.vmlinux()
for line in open("/sys/kernel/debug/kprobes/blacklist"):
    name = line.split()[-1]
    if "." not in name and btf.find(name) is not None and type(btf.find(name)).__name__ == "Func":
        print(name)
        break
PY
"""


def test_a_function_kprobes_may_not_probe_is_one_clear_error(vm: harness.VM) -> None:
    found = vm.run(BLACKLISTED, 300, cwd=str(harness.REPO))
    assert found.returncode == 0 and found.stdout.strip(), found.stdout + found.stderr
    function = found.stdout.strip()
    result = vm.run(
        ["python3", "-m", "ksnoop", "trace", "--backend", "kprobe", "--duration", "1", function],
        300,
        cwd=str(harness.REPO),
    )
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    (line,) = result.stderr.splitlines()
    wanted = rf"ksnoop: error: cannot put a (?:kprobe|kretprobe) on {function}: .*\(kprobes may not probe it"
    assert re.match(wanted, line), line
    assert "Traceback" not in result.stderr
