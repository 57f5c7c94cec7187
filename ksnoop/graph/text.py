# SPDX-License-Identifier: GPL-2.0-only
"""The running kernel's machine code, read through BPF.

/proc/kcore is not there on every kernel (nor readable under lockdown), so the bytes come from
codegen.generate_text_reader's program: never attached, it is run by BPF_PROG_TEST_RUN with an
address and a size, reads them with bpf_probe_read_kernel into its map's value, and this module
reads the value back. Live text is what runs: alternatives, static keys and ftrace's patched
entries as they are now, not as the vmlinux file has them.
"""

from __future__ import annotations

import contextlib
import errno
import struct
from types import TracebackType
from typing import Optional, Type

from bpf import syscall
from bpf.codegen import TEXT_CHUNK, MapRole, generate_text_reader
from bpf.errnos import errno_name
from bpf.loader import LoadedProgram, LoadRefused, load_program
from bpf.maps import Map
from bpf.templates import TEXT_ADDRESS_ARG, TEXT_SIZE_ARG

from ksnoop.errors import RuntimeFailure
from ksnoop.run.runner import create_maps

_ARGS = struct.Struct("=QQ")
assert (TEXT_ADDRESS_ARG, TEXT_SIZE_ARG) == (0, 1), "_ARGS packs the address, then the size"


class KernelText:
    """Reads kernel memory by address while open (a context manager: the program and its map are
    closed on the way out). RuntimeFailure, in a user's words, when the kernel will not load or
    run the reader, or will not let it read."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._program: Optional[LoadedProgram] = None
        self._value: Optional[Map] = None

    def __enter__(self) -> "KernelText":
        with self._stack as stack:
            program = generate_text_reader()
            maps = create_maps(stack, [program])
            try:
                self._program = stack.enter_context(
                    load_program(program.bind_maps(maps.fds(0)), program.prog_type, name=program.name)
                )
            except LoadRefused as error:
                raise RuntimeFailure(
                    f"cannot read kernel text: this kernel refuses raw tracepoint programs "
                    f"({errno_name(error.errno or errno.EPERM)} before verification)"
                ) from None
            except OSError as error:
                raise RuntimeFailure(
                    f"cannot read kernel text: loading its reader failed: {error.strerror or error}"
                ) from None
            self._value = maps.shared(MapRole.TEXT)
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self, kind: Optional[Type[BaseException]], value: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self._stack.close()

    def read(self, address: int, size: int) -> bytes:
        """`size` bytes of kernel memory from `address`, a page at a time."""
        out = bytearray()
        while len(out) < size:
            part = min(TEXT_CHUNK, size - len(out))
            out += self._read_chunk(address + len(out), part)
        return bytes(out)

    def _read_chunk(self, address: int, size: int) -> bytes:
        assert self._program is not None and self._value is not None, "read() outside the with block"
        try:
            result = syscall.prog_test_run(self._program.fd, _ARGS.pack(address, size))
        except OSError as error:
            raise RuntimeFailure(
                f"cannot read kernel text: the kernel will not run its reader "
                f"(BPF_PROG_TEST_RUN: {errno_name(error.errno or errno.EINVAL)})"
            ) from None
        if result:  # bpf_probe_read_kernel's negative errno, as the u32 the test run returns
            code = (1 << 32) - result
            raise RuntimeFailure(f"cannot read kernel text at {address:#x}: {errno_name(code)} ({size} bytes)")
        value = self._value.lookup(bytes(4))
        assert value is not None, "an array's only element is always there"
        return value[:size]
