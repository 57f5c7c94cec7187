# SPDX-License-Identifier: GPL-2.0-only
"""Boot the Debian kernel under qemu with this machine's / shared read-only, and run commands there.

In: the Debian packages linux-image-amd64, busybox-static and qemu-system-x86. Out: a `VM` that boots
once and runs many commands, and `run_in_vm()` for a single one; each gives a `VMResult`.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import lzma
import os
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, NoReturn, Union

REPO = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("KSNOOP_VM_CACHE", REPO / ".vm-cache"))
QEMU = "qemu-system-x86_64"
BUSYBOX = Path("/bin/busybox")
# Insertion order matters: insmod does not resolve dependencies.
MODULES = (
    "virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
    "netfs", "fscache", "9pnet", "9pnet_virtio", "9p",
)  # fmt: skip
INITRAMFS_DIRS = ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "modules", "newroot")
ROOT_TAG = "hostroot"
SHARED_TAG = "ksnoopshared"
REPO_TAG = "ksnooprepo"
BOOT_TIMEOUT = float(os.environ.get("KSNOOP_VM_BOOT_TIMEOUT", "120"))
# -enable-kvm fails on nested hosts (see kernel-facts.md), so TCG is the default; CI with KVM may override.
ACCEL = os.environ.get("KSNOOP_VM_ACCEL", "tcg,thread=multi")
# python3 in the guest is the interpreter running the harness, found without pyenv's shims.
GUEST_PATH = f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Command = Union[Sequence[str], str]


class VMUnavailable(Exception):
    """Something the VM needs is not installed here; the message says which package to install."""


class VMError(Exception):
    """The guest failed to boot, died, or a command overran its timeout; the message ends with the console tail."""


@dataclasses.dataclass(frozen=True)
class VMResult:
    returncode: int
    stdout: str
    stderr: str
    console_log: str  # serial console since the previous command ended (since power-on for the first)


@dataclasses.dataclass(frozen=True)
class Kernel:
    version: str
    vmlinuz: Path
    modules_dir: Path


def find_kernel() -> Kernel:
    """The kernel that Debian's linux-image-amd64 points at. Raises VMUnavailable if it isn't installed."""
    hint = "install it with: apt-get install linux-image-amd64 (or .ci/install-vm-deps)"
    try:
        depends = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}|${Depends}", "linux-image-amd64"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    except FileNotFoundError:
        raise VMUnavailable(f"dpkg-query not found: the VM needs Debian's kernel package; {hint}") from None
    status, _, depends = depends.partition("|")
    if not status.endswith(" installed"):
        raise VMUnavailable(f"the Debian kernel package linux-image-amd64 is not installed; {hint}")
    # Depends is "linux-image-6.1.0-56-amd64 (= 6.1.192-2)".
    version = depends.split()[0].removeprefix("linux-image-") if depends else ""
    kernel = Kernel(version, Path(f"/boot/vmlinuz-{version}"), Path(f"/lib/modules/{version}"))
    for path in (kernel.vmlinuz, kernel.modules_dir / "modules.dep"):
        if not os.access(path, os.R_OK):
            raise VMUnavailable(f"linux-image-amd64 depends on {version!r} but {path} is missing or unreadable")
    return kernel


def _check_static_busybox() -> None:
    hint = "install it with: apt-get install busybox-static (or .ci/install-vm-deps)"
    if not BUSYBOX.is_file():
        raise VMUnavailable(f"{BUSYBOX} not found; {hint}")
    # The initramfs has no libc, so a dynamically linked busybox (package busybox) would not start.
    with BUSYBOX.open("rb") as f:
        header = f.read(64)
        phoff, phentsize, phnum = (
            struct.unpack_from("<Q", header, 32)[0],
            *struct.unpack_from("<HH", header, 54),
        )
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            if struct.unpack("<I", f.read(4))[0] == 3:  # PT_INTERP
                raise VMUnavailable(f"{BUSYBOX} is dynamically linked; {hint}")


def _check_qemu() -> str:
    qemu = shutil.which(QEMU)
    if qemu is None:
        raise VMUnavailable(f"{QEMU} not found; install it with: apt-get install qemu-system-x86")
    return qemu


def _module_paths(kernel: Kernel) -> list[Path]:
    """Paths of MODULES in load order, skipping any that are built in or not shipped."""
    found: dict[str, Path] = {}
    for line in (kernel.modules_dir / "modules.dep").read_text().splitlines():
        relpath = line.partition(":")[0]
        found[_module_name(relpath)] = kernel.modules_dir / relpath
    builtin_file = kernel.modules_dir / "modules.builtin"
    builtin = {_module_name(p) for p in builtin_file.read_text().split()} if builtin_file.exists() else set()
    return [found[name] for name in MODULES if name in found and name not in builtin]


def _module_name(path: str) -> str:
    name = path.rpartition("/")[2].partition(".ko")[0]
    return name.replace("-", "_")


def _read_module(path: Path) -> bytes:
    # busybox insmod takes plain ELF; Debian 12 ships plain .ko, later releases compress them.
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(path.read_bytes())
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(path.read_bytes())
    if path.name.endswith(".ko.zst"):
        if shutil.which("zstd") is None:
            raise VMUnavailable(f"{path} is zstd-compressed; install it with: apt-get install zstd")
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    return path.read_bytes()


# PID 1 in the guest. Its job protocol, all on the writable share (same path in guest and host):
# the host renames a finished jobs/N.tmp to jobs/N (job.sh inside); the guest runs it and
# writes stdout, stderr, then rc via rename, so the host never reads a half-written status.
INIT = (
    r"""#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
