# SPDX-License-Identifier: GPL-2.0-only
"""trace --metrics on this machine's kernel: the counts served to a scraper, checked against
datagrams sent by children the test names (as tests/kernel/test_aggregate_cli.py sends them),
read with prometheus_client's own parser and through a real Prometheus server's query API."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from typing import Callable, Dict, List, Optional, Tuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.kernel.test_aggregate_cli import HEADERS, REPO, TIMEOUT, _send, _start_ready, _stop
from tests.kernel.test_trace_cli import nothing_left_loaded  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_kernel", "nothing_left_loaded")]

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def _serve(*args: str) -> Tuple[subprocess.Popen, str]:
    """ksnoop trace --metrics on a free port of 127.0.0.1: (the process, once ready; its URL)."""
    proc, ready = _start_ready("--metrics", "127.0.0.1:0", *args)
    url = ready.split("metrics at ")[1].split()[0].rstrip(";")
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics"), ready
    return proc, url


def _scrape(url: str, accept: Optional[str] = None) -> str:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return str(response.read().decode())


def _samples(url: str) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    """Every sample of a scrape, parsed by prometheus_client: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(_scrape(url)):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _ours(samples: Dict, name: str, **labels: str) -> Dict[Tuple[Tuple[str, str], ...], float]:
    """The samples of `name` whose labels include `labels`."""
    return {k[1]: v for k, v in samples.items() if k[0] == name and set(labels.items()) <= set(k[1])}


def test_count_by_and_hist_served_as_counters_and_histograms() -> None:
    sizes = {"ksnoop-met-a": [100, 100, 1000], "ksnoop-met-b": [5]}
    proc, url = _serve("--count-by", "comm", "--hist", "skb->len", "tp:net_dev_queue")
    try:
        for name, sent in sizes.items():
            _send(name, sent)
        samples = _samples(url)
        # A scrape while ksnoop runs sees the kernel's counts as they are.
        for name, sent in sizes.items():
            counted = _ours(samples, "ksnoop_calls_by_comm_total", comm=name, func="tp:net_dev_queue")
            assert list(counted.values()) == [len(sent)], counted
            buckets = _ours(samples, "ksnoop_skb_len_bucket", comm=name)
            for le_text, n in ((k, v) for labels, v in buckets.items() for key, k in labels if key == "le"):
                le = float(le_text)
                assert n == sum(1 for size in sent if size + HEADERS <= le), (le, buckets)
        assert samples[("ksnoop_calls_total", (("func", "tp:net_dev_queue"),))] >= 4  # and loopback's others
        assert samples[("ksnoop_probes_attached", ())] == 1
        assert samples[("ksnoop_keys_dropped_total", ())] == 0
        assert samples[("ksnoop_keys_max", ())] == 10240
    finally:
        out, err = _stop(proc, signal.SIGTERM)
    assert out == ""  # with --metrics nothing is printed unless --interval asks
    assert "calls counted" in err


def test_metrics_alone_count_as_summary_does_for_every_spec() -> None:
    proc, url = _serve("--comm", "ksnoop-met-s", "tp:net_dev_queue", "tp:net_dev_xmit")
    try:
        _send("ksnoop-met-s", [10, 20, 30])
        samples = _samples(url)
        # Each datagram is queued to loopback, then handed to its driver: once each.
        assert samples[("ksnoop_calls_total", (("func", "tp:net_dev_queue"),))] == 3
        assert samples[("ksnoop_calls_total", (("func", "tp:net_dev_xmit"),))] == 3
        assert samples[("ksnoop_probes_attached", ())] == 2
    finally:
        _stop(proc, signal.SIGINT)


def test_a_full_hash_is_counted_in_the_health_metrics() -> None:
    proc, url = _serve("--max-keys", "2", "--count-by", "skb->len", "--comm", "ksnoop-met-f", "tp:net_dev_queue")
    try:
        _send("ksnoop-met-f", [300, 301, 302, 302, 303])
        samples = _samples(url)
        assert samples[("ksnoop_keys_dropped_total", ())] == 2
        assert samples[("ksnoop_calls_dropped_total", ())] == 3
        assert samples[("ksnoop_keys", ())] == 2
        lens = _ours(samples, "ksnoop_calls_by_skb_len_total")
        assert sorted(dict(k)["skb_len"] for k in lens) == [str(300 + HEADERS), str(301 + HEADERS)]
    finally:
        _stop(proc, signal.SIGTERM)


