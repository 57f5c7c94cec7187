# SPDX-License-Identifier: GPL-2.0-only
"""`ksnoop trace --metrics` on a function (fentry/fexit, or kprobes where the kernel picks them),
end to end in the VM: the summary's calls, errors and latency histogram of close(2)'s function,
and its calls counted by comm and return value (errno names), each scraped from its own ksnoop
while it runs, against close() calls a child makes: CLOSES of fd -1 (-EBADF, an error
each) and OPENED of files it opened. ksnoop watches only the child (-p), so the counts are exact.
On 6.1 close(2) calls close_fd; from 6.11 it calls file_close_fd, which returns a pointer, so there
the syscall's own function (`long __x64_sys_close(const struct pt_regs *)`) is traced.

The guest runs SCRIPT (this file's interpreter, over 9p): it starts the child (waiting on a pipe),
starts two ksnoops on free ports, waits for their ready lines, lets the child close, scrapes /metrics,
parses it with prometheus_client's parser and prints the samples as JSON.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.vm import harness

pytestmark = pytest.mark.vm

SCENARIO_TIMEOUT = 300
CLOSES, OPENED = 5, 2
SCRIPT = """
import json, os, subprocess, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
sys.path.insert(0, os.getcwd())
from tests.support.ready import wait_ready
child = subprocess.Popen([sys.executable, "-c", '''
import os, sys
sys.stdin.read(1)
for _ in range(%(closes)d):
    try:
        os.close(-1)
    except OSError:
        pass
for _ in range(%(opened)d):
    os.close(os.open("/proc/self/stat", os.O_RDONLY))
'''], stdin=subprocess.PIPE)
pages, readies, statuses, stderrs = {}, {}, {}, {}
modes = {"summary": [], "count_by": ["--count-by", "comm,return"]}
tracers = {}
for mode, extra in modes.items():
    tracers[mode] = subprocess.Popen([sys.executable, "-m", "ksnoop", "trace", "--metrics", "127.0.0.1:0",
                                      "-p", str(child.pid), *extra, "%(function)s"], stderr=subprocess.PIPE, text=True)
    readies[mode], stderrs[mode] = wait_ready(tracers[mode].stderr)
child.communicate(b"x")
samples = {}
for mode, ksnoop in tracers.items():
    url = readies[mode].split("metrics at ")[1].split()[0]
    with urllib.request.urlopen(url, timeout=60) as response:
        page = response.read().decode()
    samples[mode] = [[s.name, s.labels, s.value] for f in text_string_to_metric_families(page) for s in f.samples]
    ksnoop.terminate()
    stderrs[mode] = stderrs[mode] + [ksnoop.communicate(timeout=60)[1]]
    statuses[mode] = ksnoop.returncode
print(json.dumps({"ready": readies, "samples": samples, "status": statuses, "stderr": stderrs}))
"""
CLOSE = {"6.1": "close_fd"}  # else __x64_sys_close


def _function(vm: harness.VM) -> str:
    return CLOSE.get(vm.kernel.name, "__x64_sys_close")


@pytest.fixture(scope="module")
def scraped(vm: harness.VM) -> dict[str, Any]:
    script = vm.shared_dir / "metrics_vm.py"
    script.write_text(SCRIPT % {"closes": CLOSES, "opened": OPENED, "function": _function(vm)})
    result = vm.run(["python3", str(script)], SCENARIO_TIMEOUT, cwd=str(harness.REPO))
    assert result.returncode == 0, result.stdout + result.stderr + result.console_log
    return {"func": _function(vm), **json.loads(result.stdout.strip().splitlines()[-1])}


def _value(scraped: dict[str, Any], name: str, mode: str = "summary", **labels: str) -> float:
    (value,) = [v for n, ls, v in scraped["samples"][mode] if n == name and ls == labels]
    return float(value)


def test_calls_and_errors_are_the_closes_made(scraped: dict[str, Any]) -> None:
    for mode in ("summary", "count_by"):
        assert scraped["status"][mode] == 0, scraped["stderr"][mode]
        ready, said = scraped["ready"][mode], "".join(scraped["stderr"][mode])
        assert "metrics at http://127.0.0.1:" in ready and "warning" not in said
    assert _value(scraped, "ksnoop_calls_total", func=scraped["func"]) == CLOSES + OPENED
    assert _value(scraped, "ksnoop_errors_total", func=scraped["func"]) == CLOSES
    assert _value(scraped, "ksnoop_probes_attached") == 1


def test_the_latency_histogram_counts_every_call(scraped: dict[str, Any]) -> None:
    assert _value(scraped, "ksnoop_call_duration_seconds_count", func=scraped["func"]) == CLOSES + OPENED
    assert _value(scraped, "ksnoop_call_duration_seconds_bucket", func=scraped["func"], le="+Inf") == CLOSES + OPENED
    total = _value(scraped, "ksnoop_call_duration_seconds_sum", func=scraped["func"])
    assert 0 < total < 1.0  # seven closes: microseconds each, even under TCG
    buckets = sorted(
        (float(ls["le"]), v)
        for n, ls, v in scraped["samples"]["summary"]
        if n == "ksnoop_call_duration_seconds_bucket" and ls["le"] != "+Inf"
    )
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))  # cumulative


def test_counts_by_comm_and_return_name_the_errno(scraped: dict[str, Any]) -> None:
    """The issue's own example, `--count-by comm,return`: the return values as their errno names."""
    func = scraped["func"]
    by_key = {
        (ls["comm"], ls["return"]): v
        for n, ls, v in scraped["samples"]["count_by"]
        if n == "ksnoop_calls_by_comm_return_total" and ls["func"] == func
    }
    comm = next(iter(by_key))[0]
    assert by_key == {(comm, "-EBADF"): CLOSES, (comm, "0"): OPENED}
    assert comm.startswith("python")
    assert _value(scraped, "ksnoop_calls_total", "count_by", func=func) == CLOSES + OPENED
