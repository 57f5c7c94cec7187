# SPDX-License-Identifier: GPL-2.0-only
"""`ksnoop trace` end to end on this machine's kernel: `python3 -m ksnoop trace ...` in a subprocess,
checked against ground truth the test makes itself.

- UDP datagrams of known sizes on loopback go through `tp:net_dev_queue` with skb->len = payload
  + 8 + 20 + 14 and skb->dev->name "lo" (a bound receiver, so no ICMP reply joins them);
- a child the test spawns (a copy of true(1) under a unique name) goes through
  `tp:sched_process_exec` with its pid, comm and filename.

Other sessions may trace and send on this machine at the same time, so every check looks only at
records of this test's own process, thread or child, and "nothing left loaded" means: no ksnoop_*
program, link or map that was not there before and that no live process holds.

Synchronisation without fixed sleeps: the text header is printed once the programs are attached;
in JSON mode the test sends a datagram that passes the filters until its record appears. Records
are committed inside the sending syscall, and SIGINT drains the ring buffer before ksnoop exits,
so whatever was sent before the signal is in the output.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from tests.support.kernel_objects import held_ids, ksnoop_objects as _ksnoop_objects, wait_until_gone
from tests.support.ready import split_ready
from tests.kernel.test_cli_kernel import as_nobody  # noqa: F401  (a fixture: uid 65534 with ksnoop's imports)

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_kernel", "nothing_left_loaded")]

REPO = Path(__file__).resolve().parents[2]
VMLINUX = "/sys/kernel/btf/vmlinux"
BPFTOOL = next((p for p in ("/usr/sbin/bpftool", shutil.which("bpftool")) if p and os.access(p, os.X_OK)), None)
HEADER = "%16s %4s %8s %s" % ("TIME", "CPU", "PID", "FUNCTION/ARGS")
UDP_OVERHEAD = 8 + 20 + 14  # UDP, IPv4 and Ethernet headers: skb->len on loopback's net_dev_queue
TIMEOUT = 20.0  # for anything that should take well under a second


# ---- ground truth: datagrams and children ------------------------------------------------------------
class Loopback:
    """A bound UDP receiver on 127.0.0.1 and a sender; `send(n)` sends an n-byte datagram."""

    def __init__(self) -> None:
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind(("127.0.0.1", 0))
        self.rx.setblocking(False)
        self.addr = self.rx.getsockname()
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def send(self, payload: int, times: int = 1) -> None:
        data = b"k" * payload
        for _ in range(times):
            self.tx.sendto(data, self.addr)
        self.drain()

    def drain(self) -> None:
        try:
            while True:
                self.rx.recv(65536)
        except BlockingIOError:
            pass

    def close(self) -> None:
        self.tx.close()
        self.rx.close()


@pytest.fixture
def udp() -> Iterator[Loopback]:
    lo = Loopback()
    try:
        yield lo
    finally:
        lo.close()


def skb_len(payload: int) -> int:
    return payload + UDP_OVERHEAD


def my_comm() -> str:
    with open("/proc/thread-self/comm") as f:
        return f.read().rstrip("\n")


_SEND_ELSEWHERE = r"""
import os, socket, sys
port, size, times = map(int, sys.argv[1:])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(times):
    s.sendto(b"o" * size, ("127.0.0.1", port))