def _scraped_until(url: str, done: Callable[[Dict], bool]) -> Dict:
    """The samples of the first scrape `done` accepts: records are counted as the loop reads them
    from the ring buffer, a poll interval after the kernel wrote them. The last scrape on timeout."""
    deadline = time.monotonic() + TIMEOUT
    samples = _samples(url)
    while not done(samples) and time.monotonic() < deadline:
        time.sleep(0.1)
        samples = _samples(url)
    return samples


RECORDS = ("ksnoop_records_total", (("func", "tp:net_dev_queue"),))
LOST = ("ksnoop_records_lost_total", ())


def test_records_are_printed_and_served_per_function() -> None:
    sizes = [10, 20, 30, 40]
    proc, url = _serve("--records", "-o", "json", "--comm", "ksnoop-met-r", "tp:net_dev_queue")
    try:
        _send("ksnoop-met-r", sizes)
        samples = _scraped_until(url, lambda s: s.get(RECORDS, 0) >= len(sizes))
        assert (samples[RECORDS], samples[LOST], samples[("ksnoop_probes_attached", ())]) == (len(sizes), 0, 1)
        assert not _ours(samples, "ksnoop_calls_total")  # records, not counts: nothing counted in the kernel
    finally:
        out, err = _stop(proc, signal.SIGTERM)
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["args"]["skb"]["len"] for r in records] == [size + HEADERS for size in sizes]
    assert "ksnoop: 4 records" in err


def test_records_lost_to_a_full_ring_buffer_are_served() -> None:
    """A one-page ring buffer and a reader stopped (SIGSTOP) while a child sends more datagrams
    than it holds: each datagram is either a record printed or a record lost, and the served
    counters say which, as the warning on stderr does."""
    sent = 300
    proc, url = _serve("--records", "-P", "1", "-o", "json", "--comm", "ksnoop-met-l", "tp:net_dev_queue")
    try:
        proc.send_signal(signal.SIGSTOP)
        try:
            _send("ksnoop-met-l", [1] * sent)
        finally:
            proc.send_signal(signal.SIGCONT)
        samples = _scraped_until(url, lambda s: s.get(RECORDS, 0) + s.get(LOST, 0) >= sent)
    finally:
        out, err = _stop(proc, signal.SIGTERM)
    printed, lost = samples[RECORDS], samples[LOST]
    assert printed + lost == sent and lost > 0, (printed, lost)
    assert len(out.splitlines()) == printed
    warned = sum(int(line.split()[2]) for line in err.splitlines() if line.startswith("ksnoop: lost "))
    assert warned == lost, err


def test_records_go_with_metrics_and_not_with_counting() -> None:
    alone = _ksnoop("--records", "tp:net_dev_queue")
    assert (alone.returncode, alone.stderr) == (
        2,
        "ksnoop: error: --records goes with --metrics: without it, trace prints each record anyway\n",
    )
    both = _ksnoop("--metrics", "127.0.0.1:0", "--records", "--count-by", "comm", "tp:net_dev_queue")
    assert (both.returncode, both.stderr) == (
        2,
        "ksnoop: error: --records prints each call, and --count-by counts them: one of them per ksnoop\n",
    )
    count = _ksnoop("--metrics", "127.0.0.1:0", "-n", "3", "tp:net_dev_queue")
    assert count.returncode == 2 and "add --records to print records" in count.stderr


