# SPDX-License-Identifier: GPL-2.0-only
"""Guest side of test_trace_vm.py: run several `ksnoop trace` at once against UDP traffic made here.

`python3 tests/vm/trace_driver.py PLAN.json` (cwd: the repo). The plan names the senders (each a
forked child with its own comm that sends UDP datagrams on loopback to a receiver it bound) and the
ksnoop instances (argv after `trace`, how many BPF links make it attached, or `"ready": "stdout"`
for the text header or `"ready": "stderr"` for the ready line, how it is stopped, and
optionally a command its stdout is piped through). The driver forks the senders, starts every
instance, waits until each holds its links (read from /proc/PID/fdinfo, so ksnoop needs no ready
signal), lets the senders send one after another, stops the instances, and writes the ground truth
(pids, comms, ports, sizes, results) and each instance's exit status and timings to
PLAN_DIR/manifest.json; each instance's stdout and stderr go to PLAN_DIR/NAME.out and NAME.err.

Python starts slowly under TCG, so this is one interpreter for the whole scenario; the senders are
forks of it. Stdlib only: it runs on the host's interpreter inside the guest.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ATTACH_TIMEOUT = float(os.environ.get("KSNOOP_VM_ATTACH_TIMEOUT", "240"))
EXIT_TIMEOUT = 60.0
# Kernel warnings and oopses (a BPF splat, say) on the guest's console; a soft lockup or RCU stall
# only means TCG was starved on a busy host.
KERNEL_FAULT = re.compile(r"WARNING: CPU|BUG: (?!soft lockup)|Oops|general protection fault|Call Trace.*bpf")
STOP_SIGNALS = {"term": signal.SIGTERM, "int": signal.SIGINT, "kill": signal.SIGKILL}


def main(plan_path: str) -> int:
    plan = json.loads(Path(plan_path).read_text())
    out_dir = Path(plan_path).parent
    started = time.monotonic()

    def elapsed() -> float:
        return round(time.monotonic() - started, 3)

    senders = [_fork_sender(spec) for spec in plan["senders"]]
    fill = {f"{s['name']}_{key}": str(s[key]) for s in senders for key in ("pid", "comm")}
    instances = []
    for spec in plan["instances"]:
        argv = [sys.executable, "-m", "ksnoop", "trace", *(arg.format(**fill) for arg in spec["args"])]
        stdout = (out_dir / f"{spec['name']}.out").open("wb")
        stderr = (out_dir / f"{spec['name']}.err").open("wb")
        if spec.get("pipe"):
            ksnoop = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL)
            assert ksnoop.stdout is not None
            pipe = subprocess.Popen(spec["pipe"], stdin=ksnoop.stdout, stdout=stdout, stderr=stderr)
            ksnoop.stdout.close()  # the pipe's reader holds it now; ksnoop sees EPIPE if it dies
        else:
            ksnoop = subprocess.Popen(argv, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
            pipe = None
        stdout.close()
        stderr.close()
        instances.append(
            {
                "spec": spec,
                "argv": argv[4:],
                "proc": ksnoop,
                "pipe": pipe,
                "attached_s": None,
                "first_link_s": None,
                "links_attached": None,
            }
        )

    # Wait until every instance holds its links: from then on its programs see every call.
    deadline = time.monotonic() + ATTACH_TIMEOUT
    waiting = list(instances)
    while waiting and time.monotonic() < deadline:
        for inst in list(waiting):
            if inst["proc"].poll() is not None:
                waiting.remove(inst)  # died before attaching; its stderr will say why
            else:
                links = links_held(inst["proc"].pid)
                if links and inst["first_link_s"] is None:
                    inst["first_link_s"] = elapsed()
                if inst["spec"].get("ready") == "stdout":  # the text header: every program attached
                    ready = (out_dir / f"{inst['spec']['name']}.out").stat().st_size > 0
                    links = links_held(inst["proc"].pid) if ready else links
                elif inst["spec"].get("ready") == "stderr":  # the ready line: every program is attached
                    said = (out_dir / f"{inst['spec']['name']}.err").read_bytes()
                    ready = re.search(rb"^ksnoop: (counting calls|tracing) .*Ctrl-C", said, re.MULTILINE) is not None
                    links = links_held(inst["proc"].pid) if ready else links
                else:
                    ready = links >= inst["spec"]["links"]
                if ready:
                    inst["attached_s"] = elapsed()
                    inst["links_attached"] = links
                    waiting.remove(inst)
        time.sleep(0.1)
    attached_all_s = elapsed()

    sent = []
    if not waiting:
        for sender in senders:
            sent.append(_run_sender(sender))
    traffic_done_s = elapsed()
    # Maps whose entries the plan wants counted while every instance still runs (leak checks).
    map_entries = {name: _map_entries(name) for name in plan.get("count_map_entries", [])}

    for inst in instances:
        inst["max_rss_kb"] = _max_rss_kb(inst["proc"].pid)
        stop = inst["spec"]["stop"]
        if stop in STOP_SIGNALS and inst["proc"].poll() is None:
            inst["proc"].send_signal(STOP_SIGNALS[stop])
    for inst in instances:
        inst["timed_out"] = False
        for proc in (inst["proc"], inst["pipe"]):
            if proc is None:
                continue
            try:
                proc.wait(timeout=max(1.0, EXIT_TIMEOUT - (time.monotonic() - started - traffic_done_s)))
            except subprocess.TimeoutExpired:
                inst["timed_out"] = True
                proc.kill()
                proc.wait()
        inst["exited_s"] = elapsed()
    for sender in senders:
        if sender["process_pid"] is not None:
            _reap(sender)

    manifest = {
        "links_after_exit": _link_types(),
        "senders": sent,
        "attached_all_s": attached_all_s,
        "traffic_done_s": traffic_done_s,
        "finished_s": elapsed(),
        "not_attached": [inst["spec"]["name"] for inst in waiting],
        "map_entries": map_entries,
        "instances": {
            inst["spec"]["name"]: {
                "argv": inst["argv"],
                "pid": inst["proc"].pid,
                "returncode": inst["proc"].returncode,
                "pipe_returncode": inst["pipe"].returncode if inst["pipe"] is not None else None,
                "timed_out": inst["timed_out"],
                "attached_s": inst["attached_s"],
                "first_link_s": inst["first_link_s"],
                "links_attached": inst["links_attached"],
                "exited_s": inst["exited_s"],
                "max_rss_kb": inst["max_rss_kb"],
            }
            for inst in instances
        },
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return 0


def links_held(pid: int) -> int:
    """How many BPF links process `pid` holds: fdinfo of a link has a `link_type:` line. (The VM
    benchmarks wait on it too, to time a tracer only once it is attached.)"""
    count = 0
    try:
        fds = os.listdir(f"/proc/{pid}/fdinfo")
    except OSError:
        return 0
    for fd in fds:
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                if "\nlink_type:" in f.read():
                    count += 1
        except OSError:
            pass
    return count


def _max_rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _fork_sender(spec: dict) -> dict:
    """A child that sets its comm, binds a receiver and a sender, reports them, and waits for `go`.

    Each datagram goes to the receiver (so no ICMP reply joins the traffic) unless its port is 0,
    which udp_sendmsg refuses with EINVAL before any skb exists.
    """
    go_read, go_write = os.pipe()
    report_read, report_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the sender
        try:
            os.close(go_write)
            os.close(report_read)
            Path("/proc/self/comm").write_text(spec["comm"])
            receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            receiver.bind(("127.0.0.1", 0))
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            info = {"pid": os.getpid(), "sport": sock.getsockname()[1], "dport": receiver.getsockname()[1]}
            os.write(report_write, (json.dumps(info) + "\n").encode())
            if os.read(go_read, 1) != b"g":
                return  # the driver gave up (an instance did not attach): send nothing
            results = []
            for send in spec["sends"]:
                results.append(_send(send, sock, receiver, info["dport"]))
            os.write(report_write, (json.dumps(results) + "\n").encode())
        except BaseException as err:  # noqa: BLE001 (the parent reports it)
            os.write(report_write, (json.dumps({"sender_error": repr(err)}) + "\n").encode())
        finally:
            os._exit(0)
    os.close(go_read)
    os.close(report_write)
    report = os.fdopen(report_read)
    info = json.loads(report.readline())
    if "sender_error" in info:
        raise RuntimeError(f"sender {spec['name']}: {info['sender_error']}")
    return {
        "name": spec["name"],
        "comm": spec["comm"],
        **info,
        "process_pid": pid,
        "go": go_write,
        "report": report,
    }


def _send(send: dict, sock: socket.socket, receiver: socket.socket, dport: int) -> dict:
    """One step of a sender: a datagram (to its receiver, to port 0, or to a port nobody listens on,
    which draws an ICMP reply sent from inside the send), an ICMP echo on a raw socket (IP output
    without udp_sendmsg), `exits` children that exit at once with status 7, or a `sleep` of so many
    seconds (clock_nanosleep: hrtimer_nanosleep takes that long)."""
    if "sleep" in send:
        time.sleep(send["sleep"])
        return {"slept": send["sleep"]}
    if send.get("icmp"):
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        raw.sendto(bytes([8, 0, 0xF7, 0xFF, 0, 0, 0, 0]), ("127.0.0.1", 0))  # type 8, checksum 0xf7ff
        raw.close()
        return {"icmp": True}
    if send.get("exits"):
        pids = []
        for _ in range(send["exits"]):
            child = os.fork()
            if child == 0:
                os._exit(7)
            pids.append(child)
        for child in pids:
            os.waitpid(child, 0)
        return {"exited": pids, "status": 7}
    where = send.get("port", "receiver")
    if where == "receiver":
        port = dport
    elif where == "closed":
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # free again: nobody listens there now
    else:
        port = int(where)
    try:
        sock.sendto(b"k" * send["size"], ("127.0.0.1", port))
        if port == dport:
            receiver.recv(65536)
        return {"size": send["size"], "port": port, "error": None}
    except OSError as err:
        return {"size": send["size"], "port": port, "error": err.errno}


def _link_types() -> list:
    """The type of every BPF link in the system once every instance has exited (bpftool), or None
    if bpftool cannot tell: what a killed tracer left behind."""
    try:
        shown = json.loads(
            subprocess.run(
                ["bpftool", "-j", "link", "show"], capture_output=True, text=True, timeout=60, check=True
            ).stdout
            or "[]"
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None  # type: ignore[return-value]
    return [link.get("type") for link in shown]


def _map_ids() -> set:
    shown = subprocess.run(["bpftool", "-j", "map", "show"], capture_output=True, text=True, timeout=60, check=True)
    return {m["id"] for m in json.loads(shown.stdout)}


def _map_entries(name: str) -> dict:
    """Entries in every BPF map called `name`, by map id, read with bpftool (None if it cannot tell)."""
    try:
        shown = json.loads(
            subprocess.run(
                ["bpftool", "-j", "map", "show"], capture_output=True, text=True, timeout=60, check=True
            ).stdout
        )
        out = {}
        for m in shown:
            if m.get("name") == name:
                dump = subprocess.run(
                    ["bpftool", "-j", "map", "dump", "id", str(m["id"])],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                if dump.returncode != 0 and m["id"] not in _map_ids():
                    continue  # its ksnoop ended (-n) between the listing and the dump
                dump.check_returncode()
                out[str(m["id"])] = len(json.loads(dump.stdout))
        return out
    except (OSError, subprocess.SubprocessError, ValueError) as err:
        return {"error": repr(err)}


def _run_sender(sender: dict) -> dict:
    """Let one sender send and wait for its results; its datagrams have all been traced by then."""
    os.write(sender["go"], b"g")
    sends = json.loads(sender["report"].readline())
    if "sender_error" in sends:
        raise RuntimeError(f"sender {sender['name']}: {sends['sender_error']}")
    _reap(sender)
    return {key: sender[key] for key in ("name", "comm", "pid", "sport", "dport")} | {"sends": sends}


def _reap(sender: dict) -> None:
    if sender["process_pid"] is not None:
        os.close(sender["go"])
        os.waitpid(sender["process_pid"], 0)
        sender["process_pid"] = None


def explain(manifest: dict, name: str) -> str:  # type: ignore[type-arg]
    """For an assertion's message: instance `name` of a run_scenario manifest, its stderr and stdout."""
    return (
        f"\n{json.dumps(manifest['instances'][name])}\n--- stderr:\n{manifest['err'][name][-3000:]}"
        f"--- stdout:\n{manifest['out'][name][:3000]}"
    )


