# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.run.dump without a kernel: the walk splitting an iterator's byte stream into records, the
link parameters and their refusals, and prepare() over the mini kernel's iterators.

The stream is what the generated iterator program wrote with bpf_seq_write in
tests/support/bpfvm_iter.py; a real bpf.iter.IterReader reads it from a SOCK_SEQPACKET socket, one
message per read(), so each test chooses where the reads cut it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import socket
import struct

import pytest

from bpf.codegen import generate
from bpf.iter import IterReader
from bpf.uapi import CgroupIterOrder
from ksnoop.errors import RuntimeFailure, UsageError
from ksnoop.output.decode import build_decoder, record_fields
from ksnoop.output.json_lines import JsonFormatter
from ksnoop.output.text import TextFormatter
from ksnoop.run.dump import DumpOptions, attach_reason, formatter_for, link_info, walk, Walked, LineWriter, prepare
from ksnoop.spec.resolve_dump import IterParams, ResolvedDump
from tests.support import minikernel, miniiter
from tests.unit.bpf.test_codegen_iter import META, TASK, _dump, _task, _vm

DUMP = _dump("task(task->pid, task->comm)")
SIZE = generate(DUMP.resolved.plan, 0).layout.size  # 64


def _line(n: int) -> str:
    return f'dump:task( task->pid = (pid_t){100 + n}, task->comm = (char[16])"curl{n}" );'


def _stream(count: int, dump: ResolvedDump = DUMP, index: int = 0) -> bytes:
    """What probe `index`'s program writes to the seq_file for `count` tasks, pids 100...; comms curl0..."""
    vm = _vm(dump)
    program = generate(dump.resolved.plan, index)
    task = [r.base for r in vm.kernel].index(TASK)
    for n in range(count):
        vm.kernel[task].data[:] = _task(100 + n, b"curl%d" % n)
        vm.run(program, [META, TASK])
    return bytes(vm.seq)


