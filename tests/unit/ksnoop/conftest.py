# SPDX-License-Identifier: GPL-2.0-only
"""Fixtures for the ksnoop CLI tests: BTF files written to tmp_path, the app run in-process or as
`python3 -m ksnoop` from the checkout, and a small ELF writer for `--btf` on an ELF file."""

from __future__ import annotations

import contextlib
import inspect
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import ksnoop
from ksnoop.cli import run
from tests.support import minikernel

REPO = Path(__file__).resolve().parents[3]

# Tests must exercise the checkout, not a copy that `pip install .` put in site-packages.
assert Path(ksnoop.__file__).resolve().is_relative_to(REPO), (
    f"ksnoop imported from {ksnoop.__file__}, not from the checkout {REPO}"
)


class _Runner(CliRunner):
    """A CliRunner whose stderr is line-buffered, as a process's is (Python 3.9+): click < 8.2 reads
    the stderr it captured without flushing it, losing a last line printed without flush=True."""

    @contextlib.contextmanager
    def isolation(self, *args, **kwargs):
        with super().isolation(*args, **kwargs) as streams:
            sys.stderr.reconfigure(line_buffering=True)
            yield streams


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


# ksnoop's entry point as CliRunner runs a command: every argument handed to ksnoop.cli.run as it
# is, so the tests see what `ksnoop ARGS` prints, click's errors worded by ksnoop included.
_ENTRY = click.Command(
    "ksnoop",
    callback=lambda args: run(list(args)),
    params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)


@pytest.fixture
def cli():
    """Run ksnoop in-process: cli("info", "--btf", path, "ip_send_skb") -> Outcome."""
    # click < 8.2 (the newest for Python 3.9) mixes stderr into stdout unless told not to.
    mixes = "mix_stderr" in inspect.signature(CliRunner.__init__).parameters
    runner = _Runner(mix_stderr=False) if mixes else _Runner()

    def invoke(*args: str) -> Outcome:
        result = runner.invoke(_ENTRY, list(args))
        return Outcome(result.exit_code, result.stdout, result.stderr, result.exception)

    return invoke


@pytest.fixture
def run_module():
    """run_module(*args) -> CompletedProcess of `python3 -m ksnoop ARGS` in the checkout (text mode)."""
    return _run_module


def _run_module(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ksnoop", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        **kwargs,
    )


@pytest.fixture(scope="session")
def minikernel_blob():
    return minikernel.build()


@pytest.fixture
def mini_btf(tmp_path, minikernel_blob) -> str:
    """Path of the mini kernel's raw BTF."""
    path = tmp_path / "mini.btf"
    path.write_bytes(minikernel_blob[0])
    return str(path)


@pytest.fixture
def write_btf(tmp_path):
    """write_btf(bytes_or_builder, name="x.btf") -> path of a file holding that BTF."""

    def write(blob, name: str = "x.btf") -> str:
        if hasattr(blob, "to_bytes"):
            blob = blob.to_bytes()
        path = tmp_path / name
        path.write_bytes(blob)
        return str(path)

    return write


@pytest.fixture
def elf_file():
    """elf_file({name: contents}) -> bytes of a minimal ELF holding those sections."""
    return elf_with_sections


def elf_with_sections(sections: dict[str, bytes]) -> bytes:
    """A minimal little-endian ELF64 relocatable file holding `sections` (name -> contents) and .shstrtab."""
    names = list(sections) + [".shstrtab"]
    shstrtab = b"\0"
    name_offsets = {}
    for name in names:
        name_offsets[name] = len(shstrtab)
        shstrtab += name.encode() + b"\0"
    contents = dict(sections, **{".shstrtab": shstrtab})
    body = b""
    placed = {}
    for name in names:
        placed[name] = 64 + len(body)
        body += contents[name]
    body += b"\0" * (-len(body) % 8)
    shoff = 64 + len(body)
    sh = struct.Struct("<IIQQQQIIQQ")
    headers = sh.pack(*[0] * 10)  # SHN_UNDEF
    for name in names:
        sh_type = 3 if name == ".shstrtab" else 1  # SHT_STRTAB, SHT_PROGBITS
        headers += sh.pack(name_offsets[name], sh_type, 0, 0, placed[name], len(contents[name]), 0, 0, 1, 0)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8  # ELFCLASS64, ELFDATA2LSB, EV_CURRENT
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, sh.size, len(names) + 1, len(names)
    )
    return header + body + headers


@pytest.fixture
def fake_sysfs(tmp_path, monkeypatch):
    """A /sys/kernel/btf stand-in: returns add(name, blob); KernelBTF.load() without --btf reads it."""
    from btf import sources

    root = tmp_path / "sys_kernel_btf"
    root.mkdir()
    monkeypatch.setattr(sources, "SYSFS_BTF_DIR", str(root))
    monkeypatch.setattr(sources, "VMLINUX_PATH", os.path.join(str(root), "vmlinux"))

    def add(name: str, blob: bytes) -> None:
        (root / name).write_bytes(blob)

    return add
