# SPDX-License-Identifier: GPL-2.0-only
"""The VM harness itself: the guest runs the Debian kernel, results come back, and fentry works there."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from tests.vm import harness

FENTRY_PROBE = Path(__file__).with_name("fentry_probe.py")
# Python under TCG starts in about 1 s; leave room for a loaded CI machine.
TIMEOUT = 120


@pytest.mark.vm
def test_guest_runs_this_python_on_the_debian_kernel(vm: harness.VM) -> None:
    result = vm.run(["python3", "-c", "import sys, os; print(sys.version); print(os.uname().release)"], TIMEOUT)
    assert result.returncode == 0, result.stderr
    release = result.stdout.splitlines()[-1]
    assert result.stdout == f"{sys.version}\n{release}\n"  # sys.version may span lines (3.9)
    assert release == vm.kernel.version
    assert release != os.uname().release


@pytest.mark.vm
def test_exit_status_and_streams_come_back(vm: harness.VM) -> None:
    result = vm.run("echo out; echo err >&2; exit 3", TIMEOUT)
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")


@pytest.mark.vm
def test_env_and_cwd_reach_the_command(vm: harness.VM) -> None:
    result = vm.run(["sh", "-c", 'echo "$KSNOOP_TEST"; pwd'], TIMEOUT, env={"KSNOOP_TEST": "a 'b'"}, cwd="/etc")
    assert result.stdout == "a 'b'\n/etc\n"


@pytest.mark.vm
def test_guest_writes_reach_the_host_through_the_shared_dir(vm: harness.VM) -> None:
    result = vm.run(["sh", "-c", 'echo hello > "$0"/from-guest', str(vm.shared_dir)], TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert (vm.shared_dir / "from-guest").read_text() == "hello\n"


@pytest.mark.vm
def test_kernel_messages_arrive_in_the_console_log(vm: harness.VM) -> None:
    result = vm.run("echo ksnoop-kmsg-test > /dev/kmsg", TIMEOUT)
    assert "ksnoop-kmsg-test" in result.console_log


@pytest.mark.vm
def test_bpffs_tracefs_and_btf_are_there(vm: harness.VM) -> None:
    result = vm.run("cat /proc/mounts; test -s /sys/kernel/btf/vmlinux && echo btf-ok", TIMEOUT)
    mounts = {(fields[1], fields[2]) for fields in map(str.split, result.stdout.splitlines()) if len(fields) > 2}
    assert ("/sys/fs/bpf", "bpf") in mounts
    assert ("/sys/kernel/tracing", "tracefs") in mounts
    assert "btf-ok" in result.stdout


@pytest.mark.vm
def test_fentry_loads_and_attaches(vm: harness.VM) -> None:
    result = vm.run(["python3", str(FENTRY_PROBE)], TIMEOUT)
    assert result.returncode == 0, result.stderr + result.console_log
    match = re.fullmatch(r"fentry ip_send_skb btf_id \d+ prog_fd \d+ link_fd (\d+)\n", result.stdout)
    assert match is not None, result.stdout
    assert int(match.group(1)) >= 0


@pytest.mark.vm
def test_timeout_kills_qemu_and_the_next_command_reboots(vm: harness.VM) -> None:
    vm.run(["true"], TIMEOUT)
    pid = vm.qemu_pid
    with pytest.raises(harness.VMError, match="did not finish within 1 s"):
        vm.run(["sleep", "60"], timeout=1)
    assert vm.qemu_pid is None
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    assert vm.run(["true"], TIMEOUT).returncode == 0


@pytest.mark.vm
def test_boot_timeout_kills_qemu_and_shows_the_console(vm: harness.VM) -> None:
    impatient = harness.VM(boot_timeout=0.5)
    with impatient, pytest.raises(harness.VMError, match="(?s)not ready within 0.5 s.*last console lines"):
        impatient.run(["true"], TIMEOUT)
    assert impatient.qemu_pid is None


def test_missing_qemu_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "QEMU", "qemu-system-nonexistent")
    with pytest.raises(harness.VMUnavailable, match="apt-get install qemu-system-x86"):
        harness.VM()
