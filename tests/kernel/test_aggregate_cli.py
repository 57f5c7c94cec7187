# SPDX-License-Identifier: GPL-2.0-only
"""--count-by, --hist, --top, --interval and --max-keys on this machine's kernel, end to end.

Children the test starts under names it picks (prctl PR_SET_NAME) send UDP datagrams of sizes it
picks to a socket of their own on loopback; `tp:net_dev_queue` sees each as an skb of the
datagram plus its Ethernet, IPv4 and UDP headers (14 + 20 + 8 bytes). The counts ksnoop prints
for those names must be exactly the datagrams sent, by name, by device and by size bucket.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence

import pytest

from tests.kernel.test_trace_cli import nothing_left_loaded  # noqa: F401  (a fixture)
from tests.support.ready import split_ready, wait_ready

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_kernel", "nothing_left_loaded")]

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60.0
HEADERS = 14 + 20 + 8  # what loopback's skb holds besides the datagram
SENDER = """
import ctypes, socket, sys, time
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)  # PR_SET_NAME
pause = float(sys.argv[2])
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind(("127.0.0.1", 0))
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for size in map(int, sys.argv[3:]):
    if size < 0:
        time.sleep(pause)
        continue
    out.sendto(b"x" * size, sink.getsockname())
    sink.recv(65536)
"""


def _send(name: str, sizes: Sequence[int], pause: float = 0.0) -> None:
    """A child named `name` sends datagrams of `sizes` (a negative size: a pause) and exits."""
    subprocess.run([sys.executable, "-c", SENDER, name, str(pause), *map(str, sizes)], check=True, timeout=TIMEOUT)


def _start(*args: str) -> subprocess.Popen:
    return _start_ready(*args)[0]


def _start_ready(*args: str) -> tuple[subprocess.Popen, str]:
    """ksnoop trace ARGS, once it says it is ready: the process and its ready line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ksnoop", "trace", *args],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    ready, _ = wait_ready(proc.stderr)
    return proc, ready


