# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.run.runner without a kernel: what it says when the kernel refuses a map or a program, the
open-files limit it raises for many probes, and what needs no kernel call at all.

Creating, loading and attaching for real is tests/kernel's; here the kernel's refusal of a map is
the MapCreationFailed bpf.maps raises, made with a MapSpec of a generated Program.
"""

from __future__ import annotations

import contextlib
import errno
import io
import mmap
import os
import resource

import pytest

from bpf.codegen import MapRole, Program, generate
from bpf.maps import MapCreationFailed
from bpf.uapi import AttachType
from ksnoop.errors import Refused, RuntimeFailure
from ksnoop.run import runner
from ksnoop.run.summary import count_calls
from ksnoop.spec.language import parse_spec
from ksnoop.spec.resolve import resolve_path
from tests.support import minikernel, records


def _programs(resolved) -> list[Program]:
    return [generate(resolved.plan, i) for i in range(len(resolved.plan.probes))]


def _refused(monkeypatch: pytest.MonkeyPatch, programs: list[Program], role: MapRole, code: int) -> str:
    """create_maps' message when BPF_MAP_CREATE refuses the programs' `role` map with `code`."""
    (spec,) = {m for p in programs for m in p.maps if m.role is role}

    def refuse(stack: contextlib.ExitStack, given: list[Program]) -> None:
        assert given is programs
        raise MapCreationFailed(spec, OSError(code, os.strerror(code)))

    monkeypatch.setattr(runner, "create_program_maps", refuse)
    with contextlib.ExitStack() as stack, pytest.raises(RuntimeFailure) as failure:
        runner.create_maps(stack, programs)
    return str(failure.value)


def test_a_refused_ring_buffer_says_its_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    resolved = records.trace("ip_send_skb(skb->len, return)")
    programs = _programs(resolved)
    pages = resolved.plan.ringbuf_size // mmap.PAGESIZE
    assert _refused(monkeypatch, programs, MapRole.EVENTS, errno.ENOMEM) == (
        f"cannot create a ring buffer of {pages} pages: Cannot allocate memory (try a smaller -P/--pages)"
    )


def test_a_refused_call_path_state_says_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    resolved = resolve_path([parse_spec("ip_send_skb(skb->len)"), parse_spec("noargs")], records.path_kernel())
    assert _refused(monkeypatch, _programs(resolved), MapRole.PATH, errno.E2BIG) == (
        "cannot create the call-path state (152 bytes a task): Argument list too long "
        "(capture less, or fewer functions)"
    )


def test_any_other_refused_map_says_its_role_type_and_value_size(monkeypatch: pytest.MonkeyPatch) -> None:
    programs = _programs(count_calls(records.trace("ip_send_skb")))
    assert _refused(monkeypatch, programs, MapRole.COUNTS, errno.EPERM) == (
        "cannot create the counts map (PERCPU_ARRAY, 536-byte values): Operation not permitted"
    )
    programs = _programs(records.trace("ip_send_skb"))
    assert _refused(monkeypatch, programs, MapRole.DROPS, errno.EINVAL) == (
        "cannot create the drops map (PERCPU_ARRAY, 8-byte values): Invalid argument"
    )


@pytest.mark.parametrize(
    "attach_type,label,code,message",
    [
        (
            AttachType.TRACE_FENTRY,
            "ip_send_skb",
            errno.EPERM,
            "cannot trace ip_send_skb: this kernel refuses fentry/fexit programs (EPERM before verification, even with "
            "full privileges); tp: tracepoints still work; see ksnoop list 'tp:*'",
        ),
        (
            AttachType.TRACE_FEXIT,
            "noargs",
            errno.EINVAL,
            "cannot trace noargs: this kernel refuses fentry/fexit programs (EINVAL before verification, even with "
            "full privileges); tp: tracepoints still work; see ksnoop list 'tp:*'",
        ),
        (
            AttachType.TRACE_RAW_TP,
            "tp:net_dev_queue",
            errno.EPERM,
            "this kernel refuses tp_btf programs for tp:net_dev_queue (EPERM before verification)",
        ),
        (
            AttachType.TRACE_ITER,
            "dump:task",
            errno.EPERM,
            "this kernel refuses iterator programs for dump:task (EPERM before verification)",
        ),
        (
            AttachType.TRACE_ITER,
            "dump:task",
            errno.EINVAL,
            "cannot load the iterator program for dump:task: Invalid argument (EINVAL before verification)",
        ),
        (AttachType.LSM_MAC, "x", errno.EPERM, "this kernel refuses these programs for x (EPERM before verification)"),
    ],
)
def test_a_load_refused_before_verification(attach_type: AttachType, label: str, code: int, message: str) -> None:
    refused = runner.refusal(attach_type, label, code)
    assert isinstance(refused, Refused) and str(refused) == message


@pytest.fixture
def nofile():
    """RLIMIT_NOFILE as it was, restored after the test."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield before
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_the_soft_open_files_limit_is_raised_for_many_probes(nofile) -> None:
    _, hard = nofile
    if hard != resource.RLIM_INFINITY and hard < 2 * 100 + 256:
        pytest.skip(f"the hard RLIMIT_NOFILE ({hard}) is below what 100 probes need")
    resource.setrlimit(resource.RLIMIT_NOFILE, (300, hard))
    runner.raise_open_files_limit(10)  # 276 needed: 300 will do
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (300, hard)
    runner.raise_open_files_limit(100)  # two fds a probe and 256 besides
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (456, hard)


def test_a_hard_open_files_limit_too_low_is_an_error(nofile) -> None:
    _, hard = nofile
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard RLIMIT_NOFILE to pass")
    with pytest.raises(RuntimeFailure) as failure:
        runner.raise_open_files_limit(hard)
    assert str(failure.value) == (
        f"{hard} probes need about {2 * hard + 256} open files, but RLIMIT_NOFILE allows "
        f"{hard} (raise it with ulimit -n, or trace fewer functions)"
    )
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == nofile


def test_detaching_is_announced_only_for_many_programs() -> None:
    err = io.StringIO()
    runner.say_detaching(list(range(31)), err)
    assert err.getvalue() == ""
    runner.say_detaching(list(range(32)), err)
    assert err.getvalue() == "ksnoop: detaching 32 programs; the kernel takes a while for each\n"


def test_vmlinux_probes_need_no_btf_object() -> None:
    resolved = records.trace("ip_send_skb(skb->len, return)", "tp:net_dev_queue")
    with contextlib.ExitStack() as stack:
        assert runner.module_btf_objects(stack, resolved.plan.probes) == {}


def test_a_module_unloaded_meanwhile_is_named(fake_sysfs) -> None:
    fake_sysfs("vmlinux", minikernel.build()[0])
    fake_sysfs("dummy", b"")
    runner.check_module_loaded("dummy", "dummy_xmit")
    runner.check_module_loaded("vmlinux", "ip_send_skb")
    with pytest.raises(RuntimeFailure) as failure:
        runner.check_module_loaded("veth", "veth_xmit")
    assert str(failure.value) == "module veth is not loaded anymore: cannot trace veth_xmit"