print(os.getpid())
"""


def send_from_another_process(lo: Loopback, payload: int, times: int) -> int:
    """Send from a child python; returns its pid."""
    result = subprocess.run(
        [sys.executable, "-c", _SEND_ELSEWHERE, str(lo.addr[1]), str(payload), str(times)],
        capture_output=True,
        text=True,
        check=True,
        timeout=TIMEOUT,
    )
    lo.drain()
    return int(result.stdout)


@pytest.fixture
def true_copy() -> Iterator[Path]:
    """A copy of true(1) under a name no other process has; its comm is that name."""
    directory = Path(tempfile.mkdtemp(prefix="ksnoop-exec-"))
    try:
        path = directory / f"ksnx{os.getpid() % 100000}"
        shutil.copy2(shutil.which("true") or "/bin/true", path)
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def spawn(path: Path) -> int:
    child = subprocess.Popen([str(path)])
    assert child.wait(timeout=TIMEOUT) == 0
    return child.pid


# ---- ksnoop in the background --------------------------------------------------------------------------
class Trace:
    """`python3 -m ksnoop trace ARGS` running; its stdout lines arrive in a queue as it prints them."""

    def __init__(
        self, *args: str, prefix: Sequence[str] = (), env: Optional[Dict[str, str]] = None, cwd: Any = REPO
    ) -> None:
        self.args = args
        # faulthandler: a ksnoop that hangs is sent SIGABRT and shows where (see `kill`).
        env = dict(os.environ if env is None else env, PYTHONFAULTHANDLER="1")
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "ksnoop", "trace", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._queue: "queue.Queue[Optional[str]]" = queue.Queue()
        self._out: List[str] = []
        self._err: List[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, False), daemon=True),
        ]
        for t in self._threads:
            t.start()
        self.returncode: Optional[int] = None

    def _pump(self, stream: Any, is_stdout: bool) -> None:
        for line in stream:
            (self._out if is_stdout else self._err).append(line)
            if is_stdout:
                self._queue.put(line)
        if is_stdout:
            self._queue.put(None)

    def next_line(self, timeout: float) -> Optional[str]:
        """The next stdout line; None at end of output; queue.Empty when none comes in time."""
        return self._queue.get(timeout=timeout)

    def attached(self) -> float:
        """Wait for the text header, printed once every program is attached; its arrival time."""
        try:
            line = self.next_line(TIMEOUT)
        except queue.Empty:
            self.kill()
            raise AssertionError(f"no header within {TIMEOUT} s; stderr: {self.stderr}") from None
        if line is None:
            self.wait()
            raise AssertionError(f"ksnoop exited {self.returncode} before attaching: {self.stderr}")
        assert line == HEADER + "\n"
        return time.monotonic()

    def first_record(self, send: Callable[[], None], match: Callable[[Dict[str, Any]], bool]) -> Dict[str, Any]:
        """JSON mode: call `send` until a record that `match`es arrives (proof that the trace is attached)."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            send()
            until = time.monotonic() + 0.1
            while True:
                try:
                    line = self.next_line(max(0.0, until - time.monotonic()))
                except queue.Empty:
                    break
                if line is None:
                    self.wait()
                    raise AssertionError(f"ksnoop exited {self.returncode}: {self.stderr}")
                record = json.loads(line)
                if match(record):
                    return record
        self.kill()
        raise AssertionError(f"no matching record within {TIMEOUT} s; stderr: {self.stderr}")

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"ksnoop {self.args} did not exit within {timeout} s: {self.stderr}") from None
        for t in self._threads:
            t.join(timeout)
        return self.returncode

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        return self.wait()

    def kill(self) -> None:
        """End it; one still running when a test gives up on it first dumps its threads' stacks."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGABRT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.returncode = self.proc.wait()
        for t in self._threads:
            t.join(TIMEOUT)

    def close(self) -> None:
        self.kill()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> "Trace":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def stdout(self) -> str:
        return "".join(self._out)

    @property
    def stderr(self) -> str:
        """stderr less the ready line (see `ready_lines`)."""
        return split_ready("".join(self._err))[1]

    @property
    def ready_lines(self) -> List[str]:
        return split_ready("".join(self._err))[0]

    def ready(self) -> str:
        """Wait for the line on stderr that says every probe is attached; the line."""
        deadline = time.monotonic() + TIMEOUT
        while not self.ready_lines:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"ksnoop never said it was ready: {''.join(self._err)}")
            time.sleep(0.01)
        return self.ready_lines[0]

    def json_records(self) -> List[Dict[str, Any]]:
        return [json.loads(line, object_pairs_hook=_unique_keys) for line in self._out]

    def text_records(self) -> List["TextRecord"]:
        return parse_text(self.stdout)


def _unique_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys in a JSON object: {keys}"
    return dict(pairs)


def ksnoop(
    *args: str, prefix: Sequence[str] = (), env: Optional[Dict[str, str]] = None, cwd: Any = REPO
) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [*prefix, sys.executable, "-m", "ksnoop", "trace", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def summary(n: int) -> str:
    return f"ksnoop: {n} record{'' if n == 1 else 's'}\n"


# ---- the text layout -------------------------------------------------------------------------------------
class TextRecord:
    def __init__(self, ts: int, cpu: int, pid: int, func: str, comm: str, values: Dict[str, str]):
        self.ts, self.cpu, self.pid, self.func, self.comm, self.values = ts, cpu, pid, func, comm, values

    def __repr__(self) -> str:
        return f"TextRecord({self.ts}, {self.cpu}, {self.pid}, {self.func!r}, {self.comm!r}, {self.values!r})"


_FIRST = re.compile(r"^ *(\d+) +(\d+) +(\d+) (\S+)\( /\* (.*) \*/$")
_VALUE = re.compile(r"^    (\S+) = (.*?),?$")


def parse_text(text: str) -> List[TextRecord]:
    """Records of scalar values: `name( /* comm */`, one `    label = (type)value` line each, `);`."""
    assert "\x1b" not in text, "colour codes in piped output"
    lines = text.splitlines()
    assert lines and lines[0] == HEADER, text
    records: List[TextRecord] = []
    i = 1
    while i < len(lines):
        m = _FIRST.match(lines[i])
        assert m, f"line {i}: {lines[i]!r} does not start a record"
        values: Dict[str, str] = {}
        i += 1
        while lines[i] != ");":
            v = _VALUE.match(lines[i])
            assert v, f"line {i}: {lines[i]!r} is not a value line"
            values[v[1]] = v[2]
            i += 1
        i += 1
        records.append(TextRecord(int(m[1]), int(m[2]), int(m[3]), m[4], m[5], values))
    return records


# ---- nothing of ksnoop stays loaded ----------------------------------------------------------------------
@pytest.fixture
def nothing_left_loaded() -> Iterator[None]:
    before = _ksnoop_objects()
    yield
    wait_until_gone(before)


# ---- text and JSON output ----------------------------------------------------------------------------------
@pytest.fixture
def pinned_cpu() -> Iterator[int]:
    """Run this test's thread on one CPU: the records it causes carry that CPU."""
    saved = os.sched_getaffinity(0)
    cpu = max(saved)
    os.sched_setaffinity(0, {cpu})  # this thread only
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, saved)


