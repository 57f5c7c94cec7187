# SPDX-License-Identifier: GPL-2.0-only
"""Boot a Debian kernel under qemu with this machine's / shared read-only, and run commands there.

In: the Debian packages linux-image-amd64 (6.1), busybox-static and qemu-system-x86, and Debian 13's 6.12
fetched into CACHE_DIR (`fetch_kernel`, or `python3 tests/vm/harness.py --fetch 6.12`). Out: a `VM` that
boots one of them once and runs many commands, and `run_in_vm()` for a single one; each gives a `VMResult`.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import lzma
import os
import re
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
# The kernels the harness boots, by short name: Debian 12's own (what linux-image-amd64 points at) and
# Debian 13's 6.12, which has kprobe_multi (CONFIG_FPROBE) and kprobe session where 6.1 has neither.
KERNELS = ("6.1", "6.12")
DEFAULT_KERNEL = "6.1"
# Kernels that are not installed here but fetched into CACHE_DIR: short name -> Debian suite.
FETCHED = {"6.12": "trixie"}
FETCH_COMMAND = "python3 tests/vm/harness.py --fetch {name}"
QEMU = "qemu-system-x86_64"
BUSYBOX = Path("/bin/busybox")
# Insertion order matters: insmod does not resolve dependencies. A module a kernel builds in (virtio in
# 6.12) or does not have (fscache, part of netfs since 6.4) is left out.
MODULES = (
    "virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
    "netfs", "fscache", "9pnet", "9pnet_virtio", "9p",
)  # fmt: skip
INITRAMFS_DIRS = ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "modules", "newroot")
ROOT_TAG = "hostroot"
SHARED_TAG = "ksnoopshared"
REPO_TAG = "ksnooprepo"
PREFIX_TAG = "ksnoopprefix"
BOOT_TIMEOUT = float(os.environ.get("KSNOOP_VM_BOOT_TIMEOUT", "120"))
# -enable-kvm fails on nested hosts (see kernel-facts.md), so TCG is the default; CI with KVM may override.
ACCEL = os.environ.get("KSNOOP_VM_ACCEL", "tcg,thread=multi")
# python3 in the guest is the interpreter running the harness, found without pyenv's shims.
GUEST_PATH = f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# A virtual environment's prefix, which the guest must see at its own path (None outside one).
VENV_PREFIX = Path(sys.prefix) if sys.prefix != sys.base_prefix else None

Command = Union[Sequence[str], str]


class VMUnavailable(Exception):
    """Something the VM needs is not installed here; the message says which package to install."""


class VMError(Exception):
    """The guest failed to boot, died, or a command overran its timeout; the message ends with the console tail."""


class _PanickedBooting(VMError):
    """The guest's kernel panicked before the guest was ready."""


@dataclasses.dataclass(frozen=True)
class VMResult:
    returncode: int
    stdout: str
    stderr: str
    console_log: str  # serial console since the previous command ended (since power-on for the first)


@dataclasses.dataclass(frozen=True)
class Kernel:
    name: str  # the short name, one of KERNELS: "6.1"
    version: str  # what uname -r says in the guest: "6.1.0-57-amd64"
    vmlinuz: Path
    modules_dir: Path  # the kernel's /lib/modules/<version>, wherever it is on this machine
    config: Path  # the kernel's build configuration, boot/config-<version>


def find_kernel(name: str = DEFAULT_KERNEL) -> Kernel:
    """The kernel called `name` (one of KERNELS). Raises VMUnavailable if it is not installed or fetched."""
    if name not in KERNELS:
        raise ValueError(f"no kernel called {name!r}; the harness knows {', '.join(KERNELS)}")
    kernel = _find_fetched(name) if name in FETCHED else _find_installed(name)
    for path in (kernel.vmlinuz, kernel.modules_dir):
        if not os.access(path, os.R_OK):
            raise VMUnavailable(f"kernel {kernel.version}: {path} is missing or unreadable")
    return kernel


def _find_installed(name: str) -> Kernel:
    """The kernel that Debian's linux-image-amd64 points at."""
    hint = "install it with: apt-get install linux-image-amd64 (or .ci/install-deps)"
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
    if not version.startswith(f"{name}."):
        raise VMUnavailable(f"linux-image-amd64 depends on {version!r}, not a {name} kernel (Debian 12's)")
    return Kernel(
        name,
        version,
        Path(f"/boot/vmlinuz-{version}"),
        Path(f"/lib/modules/{version}"),
        Path(f"/boot/config-{version}"),
    )


