# SPDX-License-Identifier: GPL-2.0-only
"""Where BTF bytes come from: /sys/kernel/btf, the .BTF section of an ELF file, or a raw file.

The only module of btf/ that touches files. pyelftools is imported only for ELF input.
"""

from __future__ import annotations

import os

from .errors import BTFError, BTFLookupError
from .uapi import BTF_MAGIC

SYSFS_BTF_DIR = "/sys/kernel/btf"
VMLINUX_PATH = os.path.join(SYSFS_BTF_DIR, "vmlinux")
_ELF_MAGIC = b"\x7fELF"
_BTF_MAGICS = (BTF_MAGIC.to_bytes(2, "little"), BTF_MAGIC.to_bytes(2, "big"))


def module_path(name: str) -> str:
    if not name or "/" in name or name.startswith("."):
        raise BTFLookupError(f"'{name}' is not a module name")
    return os.path.join(SYSFS_BTF_DIR, name)


def loaded_modules() -> list[str]:
    """Names of modules whose BTF the kernel exposes, sorted."""
    try:
        return sorted(n for n in os.listdir(SYSFS_BTF_DIR) if n != "vmlinux")
    except OSError:
        return []


def default_name(path: str) -> str:
    base = os.path.basename(path)
    for suffix in (".ko", ".o", ".btf", ".raw"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def read_btf_bytes(path: str) -> bytes:
    """Raw BTF bytes from a raw BTF file or an ELF file's .BTF section; BTFError if neither."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BTFLookupError(f"no BTF at {path}: file not found") from None
    except IsADirectoryError:
        raise BTFError(f"{path} is a directory, not a BTF or ELF file") from None
    except OSError as err:
        raise BTFError(f"cannot read BTF from {path}: {err.strerror}") from None
    if data.startswith(_ELF_MAGIC):
        return _elf_btf_section(path, data)
    if data[:2] not in _BTF_MAGICS:
        raise BTFError(f"{path} is not a BTF or ELF file ({_what_it_is(data)})")
    return data


def _what_it_is(data: bytes) -> str:
    if not data:
        return "it is empty"
    head = data[:64]
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "it is text"
    return f"it starts with bytes {head[:8].hex(' ')}"


def _elf_btf_section(path: str, data: bytes) -> bytes:
    import io

    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        elf = ELFFile(io.BytesIO(data))
        section = elf.get_section_by_name(".BTF")
        if section is None:
            raise BTFError(f"{path} is an ELF file without a .BTF section")
        return bytes(section.data())
    except (ELFError, ValueError, KeyError, IndexError) as err:  # pyelftools raises these on corrupt ELF
        raise BTFError(f"{path}: corrupt ELF file: {err}") from None
