# SPDX-License-Identifier: GPL-2.0-only
"""Loading on the running kernel: verifier rejections with their log, fentry refusal, listings, detach on death."""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from bpf import features, loader, syscall, uapi
from bpf import insn as I
from bpf.listing import format_insns
from bpf.loader import LoadRefused, VerifierError, load_program
from bpf.maps import Map
from tests.kernel.programs import sys_enter_to_ringbuf, vmlinux_type_id

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_kernel")]

# Reads r2, which nothing set: the verifier says "R2 !read_ok".
UNINIT_READ = [I.mov64_reg(0, 2), I.exit_()]


@pytest.fixture
def sys_enter_id() -> int:
    return vmlinux_type_id("btf_trace_sys_enter")


def _load_tp(insns: list[I.Insn], btf_id: int, **kwargs: Any) -> loader.LoadedProgram:
    return load_program(insns, uapi.ProgType.TRACING, uapi.AttachType.TRACE_RAW_TP, btf_id, **kwargs)


def test_rejection_carries_log_tail_and_listing(sys_enter_id: int) -> None:
    with pytest.raises(VerifierError) as e:
        _load_tp(UNINIT_READ, sys_enter_id, name="t_reject")
    err = e.value
    assert err.errno == errno.EACCES
    assert "R2 !read_ok" in err.log
    assert "R2 !read_ok" in err.message  # the reason line, not the statistics after it
    assert any(line.startswith("processed ") for line in err.log_tail)
    assert err.listing == ["   0: (bf) r0 = r2", "   1: (95) exit"]
    assert "R2 !read_ok" in str(err) and isinstance(err, OSError)


def test_out_of_bounds_ctx_read_is_rejected(sys_enter_id: int) -> None:
    # sys_enter has two arguments: ctx+16 is past the u64 array.
    insns = [I.ldx_mem(8, 0, 1, 16), I.exit_()]
    with pytest.raises(VerifierError) as e:
        _load_tp(insns, sys_enter_id)
    assert "invalid bpf_context access" in e.value.log