def test_udp_text_output(udp: Loopback, pinned_cpu: int) -> None:
    payload = 1111
    with Trace("-p", str(os.getpid()), "tp:net_dev_queue(skb->len, skb->dev->name)") as t:
        t.attached()
        before = time.monotonic_ns()
        udp.send(payload)
        after = time.monotonic_ns()
        assert t.stop() == 0, t.stderr
    assert t.stderr == summary(1)
    (record,) = t.text_records()
    assert (record.pid, record.cpu, record.func, record.comm) == (
        os.getpid(),
        pinned_cpu,
        "tp:net_dev_queue",
        my_comm(),
    )
    assert before <= record.ts <= after
    assert record.values == {"skb->len": f"(unsigned int){skb_len(payload)}", "skb->dev->name": '(char[16])"lo"'}
    lines = t.stdout.splitlines()
    assert lines[-3:] == [
        f"    skb->len = (unsigned int){skb_len(payload)},",
        '    skb->dev->name = (char[16])"lo"',
        ");",
    ]


def test_udp_json_output(udp: Loopback, pinned_cpu: int) -> None:
    payload, marker = 1234, 1233
    # Spacing in the spec is normalised in the keys; a struct pointer is followed and shown whole.
    spec = "tp:net_dev_queue( skb -> len , skb->dev->name, skb)"
    with Trace("-o", "json", "-p", str(os.getpid()), spec) as t:
        t.first_record(lambda: udp.send(marker), lambda r: r["args"]["skb->len"] == skb_len(marker))
        before = time.monotonic_ns()
        udp.send(payload)
        after = time.monotonic_ns()
        assert t.stop() == 0, t.stderr
    records = t.json_records()
    assert t.stderr == summary(len(records))
    assert {r["args"]["skb->len"] for r in records} == {skb_len(marker), skb_len(payload)}
    (record,) = [r for r in records if r["args"]["skb->len"] == skb_len(payload)]
    assert list(record) == ["ts", "cpu", "pid", "tid", "comm", "func", "probe", "args"]  # no duration_ns
    assert isinstance(record["ts"], int) and before <= record["ts"] <= after
    assert record["cpu"] == pinned_cpu
    assert (record["pid"], record["tid"], record["comm"]) == (os.getpid(), threading.get_native_id(), my_comm())
    assert (record["func"], record["probe"]) == ("tp:net_dev_queue", "tracepoint")
    args = record["args"]
    assert list(args) == ["skb->len", "skb->dev->name", "skb"]
    assert args["skb->len"] == skb_len(payload) and args["skb->dev->name"] == "lo"
    skb = args["skb"]
    assert skb["len"] == skb_len(payload)
    assert skb["data_len"] == 0 and skb["protocol"] == 0x0800  # ETH_P_IP: a __be16, read in network order
    assert re.fullmatch(r"0x[0-9a-f]+", skb["dev"]) and skb["dev"] != "0x0"
    # Pure ASCII, one object per line.
    assert all(line.isascii() and line.endswith("}\n") for line in t._out)


def test_exec_json(true_copy: Path) -> None:
    name = true_copy.name
    spec = "tp:sched_process_exec(p->pid, p->comm, bprm->filename, old_pid)"
    spawned: List[int] = []
    with Trace("-o", "json", "--comm", name, spec) as t:
        t.first_record(lambda: spawned.append(spawn(true_copy)), lambda r: True)
        spawned.append(spawn(true_copy))
        assert t.stop() == 0, t.stderr
    records = t.json_records()
    assert t.stderr == summary(len(records))
    assert records and spawned[-1] in {r["pid"] for r in records}
    for record in records:
        assert record["pid"] in spawned
        assert record == {
            "ts": record["ts"],
            "cpu": record["cpu"],
            "pid": record["pid"],
            "tid": record["pid"],
            "comm": name,
            "func": "tp:sched_process_exec",
            "probe": "tracepoint",
            "args": {
                "p->pid": record["pid"],
                "p->comm": name,
                "bprm->filename": str(true_copy),
                "old_pid": record["pid"],
            },
        }


