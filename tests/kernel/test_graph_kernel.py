# SPDX-License-Identifier: GPL-2.0-only
"""Function graphs on this machine's kernel: its code read through BPF (checked against a program's
JIT image, which the kernel also hands out by another road), the static graph of functions whose
source says what they call, and `ksnoop info -g` with good and bad input.

Reading kernel code needs a raw tracepoint program run by BPF_PROG_TEST_RUN; where the kernel
refuses that, the tests check ksnoop's one-line error for it instead.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Dict, List

import pytest

from bpf.insn import exit_, mov64_imm
from bpf.loader import load_program
from bpf.uapi import ProgType
from ksnoop.errors import RuntimeFailure
from ksnoop.graph.text import KernelText
from tests.kernel.test_aggregate_cli import REPO, TIMEOUT

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_kernel")]


def _refusal() -> str:
    """'' where this kernel lets ksnoop read its code, else ksnoop's error for it."""
    try:
        with KernelText():
            return ""
    except RuntimeFailure as error:
        return str(error)


def _info(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ksnoop", "info", *args], cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT
    )


def _graph(root: str, *args: str) -> Dict[str, Dict]:
    """`info -g -o json`: function name -> its node."""
    result = _info("-g", "-o", "json", root, *args)
    refused = _refusal()
    if refused:
        assert (result.returncode, result.stderr) == (1, f"ksnoop: error: {refused}\n")
        pytest.skip(f"checked the error instead: {refused}")
    assert result.returncode == 0, result.stderr
    graph = json.loads(result.stdout)
    assert graph["root"] == root and graph["functions"][0]["name"] == root
    return {node["name"]: node for node in graph["functions"]}


def test_kernel_code_read_is_what_the_jit_made() -> None:
    refused = _refusal()
    if refused:
        assert refused.startswith("cannot read kernel text: "), refused
        return
    # A program of 1000 instructions: its image spans more than the page the reader reads at a time.
    insns = [mov64_imm(0, n) for n in range(1000)] + [exit_()]
    with load_program(insns, ProgType.RAW_TRACEPOINT, name="ksnoop_jited") as program:
        image = program.jited_image()
        tag = bytes(program.info().tag).hex()
        with open("/proc/kallsyms") as f:
            found = re.search(rf"^([0-9a-f]+) \S bpf_prog_{tag}_ksnoop_jited\t\[bpf\]$", f.read(), re.MULTILINE)
        assert found is not None, "the JIT's symbol is not in /proc/kallsyms (net.core.bpf_jit_kallsyms=0?)"
        assert len(image) > 4096
        with KernelText() as text:
            assert text.read(int(found.group(1), 16), len(image)) == image


def test_reading_where_nothing_is_mapped_is_an_error() -> None:
    if _refusal():
        return
    with (
        KernelText() as text,
        pytest.raises(RuntimeFailure, match=r"^cannot read kernel text at 0x10: E[A-Z]+ \(64 bytes\)$"),
    ):
        text.read(0x10, 64)


def test_ip_send_skb_calls_what_its_source_calls() -> None:
    nodes = _graph("ip_send_skb")
    root = nodes["ip_send_skb"]
    # ip_send_skb -> ip_local_out (-> __ip_local_out, which the compiler may inline into it) and
    # dst_output's ip_output, called directly when the route's output is it.
    assert {"ip_local_out", "__ip_local_out"} & set(root["calls"]), root
    assert "ip_output" in root["calls"]
    assert root["depth"] == 0 and all(node["depth"] <= 3 for node in nodes.values())
    # Nothing on the send path calls a connect or the scheduler's tick.
    assert "tcp_v4_connect" not in nodes and "scheduler_tick" not in nodes and "sched_tick" not in nodes
    # Each function once; every callee at the depth below its caller's or shallower.
    for node in nodes.values():
        if node["depth"] < 3:
            for callee in node["calls"]:
                assert nodes[callee]["depth"] <= node["depth"] + 1


@pytest.mark.parametrize(
    "root, called",
    [
        # open(2)'s core: a free fd, the file opened, the two joined (fs/open.c).
        ("do_sys_openat2", {"get_unused_fd_flags", "do_filp_open", "fd_install"}),
        # read(2)'s: the range checked before the file's read method (fs/read_write.c).
        ("vfs_read", {"rw_verify_area"}),
    ],
)
def test_well_known_functions_call_what_their_source_calls(root: str, called: set) -> None:
    nodes = _graph(root, "--graph-depth", "1")
    assert called <= set(nodes[root]["calls"]), nodes[root]
    assert "ip_send_skb" not in nodes