fail() { echo "ksnoop-vm: FATAL: $*"; poweroff -f; }
mount -t proc proc /proc && mount -t sysfs sysfs /sys && mount -t devtmpfs devtmpfs /dev || fail "early mounts"
for m in /modules/*.ko; do insmod "$m" || fail "insmod $m"; done
shared=$(sed -n 's/.*ksnoop.shared=\([^ ]*\).*/\1/p' /proc/cmdline)
[ -n "$shared" ] || fail "no ksnoop.shared= on the kernel command line"
opts=trans=virtio,version=9p2000.L,msize=512000
mkdir -p /newroot
# cache=loose makes python3 start in ~1 s instead of ~4 s, at the price that host files changed after
# the guest read them may look stale: hand fresh files over in the shared directory (default cache=none).
mount -t 9p -o ro,cache=loose,$opts @ROOT_TAG@ /newroot || fail "mount of the host root over 9p"
cd /newroot || fail "cd /newroot"
mount -t proc proc proc && mount -t sysfs sysfs sys && mount -t devtmpfs devtmpfs dev &&
  mkdir -p dev/pts dev/shm && mount -t devpts devpts dev/pts && mount -t tmpfs tmpfs dev/shm &&
  mount -t tmpfs tmpfs tmp && mount -t tmpfs tmpfs run &&
  mount -t bpf bpf sys/fs/bpf && mount -t tracefs tracefs sys/kernel/tracing || fail "mounts in the new root"