def run_scenario(vm: Any, name: str, plan: dict, timeout: float) -> dict:  # type: ignore[type-arg]
    """The host side: run this driver in `vm` (a tests.vm.harness.VM) on `plan` in a directory of
    its own, `name`; its manifest, with each instance's stdout and stderr under "out" and "err",
    the run's "seconds" and the guest's "console_log". Fails the calling test if the driver
    failed, an instance never attached, or the kernel warned (KERNEL_FAULT)."""
    import pytest

    work = vm.shared_dir / name
    work.mkdir(exist_ok=True)
    (work / "plan.json").write_text(json.dumps(plan))
    started = time.monotonic()
    result = vm.run(["python3", __file__, str(work / "plan.json")], timeout, cwd=str(Path(__file__).parents[2]))
    if result.returncode != 0:
        pytest.fail(result.stdout + result.stderr + result.console_log, pytrace=False)
    manifest = json.loads((work / "manifest.json").read_text())
    manifest["seconds"] = time.monotonic() - started
    manifest["console_log"] = result.console_log
    names = [i["name"] for i in plan["instances"]]
    manifest["out"] = {n: (work / f"{n}.out").read_text(errors="replace") for n in names}
    manifest["err"] = {n: (work / f"{n}.err").read_text(errors="replace") for n in names}
    if manifest["not_attached"]:
        pytest.fail(json.dumps({n: manifest["err"][n] for n in manifest["not_attached"]}, indent=1), pytrace=False)
    faults = [line for line in result.console_log.splitlines() if KERNEL_FAULT.search(line)]
    assert not faults, result.console_log
    return manifest  # type: ignore[no-any-return]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