def test_log_buffer_grows_until_the_log_fits(sys_enter_id: int, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    real = syscall.prog_load

    def counting(*args: object, log: syscall.VerifierLog | None = None, **kwargs: object) -> int:
        sizes.append(log.size if log is not None else 0)
        return real(*args, log=log, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(syscall, "prog_load", counting)
    monkeypatch.setattr(loader, "LOG_SIZE_START", 16)
    with pytest.raises(VerifierError) as e:
        _load_tp(UNINIT_READ, sys_enter_id)
    assert sizes[0] == 0 and sizes[1] == 16 and len(sizes) >= 3
    assert sizes[2:] and all(b > a for a, b in zip(sizes[1:], sizes[2:]))
    assert "R2 !read_ok" in e.value.log
    assert e.value.errno == errno.EACCES


def test_log_that_outgrows_the_cap_is_reported(sys_enter_id: int) -> None:
    with pytest.raises(VerifierError) as e:
        _load_tp(UNINIT_READ, sys_enter_id, log_size_max=48)
    assert e.value.errno == errno.ENOSPC
    assert "outgrew 48 bytes" in e.value.message
    assert e.value.log  # what fitted (the tail, on kernels with a rotating log)


def test_fentry_is_loaded_or_its_refusal_is_clear() -> None:
    func_id = vmlinux_type_id("do_nanosleep", "FUNC")
    probe = features.probe_fentry(func_id)
    try:
        prog = load_program(
            [I.mov64_imm(0, 0), I.exit_()], uapi.ProgType.TRACING, uapi.AttachType.TRACE_FENTRY, func_id
        )
    except LoadRefused as e:
        # This machine: EPERM before verification, so no verifier log.
        assert e.errno == errno.EPERM
        assert "BPF_PROG_LOAD" in str(e) and "TRACE_FENTRY" in str(e) and "refused before verification" in str(e)
        assert not probe.ok
        assert probe.reason == "EPERM before verification"
    else:
        with prog:
            assert probe.ok


def test_features_on_this_kernel(sys_enter_id: int) -> None:
    assert features.check_privileges().ok
    assert features.check_btf().ok
    assert features.probe_ringbuf().ok
    assert features.probe_tp_btf(sys_enter_id).ok
    # A FUNC is not a tracepoint typedef: tp_btf refuses it, and says so.
    bad = features.probe_tp_btf(vmlinux_type_id("do_nanosleep", "FUNC"))
    assert not bad.ok and "tp_btf programs do not load here" in bad.reason


def test_probe_iter_answers_as_a_load_does(iterator_refusals: dict[str, str]) -> None:
    """features.probe_iter, for each iterator target, against the fixture's own loads; a target the
    kernel refuses is refused before verification, which the loader reports as LoadRefused."""
    from ksnoop.spec.iter_targets import IterTargets
    from ksnoop.spec.targets import KernelBTF

    for name, target in IterTargets(KernelBTF.load()).all().items():
        probe = features.probe_iter(target.target.attach_btf_id)
        assert (probe.ok, probe.reason) == (not iterator_refusals[name], iterator_refusals[name]), name
    # Not an iterator's FUNC: refused (EINVAL here, before the verifier looks at the program).
    wrong = features.probe_iter(vmlinux_type_id("do_nanosleep", "FUNC"))
    assert not wrong.ok and re.match(r"E[A-Z]+\b", wrong.reason), wrong.reason


def _bpftool() -> str:
    path = shutil.which("bpftool") or ("/usr/sbin/bpftool" if os.path.exists("/usr/sbin/bpftool") else None)
    if path is None:
        pytest.skip("bpftool is not installed")
    return path


def test_xlated_listing_matches_bpftool(sys_enter_id: int) -> None:
    bpftool = _bpftool()
    with Map.ringbuf(1 << 12) as rb:
        insns = sys_enter_to_ringbuf(rb.fd, os.getpid(), discard_id=7)
        with _load_tp(insns, sys_enter_id) as prog:
            ours = prog.xlated_listing()
            theirs = subprocess.run(
                [bpftool, "prog", "dump", "xlated", "id", str(prog.prog_id)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.splitlines()
            assert prog.listing() == format_insns(insns)
    assert len(ours) == len(theirs)
    for mine, bpftools in zip(ours, theirs):
        if "call " in bpftools:
            # Verified programs call helpers by address; bpftool names them from kallsyms.
            assert mine.split(" call ")[0] == bpftools.split(" call ")[0]
            assert mine.rsplit("#", 1)[1] == bpftools.rsplit("#", 1)[1]
        else:
            assert mine == bpftools
    assert any("map[id:" in line for line in ours)


_DIE_HOLDING_A_LINK = """
import os, sys, time
from bpf import uapi
from bpf.loader import attach_tracing, load_program
from bpf import insn as I
prog = load_program([I.mov64_imm(0, 0), I.exit_()], uapi.ProgType.TRACING,
                    uapi.AttachType.TRACE_RAW_TP, int(sys.argv[1]), name="t_kill9")
link = attach_tracing(prog)
print(prog.prog_id, link.info().id, flush=True)
time.sleep(60)
"""


def test_kill_9_detaches_everything(sys_enter_id: int) -> None:
    bpftool = _bpftool()
    child = subprocess.Popen(
        [sys.executable, "-c", _DIE_HOLDING_A_LINK, str(sys_enter_id)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    try:
        assert child.stdout is not None
        prog_id, link_id = child.stdout.readline().split()
        shown = subprocess.run([bpftool, "link", "show", "id", link_id], check=False, capture_output=True, text=True)
        assert shown.returncode == 0 and f"prog {prog_id}" in shown.stdout and "sys_enter" in shown.stdout
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        deadline = time.monotonic() + 10
        while True:
            gone = [
                subprocess.run([bpftool, what, "show", "id", ident], check=False, capture_output=True).returncode != 0
                for what, ident in (("link", link_id), ("prog", prog_id))
            ]
            if all(gone) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert all(gone), "program or link outlived the process that owned them"
    finally:
        child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
