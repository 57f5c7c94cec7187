# SPDX-License-Identifier: GPL-2.0-only
"""metrics: how long a scrape of `trace --metrics` takes with SERIES distinct keys, from a client.

ksnoop counts tp:sys_enter by its first argument register (`--count-by regs->di`); a child makes
getppid(i) for i in 0..SERIES-1 (getppid ignores its argument, which still reaches the register),
so the hash holds at least SERIES keys, each a series of `ksnoop_calls_by_regs_di_total`. Then the
client scrapes /metrics `--runs` times (text format, as Prometheus asks by default, and
OpenMetrics), timing each from the request to the last byte; the first scrape (which renders
every key's labels) is reported apart. Figures: the median, and the series the page held.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import urllib.request
from typing import Any, Dict, List

from tests.support.ready import wait_ready

from common import require_bpf

SERIES = 10_000
WORKLOAD = f"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
for i in range({SERIES}):
    libc.syscall(110, ctypes.c_long(i))  # getppid, its argument in rdi
"""
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
SERIES_NAME = "ksnoop_calls_by_regs_di_total{"


def _scrape(url: str, accept: str) -> tuple[float, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
    return time.perf_counter() - start, body.decode()


def run(args: argparse.Namespace) -> Dict[str, Any]:
    require_bpf()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ksnoop", "trace", "--metrics", "127.0.0.1:0", "--max-keys", str(4 * SERIES)]
        + ["--count-by", "regs->di", "tp:sys_enter"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        ready, _ = wait_ready(proc.stderr)
        url = ready.split("metrics at ")[1].split()[0]
        subprocess.run([sys.executable, "-c", WORKLOAD], check=True)
        first_s, page = _scrape(url, "")
        series = sum(1 for line in page.splitlines() if line.startswith(SERIES_NAME))
        figures: Dict[str, Any] = {"series": series, "first_scrape_ms": round(first_s * 1e3, 1)}
        for name, accept in (("text", ""), ("openmetrics", OPENMETRICS)):
            times: List[float] = [_scrape(url, accept)[0] for _ in range(args.runs)]
            figures[f"scrape_ms_{name}"] = {
                "median": round(statistics.median(times) * 1e3, 1),
                "min": round(min(times) * 1e3, 1),
                "max": round(max(times) * 1e3, 1),
            }
        figures["target_ms"] = 100
        return figures
    finally:
        proc.send_signal(2)
        proc.communicate(timeout=60)
