# SPDX-License-Identifier: GPL-2.0-only
"""Module functions end to end in the VM: `ksnoop info` names their module, `ksnoop trace` attaches
with the module's BTF object and decodes arguments with the module's split BTF.

One guest run (module_driver.py) loads dummy, bridge and veth from the Debian kernel's modules, starts
every ksnoop at once, makes the calls and reports the ground truth; the tests check each output.

The VM kernel (Debian 6.1): `netdev_tx_t dummy_xmit(struct sk_buff *skb, struct net_device *dev)` runs
in the sender's context for a datagram out of a dummy link (IFF_NOARP, IFF_NO_QUEUE), with skb->len =
payload + 42 (Ethernet, IPv4, UDP headers); `int br_add_if(struct net_bridge *br, struct net_device
*dev, struct netlink_ext_ack *extack)` runs in `ip link set PORT master BRIDGE` and returns 0.
struct net_bridge is bridge's own: it is in /sys/kernel/btf/bridge, not in vmlinux.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.vm import harness
from tests.support.ready import split_ready

pytestmark = pytest.mark.vm

DRIVER = Path(__file__).with_name("module_driver.py")
SCENARIO_TIMEOUT = 600
HEADERS = 42  # Ethernet + IPv4 + UDP, in skb->len at dummy_xmit
KERNEL_FAULT = re.compile(r"WARNING: CPU|BUG: (?!soft lockup)|Oops|general protection fault|Call Trace.*bpf")
NAMES = ("info", "trace_all", "trace_hops", "gone")


@dataclasses.dataclass
class Scenario:
    manifest: dict[str, Any]
    outputs: dict[str, str]
    errors: dict[str, str]
    seconds: float

    def explain(self, name: str) -> str:
        return (
            f"\n--- {name}: {json.dumps(self.manifest['status'].get(name))}\n--- stderr:\n"
            f"{self.errors[name]}--- stdout:\n{self.outputs[name][:3000]}"
        )

    def records(self, name: str) -> list[dict[str, Any]]:
        """The trace's JSON lines, after checking it attached, exited 0 on SIGINT and printed its summary."""
        assert self.manifest["attached_s"][name] is not None, f"{name} never attached{self.explain(name)}"
        assert self.manifest["status"][name] == {"returncode": 0, "timed_out": False}, self.explain(name)
        records = [json.loads(line) for line in self.outputs[name].splitlines()]
        assert self.errors[name] == f"ksnoop: {len(records)} records\n", self.explain(name)
        return records

    def who(self) -> tuple[int, int, str]:
        return self.manifest["pid"], self.manifest["pid"], self.manifest["comm"]


@pytest.fixture(scope="module")
def scenario(vm: harness.VM) -> Scenario:
    work = vm.shared_dir / "module"
    work.mkdir(exist_ok=True)
    started = time.monotonic()
    result = vm.run(["python3", str(DRIVER), str(work)], SCENARIO_TIMEOUT, cwd=str(harness.REPO))
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr + result.console_log
    manifest = json.loads((work / "manifest.json").read_text())
    outputs = {n: (work / f"{n}.out").read_text() for n in NAMES}
    # The ready line is checked where it matters (tests/kernel/test_endings.py); the rest exactly.
    errors = {n: split_ready((work / f"{n}.err").read_text())[1] for n in NAMES}
    faults = [line for line in result.console_log.splitlines() if KERNEL_FAULT.search(line)]
    assert not faults, result.console_log
    return Scenario(manifest, outputs, errors, seconds)


def test_modules_bring_their_btf(scenario: Scenario) -> None:
    assert scenario.manifest["module_btf"] == {"dummy": True, "bridge": True, "veth": True}


def test_info_names_the_module(scenario: Scenario) -> None:
    assert scenario.manifest["status"]["info"]["returncode"] == 0, scenario.explain("info")
    assert scenario.outputs["info"].splitlines() == [
        "netdev_tx_t dummy_xmit(struct sk_buff *skb, struct net_device *dev); [dummy]",
        "int br_add_if(struct net_bridge *br, struct net_device *dev, struct netlink_ext_ack *extack); [bridge]",
    ]
    assert scenario.errors["info"] == ""


def test_trace_opens_each_modules_btf_object_once(scenario: Scenario) -> None:
    # trace_all: dummy_xmit (dummy) and br_add_if's entry and return (bridge); trace_hops: bridge only.
    assert scenario.manifest["btf_fds"] == {"trace_all": 2, "trace_hops": 1}


def test_dummy_xmit_sees_each_datagram(scenario: Scenario) -> None:
    records = [r for r in scenario.records("trace_all") if r["func"] == "dummy_xmit"]
    sent = scenario.manifest["sent"]
    assert sent == [100, 300]
    assert [r["probe"] for r in records] == ["entry"] * len(sent)
    assert [r["args"] for r in records] == [
        {"skb->len": size + HEADERS, "dev->name": scenario.manifest["dummy"]} for size in sent
    ]
    assert all((r["pid"], r["tid"], r["comm"]) == scenario.who() for r in records)


def test_br_add_if_arguments_decoded_with_the_bridge_types(scenario: Scenario) -> None:
    records = [r for r in scenario.records("trace_all") if r["func"] == "br_add_if"]
    assert [r["probe"] for r in records] == ["entry", "return"], scenario.explain("trace_all")
    entry, ret = records
    assert list(entry["args"]) == ["br", "dev", "extack"]
    br, dev = entry["args"]["br"], entry["args"]["dev"]
    # struct net_bridge, member by member, as bridge's BTF lays it out.
    assert isinstance(br, dict) and {"lock", "dev", "port_list", "fdb_hash_tbl", "bridge_id"} <= set(br), br
    assert re.fullmatch(r"0x[0-9a-f]+", br["dev"]) and br["dev"] != "0x0"
    assert br["default_pvid"] == 1  # a new bridge's default VLAN
    assert isinstance(dev, dict) and dev["name"] == scenario.manifest["port"]
    assert ret["args"] == {"return": 0}
    assert ret["duration_ns"] == ret["ts"] - entry["ts"] > 0
    assert entry["comm"] == ret["comm"] == "ip" and entry["tid"] == ret["tid"]


def test_member_hops_through_a_module_struct(scenario: Scenario) -> None:
    records = scenario.records("trace_hops")
    assert [(r["func"], r["probe"], r["args"]) for r in records] == [
        ("br_add_if", "entry", {"br->dev->name": scenario.manifest["bridge"], "dev->name": scenario.manifest["port"]}),
        ("br_add_if", "return", {"return": 0}),
    ]


def test_module_unloaded_after_resolving_is_one_line_and_exit_1(scenario: Scenario) -> None:
    # veth was unloaded between reading /sys/kernel/btf/veth and opening its BTF object.
    assert scenario.manifest["status"]["gone"] == {"returncode": 1, "timed_out": False}, scenario.explain("gone")
    assert scenario.errors["gone"] == (
        "ksnoop: error: module veth is not loaded anymore: cannot trace veth_get_stats64\n"
    )
    assert scenario.outputs["gone"] == ""
    assert scenario.manifest["veth_btf_after"] is False