def test_exec_text_with_a_string_predicate_on_a_char_pointer(true_copy: Path) -> None:
    # Not --comm: the filename predicate alone picks the child out of everything exec'd meanwhile.
    spec = f'tp:sched_process_exec(bprm->filename == "{true_copy}", p->pid)'
    with Trace(spec) as t:
        t.attached()
        subprocess.run(["true"], check=True)  # another filename: dropped
        pid = spawn(true_copy)
        assert t.stop() == 0, t.stderr
    assert t.stderr == summary(1)
    (record,) = t.text_records()
    assert (record.pid, record.comm, record.func) == (pid, true_copy.name, "tp:sched_process_exec")
    assert record.values == {"bprm->filename": f'(const char *)"{true_copy}"', "p->pid": f"(pid_t){pid}"}


# ---- kernel stacks -------------------------------------------------------------------------------------------
_FRAME = re.compile(r"^(\S+)\+0x[0-9a-f]+(?: \[(\S+)\])?$")
SETPRIV = shutil.which("setpriv")


def frame_names(frames: List[str]) -> List[str]:
    """`function+0xoffset [module]` -> function, checking each frame's form."""
    names = []
    for frame in frames:
        m = _FRAME.match(frame)
        assert m, f"{frame!r} is not function+0xoffset"
        names.append(m[1])
    return names


def assert_udp_send_path(names: List[str]) -> None:
    """Innermost first: the device queue, IP output, the UDP send, the syscall."""
    assert "__dev_queue_xmit" in names and "udp_sendmsg" in names, names
    assert names.index("__dev_queue_xmit") < names.index("udp_sendmsg"), names
    assert "ip_finish_output2" in names or "ip_send_skb" in names, names


def test_kstack_text(udp: Loopback) -> None:
    payload = 1151
    with Trace("--kstack", "-p", str(os.getpid()), "tp:net_dev_queue(skb->len)") as t:
        t.attached()
        udp.send(payload)
        assert t.stop() == 0, t.stderr
    assert t.stderr == summary(1)  # readable kallsyms: no warning
    lines = t.stdout.splitlines()
    assert lines[0] == HEADER and _FIRST.match(lines[1]), lines
    assert lines[2:4] == [f"    skb->len = (unsigned int){skb_len(payload)}", ");"]
    frames = lines[4:]
    assert 5 <= len(frames) <= 32 and all(f.startswith("    ") and f[4] != " " for f in frames), frames
    assert_udp_send_path(frame_names([f[4:] for f in frames]))


def test_kstack_json(udp: Loopback) -> None:
    payload, marker = 1152, 1153
    with Trace("-o", "json", "--kstack-depth", "24", "-p", str(os.getpid()), "tp:net_dev_queue(skb->len)") as t:
        t.first_record(lambda: udp.send(marker), lambda r: r["args"]["skb->len"] == skb_len(marker))
        udp.send(payload)
        assert t.stop() == 0, t.stderr
    records = t.json_records()
    assert t.stderr == summary(len(records))
    (record,) = [r for r in records if r["args"]["skb->len"] == skb_len(payload)]
    assert list(record) == ["ts", "cpu", "pid", "tid", "comm", "func", "probe", "args", "kstack"]
    assert 5 <= len(record["kstack"]) <= 24
    assert_udp_send_path(frame_names(record["kstack"]))


@pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) is not installed")
def test_kstack_without_cap_syslog_shows_addresses_and_warns_once(udp: Loopback) -> None:
    """Without CAP_SYSLOG (and with perf_event_paranoid > 1) /proc/kallsyms lists every address as 0."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop CAP_SYSLOG alone")
    with open("/proc/sys/kernel/perf_event_paranoid") as f:
        if int(f.read()) <= 1:
            pytest.skip("perf_event_paranoid <= 1: /proc/kallsyms shows addresses without CAP_SYSLOG too")
    prefix = [SETPRIV, "--bounding-set", "-syslog"]  # type: ignore[list-item]
    with Trace("-o", "json", "--kstack", "-p", str(os.getpid()), "tp:net_dev_queue(skb->len)", prefix=prefix) as t:
        t.first_record(lambda: udp.send(1154), lambda r: True)
        udp.send(1155, times=2)
        assert t.stop() == 0, t.stderr
    records = t.json_records()
    assert len(records) >= 3
    warning, summary_line = t.stderr.splitlines()
    assert warning == (
        "ksnoop: warning: /proc/kallsyms hides kernel addresses (kernel.kptr_restrict, or no "
        "CAP_SYSLOG); kernel stacks show raw addresses"
    )
    assert summary_line + "\n" == summary(len(records))
    for r in records:
        assert r["kstack"] and all(re.fullmatch(r"0x[0-9a-f]{8,16}", f) for f in r["kstack"]), r["kstack"]


# ---- predicates ---------------------------------------------------------------------------------------------
PAYLOADS = (1000, 1001, 1002)  # skb->len 1042, 1043, 1044
MARKER = 999  # skb->len 1041: passes the `== "lo"` spec, shows the trace is attached
PREDICATES = [  # (items, the skb->len values kept)
    ("skb->len > 1043", {1044}),
    ("skb->len >= 1043", {1043, 1044}),
    ("skb->len == 1043", {1043}),
    ("skb->len == 0x413", {1043}),
    ("skb->len != 1043", {1042, 1044}),
    ("skb->len < 1043", {1042}),
    ("skb->len <= 1043", {1042, 1043}),
    ('skb->dev->name == "lo"', {1042, 1043, 1044}),
    ('skb->dev->name != "lo"', set()),
    ('skb->dev->name == "l"', set()),  # no prefix match
    ('skb->dev->name == "eth0"', set()),
    ('skb->len >= 1043, skb->dev->name == "lo"', {1043, 1044}),  # ANDed: both pass
    ('skb->len >= 1043, skb->dev->name == "eth0"', set()),  # ANDed: the second fails
]
# Several specs in one run: each also shows a member of its own, which tells its records apart.
TAGS = (
    "data_len",
    "mac_len",
    "hdr_len",
    "queue_mapping",
    "priority",
    "skb_iif",
    "hash",
    "truesize",
    "mark",
    "tc_index",
    "alloc_cpu",
    "active_extensions",
    "csum",
)


def test_predicates_keep_and_drop(udp: Loopback) -> None:
    """One ksnoop, a spec per predicate; each spec sees the three datagrams and keeps its share."""
    specs = [
        f"tp:net_dev_queue({items}{'' if 'skb->len' in items else ', skb->len'}, skb->{tag})"
        for (items, _), tag in zip(PREDICATES, TAGS)
    ]
    with Trace("-o", "json", "-p", str(os.getpid()), *specs) as t:
        t.first_record(
            lambda: udp.send(MARKER),
            lambda r: (
                "skb->dev->name" in r["args"]
                and "skb->truesize" in r["args"]
                and r["args"]["skb->len"] == skb_len(MARKER)
            ),
        )
        for payload in PAYLOADS:
            udp.send(payload)
        assert t.stop() == 0, t.stderr
    records = t.json_records()
    assert t.stderr == summary(len(records))
    failures = []
    for (items, kept), tag in zip(PREDICATES, TAGS):
        lens = sorted(r["args"]["skb->len"] for r in records if f"skb->{tag}" in r["args"])
        if [n for n in lens if n != skb_len(MARKER)] != sorted(kept):
            failures.append(f"{items}: kept {lens}, expected {sorted(kept)}")
    assert not failures, "\n".join(failures)
    for r in records:
        tags = [key for key in r["args"] if key.split("->")[-1] in TAGS]
        assert len(tags) == 1 and r["pid"] == os.getpid(), r
        (items, _), tag = next((p, tag) for p, tag in zip(PREDICATES, TAGS) if f"skb->{tag}" == tags[0])
        # The keys: the spec's values in its order.
        expected = re.findall(r"(skb->[\w>-]+)", items) + ([] if "skb->len" in items else ["skb->len"])
        assert list(r["args"]) == expected + [f"skb->{tag}"], (items, list(r["args"]))


def test_a_value_named_twice_is_one_json_key(udp: Loopback) -> None:
    with Trace("-o", "json", "-p", str(os.getpid()), "tp:net_dev_queue(skb->len > 100, skb->len)") as t:
        t.first_record(lambda: udp.send(MARKER), lambda r: True)
        assert t.stop() == 0, t.stderr
    assert t._out
    records = [r for r in t.json_records() if r["args"]["skb->len"] == skb_len(MARKER)]
    assert records and all(list(r["args"]) == ["skb->len"] for r in records)


# ---- filters and limits ---------------------------------------------------------------------------------------
def test_pid_filter_keeps_the_sender_and_drops_another_process(udp: Loopback) -> None:
    mine, marker = 1300, 1301
    with Trace("-o", "json", "-p", str(os.getpid()), "tp:net_dev_queue(skb->len)") as t:
        t.first_record(lambda: udp.send(marker), lambda r: r["args"]["skb->len"] == skb_len(marker))
        other = send_from_another_process(udp, mine, 3)
        udp.send(mine, 2)
        assert t.stop() == 0, t.stderr
    records = t.json_records()
    assert t.stderr == summary(len(records))
    assert other != os.getpid()
    assert {(r["pid"], r["tid"]) for r in records} == {(os.getpid(), threading.get_native_id())}
    assert [r["args"]["skb->len"] for r in records].count(skb_len(mine)) == 2


def test_comm_filter_keeps_one_thread(udp: Loopback) -> None:
    comm = f"ksnc{os.getpid() % 100000}"
    kept, dropped = 1400, 1401
    stop = threading.Event()
    tids: List[int] = []

    def sender() -> None:
        with open("/proc/thread-self/comm", "w") as f:
            f.write(comm)
        tids.append(threading.get_native_id())
        while not stop.is_set():
            udp.tx.sendto(b"t" * kept, udp.addr)
            stop.wait(0.02)

    with Trace("-o", "json", "--comm", comm, "tp:net_dev_queue(skb->len)") as t:
        thread = threading.Thread(target=sender, daemon=True)
        thread.start()
        try:
            t.first_record(lambda: None, lambda r: True)
            udp.send(dropped, 3)  # the main thread: another comm
        finally:
            stop.set()
            thread.join(TIMEOUT)
        assert t.stop() == 0, t.stderr
    records = t.json_records()
    assert records and t.stderr == summary(len(records))
    for r in records:
        assert (r["pid"], r["tid"], r["comm"], r["args"]) == (os.getpid(), tids[0], comm, {"skb->len": skb_len(kept)})


def test_count_stops_after_exactly_n_records(udp: Loopback) -> None:
    payload = 1500
    with Trace(
        "-o", "json", "-n", "3", "-p", str(os.getpid()), f"tp:net_dev_queue(skb->len == {skb_len(payload)})"
    ) as t:
        deadline = time.monotonic() + TIMEOUT
        while t.proc.poll() is None and time.monotonic() < deadline:
            udp.send(payload, 5)  # bursts: more than 3 records wait in the buffer at once
            time.sleep(0.01)
        assert t.wait() == 0, t.stderr
    records = t.json_records()
    assert len(records) == 3
    assert all(r["args"] == {"skb->len": skb_len(payload)} and r["pid"] == os.getpid() for r in records)
    assert t.stderr == summary(3)


def test_duration_stops_on_time(udp: Loopback) -> None:
    payload = 1600
    with Trace("--duration", "1", "-p", str(os.getpid()), "tp:net_dev_queue(skb->len)") as t:
        attached = t.attached()
        udp.send(payload)
        assert t.wait() == 0, t.stderr
        elapsed = time.monotonic() - attached
    assert 0.9 <= elapsed < 5.0
    assert [r.values for r in t.text_records()] == [{"skb->len": f"(unsigned int){skb_len(payload)}"}]
    assert t.stderr == summary(1)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_drains_and_exits_0(udp: Loopback, sig: int) -> None:
    payload, n = 1700, 200
    with Trace("-p", str(os.getpid()), "tp:net_dev_queue(skb->len)") as t:
        t.attached()
        udp.send(payload, n)
        assert t.stop(sig) == 0, t.stderr  # at once: most records are still in the ring buffer
    records = t.text_records()
    assert [r.values["skb->len"] for r in records] == [f"(unsigned int){skb_len(payload)}"] * n
    assert t.stderr == summary(n)
    assert "Traceback" not in t.stderr


def test_kill_9_leaves_nothing_loaded() -> None:
    before = _ksnoop_objects()
    with Trace("tp:net_dev_queue(skb->len)", "tp:sched_process_exec(p->pid)") as t:
        t.attached()
        ours = held_ids([t.proc.pid])
        assert len(ours["prog"]) == 2 and len(ours["link"]) == 2 and ours["map"], ours
        loaded = _ksnoop_objects()
        for kind in ("prog", "link", "map"):
            assert ours[kind] <= loaded[kind], (kind, ours, loaded)
        t.proc.kill()
        assert t.wait() == -signal.SIGKILL
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        now = _ksnoop_objects()
        if not any(ours[kind] & now[kind] for kind in now):
            break
        time.sleep(0.05)
    now = _ksnoop_objects()
    assert not any(ours[kind] & now[kind] for kind in now), (ours, now)
    wait_until_gone(before)


@pytest.mark.parametrize("output", ["text", "json"])
def test_stdout_closed_by_head(udp: Loopback, output: str) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    payload = 1800
    script = '"$1" -m ksnoop trace -o "$2" -p "$3" "$4" 2>"$5" | head -1; echo "status=${PIPESTATUS[0]}"'
    with tempfile.NamedTemporaryFile("r") as err:
        proc = subprocess.Popen(
            [
                bash,
                "-c",
                script,
                "sh",
                sys.executable,
                output,
                str(os.getpid()),
                f"tp:net_dev_queue(skb->len == {skb_len(payload)})",
                err.name,
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + TIMEOUT
            while proc.poll() is None and time.monotonic() < deadline:
                udp.send(payload)  # the first record (json) and the write that meets the closed pipe
                time.sleep(0.02)
            out, _ = proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        stderr = err.read()
    first, status = out.splitlines()
    if output == "text":
        assert first == HEADER
    else:
        assert json.loads(first)["args"] == {"skb->len": skb_len(payload)}
    assert "Traceback" not in stderr
    assert (status, split_ready(stderr)) == ("status=1", (["ksnoop: tracing 1 tracepoint; Ctrl-C to stop"], ""))


# ---- -v ---------------------------------------------------------------------------------------------------------
def _btf_raw() -> str:
    if BPFTOOL is None:
        pytest.skip("bpftool is not installed (Debian package bpftool)")
    result = subprocess.run(
        [BPFTOOL, "btf", "dump", "file", VMLINUX, "format", "raw"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


def test_verbose_shows_plan_and_listing(udp: Loopback) -> None:
    spec = 'tp:net_dev_queue(skb->len >= 1234, skb->dev->name == "lo")'
    with Trace("-v", "-p", str(os.getpid()), spec) as t:
        t.attached()
        udp.send(1900)
        assert t.stop() == 0, t.stderr
    assert [r.values["skb->len"] for r in t.text_records()] == [f"(unsigned int){skb_len(1900)}"]
    lines = t.stderr.splitlines()
    assert lines[-1] == summary(1).rstrip("\n") and "Traceback" not in t.stderr
    raw = _btf_raw()
    tp_id = int(re.search(r"^\[(\d+)\] TYPEDEF 'btf_trace_net_dev_queue' ", raw, re.M)[1])  # type: ignore[index]
    sk_buff = re.search(r"^\[\d+\] STRUCT 'sk_buff' size=\d+ vlen=\d+\n((?:\t.*\n)*)", raw, re.M)
    assert sk_buff
    len_offset = int(re.search(r"^\t'len' type_id=\d+ bits_offset=(\d+)", sk_buff[1], re.M)[1]) // 8  # type: ignore[index]
    assert re.fullmatch(rf"probe tp_btf:net_dev_queue attach_btf_id {tp_id} \(vmlinux\), record \d+ bytes", lines[0])
    assert re.fullmatch(rf"  test skb->len >= 1234: slot 0 hops \[\] offset {len_offset} size 4", lines[1])
    assert lines[2].startswith("  test skb->dev->name == b'lo': slot 0 hops [")
    assert any(
        re.fullmatch(rf"  capture skb->len: slot 0 hops \[\] offset {len_offset} size 4 -> record \+\d+", x)
        for x in lines
    )
    m = next(re.fullmatch(r"  program (ksnoop_\w+): (\d+) instructions", x) for x in lines if "  program " in x)
    assert m and "ksnoop_net_dev_queue".startswith(m[1])
    listing = []
    for line in lines[lines.index(m[0]) + 1 :]:
        insn = re.match(r"^ +(\d+): \((\w\w)\) (.*)$", line)
        if not insn:
            break
        listing.append((int(insn[1]), insn[3]))
    numbers = [n for n, _ in listing]
    # Numbered by instruction slot (a 64-bit load takes two), the last one ending the program.
    assert numbers[0] == 0 and numbers == sorted(set(numbers)) and numbers[-1] == int(m[2]) - 1
    calls = {text.split()[1].split("#")[0] for _, text in listing if text.startswith("call ")}
    assert {"bpf_ringbuf_reserve", "bpf_ringbuf_submit", "bpf_probe_read_kernel"} <= calls, calls
    # The plan and listing come before the header, i.e. before attaching; the records go to stdout only.
    assert t.stdout.startswith(HEADER + "\n") and "instructions" not in t.stdout


# ---- errors -------------------------------------------------------------------------------------------------------
def _no_traceback(result: "subprocess.CompletedProcess[str]") -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr


SPEC_ERRORS = [
    # (spec, the fragment the caret points into, what the message says)
    ("ip_send_skbb", "ip_send_skbb", ["no kernel function 'ip_send_skbb'", "did you mean 'ip_send_skb'"]),
    ("tp:net_dev_queu", "tp:net_dev_queu", ["no tracepoint 'net_dev_queu'", "did you mean 'tp:net_dev_queue'"]),
    ("tp:net_dev_queue(sbk->len)", "sbk", ["has no argument 'sbk'", "'skb'", "its arguments are: skb"]),
    ("tp:sched_process_exec(old_pd, p)", "old_pd", ["no argument 'old_pd'", "its arguments are: p, old_pid, bprm"]),
    ("tp:net_dev_queue(skb->lenn)", "->lenn", ["struct sk_buff has no member 'lenn'", "did you mean 'len'"]),
    ("tp:sched_process_exec(p->comn)", "->comn", ["struct task_struct has no member 'comn'", "comm"]),
    ("tp:net_dev_queue(skb->len->x)", "->x", ["'->'", "'unsigned int'", "not a pointer", "use '.'"]),
    ("tp:net_dev_queue(skb.len)", ".len", ["'.'", "'struct sk_buff *'", "is a pointer", "use '->'"]),
    ('tp:net_dev_queue(skb->len == "abc")', '"abc"', ["cannot compare 'skb->len' (unsigned int) with a string"]),
    ("tp:net_dev_queue(skb->dev->name == 5)", "5", ["cannot compare 'skb->dev->name' (char[16]) with a number"]),
    ("tp:net_dev_queue(skb->dev->name[16])", "[16]", ["index 16 is past the end of 'char[16]'", "0..15"]),
    ("tp:net_dev_queue(skb->len == -1)", "-1", ["-1 is out of range for 'skb->len'", "unsigned int: 0..4294967295"]),
    ("tp:net_dev_queue(return)", "return", ["a tracepoint has no return value"]),
    ("tp:net_dev_queue(skb->len", "", ["expected ',' or ')', found the end of the spec"]),
]


@pytest.mark.parametrize("spec,where,says", SPEC_ERRORS, ids=[s for s, _, _ in SPEC_ERRORS])
def test_spec_errors(spec: str, where: str, says: List[str]) -> None:
    result = ksnoop(spec)
    _no_traceback(result)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    first, shown, caret = result.stderr.rstrip("\n").split("\n")
    assert first.startswith("ksnoop: error: ")
    for text in says:
        assert text in first
    assert shown == "  " + spec
    assert caret.strip() == "^" and caret.startswith("  ")
    column = caret.index("^") - 2
    start = spec.index(where) if where else len(spec)
    assert start <= column <= start + max(0, len(where) - 1), f"caret at {column}, expected within {where!r}"


@pytest.mark.parametrize(
    "pages,says",
    [
        ("3", "--pages 3: the ring buffer size must be a power of two pages"),
        ("1048576", "--pages 1048576: at most"),
    ],
)
def test_bad_pages(pages: str, says: str) -> None:
    result = ksnoop("--pages", pages, "tp:net_dev_queue")
    _no_traceback(result)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("ksnoop: error: ") and says in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_pages_below_one_is_a_usage_error() -> None:
    result = ksnoop("--pages", "0", "tp:net_dev_queue")
    _no_traceback(result)
    assert (result.returncode, result.stdout) == (2, "")
    assert "--pages" in result.stderr


def test_function_on_a_kernel_that_refuses_fentry(fentry_refusal: str, kprobe_refusal: str) -> None:
    """Where this kernel refuses fentry (this machine's does) and has no kprobes (nor has this
    machine's), one line saying both; where it takes fentry, or has kprobes to fall back on, the
    trace runs (records and output are tested in tests/vm, on kernels with both)."""
    if not fentry_refusal or not kprobe_refusal:
        result = ksnoop("--duration", "0.5", "ip_send_skb")
        _no_traceback(result)
        assert result.returncode == 0, result.stderr
        if fentry_refusal:  # fell back, and said so once
            assert result.stderr.count("tracing functions with kprobes") == 1, result.stderr
        return
    for spec in ("ip_send_skb", "tcp_v4_connect(return != 0)"):
        result = ksnoop(spec)
        _no_traceback(result)
        assert (result.returncode, result.stdout) == (1, ""), result.stderr
        (line,) = result.stderr.splitlines()
        name = spec.split("(")[0]
        assert line == (
            f"ksnoop: error: cannot trace {name}: this kernel has neither fentry/fexit (refused: "
            f"{fentry_refusal}) nor kprobes (no kprobe PMU: /sys/bus/event_source/devices/kprobe is missing); "
            "tp: tracepoints still work; see ksnoop list 'tp:*'"
        ), line
    # Asked for by name, each backend says what it lacks.
    result = ksnoop("--backend", "fentry", "ip_send_skb")
    _no_traceback(result)
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("ksnoop: error: cannot trace ip_send_skb: ")
    assert "fentry/fexit" in line and "refuse" in line and "tp:" in line and fentry_refusal in line
    result = ksnoop("--backend", "kprobe", "ip_send_skb")
    _no_traceback(result)
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert (
        result.stderr == "ksnoop: error: --backend kprobe: this kernel has no kprobes (no kprobe PMU: "
        "/sys/bus/event_source/devices/kprobe is missing)\n"
    )


def test_not_root(as_nobody: Tuple[Sequence[str], Dict[str, str], str]) -> None:  # noqa: F811
    prefix, env, cwd = as_nobody
    if not prefix:
        pytest.skip("already unprivileged")
    result = ksnoop("tp:net_dev_queue(skb->len)", prefix=prefix, env=env, cwd=cwd)
    _no_traceback(result)
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("ksnoop: error: ")
    assert re.search(r"root|CAP_BPF", line), line
    # A usage error still comes first and says what is wrong.
    result = ksnoop("tp:net_dev_queue(skb->lenn)", prefix=prefix, env=env, cwd=cwd)
    _no_traceback(result)
    assert result.returncode == 2 and "no member 'lenn'" in result.stderr