@contextlib.contextmanager
def _reader(*chunks: bytes):
    """An IterReader whose reads return `chunks` one by one, then EOF."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours:
        for chunk in chunks:
            assert chunk, "an empty message would read as EOF"
            ours.send(chunk)
        ours.shutdown(socket.SHUT_WR)
        with IterReader(theirs.detach()) as reader:
            yield reader


def _walk_text(
    *chunks: bytes,
    limit: int | None = None,
    dump: ResolvedDump = DUMP,
    options: DumpOptions = DumpOptions(specs=(), compact=True),
) -> tuple[Walked, list[str]]:
    formatter = formatter_for(options, dump)
    btf = dump.iters[0].target.btf
    fields, decode = record_fields(dump.resolved.plan, 0, btf), build_decoder(dump.resolved.plan, 0, btf)
    out = io.StringIO()
    writer = LineWriter(out)
    with _reader(*chunks) as reader:
        try:
            walked = walk(
                reader,
                dump.iters[0],
                0,
                SIZE,
                formatter.record(0, fields, decode),
                formatter.batch(0, fields, decode),
                writer,
                limit,
            )
        finally:
            writer.flush()
    return walked, out.getvalue().splitlines()


def test_whole_chunks_become_their_records_lines() -> None:
    stream = _stream(5)
    walked, lines = _walk_text(stream[: 2 * SIZE], stream[2 * SIZE :])
    assert lines == [_line(n) for n in range(5)]
    assert (walked.records, walked.bytes) == (5, 5 * SIZE) and walked.read_s >= 0


def test_a_record_split_across_reads_is_joined() -> None:
    stream = _stream(3)
    walked, lines = _walk_text(stream[: SIZE + 10], stream[SIZE + 10 : SIZE + 20], stream[SIZE + 20 :])
    assert lines == [_line(n) for n in range(3)]
    assert (walked.records, walked.bytes) == (3, 3 * SIZE)


def test_json_lines_of_a_walk() -> None:
    stream = _stream(2)
    _, lines = _walk_text(stream, options=DumpOptions(specs=(), output="json"))
    assert [json.loads(line) for line in lines] == [
        {"ts": 1001000, "cpu": 1, "func": "task", "probe": "iter", "args": {"task->pid": 100, "task->comm": "curl0"}},
        {"ts": 1002000, "cpu": 1, "func": "task", "probe": "iter", "args": {"task->pid": 101, "task->comm": "curl1"}},
    ]


def test_a_stream_ending_inside_a_record_is_an_error_after_the_whole_ones() -> None:
    stream = _stream(3)
    with pytest.raises(RuntimeFailure) as failure:
        _walk_text(stream[: 2 * SIZE + 24])
    assert str(failure.value) == "reading dump:task: the walk ended inside a record (24 of 64 bytes)"


def test_the_whole_records_before_a_cut_one_are_printed() -> None:
    out = io.StringIO()
    writer = LineWriter(out)
    formatter = formatter_for(DumpOptions(specs=(), compact=True), DUMP)
    btf = DUMP.iters[0].target.btf
    fields, decode = record_fields(DUMP.resolved.plan, 0, btf), build_decoder(DUMP.resolved.plan, 0, btf)
    with _reader(_stream(3)[: 2 * SIZE + 24]) as reader, pytest.raises(RuntimeFailure):
        walk(
            reader,
            DUMP.iters[0],
            0,
            SIZE,
            formatter.record(0, fields, decode),
            formatter.batch(0, fields, decode),
            writer,
            None,
        )
    assert writer.pending == [_line(0), _line(1)] and out.getvalue() == ""


def test_a_record_of_another_probe_is_refused() -> None:
    two = _dump("task(task->pid, task->comm)", "task(task->comm, task->pid)")
    second = _stream(2, two, index=1)
    assert len(second) == 2 * SIZE  # records of the same size: only the probe index tells them apart
    with pytest.raises(RuntimeFailure) as failure:
        _walk_text(second, dump=two)
    assert str(failure.value) == (
        "reading dump:task: a record of probe 1 where probe 0's were expected: the stream is "
        "not what the program writes"
    )


# A read that ends exactly at the limit: walk reads on and prints one record more (-n 2 prints 3).


@pytest.mark.parametrize(
    "limit,chunks,read",
    [
        (3, (2, 3), 5),  # the first chunk whole, then record by record up to the limit
        (5, (5,), 5),
        (4, (2, 5), 7),
        pytest.param(2, (2, 3), 2),  # the first chunk reaches it: no further read is needed
        pytest.param(4, (1, 1, 1, 1, 1), 4),
    ],
)
def test_the_count_limit(limit: int, chunks: tuple[int, ...], read: int) -> None:
    stream = _stream(sum(chunks))
    cuts = [SIZE * sum(chunks[:k]) for k in range(len(chunks) + 1)]
    walked, lines = _walk_text(*(stream[a:b] for a, b in zip(cuts, cuts[1:])), limit=limit)
    assert lines == [_line(n) for n in range(limit)]
    assert (walked.records, walked.bytes) == (limit, read * SIZE)


def test_a_read_error_is_worded_with_the_target(tmp_path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)  # read(2) of a directory: EISDIR
    with IterReader(fd) as reader, pytest.raises(RuntimeFailure) as failure:
        walk(reader, DUMP.iters[0], 0, SIZE, str, list, LineWriter(io.StringIO()), None)
    assert str(failure.value) == "reading dump:task: Is a directory"


def test_the_writer_writes_in_batches_of_512() -> None:
    class Writes(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.line_counts: list[int] = []

        def write(self, text: str) -> int:
            self.line_counts.append(text.count("\n"))
            return super().write(text)

    out = Writes()
    writer = LineWriter(out)
    for n in range(511):
        writer.add(str(n))
    assert out.line_counts == []
    writer.add("511")
    writer.extend([str(n) for n in range(512, 1100)])
    writer.flush()
    writer.flush()
    assert out.line_counts == [512, 588]
    assert out.getvalue().splitlines() == [str(n) for n in range(1100)]


def test_the_formatter_follows_the_options() -> None:
    assert isinstance(formatter_for(DumpOptions(specs=(), output="json"), DUMP), JsonFormatter)
    text = formatter_for(DumpOptions(specs=(), zeros=True), DUMP)
    assert isinstance(text, TextFormatter)
    btf = DUMP.iters[0].target.btf
    record = memoryview(_stream(1))
    line = text.record(0, record_fields(DUMP.resolved.plan, 0, btf), build_decoder(DUMP.resolved.plan, 0, btf))
    assert line(record) == 'dump:task(\n    task->pid = (pid_t)100,\n    task->comm = (char[16])"curl0"\n);'


# ---- link parameters ------------------------------------------------------------------------------

TASK_TARGET = DUMP.iters[0]
CGROUP_TARGET = _dump("cgroup(cgroup->id)").iters[0]


@pytest.mark.parametrize(
    "params,info,expect",
    [
        (IterParams(), None, {}),
        (IterParams(pid=42), struct.pack("=III", 0, 42, 0), {"pid": 42}),
        (IterParams(tid=43), struct.pack("=III", 43, 0, 0), {"tid": 43}),
    ],
)
def test_task_parameters(params: IterParams, info: bytes | None, expect: dict) -> None:
    with contextlib.ExitStack() as stack:
        assert link_info(stack, TASK_TARGET, params) == (info, expect)


@pytest.mark.parametrize(
    "params,order,cgroup_id",
    [
        (IterParams(), CgroupIterOrder.DESCENDANTS_PRE, 0),  # ksnoop's default: the whole tree below
        (IterParams(cgroup_order="self-only", cgroup_id=7), CgroupIterOrder.SELF_ONLY, 7),
        (IterParams(cgroup_order="ancestors-up"), CgroupIterOrder.ANCESTORS_UP, 0),
    ],
)
def test_cgroup_parameters(params: IterParams, order: CgroupIterOrder, cgroup_id: int) -> None:
    expect = {"cgroup_order": int(order), **({"cgroup_id": cgroup_id} if cgroup_id else {})}
    with contextlib.ExitStack() as stack:
        assert link_info(stack, CGROUP_TARGET, params) == (struct.pack("=IIQ", order, 0, cgroup_id), expect)


def test_a_cgroup_path_is_an_fd_closed_with_the_walk(tmp_path) -> None:
    with contextlib.ExitStack() as stack:
        info, expect = link_info(stack, CGROUP_TARGET, IterParams(cgroup_path=str(tmp_path)))
        order, fd, cgroup_id = struct.unpack("=IIQ", info)
        assert (order, cgroup_id, expect) == (CgroupIterOrder.DESCENDANTS_PRE, 0, {"cgroup_order": 2})
        assert os.path.samefile(f"/proc/self/fd/{fd}", tmp_path)
    with pytest.raises(OSError):
        os.fstat(fd)


def test_a_cgroup_path_that_cannot_be_opened(tmp_path) -> None:
    missing = tmp_path / "gone"
    with contextlib.ExitStack() as stack, pytest.raises(UsageError) as failure:
        link_info(stack, CGROUP_TARGET, IterParams(cgroup_path=str(missing)))
    assert str(failure.value) == f"--cgroup {missing}: No such file or directory"


@pytest.mark.parametrize(
    "code,params,reason",
    [
        (
            errno.E2BIG,
            IterParams(),
            "Argument list too long (this kernel's bpf_iter_link_info is smaller than the parameters given)",
        ),
        (errno.EINVAL, IterParams(pid=42), "Invalid argument (the kernel refused the task parameters)"),
        (errno.EINVAL, IterParams(), "Invalid argument"),
        (errno.ENOENT, IterParams(cgroup_id=7), "No such file or directory (no cgroup with id 7)"),
        (errno.EBADF, IterParams(cgroup_path="/tmp"), "Bad file descriptor (/tmp is not a cgroup directory)"),
        (errno.EPERM, IterParams(cgroup_path="/tmp"), "Operation not permitted"),
    ],
)
def test_link_refusals_are_worded_for_the_parameters(code: int, params: IterParams, reason: str) -> None:
    assert attach_reason(OSError(code, os.strerror(code)), params) == reason


# ---- prepare -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iter_btf(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("btf") / "miniiter.btf"
    path.write_bytes(miniiter.build()[0])
    return str(path)


def test_prepare_resolves_and_generates_each_spec(iter_btf: str) -> None:
    dump, programs = prepare(DumpOptions(specs=("task(task->pid)", "task_file(fd)"), btf_path=iter_btf))
    assert [t.target.label for t in dump.iters] == ["dump:task", "dump:task_file"]
    assert programs == tuple(generate(dump.resolved.plan, i) for i in range(2))
    assert [p.name for p in programs] == ["ksnoop_task", "ksnoop_task_fil"]


@pytest.mark.parametrize(
    "options,message",
    [
        (DumpOptions(specs=("task",), count=0), "--count 0: at least 1"),
        (DumpOptions(specs=("task",), params=IterParams(pid=0)), "--pid 0: not a valid id"),
        (DumpOptions(specs=("task",), params=IterParams(tid=1 << 31)), f"--tid {1 << 31}: not a valid id"),
        (DumpOptions(specs=("bpf_map_elem",), params=IterParams(map_id=-1)), "--map-id -1: not a valid id"),
        (
            DumpOptions(specs=("cgroup",), params=IterParams(cgroup_id=1 << 64)),
            f"--cgroup-id {1 << 64}: not a valid id",
        ),
    ],
)
def test_prepare_refuses_bad_numbers(options: DumpOptions, message: str) -> None:
    with pytest.raises(UsageError) as failure:
        prepare(options)
    assert str(failure.value) == message


def test_a_large_cgroup_id_is_valid(iter_btf: str) -> None:
    dump, _ = prepare(DumpOptions(specs=("cgroup",), params=IterParams(cgroup_id=(1 << 64) - 1), btf_path=iter_btf))
    assert [t.target.label for t in dump.iters] == ["dump:cgroup"]


def test_prepare_on_a_kernel_without_iterators(tmp_path) -> None:
    path = tmp_path / "mini.btf"
    path.write_bytes(minikernel.build()[0])
    with pytest.raises(RuntimeFailure) as failure:
        prepare(DumpOptions(specs=("task",), btf_path=str(path)))
    assert str(failure.value) == (
        "cannot dump: this kernel has no BPF iterators (they came in 5.8; its BTF has no struct bpf_iter_meta)"
    )