# A host path under /tmp is hidden by the guest's tmpfs (a CI clone may live there), so the checkout
# gets a share of its own at its own path; elsewhere this mounts it over the same files.
repo=$(sed -n 's/.*ksnoop.repo=\([^ ]*\).*/\1/p' /proc/cmdline)
[ -n "$repo" ] || fail "no ksnoop.repo= on the kernel command line"
mkdir -p "/newroot$repo" 2>/dev/null
mount -t 9p -o ro,cache=loose,$opts @REPO_TAG@ "/newroot$repo" || fail "mount of the checkout"
mkdir -p "/newroot$shared" 2>/dev/null
mount -t 9p -o rw,$opts @SHARED_TAG@ "/newroot$shared" || fail "mount of the shared directory"
hostname ksnoop-vm
ip link set lo up || fail "lo up"
# Quiet while booting, but let kernel warnings (WARN_ON, BPF splats) reach the console log from now on.
dmesg -n 5
jobs="/newroot$shared/jobs"
echo "ksnoop-vm: ready"
: > "/newroot$shared/ready"
n=0
while :; do
  if [ -d "$jobs/$n" ]; then
    env -i chroot /newroot /bin/sh "$shared/jobs/$n/job.sh" < /dev/null > "$jobs/$n/stdout" 2> "$jobs/$n/stderr"
    rc=$?
    echo "ksnoop-vm: job $n exit $rc"
    echo $rc > "$jobs/$n/rc.tmp" && mv "$jobs/$n/rc.tmp" "$jobs/$n/rc"
    n=$((n + 1))
  else
    sleep 0.05
  fi
