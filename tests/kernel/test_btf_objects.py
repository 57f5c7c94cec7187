# SPDX-License-Identifier: GPL-2.0-only
"""Kernel BTF objects on the running kernel: open_kernel_btf() finds vmlinux's by walking the ids,
its fd reads back the very bytes of /sys/kernel/btf/vmlinux and serves as attach_btf_obj_fd, and a
module the kernel does not have makes `ksnoop trace` say so in one line and exit 1.

This kernel loads no module with BTF, so vmlinux's object stands in for a module's here; the VM test
tests/vm/test_module_vm.py traces real module functions.
"""

from __future__ import annotations

import ctypes
import errno
import inspect

import pytest
from typer.testing import CliRunner

from bpf import btfobj, syscall, uapi
from bpf import insn as I
from bpf.loader import attach_tracing, load_program
from ksnoop.cli import app
from tests.kernel.programs import vmlinux_type_id
from tests.support import minikernel

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_kernel")]

VMLINUX = "/sys/kernel/btf/vmlinux"


def test_vmlinux_object_is_found_by_name_and_holds_the_sysfs_bytes() -> None:
    ids = list(btfobj.iter_btf_obj_ids())
    with btfobj.open_kernel_btf("vmlinux") as obj:
        assert obj.fd > 0 and obj.name == "vmlinux" and obj.btf_obj_id in ids
        info, name = btfobj.btf_obj_info(obj.fd)
        assert (name, info.kernel_btf, info.id) == ("vmlinux", 1, obj.btf_obj_id)
        with open(VMLINUX, "rb") as f:
            expected = f.read()
        assert info.btf_size == len(expected)
        # The raw BTF through the fd (bpf_btf_info.btf) is what sysfs shows.
        buf = ctypes.create_string_buffer(info.btf_size)
        full = syscall.bpf_btf_info()
        full.btf = ctypes.addressof(buf)
        full.btf_size = info.btf_size
        syscall.obj_get_info_by_fd(obj.fd, full)
        assert buf.raw == expected
    assert obj.closed


def test_vmlinux_object_fd_works_as_attach_btf_obj_fd() -> None:
    # tp_btf loads on this kernel (fentry does not); the fd goes the same way a module's would.
    sys_enter_id = vmlinux_type_id("btf_trace_sys_enter")
    with btfobj.open_kernel_btf("vmlinux") as obj:
        with load_program(
            [I.mov64_imm(0, 0), I.exit_()],
            uapi.ProgType.TRACING,
            uapi.AttachType.TRACE_RAW_TP,
            sys_enter_id,
            attach_btf_obj_fd=obj.fd,
            name="t_btf_obj",
        ) as prog:
            info = prog.info()
            assert (info.attach_btf_obj_id, info.attach_btf_id) == (obj.btf_obj_id, sys_enter_id)
            with attach_tracing(prog) as link:
                assert link.info().prog_id == info.id


def test_a_name_no_kernel_object_has_is_enoent() -> None:
    for name in ("ksnoop_no_such_module", "vmlinu", "vmlinux_", "x" * 100):
        with pytest.raises(FileNotFoundError) as raised:
            btfobj.open_kernel_btf(name)
        assert raised.value.errno == errno.ENOENT


@pytest.fixture
def sysfs_with_unloaded_module(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/sys/kernel/btf as it looked while module nf_minimod was loaded: its BTF file is there, the
    kernel's BTF object is not (the module went away after ksnoop read the file)."""
    from btf import sources

    root = tmp_path / "btf"
    root.mkdir()
    builder, ids = minikernel.make_builder()
    (root / "vmlinux").write_bytes(builder.to_bytes())
    (root / minikernel.MODULE_NAME).write_bytes(minikernel.build_module(builder, ids)[0])
    monkeypatch.setattr(sources, "SYSFS_BTF_DIR", str(root))
    monkeypatch.setattr(sources, "VMLINUX_PATH", str(root / "vmlinux"))


def test_trace_of_a_module_that_is_gone_is_one_line_and_exit_1(sysfs_with_unloaded_module: None) -> None:
    # click < 8.2 (the newest for Python 3.9) mixes stderr into stdout unless told not to.
    mixes = "mix_stderr" in inspect.signature(CliRunner.__init__).parameters
    runner = CliRunner(mix_stderr=False) if mixes else CliRunner()
    result = runner.invoke(app, ["trace", "mini_hook"])
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr == "ksnoop: error: module nf_minimod is not loaded anymore: cannot trace mini_hook\n"