def test_a_scrape_while_stopping_gets_a_whole_page_or_none() -> None:
    proc, url = _serve("--count-by", "comm", "tp:sys_enter")
    pages: List[str] = []
    refused: List[BaseException] = []
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            try:
                pages.append(_scrape(url, OPENMETRICS))
            except OSError as error:  # a refused or closed connection, once the server is shut
                refused.append(error)
                if proc.poll() is not None:
                    return

    threads = [threading.Thread(target=scrape) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    try:
        _stop(proc, signal.SIGTERM)
    finally:
        done.set()
        for t in threads:
            t.join(TIMEOUT)
    assert len(pages) > 5
    # OpenMetrics ends a page with "# EOF": each page is whole, and parses.
    assert all(page.endswith("# EOF\n") for page in pages)
    assert all(any(f.name == "ksnoop_calls_by_comm" for f in text_string_to_metric_families(p)) for p in pages[-3:])


def _ksnoop(
    *args: str, env: Optional[Dict[str, str]] = None, python: Tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    command = [sys.executable, *(python or ("-m", "ksnoop")), "trace", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT, env=env)


def test_an_address_in_use_is_one_line_and_nothing_attached() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _ksnoop("--metrics", f"127.0.0.1:{port}", "tp:net_dev_queue")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"ksnoop: error: --metrics 127.0.0.1:{port}: cannot listen there: the port is in use\n"


def test_an_address_not_of_this_machine_is_one_line() -> None:
    result = _ksnoop("--metrics", "192.0.2.1:9435", "tp:net_dev_queue")  # TEST-NET-1: nobody's
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "ksnoop: error: --metrics 192.0.2.1:9435: cannot listen there: no interface of this machine has that address\n"
    )


@pytest.mark.parametrize(
    "address, says",
    [
        ("9435", "HOST:PORT, as 127.0.0.1:9435, [::1]:9435, or :9435 for every address"),
        ("127.0.0.1:99999", "a port is at most 65535"),
        ("::1:9435", "an IPv6 address goes in brackets"),
    ],
)
def test_a_malformed_address_is_a_usage_error(address: str, says: str) -> None:
    result = _ksnoop("--metrics", address, "tp:net_dev_queue")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"ksnoop: error: --metrics {address}: ") and says in result.stderr


def test_without_prometheus_client_the_extra_is_named() -> None:
    # Python leaves a module out when sys.modules holds None for it: as if it were not installed.
    program = (
        "import sys; sys.modules['prometheus_client'] = None; "
        "from ksnoop.__main__ import main; sys.argv[0] = 'ksnoop'; main()"
    )
    result = _ksnoop("--metrics", "127.0.0.1:0", "tp:net_dev_queue", python=("-c", program))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "ksnoop: error: --metrics needs the prometheus_client library: pip install 'ksnoop[metrics]'\n"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _query(prometheus: str, expr: str) -> List[Dict]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def test_a_real_prometheus_scrapes_the_counts() -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("KSNOOP_REQUIRE_KERNEL"):
            pytest.fail("no prometheus binary (.ci/install-deps installs Debian's prometheus)")
        pytest.skip("no prometheus binary (apt install prometheus)")
    sent = {"ksnoop-met-p": [100, 100, 100, 2000], "ksnoop-met-q": [50]}
    proc, url = _serve("--count-by", "comm", "--hist", "skb->len", "tp:net_dev_queue")
    target = urllib.parse.urlparse(url).netloc
    with tempfile.TemporaryDirectory() as scratch:
        config = os.path.join(scratch, "prometheus.yml")
        with open(config, "w") as f:
            f.write(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                f"scrape_configs:\n  - job_name: ksnoop\n    static_configs:\n      - targets: ['{target}']\n"
            )
        web = f"127.0.0.1:{_free_port()}"
        server = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={scratch}/data", f"--web.listen-address={web}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for name, sizes in sent.items():
                _send(name, sizes)
            prometheus = f"http://{web}"
            wanted = {name: len(sizes) for name, sizes in sent.items()}
            got: Dict[str, float] = {}
            deadline = time.monotonic() + TIMEOUT
            while got != wanted and time.monotonic() < deadline:
                time.sleep(1.0)
                try:
                    rows = _query(prometheus, 'ksnoop_calls_by_comm_total{comm=~"ksnoop-met-.*"}')
                except OSError:
                    continue  # Prometheus is still starting
                got = {row["metric"]["comm"]: float(row["value"][1]) for row in rows}
            assert got == wanted
            # The histogram's buckets as Prometheus stored them: 3 of the 100-byte datagrams at
            # or below le=255 (142 bytes on loopback), all 4 below le=4095.
            rows = _query(prometheus, 'ksnoop_skb_len_bucket{comm="ksnoop-met-p"}')
            buckets = {float(row["metric"]["le"]): float(row["value"][1]) for row in rows}
            for le, n in buckets.items():
                assert n == sum(1 for size in sent["ksnoop-met-p"] if size + HEADERS <= le), buckets
            assert buckets[255.0] == 3 and buckets[float("inf")] == 4
            up = _query(prometheus, 'up{job="ksnoop"}')
            assert [row["value"][1] for row in up] == ["1"]
        finally:
            server.terminate()
            server.wait(TIMEOUT)
            _stop(proc, signal.SIGTERM)
