# SPDX-License-Identifier: GPL-2.0-only
"""Guest side of test_module_vm.py: module functions traced by `ksnoop trace`, and a module gone missing.

`python3 tests/vm/module_driver.py OUT_DIR` (cwd: the repo, as root in the guest). It loads the modules
dummy, bridge and veth from the Debian kernel's /lib/modules (the host's, shared read-only), then runs
at once: `ksnoop info` of two module functions; two `ksnoop trace -o json` on functions of dummy and
bridge; and a `ksnoop trace` of a veth function that unloads veth between resolving the function and
opening its BTF object. Once both traces hold their links (read from /proc/PID/fdinfo), it makes the
calls: two UDP datagrams out of a dummy link (dummy_xmit, in this process), then a dummy link
enslaved to a bridge (br_add_if). It SIGINTs the traces and writes OUT_DIR/manifest.json with the
ground truth, exit statuses and timings; each command's stdout and stderr go to OUT_DIR/NAME.out/.err.

Stdlib only: it runs on the host's interpreter inside the guest.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ATTACH_TIMEOUT = float(os.environ.get("KSNOOP_VM_ATTACH_TIMEOUT", "240"))
EXIT_TIMEOUT = 60.0
MODULES = ("dummy", "bridge", "veth")
COMM = "ksnoop-moddrv"
# A dummy link has IFF_NOARP, so a datagram to another address of its subnet goes straight to dummy_xmit.
DUMMY, DUMMY_ADDR, PEER = "ksdum0", "10.77.0.1/24", "10.77.0.2"
BRIDGE, PORT = "ksbr0", "ksdum1"
SIZES = (100, 300)
# ksnoop's main with session.prepare wrapped: the target is resolved from veth's BTF, then veth goes.
GONE = """
import subprocess, sys
from ksnoop import cli
from ksnoop.run import trace as session
resolve = session.prepare
def prepare(options):
    out = resolve(options)
    subprocess.run(["rmmod", "veth"], check=True)
    return out
session.prepare = prepare
sys.argv = ["ksnoop", "trace", "-o", "json", sys.argv[1]]
cli.run()
"""


def main(out_dir_name: str) -> int:
    out_dir = Path(out_dir_name)
    started = time.monotonic()

    def elapsed() -> float:
        return round(time.monotonic() - started, 3)

    Path("/proc/self/comm").write_text(COMM)
    subprocess.run(["modprobe", "-a", *MODULES], check=True)
    module_btf = {m: os.path.exists(f"/sys/kernel/btf/{m}") for m in MODULES}
    # No IPv6 on the links made below: no router or neighbour solicitations through dummy_xmit.
    Path("/proc/sys/net/ipv6/conf/default/disable_ipv6").write_text("1\n")
    ksnoop = [sys.executable, "-m", "ksnoop"]
    commands = {
        "info": (0, [*ksnoop, "info", "dummy_xmit", "br_add_if"]),
        "trace_all": (3, [*ksnoop, "trace", "-o", "json", "dummy_xmit(skb->len, dev->name)", "br_add_if"]),
        "trace_hops": (2, [*ksnoop, "trace", "-o", "json", "br_add_if(br->dev->name, dev->name, return)"]),
        "gone": (0, [sys.executable, "-c", GONE, "veth_get_stats64"]),
    }
    procs = {}
    for name, (_links, argv) in commands.items():
        with (out_dir / f"{name}.out").open("wb") as out, (out_dir / f"{name}.err").open("wb") as err:
            procs[name] = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    traces = [name for name, (links, _argv) in commands.items() if links]

    attached_s: dict[str, float | None] = dict.fromkeys(traces)
    btf_fds: dict[str, int] = {}
    deadline = time.monotonic() + ATTACH_TIMEOUT
    while time.monotonic() < deadline and None in attached_s.values():
        for name in traces:
            if attached_s[name] is None and procs[name].poll() is None:
                if _count_fds(procs[name].pid)[0] >= commands[name][0]:
                    attached_s[name] = elapsed()
                    btf_fds[name] = _count_fds(procs[name].pid)[1]
        if any(procs[name].poll() is not None for name in traces):
            break  # one died before attaching; its stderr says why
        time.sleep(0.1)

    sent = []
    if None not in attached_s.values():
        _ip("link", "add", DUMMY, "type", "dummy")
        _ip("addr", "add", DUMMY_ADDR, "dev", DUMMY)
        _ip("link", "set", DUMMY, "up")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for size in SIZES:
                sock.sendto(b"m" * size, (PEER, 9))
                sent.append(size)
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("link", "add", PORT, "type", "dummy")
        _ip("link", "set", PORT, "master", BRIDGE)
        time.sleep(0.5)
    traffic_done_s = elapsed()

    for name in traces:
        if procs[name].poll() is None:
            procs[name].send_signal(signal.SIGINT)
    status = {}
    for name, proc in procs.items():
        try:
            proc.wait(timeout=max(1.0, EXIT_TIMEOUT - (elapsed() - traffic_done_s)))
            status[name] = {"returncode": proc.returncode, "timed_out": False}
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            status[name] = {"returncode": proc.returncode, "timed_out": True}

    # Leave the guest as it was for tests that share the VM (veth is gone already, or should be).
    for link in (PORT, BRIDGE, DUMMY):
        subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
    Path("/proc/sys/net/ipv6/conf/default/disable_ipv6").write_text("0\n")
    veth_after = os.path.exists("/sys/kernel/btf/veth")
    subprocess.run(["modprobe", "-r", "-a", "dummy", "bridge", "veth"], capture_output=True, check=False)

    manifest = {
        "pid": os.getpid(),
        "comm": COMM,
        "module_btf": module_btf,
        "veth_btf_after": veth_after,
        "sent": sent,
        "dummy": DUMMY,
        "bridge": BRIDGE,
        "port": PORT,
        "attached_s": attached_s,
        "btf_fds": btf_fds,
        "traffic_done_s": traffic_done_s,
        "finished_s": elapsed(),
        "status": status,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return 0


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


def _count_fds(pid: int) -> tuple[int, int]:
    """(BPF links, BTF objects) that process `pid` holds."""
    links = btfs = 0
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0, 0
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target == "anon_inode:btf":
                btfs += 1
            elif target == "anon_inode:bpf_link":
                links += 1
        except OSError:
            pass
    return links, btfs


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
