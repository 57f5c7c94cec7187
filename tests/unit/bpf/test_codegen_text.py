# SPDX-License-Identifier: GPL-2.0-only
"""codegen.generate_text_reader in the BPF interpreter: it copies the bytes its context names into
its map's value and returns bpf_probe_read_kernel's result; a size over the value is refused."""

from __future__ import annotations

import errno

from bpf import templates as tpl
from bpf.codegen import TEXT_CHUNK, MapRole, generate_text_reader
from bpf.uapi import ProgType
from tests.support.bpfvm import VM, s64

CODE = 0xFFFFFFFF81000000
TEXT = bytes(range(256)) * 32  # 8 KiB of "code"


def _value(vm: VM) -> bytes:
    return vm._values(MapRole.TEXT)[bytes(4)]


def test_it_reads_what_its_context_names() -> None:
    program = generate_text_reader()
    assert program.prog_type is ProgType.RAW_TRACEPOINT and [m.role for m in program.maps] == [MapRole.TEXT]
    assert {name for _, name in program.sections} <= {t.name for t in tpl.ALL}  # listed, so their contracts are checked
    vm = VM({CODE: TEXT})
    run = vm.run(program, [CODE + 5, 100])
    assert run.r0 == 0 and _value(vm)[:100] == TEXT[5:105]
    run = vm.run(program, [CODE + 4096, TEXT_CHUNK])
    assert run.r0 == 0 and _value(vm) == TEXT[4096:]


def test_a_fault_and_an_oversize_read_are_errors() -> None:
    program = generate_text_reader()
    vm = VM({CODE: TEXT})
    assert s64(vm.run(program, [0x10, 64]).r0) == -errno.EFAULT
    assert s64(vm.run(program, [CODE, TEXT_CHUNK + 1]).r0) == -errno.EINVAL