def test_depth_one_is_the_roots_callees_and_exclude_drops_some() -> None:
    nodes = _graph("ip_send_skb", "--graph-depth", "1")
    assert set(nodes) == {"ip_send_skb", *nodes["ip_send_skb"]["calls"]}
    trimmed = _graph("ip_send_skb", "--graph-depth", "1", "--graph-exclude", "ip_out*")
    assert "ip_output" not in trimmed and "ip_output" not in trimmed["ip_send_skb"]["calls"]


def test_include_adds_functions_code_cannot_show() -> None:
    result = _info("-g", "-o", "json", "--graph-depth", "1", "--graph-include", "tcp_v4_connect", "ip_send_skb")
    if _refusal():
        assert result.returncode == 1
        return
    assert json.loads(result.stdout)["included"] == ["tcp_v4_connect"]


def test_the_tree_shows_each_callee_under_its_caller() -> None:
    nodes = _graph("ip_send_skb", "--graph-depth", "2")
    result = _info("-g", "--graph-depth", "2", "ip_send_skb")
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"ip_send_skb: {len(nodes)} functions within 2 calls, ")
    assert lines[1].startswith("ip_send_skb")
    depth_one: List[str] = [re.split(r"[ (]", line[3:])[0] for line in lines[2:] if line[:1] in "├└"]
    assert depth_one == nodes["ip_send_skb"]["calls"]


@pytest.mark.parametrize(
    "args, says",
    [
        (["--graph-depth", "0", "ip_send_skb"], "ksnoop: error: --graph-depth 0: from 1 to 10\n"),
        (
            ["--graph-depth", "11", "ip_send_skb"],
            "ksnoop: error: --graph-depth 11: from 1 to 10\n",
        ),
        (["ip_send_skbb"], "ksnoop: error: no kernel function 'ip_send_skbb' in BTF; did you mean 'ip_send_skb'"),
        (["tp:net_dev_queue"], "ksnoop: error: no kernel function 'tp:net_dev_queue' in BTF"),
        (["__rcu_read_lock"], "ksnoop: error: '__rcu_read_lock' cannot be traced"),
        (
            ["--btf", "/sys/kernel/btf/vmlinux", "ip_send_skb"],
            "ksnoop: error: -g reads the running kernel's code, and --btf names another kernel's types",
        ),
    ],
)
def test_bad_roots_and_depths_are_usage_errors(args: List[str], says: str) -> None:
    result = _info("-g", *args)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(says) and result.stderr.count("\n") == 1, result.stderr


def test_graph_options_need_g() -> None:
    result = _info("--graph-depth", "2", "ip_send_skb")
    assert (result.returncode, result.stderr) == (
        2,
        "ksnoop: error: --graph-depth, --graph-include and --graph-exclude go with -g/--graph\n",
    )


def test_without_capstone_the_extra_is_named() -> None:
    program = (
        "import sys; sys.modules['capstone'] = None; from ksnoop.__main__ import main; sys.argv[0] = 'ksnoop'; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, "info", "-g", "ip_send_skb"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert (
        result.stderr == "ksnoop: error: function graphs need the capstone disassembler: pip install 'ksnoop[graph]'\n"
    )


def test_trace_g_where_this_kernel_cannot_trace_functions_says_so() -> None:
    """trace -g on this machine's kernel: where it refuses fentry and has no kprobes (asked here as
    ksnoop asks), one line naming both and exit 1; where it can trace functions, the VM tests'
    checks apply (tests/vm/test_graph_vm.py) and this one checks a root call's tree."""
    from bpf.features import probe_fentry, probe_kprobes
    from btf import BTF, Kind

    func = BTF.vmlinux().find("ip_send_skb", Kind.FUNC)
    assert func is not None
    fentry, kprobes = probe_fentry(func.id), probe_kprobes()
    result = subprocess.run(
        [sys.executable, "-m", "ksnoop", "trace", "-g", "--duration", "1", "ip_send_skb"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    if fentry.refused and not kprobes:
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr.startswith("ksnoop: error: cannot trace ip_send_skb: this kernel has neither fentry/fexit")
        assert result.stderr.count("\n") == 1
    else:
        assert result.returncode == 0, result.stderr
