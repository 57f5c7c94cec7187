# SPDX-License-Identifier: GPL-2.0-only
"""The VM harness itself: the guest runs the Debian kernel it was asked for (each test runs on each kernel),
results come back, the guest's python3 is the host's, fentry works there, and fetching 6.12 happens once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.vm import harness

FENTRY_PROBE = Path(__file__).with_name("fentry_probe.py")
# Python under TCG starts in about 1 s; leave room for a loaded CI machine.
TIMEOUT = 120
# What identifies an interpreter: printed in the guest and on the host, compared line by line.
WHICH_PYTHON = "import sys; print(sys.executable); print(sys.prefix); print(sys.version)"


@pytest.mark.vm
def test_guest_runs_this_python_on_the_debian_kernel(vm: harness.VM, request: pytest.FixtureRequest) -> None:
    result = vm.run(["python3", "-c", "import sys, os; print(sys.version); print(os.uname().release)"], TIMEOUT)
    assert result.returncode == 0, result.stderr
    release = result.stdout.splitlines()[-1]
    assert result.stdout == f"{sys.version}\n{release}\n"  # sys.version may span lines (3.9)
    assert vm.kernel.name == request.node.callspec.params["vm"]
    assert release == vm.kernel.version
    assert release.startswith(f"{vm.kernel.name}.")
    assert release != os.uname().release


@pytest.mark.vm
def test_kprobe_multi_is_in_6_12_only_by_its_config_and_its_running_kernel(vm: harness.VM) -> None:
    # The reason for the second kernel: fprobe (kprobe_multi links) and kprobe session are in 6.12, not in 6.1.
    config = vm.kernel.config.read_text().splitlines()
    assert config[2].startswith(f"# Linux/x86 {vm.kernel.name}."), config[2]  # "# Linux/x86 6.1.192 Kernel ..."
    fprobe = "CONFIG_FPROBE=y" in config
    assert fprobe == (vm.kernel.name == "6.12"), [line for line in config if "FPROBE" in line]
    result = vm.run("grep -ow -e register_fprobe -e bpf_session_is_return /proc/kallsyms | sort -u", TIMEOUT)
    assert result.stdout.split() == (["bpf_session_is_return", "register_fprobe"] if fprobe else []), result.stderr


@pytest.mark.vm
def test_modprobe_finds_the_booted_kernels_modules(vm: harness.VM) -> None:
    # For a fetched kernel the guest sees its modules (and the modules.dep the fetch wrote) at /lib/modules.
    result = vm.run("modprobe veth && grep -o '^veth ' /proc/modules && modprobe -r veth", TIMEOUT)
    assert (result.returncode, result.stdout) == (0, "veth \n"), result.stderr


@pytest.mark.vm
def test_guest_python3_is_the_interpreter_running_the_tests(vm: harness.VM) -> None:
    result = vm.run(["python3", "-c", WHICH_PYTHON], TIMEOUT)
    assert result.returncode == 0, result.stderr
    executable, prefix, version = result.stdout.split("\n", 2)
    # python3 from this interpreter's directory: sys.executable itself when the tests run as `python3 -m pytest`.
    assert executable == str(Path(sys.executable).with_name("python3"))
    assert os.path.realpath(executable) == os.path.realpath(sys.executable)
    assert (prefix, version) == (sys.prefix, f"{sys.version}\n")


@pytest.mark.vm
def test_a_virtual_environment_under_tmp_is_the_guests_python3(vm: harness.VM) -> None:
    # The guest's /tmp is its own tmpfs: the harness must share the venv's prefix at its own path.
    vm.stop()  # one VM at a time; the next test boots this one again
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="ksnoop-venv-") as venv:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
        python = Path(venv, "bin", "python3")
        host = subprocess.run([python, "-c", WHICH_PYTHON], capture_output=True, text=True, check=True).stdout
        assert host.split("\n")[1] == venv
        guest = subprocess.run(
            [python, Path(harness.__file__), "--kernel", vm.kernel.name, "python3", "-c", WHICH_PYTHON],
            capture_output=True,
            text=True,
            timeout=harness.BOOT_TIMEOUT + TIMEOUT,
            check=False,
        )
    assert (guest.returncode, guest.stdout) == (0, host), guest.stderr


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
    impatient = harness.VM(boot_timeout=0.5, kernel=vm.kernel)
    with impatient, pytest.raises(harness.VMError, match="(?s)not ready within 0.5 s.*last console lines"):
        impatient.run(["true"], TIMEOUT)
    assert impatient.qemu_pid is None


@pytest.mark.vm
def test_a_kernel_that_panics_booting_is_booted_once_more_then_shown(
    vm: harness.VM, capsys: pytest.CaptureFixture[str]
) -> None:
    # No init anywhere: the kernel panics before the guest is ready, every time.
    doomed = harness.VM(kernel=vm.kernel, kernel_args=("rdinit=/nonexistent", "init=/nonexistent"))
    with doomed, pytest.raises(harness.VMError, match="(?s)before the guest was ready.*Kernel panic"):
        doomed.run(["true"], TIMEOUT)
    assert doomed.qemu_pid is None
    assert capsys.readouterr().err.count("the guest kernel panicked while booting; booting again") == 1


def test_missing_qemu_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "QEMU", "qemu-system-nonexistent")
    with pytest.raises(harness.VMUnavailable, match="apt-get install qemu-system-x86"):
        harness.VM()


@pytest.mark.vm
def test_fetching_the_6_12_kernel_twice_needs_no_network_the_second_time() -> None:
    try:
        first = harness.fetch_kernel("6.12")  # downloads only if the cache has no 6.12 yet
    except harness.VMUnavailable as error:
        if os.environ.get("KSNOOP_REQUIRE_VM") == "1":
            pytest.fail(f"KSNOOP_REQUIRE_VM=1 but the 6.12 kernel cannot be fetched: {error}", pytrace=False)
        pytest.skip(f"the 6.12 kernel cannot be fetched: {error}")
    # In a network namespace of its own there is only a loopback device that is down: apt could reach nothing.
    no_network = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--net"]
    again = subprocess.run(
        [*no_network, sys.executable, Path(harness.__file__), "--fetch", "6.12"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"harness: kernel 6.12: {first.version} in {first.vmlinuz.parents[1]}\n"