def _stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> tuple[str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    return out, err


def _reports(out: str) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def _ours(report: Dict[str, Any], names: Sequence[str]) -> List[Dict[str, Any]]:
    return [c for c in report["counts"] if c["key"].get("comm") in names]


def _bucket_low(value: int) -> str:
    """The JSON name of the log2 bucket holding `value` > 0: its low bound."""
    return str(1 << (value.bit_length() - 1))


def test_counts_by_comm_and_device_name_are_the_datagrams_sent() -> None:
    trace = _start("-o", "json", "--count-by", "comm,skb->dev->name", "tp:net_dev_queue")
    _send("ksnoop-agg-a", [10] * 3)
    _send("ksnoop-agg-b", [20] * 5)
    out, err = _stop(trace)
    (report,) = _reports(out)
    ours = {c["key"]["comm"]: c for c in _ours(report, ["ksnoop-agg-a", "ksnoop-agg-b"])}
    assert {name: (c["key"]["skb->dev->name"], c["count"]) for name, c in ours.items()} == {
        "ksnoop-agg-a": ("lo", 3),
        "ksnoop-agg-b": ("lo", 5),
    }
    assert all(c["func"] == "tp:net_dev_queue" for c in report["counts"])
    assert report["dropped"] == {"keys": 0, "calls": 0} and report["interval"] is None
    assert f"ksnoop: {sum(c['count'] for c in report['counts'])} calls counted" in err


def test_text_is_a_table_of_counts_by_key() -> None:
    trace = _start("--count-by", "comm,skb->len", 'tp:net_dev_queue(skb->dev->name == "lo")')
    _send("ksnoop-agg-t", [100, 100, 7])
    out, err = _stop(trace)
    lines = out.splitlines()
    header = next(n for n, line in enumerate(lines) if line.startswith("tp:net_dev_queue: "))
    assert lines[header + 1].split() == ["COUNT", "comm", "skb->len"]
    rows = [line.split() for line in lines[header + 2 :] if '"ksnoop-agg-t"' in line]
    assert sorted(rows) == sorted(
        [["2", '"ksnoop-agg-t"', str(100 + HEADERS)], ["1", '"ksnoop-agg-t"', str(7 + HEADERS)]]
    )
    assert not split_ready(err)[1].count("error")


def test_hist_buckets_are_the_sizes_sent() -> None:
    sizes = [1, 5, 22, 100, 100, 1000, 3000, 3000, 3000]
    trace = _start("-o", "json", "--count-by", "comm", "--hist", "skb->len", "tp:net_dev_queue")
    _send("ksnoop-agg-h", sizes)
    out, _ = _stop(trace)
    (ours,) = _ours(_reports(out)[0], ["ksnoop-agg-h"])
    expected: Dict[str, int] = {}
    for size in sizes:
        expected[_bucket_low(size + HEADERS)] = expected.get(_bucket_low(size + HEADERS), 0) + 1
    assert ours["hist_log2"] == expected and ours["count"] == len(sizes)


def test_hist_text_draws_every_bucket_between_the_first_and_last() -> None:
    trace = _start("--hist", "skb->len", "--comm", "ksnoop-agg-x", "tp:net_dev_queue")
    _send("ksnoop-agg-x", [100 - HEADERS, 1000 - HEADERS])  # lengths 100 and 1000: buckets [64, 128) and [512, 1K)
    out, _ = _stop(trace)
    rows = [line.split("|")[0].rsplit(None, 1) for line in out.splitlines() if "|" in line]
    assert [(label.strip(), int(n)) for label, n in rows] == [
        ("[64, 128)", 1),
        ("[128, 256)", 0),
        ("[256, 512)", 0),
        ("[512, 1K)", 1),
    ]
    assert out.splitlines()[0] == "tp:net_dev_queue: 2 calls" and out.splitlines()[1] == "  skb->len:"


def test_top_keeps_the_most_counted_and_counts_the_rest() -> None:
    size = 1234  # only these datagrams pass the spec's test
    trace = _start("-o", "json", "--top", "2", "--count-by", "comm", f"tp:net_dev_queue(skb->len == {size + HEADERS})")
    for name, n in (("ksnoop-agg-1", 1), ("ksnoop-agg-2", 2), ("ksnoop-agg-3", 3)):
        _send(name, [size] * n)
    out, _ = _stop(trace)
    (report,) = _reports(out)
    assert [(c["key"]["comm"], c["count"]) for c in report["counts"]] == [("ksnoop-agg-3", 3), ("ksnoop-agg-2", 2)]
    assert report["more"] == {"keys": 1, "count": 1}


def test_a_full_hash_counts_what_it_drops() -> None:
    sizes = [300, 301, 302, 302, 303]
    trace = _start(
        "-o", "json", "--max-keys", "2", "--count-by", "skb->len", "--comm", "ksnoop-agg-f", "tp:net_dev_queue"
    )
    _send("ksnoop-agg-f", sizes)
    out, err = _stop(trace)
    (report,) = _reports(out)
    assert {c["key"]["skb->len"]: c["count"] for c in report["counts"]} == {300 + HEADERS: 1, 301 + HEADERS: 1}
    assert report["dropped"] == {"keys": 2, "calls": 3}
    assert "ksnoop: warning: 2 distinct keys dropped (3 calls not counted): the hash was full" in err


def test_each_interval_reports_the_calls_since_the_last() -> None:
    trace = _start(
        "-o", "json", "--interval", "0.5", "--count-by", "comm", "--comm", "ksnoop-agg-i", "tp:net_dev_queue"
    )
    _send("ksnoop-agg-i", [10, 10, -1, 10, -1, 10, 10, 10], pause=0.7)  # across at least three intervals
    out, _ = _stop(trace)
    reports = _reports(out)
    assert [r["interval"] for r in reports] == list(range(1, len(reports) + 1))
    counts = [sum(c["count"] for c in r["counts"]) for r in reports]
    assert sum(counts) == 6 and len([n for n in counts if n]) >= 2, counts
    assert all(later["elapsed_s"] > earlier["elapsed_s"] for earlier, later in zip(reports, reports[1:]))


def test_bitfields_strings_and_followed_values_as_keys_and_histograms() -> None:
    """A bitfield keyed by its value alone, a char array, and a histogram of a value two pointers
    away (loopback's MTU, as /sys says)."""
    mtu = int(Path("/sys/class/net/lo/mtu").read_text())
    trace = _start(
        "-o", "json", "--count-by", "comm,skb->pkt_type,skb->dev->name", "--hist", "skb->dev->mtu", "tp:net_dev_queue"
    )
    _send("ksnoop-agg-m", [10, 20, 30])
    out, _ = _stop(trace)
    (ours,) = _ours(_reports(out)[0], ["ksnoop-agg-m"])
    assert ours["key"] == {"comm": "ksnoop-agg-m", "skb->pkt_type": 0, "skb->dev->name": "lo"}  # PACKET_HOST
    assert ours["hist_log2"] == {_bucket_low(mtu): 3}


def test_a_char_pointer_keys_by_its_text(tmp_path: Path) -> None:
    true = Path("/tmp") / f"ksnoop-agg-true-{tmp_path.name[-8:]}"
    true.write_bytes(Path("/bin/true").read_bytes())
    true.chmod(0o755)
    try:
        trace = _start("-o", "json", "--count-by", "bprm->filename", "tp:sched_process_exec")
        for _ in range(2):
            subprocess.run([str(true)], check=True)
        out, _ = _stop(trace)
    finally:
        true.unlink()
    counts = {c["key"]["bprm->filename"]: c["count"] for c in _reports(out)[0]["counts"]}
    assert counts[str(true)] == 2, counts