def _find_fetched(name: str) -> Kernel:
    """The newest kernel `name` that fetch_kernel unpacked into CACHE_DIR/kernel-<version>/."""
    found = [(_version_key(path.name), path) for path in CACHE_DIR.glob(f"kernel-{name}.*/boot/vmlinuz-*")]
    if not found:
        command = FETCH_COMMAND.format(name=name)
        raise VMUnavailable(f"the {name} kernel is not in the VM cache {CACHE_DIR}; fetch it with: {command}")
    vmlinuz = max(found)[1]
    root, version = vmlinuz.parents[1], vmlinuz.name.removeprefix("vmlinuz-")
    return Kernel(name, version, vmlinuz, root / "usr/lib/modules" / version, root / "boot" / f"config-{version}")


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(number) for number in re.findall(r"\d+", text))


def fetch_kernel(name: str) -> Kernel:
    """Download Debian's kernel `name` (one of FETCHED) and unpack it into CACHE_DIR; returns it.

    When it is there already this only finds it, with no network. apt runs with a private configuration
    in a scratch directory (its own sources list, lists, cache and status; not the system's apt.conf.d,
    whose update hooks touch the system): the system's apt sources and state are only read. It takes
    the newest plain -amd64 flavour image package (not -rt, -cloud, -dbg or -unsigned), unpacks it with
    dpkg-deb and writes its modules.dep (depmod), so that modprobe works in the guest. Raises
    VMUnavailable when apt, dpkg or depmod fails.
    """
    if name not in FETCHED:
        raise ValueError(f"kernel {name!r} is not fetched; fetched kernels: {', '.join(FETCHED)}")
    try:
        return find_kernel(name)
    except VMUnavailable:
        pass
    for tool in ("apt-get", "apt-cache", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise VMUnavailable(f"{tool} not found: fetching the {name} kernel needs Debian's apt and dpkg")
    depmod = shutil.which("depmod", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if depmod is None:
        raise VMUnavailable("depmod not found; install it with: apt-get install kmod")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # Everything but the unpacked kernel (apt's lists and caches, ~140 MB, and the package) goes at the end.
    with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix=".fetch-") as work:
        apt_env = {**os.environ, "APT_CONFIG": str(_private_apt(Path(work) / "apt", FETCHED[name]))}
        _check_output(["apt-get", "-q", "update"], apt_env)
        names = _check_output(["apt-cache", "pkgnames", f"linux-image-{name}."], apt_env).split()
        flavour = re.compile(rf"linux-image-({re.escape(name)}\.\d+\+deb\d+-amd64)")
        versions = [match.group(1) for match in map(flavour.fullmatch, names) if match]
        if not versions:
            raise VMUnavailable(f"no linux-image-{name}.*-amd64 package in Debian {FETCHED[name]}")
        version = max(versions, key=_version_key)
        _check_output(["apt-get", "-q", "download", f"linux-image-{version}"], apt_env, cwd=work)
        (deb,) = Path(work).glob("*.deb")
        root = Path(work) / "root"
        _check_output(["dpkg-deb", "-x", str(deb), str(root)], apt_env)
        deb.unlink()
        # depmod -b looks in <root>/lib/modules; the package has them in usr/lib (merged /usr).
        if not (root / "lib").exists():
            (root / "lib").symlink_to("usr/lib")
        _check_output([depmod, "-b", str(root), version], apt_env)
        # Unpacked whole, then renamed into place: a half-unpacked tree is never found.
        target = CACHE_DIR / f"kernel-{version}"
        try:
            root.rename(target)
        except OSError:
            if not (target / "boot" / f"vmlinuz-{version}").exists():
                raise
            # A parallel fetch got there first; its tree is the same package's.
    return find_kernel(name)


def _private_apt(apt_dir: Path, suite: str) -> Path:
    """Write an apt configuration for `suite` of the system's Debian archive under apt_dir; returns its path."""
    uri, signed_by = _debian_archive()
    empty = apt_dir / "empty"
    for directory in (empty, apt_dir / "lists/partial", apt_dir / "cache/archives/partial", apt_dir / "state"):
        directory.mkdir(parents=True, exist_ok=True)
    (apt_dir / "status").touch()
    options = f" [signed-by={signed_by}]" if signed_by else ""
    (apt_dir / "sources.list").write_text(f"deb{options} {uri} {suite} main\n")
    settings = {
        "Dir::Etc::main": "/dev/null",
        "Dir::Etc::parts": empty,
        "Dir::Etc::SourceList": apt_dir / "sources.list",
        "Dir::Etc::SourceParts": empty,
        "Dir::Etc::Preferences": "/dev/null",
        "Dir::Etc::PreferencesParts": empty,
        "Dir::State": apt_dir / "state",
        "Dir::State::Lists": apt_dir / "lists",
        "Dir::State::status": apt_dir / "status",
        "Dir::Cache": apt_dir / "cache",
        "Acquire::Languages": "none",
        # Exit non-zero when an index cannot be fetched, rather than warn and go on with none.
        "APT::Update::Error-Mode": "any",
        # The lists are ours; as root apt would otherwise hand downloads to the _apt user, who cannot write here.
        "APT::Sandbox::User": "root",
        # The system's proxies, since its apt.conf.d is not read.
        **{key: value for key in ("Acquire::http::Proxy", "Acquire::https::Proxy") if (value := _apt_setting(key))},
    }
    config = apt_dir / "apt.conf"
    config.write_text("".join(f'{key} "{value}";\n' for key, value in settings.items()))
    return config


def _apt_setting(key: str) -> str:
    """A setting of the system's apt configuration, or "" (read with apt-config)."""
    shown = subprocess.run(["apt-config", "dump", key], capture_output=True, text=True, check=False).stdout
    match = re.search(rf'^{re.escape(key)} "(.*)";$', shown, re.MULTILINE | re.IGNORECASE)
    return match.group(1) if match else ""


def _debian_archive() -> tuple[str, str | None]:
    """The URI of the Debian archive in the system's apt sources (the entry for this release's own suite),
    and its Signed-By keyring if it names a file."""
    release = _os_release().get("VERSION_CODENAME", "")
    sources = Path("/etc/apt/sources.list.d")
    entries = [*_one_line_sources(Path("/etc/apt/sources.list"))]
    for path in sorted(sources.glob("*.list")) if sources.is_dir() else []:
        entries += _one_line_sources(path)
    for path in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        entries += _deb822_sources(path)
    for uri, suites, components, signed_by in entries:
        if release in suites and "main" in components:
            return uri, signed_by if signed_by and signed_by.startswith("/") else None
    raise VMUnavailable(f"no Debian archive for {release or 'this release'!r} (main) in the system's apt sources")


def _os_release() -> dict[str, str]:
    lines = Path("/etc/os-release").read_text().splitlines() if Path("/etc/os-release").exists() else []
    return {key: value.strip('"') for key, _, value in (line.partition("=") for line in lines)}


# A source: (URI, suites, components, Signed-By or None).
_Source = tuple[str, list[str], list[str], Union[str, None]]


def _one_line_sources(path: Path) -> list[_Source]:
    entries = []
    for line in path.read_text().splitlines() if path.exists() else []:
        options = re.search(r"\[(.*?)\]", line)
        fields = re.sub(r"\[.*?\]", "", line.partition("#")[0]).split()
        if len(fields) >= 4 and fields[0] == "deb":
            signed_by = re.search(r"signed-by=(\S+)", options.group(1)) if options else None
            entries.append((fields[1], [fields[2]], fields[3:], signed_by.group(1) if signed_by else None))
    return entries


def _deb822_sources(path: Path) -> list[_Source]:
    entries = []
    for paragraph in re.split(r"\n\s*\n", path.read_text()):
        fields: dict[str, str] = {}
        key = ""
        for line in paragraph.splitlines():
            if line.startswith("#"):
                continue
            if line[:1].isspace() and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
            entry = (fields.get("suites", "").split(), fields.get("components", "").split(), fields.get("signed-by"))
            entries += [(uri, *entry) for uri in fields.get("uris", "").split()]
    return entries


def _check_output(argv: list[str], env: dict[str, str], cwd: str | None = None) -> str:
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise VMUnavailable(f"{' '.join(argv)} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout


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
    # Found by walking the tree rather than from modules.dep, which a package unpacked by hand has not.
    found = {_module_name(path.name): path for path in kernel.modules_dir.rglob("*.ko*")}
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
# A kernel that is not installed here (fetched into the VM cache) brings its modules' tree, which
# modprobe must find at /lib/modules/<version>: bound there before /tmp, where the cache may be, goes.
modules=$(sed -n 's/.*ksnoop.modules=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$modules" ]; then
  mount -o bind "/newroot$modules" lib/modules || fail "bind mount of $modules on /lib/modules"
fi
mount -t tmpfs tmpfs tmp || fail "tmpfs on /tmp"
mount -t proc proc proc && mount -t sysfs sysfs sys && mount -t devtmpfs devtmpfs dev &&
  mkdir -p dev/pts dev/shm && mount -t devpts devpts dev/pts && mount -t tmpfs tmpfs dev/shm &&
  mount -t tmpfs tmpfs run &&
  mount -t bpf bpf sys/fs/bpf && mount -t tracefs tracefs sys/kernel/tracing || fail "mounts in the new root"
# A host path under /tmp is hidden by the guest's tmpfs (a CI clone may live there), so the checkout
# gets a share of its own at its own path; elsewhere this mounts it over the same files.
repo=$(sed -n 's/.*ksnoop.repo=\([^ ]*\).*/\1/p' /proc/cmdline)
[ -n "$repo" ] || fail "no ksnoop.repo= on the kernel command line"
mkdir -p "/newroot$repo" 2>/dev/null
mount -t 9p -o ro,cache=loose,$opts @REPO_TAG@ "/newroot$repo" || fail "mount of the checkout"
# The same for a virtual environment's prefix, where python3 in the guest comes from.
prefix=$(sed -n 's/.*ksnoop.prefix=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$prefix" ]; then
  mkdir -p "/newroot$prefix" 2>/dev/null
  mount -t 9p -o ro,cache=loose,$opts @PREFIX_TAG@ "/newroot$prefix" || fail "mount of the Python prefix"
fi
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
    .replace("@PREFIX_TAG@", PREFIX_TAG)
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
        self,
        boot_timeout: float = BOOT_TIMEOUT,
        memory: str = "2G",
        cpus: int = 2,
        kernel_args: Sequence[str] = (),
        kernel: Kernel | str = DEFAULT_KERNEL,
    ) -> None:
        """`kernel`: a Kernel, or the short name of one (KERNELS); raises VMUnavailable if it is missing."""
        self._qemu_path = _check_qemu()
        _check_static_busybox()
        self.kernel = kernel if isinstance(kernel, Kernel) else find_kernel(kernel)
        self._initramfs = build_initramfs(self.kernel)
        # These paths travel on the kernel command line, which splits at spaces.
        for what, path in (
            ("VM cache (set KSNOOP_VM_CACHE)", CACHE_DIR),
            ("kernel modules", self.kernel.modules_dir),
            ("virtual environment", VENV_PREFIX),
        ):
            if path is not None and any(c.isspace() for c in str(path)):
                raise VMUnavailable(f"the path of the {what} must not contain spaces: {path!s}")
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
        self.stop()
        shutil.rmtree(self.shared_dir, ignore_errors=True)

    @property
    def qemu_pid(self) -> int | None:
        """The running qemu's pid, or None between boots."""
        return self._qemu.pid if self._qemu is not None else None

    def console_tail(self, lines: int = 30) -> str:
        with self._console_lock:
            return _tail(self._console.decode(errors="replace"), lines)

    def _boot(self) -> subprocess.Popen[bytes]:
        """Boot the guest, once more if its kernel panics before it is ready: under TCG the kernel's
        own code patching at boot (text_poke_bp's int3 across vCPUs) now and then oopses before
        anything of ours runs in it. A panic after the guest is ready is never retried."""
        try:
            return self._boot_once()
        except _PanickedBooting as panic:
            sys.stderr.write(f"harness: the guest kernel panicked while booting; booting again\n{panic}\n")
            return self._boot_once()

    def _boot_once(self) -> subprocess.Popen[bytes]:
        self.stop()
        (self.shared_dir / "ready").unlink(missing_ok=True)
        shutil.rmtree(self.shared_dir / "jobs", ignore_errors=True)
        (self.shared_dir / "jobs").mkdir()
        self._next_job = 0
        with self._console_lock:
            self._console.clear()
            self._console_mark = 0
        append = f"console=ttyS0 quiet panic=-1 ksnoop.shared={self.shared_dir} ksnoop.repo={REPO}"
        shares = [
            "-virtfs", f"local,path=/,mount_tag={ROOT_TAG},security_model=none,readonly=on,multidevs=remap",
            "-virtfs", f"local,path={REPO},mount_tag={REPO_TAG},security_model=none,readonly=on,multidevs=remap",
            "-virtfs", f"local,path={self.shared_dir},mount_tag={SHARED_TAG},security_model=none",
        ]  # fmt: skip
        if VENV_PREFIX is not None:
            append += f" ksnoop.prefix={VENV_PREFIX}"
            shares += ["-virtfs", f"local,path={VENV_PREFIX},mount_tag={PREFIX_TAG},security_model=none,"
                                  "readonly=on,multidevs=remap"]  # fmt: skip
        if self.kernel.modules_dir != Path("/lib/modules", self.kernel.version):
            append += f" ksnoop.modules={self.kernel.modules_dir.parent}"
        argv = [
            self._qemu_path, "-accel", ACCEL, "-cpu", "max", "-m", self._memory, "-smp", str(self._cpus),
            "-nographic", "-no-reboot", "-net", "none",
            "-kernel", str(self.kernel.vmlinuz), "-initrd", str(self._initramfs),
            "-append", f"{append} {self._kernel_args}".rstrip(), *shares,
        ]  # fmt: skip
        started = time.monotonic()
        # stdin is not a terminal, so -nographic leaves the host terminal alone.
        qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._qemu = qemu
        assert qemu.stdout is not None
        threading.Thread(target=self._read_console, args=(qemu.stdout,), daemon=True).start()
        while not (self.shared_dir / "ready").exists():
            if qemu.poll() is not None:
                message = f"qemu exited with status {qemu.returncode} before the guest was ready"
                time.sleep(0.2)  # the console's last bytes
                with self._console_lock:
                    panicked = b"Kernel panic" in self._console
                self._fail(message, _PanickedBooting if panicked else VMError)
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

    def stop(self) -> None:
        """Kill qemu, if it runs; the next run() boots again (for a test that boots another VM meanwhile)."""
        # A kill is safe: the guest's root is read-only and results are on the host as soon as written.
        if self._qemu is not None:
            self._qemu.kill()
            self._qemu.wait()
            self._qemu = None

    def _fail(self, message: str, error: type[VMError] = VMError) -> NoReturn:
        self.stop()
        # Give the reader thread a moment to collect the last console bytes.
        time.sleep(0.2)
        log = CACHE_DIR / "last-console.log"
        raise error(f"{message}\n--- last console lines (full log: {log}) ---\n{self.console_tail()}")


def _job_script(command: Command, env: dict[str, str] | None, cwd: str | None) -> str:
    variables = {"PATH": GUEST_PATH, "HOME": "/root", "LANG": "C.UTF-8", **(env or {})}
    lines = [f"export {name}={shlex.quote(value)}" for name, value in variables.items()]
    lines.append(f"cd {shlex.quote(cwd or '/')} || exit 125")
    lines.append(command if isinstance(command, str) else "exec " + shlex.join(command))
    return "\n".join(lines) + "\n"


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run_in_vm(
    command: Command,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    kernel: Kernel | str = DEFAULT_KERNEL,
) -> VMResult:
    """Boot a VM, run one command (see VM.run), and shut the VM down. Raises VMUnavailable or VMError."""
    with VM(kernel=kernel) as vm:
        return vm.run(command, timeout, env=env, cwd=cwd)


def main(argv: list[str]) -> int:
    """`python3 tests/vm/harness.py [--kernel NAME] CMD...`: run CMD in the guest, print its output and timings.
    `--fetch NAME`: fetch that kernel into the VM cache (see fetch_kernel) and exit."""
    parser = argparse.ArgumentParser(
        prog="python3 tests/vm/harness.py",
        description="Run CMD (default: uname -a) as root in a qemu guest booted with a Debian kernel, with this "
        "machine's / read-only as its root, and print its output, exit status and boot time.",
    )
    parser.add_argument("--kernel", choices=KERNELS, default=DEFAULT_KERNEL, help="the kernel to boot (%(default)s)")
    parser.add_argument(
        "--fetch",
        choices=sorted(FETCHED),
        metavar="NAME",
        help=f"download and unpack kernel NAME ({', '.join(FETCHED)}) into {CACHE_DIR} and exit; "
        "when it is there already, nothing is downloaded",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD", help="the command and its arguments")
    args = parser.parse_args(argv)
    if args.fetch:
        try:
            kernel = fetch_kernel(args.fetch)
        except VMUnavailable as error:
            print(f"harness: cannot fetch the {args.fetch} kernel: {error}", file=sys.stderr)
            return 1
        print(f"harness: kernel {kernel.name}: {kernel.version} in {kernel.vmlinuz.parents[1]}")
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    with VM(kernel=args.kernel) as vm:
        result = vm.run(command or ["uname", "-a"], timeout=600, cwd=os.getcwd())
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        print(f"[kernel {vm.kernel.version}, boot {vm.boot_seconds:.1f} s, exit {result.returncode}]", file=sys.stderr)
        return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