done
""".replace("@ROOT_TAG@", ROOT_TAG)
    .replace("@SHARED_TAG@", SHARED_TAG)
    .replace("@REPO_TAG@", REPO_TAG)
)


def build_initramfs(kernel: Kernel) -> Path:
    """Write (or reuse) a newc cpio with busybox, the 9p modules and INIT under CACHE_DIR; returns its path."""
    modules = [(path.name.partition(".ko")[0] + ".ko", _read_module(path)) for path in _module_paths(kernel)]
    busybox = BUSYBOX.read_bytes()
    digest = hashlib.sha256(INIT.encode() + busybox)
    for name, data in modules:
        digest.update(name.encode() + data)
    target = CACHE_DIR / f"initramfs-{kernel.version}-{digest.hexdigest()[:16]}.cpio"
    if target.exists():
        return target
    archive = _Cpio()
    for directory in INITRAMFS_DIRS:
        archive.add(directory, 0o040755)
    # The kernel opens /dev/console for PID 1's stdio before anything mounts devtmpfs.
    archive.add("dev/console", 0o020600, rdev=(5, 1))
    archive.add("bin/busybox", 0o100755, busybox)
    archive.add("init", 0o100755, INIT.encode())
    # Glob order in INIT is the load order, hence the numeric prefixes.
    for index, (name, data) in enumerate(modules):
        archive.add(f"modules/{index:02d}-{name}", 0o100644, data)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a parallel session never boots a half-written file.
    with tempfile.NamedTemporaryFile(dir=CACHE_DIR, prefix=".initramfs-", delete=False) as f:
        f.write(archive.finish())
    os.chmod(f.name, 0o644)
    os.replace(f.name, target)
    return target


class _Cpio:
    """The 'newc' cpio format the kernel unpacks as an initramfs (Documentation/driver-api/early-userspace)."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._ino = 1

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        nlink = 2 if mode & 0o040000 else 1
        fields = (self._ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
        self._out += b"070701" + b"".join(b"%08x" % field for field in fields)
        self._out += name.encode() + b"\0"
        self._pad()
        self._out += data
        self._pad()
        self._ino += 1

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return bytes(self._out)

    def _pad(self) -> None:
        self._out += b"\0" * (-len(self._out) % 4)


class VM:
    """One qemu guest that boots on first use and runs commands one at a time.

    Use as a context manager: leaving it kills qemu and removes `shared_dir`. A command that overruns its
    timeout, or a guest that dies, kills qemu and raises VMError; the next run() boots again.
    `shared_dir` is writable from both sides, has the same path in the guest as on the host, and lives as
    long as the VM object; the names `ready` and `jobs` in it belong to the harness.
    """

    def __init__(
        self, boot_timeout: float = BOOT_TIMEOUT, memory: str = "2G", cpus: int = 2, kernel_args: Sequence[str] = ()
    ) -> None:
        self._qemu_path = _check_qemu()
        _check_static_busybox()
        self.kernel = find_kernel()
        self._initramfs = build_initramfs(self.kernel)
        if any(c.isspace() for c in str(CACHE_DIR)):
            # The path travels on the kernel command line, which splits at spaces.
            raise VMUnavailable(f"the VM cache path {CACHE_DIR!s} must not contain spaces (set KSNOOP_VM_CACHE)")
        self._boot_timeout = boot_timeout
        self._memory, self._cpus = memory, cpus
        # Appended to the kernel command line, e.g. tsc=reliable (benchmarks/vm_percall.py).
        self._kernel_args = " ".join(kernel_args)
        if any(any(c.isspace() for c in arg) for arg in kernel_args):
            raise ValueError(f"kernel arguments must not contain spaces: {list(kernel_args)!r}")
        self._qemu: subprocess.Popen[bytes] | None = None
        self._console = bytearray()
        self._console_lock = threading.Lock()
        self._console_mark = 0
        self._next_job = 0
        self.boot_seconds = 0.0
        self.shared_dir = Path(tempfile.mkdtemp(dir=CACHE_DIR, prefix="shared-"))

    def __enter__(self) -> VM:  # noqa: PYI034 (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(
        self, command: Command, timeout: float, env: dict[str, str] | None = None, cwd: str | None = None
    ) -> VMResult:
        """Run `command` in the guest as root; it inherits no environment from the host.

        A list is an argv; a string is a /bin/sh script, so several commands can share one call. `env`
        adds to PATH (whose python3 is this interpreter), HOME and LANG; `cwd` defaults to /.
        `timeout` (seconds) excludes booting; on expiry qemu is killed and VMError raised.
        """
        qemu = self._qemu if self._qemu is not None and self._qemu.poll() is None else self._boot()
        job_id = self._next_job
        self._next_job += 1
        job_dir = self.shared_dir / "jobs" / str(job_id)
        staging = job_dir.with_name(f"{job_id}.tmp")
        staging.mkdir()
        (staging / "job.sh").write_text(_job_script(command, env, cwd))
        staging.rename(job_dir)

        deadline = time.monotonic() + timeout
        while not (job_dir / "rc").exists():
            if qemu.poll() is not None:
                self._fail(f"the guest died while running {command!r}")
            if time.monotonic() > deadline:
                stdout = job_dir / "stdout"
                partial = _tail(stdout.read_text(errors="replace"), 20) if stdout.exists() else "(not started)"
                self._fail(f"{command!r} did not finish within {timeout:g} s; its last stdout lines:\n{partial}")
            time.sleep(0.02)
        # The guest prints this line before it writes rc; wait for it so the job's kernel messages are
        # in this result's console_log rather than the next one's.
        self._wait_for_console(f"ksnoop-vm: job {job_id} exit".encode(), seconds=2.0)
        with self._console_lock:
            console_log = self._console[self._console_mark :].decode(errors="replace")
            self._console_mark = len(self._console)
        return VMResult(
            returncode=int((job_dir / "rc").read_text()),
            stdout=(job_dir / "stdout").read_text(errors="replace"),
            stderr=(job_dir / "stderr").read_text(errors="replace"),
            console_log=console_log,
        )

    def close(self) -> None:
        """Stop qemu and remove `shared_dir`."""
        self._stop()
        shutil.rmtree(self.shared_dir, ignore_errors=True)

    @property
    def qemu_pid(self) -> int | None:
        """The running qemu's pid, or None between boots."""
        return self._qemu.pid if self._qemu is not None else None

    def console_tail(self, lines: int = 30) -> str:
        with self._console_lock:
            return _tail(self._console.decode(errors="replace"), lines)

    def _boot(self) -> subprocess.Popen[bytes]:
        self._stop()
        (self.shared_dir / "ready").unlink(missing_ok=True)
        shutil.rmtree(self.shared_dir / "jobs", ignore_errors=True)
        (self.shared_dir / "jobs").mkdir()
        self._next_job = 0
        with self._console_lock:
            self._console.clear()
            self._console_mark = 0
        argv = [
            self._qemu_path, "-accel", ACCEL, "-cpu", "max", "-m", self._memory, "-smp", str(self._cpus),
            "-nographic", "-no-reboot", "-net", "none",
            "-kernel", str(self.kernel.vmlinuz), "-initrd", str(self._initramfs),
            "-append", f"console=ttyS0 quiet panic=-1 ksnoop.shared={self.shared_dir} ksnoop.repo={REPO} "
                       f"{self._kernel_args}".rstrip(),
            "-virtfs", f"local,path=/,mount_tag={ROOT_TAG},security_model=none,readonly=on,multidevs=remap",
            "-virtfs", f"local,path={REPO},mount_tag={REPO_TAG},security_model=none,readonly=on,multidevs=remap",
            "-virtfs", f"local,path={self.shared_dir},mount_tag={SHARED_TAG},security_model=none",
        ]  # fmt: skip
        started = time.monotonic()
        # stdin is not a terminal, so -nographic leaves the host terminal alone.
        qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._qemu = qemu
        assert qemu.stdout is not None
        threading.Thread(target=self._read_console, args=(qemu.stdout,), daemon=True).start()
        while not (self.shared_dir / "ready").exists():
            if qemu.poll() is not None:
                self._fail(f"qemu exited with status {qemu.returncode} before the guest was ready")
            if time.monotonic() - started > self._boot_timeout:
                self._fail(f"the guest was not ready within {self._boot_timeout:g} s")
            time.sleep(0.05)
        self.boot_seconds = time.monotonic() - started
        return qemu

    def _read_console(self, stream: IO[bytes]) -> None:
        # Drained continuously so a chatty guest never blocks on a full pipe.
        log = (CACHE_DIR / "last-console.log").open("wb")
        with stream, log:
            for chunk in iter(lambda: stream.read1(65536), b""):  # type: ignore[attr-defined]
                log.write(chunk)
                log.flush()
                with self._console_lock:
                    self._console += chunk

    def _wait_for_console(self, marker: bytes, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self._console_lock:
                if marker in self._console[self._console_mark :]:
                    return
            time.sleep(0.01)

    def _stop(self) -> None:
        # A kill is safe: the guest's root is read-only and results are on the host as soon as written.
        if self._qemu is not None:
            self._qemu.kill()
            self._qemu.wait()
            self._qemu = None

    def _fail(self, message: str) -> NoReturn:
        self._stop()
        # Give the reader thread a moment to collect the last console bytes.
        time.sleep(0.2)
        log = CACHE_DIR / "last-console.log"
        raise VMError(f"{message}\n--- last console lines (full log: {log}) ---\n{self.console_tail()}")


def _job_script(command: Command, env: dict[str, str] | None, cwd: str | None) -> str:
    variables = {"PATH": GUEST_PATH, "HOME": "/root", "LANG": "C.UTF-8", **(env or {})}
    lines = [f"export {name}={shlex.quote(value)}" for name, value in variables.items()]
    lines.append(f"cd {shlex.quote(cwd or '/')} || exit 125")
    lines.append(command if isinstance(command, str) else "exec " + shlex.join(command))
    return "\n".join(lines) + "\n"


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run_in_vm(command: Command, timeout: float, env: dict[str, str] | None = None, cwd: str | None = None) -> VMResult:
    """Boot a VM, run one command (see VM.run), and shut the VM down. Raises VMUnavailable or VMError."""
    with VM() as vm:
        return vm.run(command, timeout, env=env, cwd=cwd)


def main(argv: list[str]) -> int:
    """`python3 tests/vm/harness.py CMD...`: run CMD in the guest, print its output and timings."""
    with VM() as vm:
        result = vm.run(argv or ["uname", "-a"], timeout=600, cwd=os.getcwd())
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        print(f"[boot {vm.boot_seconds:.1f} s, exit {result.returncode}]", file=sys.stderr)
        return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
