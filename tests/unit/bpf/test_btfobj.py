# SPDX-License-Identifier: GPL-2.0-only
"""bpf.btfobj against a stand-in for the kernel's BTF ids: which object open_kernel_btf() keeps, and
that it closes every other fd it opened. The real walk runs in tests/kernel/test_btf_objects.py."""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass

import pytest

from bpf import btfobj, syscall


@dataclass
class FakeBTF:
    btf_obj_id: int
    name: str
    kernel_btf: bool = True
    gone: bool = False  # freed between BPF_BTF_GET_NEXT_ID and BPF_BTF_GET_FD_BY_ID


class FakeKernel:
    """The three bpf(2) commands the walk uses, over a list of FakeBTF; fds are real (/dev/null)."""

    def __init__(self, objects: list[FakeBTF]) -> None:
        self.objects = {o.btf_obj_id: o for o in objects}
        self.fds: dict[int, FakeBTF] = {}
        self.name_lens: list[int] = []

    def btf_get_next_id(self, start_id: int) -> int:
        later = sorted(i for i in self.objects if i > start_id)
        if not later:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", "bpf(BTF_GET_NEXT_ID)")
        return later[0]

    def btf_get_fd_by_id(self, btf_obj_id: int) -> int:
        obj = self.objects[btf_obj_id]
        if obj.gone:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", "bpf(BTF_GET_FD_BY_ID)")
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.fds[fd] = obj
        return fd

    def obj_get_info_by_fd(self, fd: int, info: syscall.bpf_btf_info) -> int:
        # As btf_get_info_by_fd() does: the name, cut to name_len - 1 bytes and ENOSPC if it did not fit.
        obj = self.fds[fd]
        assert info.name and info.name_len
        self.name_lens.append(int(info.name_len))
        name = obj.name.encode()
        info.id = obj.btf_obj_id
        info.kernel_btf = int(obj.kernel_btf)
        cut = name[: info.name_len - 1]
        ctypes.memmove(info.name, cut + b"\0", len(cut) + 1)
        info.name_len = len(name)
        if len(name) + 1 > self.name_lens[-1]:
            raise OSError(errno.ENOSPC, "No space left on device", "bpf(OBJ_GET_INFO_BY_FD)")
        return ctypes.sizeof(info)

    def open_fds(self) -> list[int]:
        alive = []
        for fd in self.fds:
            try:
                os.fstat(fd)
                alive.append(fd)
            except OSError:
                pass
        return alive


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch):
    def install(*objects: FakeBTF) -> FakeKernel:
        fake = FakeKernel(list(objects))
        for name in ("btf_get_next_id", "btf_get_fd_by_id", "obj_get_info_by_fd"):
            monkeypatch.setattr(syscall, name, getattr(fake, name))
        return fake

    return install


def test_finds_the_module_and_closes_every_other_fd(kernel) -> None:
    fake = kernel(FakeBTF(1, "vmlinux"), FakeBTF(2, "virtio"), FakeBTF(5, "dummy"), FakeBTF(7, "veth"))
    with btfobj.open_kernel_btf("dummy") as obj:
        assert (obj.name, obj.btf_obj_id) == ("dummy", 5)
        assert fake.fds[obj.fd].name == "dummy"
        assert fake.open_fds() == [obj.fd]  # vmlinux's and virtio's were closed; veth's never opened
    assert fake.open_fds() == []


def test_vmlinux_is_found_by_its_name(kernel) -> None:
    kernel(FakeBTF(1, "vmlinux"), FakeBTF(2, "dummy"))
    with btfobj.open_kernel_btf("vmlinux") as obj:
        assert obj.btf_obj_id == 1


def test_a_programs_btf_of_the_same_name_is_not_the_module(kernel) -> None:
    # BTF a program loaded (BPF_BTF_LOAD) may carry any name; kernel_btf tells the module's apart.
    fake = kernel(FakeBTF(3, "dummy", kernel_btf=False), FakeBTF(9, "dummy"))
    with btfobj.open_kernel_btf("dummy") as obj:
        assert obj.btf_obj_id == 9
        assert fake.open_fds() == [obj.fd]


def test_an_object_freed_during_the_walk_is_skipped(kernel) -> None:
    kernel(FakeBTF(1, "vmlinux"), FakeBTF(4, "dummy", gone=True), FakeBTF(6, "dummy"))
    with btfobj.open_kernel_btf("dummy") as obj:
        assert obj.btf_obj_id == 6


def test_a_module_not_loaded_is_enoent_and_leaves_no_fd(kernel) -> None:
    fake = kernel(FakeBTF(1, "vmlinux"), FakeBTF(2, "veth"), FakeBTF(3, "dummy", gone=True))
    with pytest.raises(FileNotFoundError) as raised:
        btfobj.open_kernel_btf("dummy")
    assert raised.value.errno == errno.ENOENT
    assert "no kernel BTF object named 'dummy'" in str(raised.value)
    assert fake.open_fds() == []


def test_names_longer_than_the_buffer_neither_match_nor_fail(kernel) -> None:
    # A name that is only a prefix of a longer one, and a name longer than the default buffer.
    long_name = "m" * 80
    fake = kernel(FakeBTF(1, "dummy_but_longer_" + "x" * 60), FakeBTF(2, long_name), FakeBTF(3, "dummy"))
    with btfobj.open_kernel_btf("dummy") as obj:
        assert obj.btf_obj_id == 3
    assert fake.name_lens == [btfobj.BTF_NAME_BUF_LEN] * 3
    with btfobj.open_kernel_btf(long_name) as obj:
        assert obj.btf_obj_id == 2
    assert fake.open_fds() == []


def test_btf_obj_info_reports_a_cut_name_as_none(kernel) -> None:
    fake = kernel(FakeBTF(1, "vmlinux"))
    fd = fake.btf_get_fd_by_id(1)
    try:
        info, name = btfobj.btf_obj_info(fd, name_len=4)
        assert name is None and info.id == 1 and info.name_len == len("vmlinux")
        info, name = btfobj.btf_obj_info(fd)
        assert name == "vmlinux" and info.kernel_btf == 1
    finally:
        os.close(fd)


def test_an_fd_0_is_moved_above_0(kernel) -> None:
    # attach_btf_obj_fd 0 means "vmlinux" to BPF_PROG_LOAD, so the object must not sit on fd 0.
    fake = kernel(FakeBTF(1, "dummy"))
    saved_stdin = os.dup(0)
    try:
        os.close(0)
        with btfobj.open_kernel_btf("dummy") as obj:
            assert 0 in fake.fds  # the lowest free fd was 0
            assert obj.fd > 0
            with pytest.raises(OSError):
                os.fstat(0)  # the fd-0 copy was closed
    finally:
        os.dup2(saved_stdin, 0)
        os.close(saved_stdin)


def test_iter_btf_obj_ids_walks_in_order(kernel) -> None:
    kernel(FakeBTF(4, "a"), FakeBTF(1, "vmlinux"), FakeBTF(9, "b"))
    assert list(btfobj.iter_btf_obj_ids()) == [1, 4, 9]
