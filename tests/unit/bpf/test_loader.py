# SPDX-License-Identifier: GPL-2.0-only
"""bpf.loader without a kernel: the log retry policy and the errors, against a scripted BPF_PROG_LOAD."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import Any

import pytest

from bpf import insn as I
from bpf import loader, syscall, uapi
from bpf.loader import LoadRefused, VerifierError, load_program

PROG = [I.mov64_reg(0, 2), I.exit_()]
LOG = "0: R1=ctx() R10=fp0\n0: (bf) r0 = r2\nR2 !read_ok\nprocessed 1 insns (limit 1000000) max_states_per_insn 0\n"


class ScriptedLoad:
    """Stands in for syscall.prog_load: fails until `succeed_at`, writing `log` (truncated) when asked."""

    def __init__(self, err: int = errno.EACCES, log: str = LOG, succeed_at: int = -1, true_size: bool = True):
        self.err, self.log, self.succeed_at, self.true_size = err, log, succeed_at, true_size
        self.log_sizes: list[int] = []

    def __call__(self, prog_type: int, code: bytes, *, log: syscall.VerifierLog | None = None, **kw: object) -> int:
        self.log_sizes.append(log.size if log is not None else 0)
        if len(self.log_sizes) - 1 == self.succeed_at:
            return os.open(os.devnull, os.O_RDONLY)
        if log is None:
            raise OSError(self.err, os.strerror(self.err))
        text = self.log.encode()
        if self.true_size:
            log.true_size = len(text) + 1
        if len(text) + 1 > log.size:
            log.buf.value = text[-(log.size - 1) :]  # a rotating log keeps the tail
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        log.buf.value = text
        raise OSError(self.err, os.strerror(self.err))


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedLoad]:
    script = ScriptedLoad()
    monkeypatch.setattr(syscall, "prog_load", script)
    yield script


def _load(**kwargs: Any) -> loader.LoadedProgram:
    return load_program(PROG, uapi.ProgType.TRACING, uapi.AttachType.TRACE_RAW_TP, 11318, name="t", **kwargs)


def test_first_try_has_no_log(scripted: ScriptedLoad) -> None:
    scripted.succeed_at = 0
    with _load() as prog:
        assert not prog.closed and prog.attach_btf_id == 11318
        assert prog.listing() == ["   0: (bf) r0 = r2", "   1: (95) exit"]
    assert prog.closed
    assert scripted.log_sizes == [0]


def test_rejection_retries_with_a_log_and_reports_it(scripted: ScriptedLoad) -> None:
    with pytest.raises(VerifierError) as e:
        _load()
    assert scripted.log_sizes == [0, loader.LOG_SIZE_START]
    err = e.value
    assert err.errno == errno.EACCES and isinstance(err, PermissionError) is False
    assert (
        err.message
        == "verifier rejected 't' (TRACING/TRACE_RAW_TP attach_btf_id 11318, Permission denied): R2 !read_ok"
    )
    assert err.log == LOG and err.log_tail[-2:] == LOG.splitlines()[-2:]
    assert err.listing == ["   0: (bf) r0 = r2", "   1: (95) exit"]
    assert str(err).splitlines()[0] == err.message


def test_log_grows_to_the_size_the_kernel_asks_for(scripted: ScriptedLoad, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "LOG_SIZE_START", 8)
    scripted.log = "x" * 100 + "\n" + LOG
    with pytest.raises(VerifierError) as e:
        _load()
    assert scripted.log_sizes == [0, 8, len(scripted.log) + 1]
    assert e.value.log == scripted.log


def test_log_doubles_on_kernels_without_log_true_size(scripted: ScriptedLoad, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "LOG_SIZE_START", 8)
    scripted.true_size = False
    with pytest.raises(VerifierError) as e:
        _load()
    assert scripted.log_sizes == [0, 8, 16, 32, 64, 128]
    assert "R2 !read_ok" in e.value.message


def test_log_stops_growing_at_the_cap(scripted: ScriptedLoad) -> None:
    with pytest.raises(VerifierError) as e:
        _load(log_size_max=32)
    assert scripted.log_sizes == [0, 32]
    assert e.value.errno == errno.ENOSPC
    assert "log outgrew 32 bytes" in e.value.message
    assert e.value.log == LOG[-31:]


def test_no_log_means_refused_before_verification(scripted: ScriptedLoad) -> None:
    scripted.err, scripted.log = errno.EPERM, ""
    with pytest.raises(LoadRefused) as e:
        _load()
    assert not isinstance(e.value, VerifierError) and e.value.errno == errno.EPERM
    assert str(e.value) == (
        "Operation not permitted: BPF_PROG_LOAD of 't' (TRACING/TRACE_RAW_TP attach_btf_id 11318) "
        "refused before verification; the kernel wrote no verifier log"
    )
    assert e.value.log == ""


def test_a_log_of_only_statistics_is_refused_before_verification(scripted: ScriptedLoad) -> None:
    # What a BPF LSM's refusal looks like on this machine's 6.18: EPERM, and a log that says nothing
    # of any instruction.
    stats = "processed 0 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n"
    scripted.err, scripted.log = errno.EPERM, stats
    with pytest.raises(LoadRefused) as e:
        _load()
    assert e.value.errno == errno.EPERM and e.value.log == stats
    assert str(e.value).endswith("refused before verification; its log holds only the statistics")


def test_a_verifier_rejection_carries_its_reason(scripted: ScriptedLoad) -> None:
    with pytest.raises(VerifierError) as e:
        _load()
    assert e.value.reason == "R2 !read_ok"


def test_a_load_that_passes_on_the_retry_is_kept(scripted: ScriptedLoad) -> None:
    scripted.succeed_at = 1
    with _load() as prog:
        assert not prog.closed
    assert scripted.log_sizes == [0, loader.LOG_SIZE_START]


@pytest.mark.parametrize(
    ("log", "reason"),
    [
        (LOG, "R2 !read_ok"),
        (
            "invalid bpf_context access off=16 size=8\nprocessed 1 insns\nverification time 5 usec\n",
            "invalid bpf_context access off=16 size=8",
        ),
        ("", ""),
    ],
)
def test_reason_is_the_last_line_before_the_statistics(log: str, reason: str) -> None:
    assert loader._log_reason(log) == reason


def test_attach_tracing_refuses_other_program_types() -> None:
    prog = loader.LoadedProgram(
        os.open(os.devnull, os.O_RDONLY),
        PROG,
        uapi.ProgType.RAW_TRACEPOINT,
        uapi.AttachType.UNSPEC,
        0,
        None,
        "t",
    )
    with prog, pytest.raises(ValueError, match="attach_raw_tracepoint"):
        loader.attach_tracing(prog)
