# SPDX-License-Identifier: GPL-2.0-only
"""bpf.codegen for iterator probes (`ksnoop dump`): plans resolved over the mini kernel's iterators,
run in tests/support/bpfvm_iter.py over memory laid out here, records decoded with ksnoop.output.decode.

What the kernel does around the program is modelled where it matters: the call after the last
object passes it NULL, and bpf_seq_write fails (writing nothing) when the seq_file buffer is full.
"""

from __future__ import annotations

import dataclasses
import struct

import pytest

from bpf import templates as tpl
from bpf.codegen import CodegenError, generate
from bpf.iter import max_record_size
from bpf.plan import PlanError, Filters, ProbeKind
from bpf.uapi import AttachType, Helper, ProgType
from ksnoop.output.decode import READ_FAILED, RawValue, build_decoder
from ksnoop.spec.resolve_dump import IterParams, ResolvedDump, parse_dump_spec, resolve_dump
from ksnoop.spec.iter_targets import IterTargets
from tests.support import miniiter
from tests.support.bpfvm_iter import EOVERFLOW, META, IterVM

TASK, PARENT, MM, FILE, DENTRY, NAME, MAP, KEY, VALUE = (
    0xFFFF888000010000,
    0xFFFF888000011000,
    0xFFFF888000012000,
    0xFFFF888000013000,
    0xFFFF888000014000,
    0xFFFF888000015000,
    0xFFFF888000016000,
    0xFFFF888000017000,
    0xFFFF888000018000,
)


def _task(pid: int, comm: bytes, mm: int = MM, parent: int = PARENT) -> bytes:
    return struct.pack("<ii16sQQ", pid, pid, comm, mm, parent)


def _memory(**changes: bytes) -> dict[int, bytes]:
    memory = {
        TASK: _task(4242, b"curl"),
        PARENT: _task(1, b"init", mm=0, parent=0),
        MM: struct.pack("<Q", 20000),
        FILE: struct.pack("<I4xQQQ", 0o100002, 0, DENTRY, NAME),
        DENTRY: struct.pack("<I4xQ", 0xABCD, NAME),
        NAME: b"passwd\0",
        MAP: struct.pack("<I16sII", 7, b"counts", 4, 8),
    }
    memory.update({{"task": TASK, "mm": MM, "file": FILE, "name": NAME}[k]: v for k, v in changes.items()})
    return memory


def _dump(*specs: str, params: IterParams = IterParams(), limit: int | None = None) -> ResolvedDump:
    return resolve_dump(
        [parse_dump_spec(s) for s in specs],
        IterTargets(miniiter.kernel()),
        params,
        max_record_size=limit or max_record_size(4096),
    )


def _vm(dump: ResolvedDump, **kwargs) -> IterVM:
    size = max(generate(dump.resolved.plan, i).layout.size for i in range(len(dump.iters)))
    kwargs.setdefault("memory", _memory())
    return IterVM(scratch_value_size=size, **kwargs)


def _run(dump: ResolvedDump, ctx: list[int], vm: IterVM | None = None, index: int = 0) -> list:
    """Run probe `index` once; decode what it wrote to the seq_file."""
    vm = vm or _vm(dump)
    before = len(vm.records)
    run = vm.run(generate(dump.resolved.plan, index), ctx)
    assert run.r0 == 0  # an iterator program returns 0 (1 would ask the kernel to show the object again)
    decode = build_decoder(dump.resolved.plan, index, dump.iters[index].target.btf)
    return [decode(record) for record in run.records[before:]]


def test_program_is_a_tracing_iterator_attached_to_its_func() -> None:
    dump = _dump("task_file(fd)")
    program = generate(dump.resolved.plan, 0)
    assert program.prog_type is ProgType.TRACING
    assert program.expected_attach_type is AttachType.TRACE_ITER
    assert program.attach_btf_id == miniiter.IDS["bpf_iter_task_file"]
    assert program.name == "ksnoop_task_fil"  # BPF_OBJ_NAME_LEN - 1 characters
    sections = [name for _, name in program.sections]
    assert sections[-2:] == ["seq_write", "exit"]
    assert "reserve" not in sections and "submit" not in sections and "header_comm" not in sections
    assert {name for name in sections} <= {t.name for t in tpl.ALL}


def test_one_record_per_object_with_its_values() -> None:
    dump = _dump("task(task->pid, task->comm, task->mm->total_vm, task->real_parent->comm)")
    (event,) = _run(dump, [META, TASK])
    assert event.probe == 0
    assert event.values == (4242, "curl", 20000, "init")


def test_the_stop_call_writes_nothing() -> None:
    dump = _dump("task(task->pid)")
    vm = _vm(dump)
    assert _run(dump, [META, 0], vm) == []
    assert vm.seq == b"" and vm.seq_writes == []


def test_task_file_slots_scalar_fd_and_a_dentry_name_as_text() -> None:
    dump = _dump("task_file(task->pid, fd, file->f_path.dentry->d_name.name, file->f_bytes)")
    (event,) = _run(dump, [META, TASK, 0xDEAD_0000_0000_0005, FILE])  # the fd slot's upper half is padding
    pid, fd, name, raw = event.values
    assert (pid, fd, name) == (4242, 5, "passwd")
    assert raw == NAME  # a `const u8 *` is bytes, shown as an address, not read as text


def test_task_file_stop_call_has_no_file() -> None:
    dump = _dump("task_file(fd)")
    assert _run(dump, [META, 0, 3, 0]) == []


@pytest.mark.parametrize(
    "spec,kept",
    [
        ("task(task->pid, task->mm->total_vm > 10000)", True),
        ("task(task->pid, task->mm->total_vm > 30000)", False),
        ('task(task->comm == "curl")', True),
        ('task(task->comm != "curl")', False),
        ("task(task->real_parent->mm->total_vm > 0)", False),  # the parent has no mm: the read fails the test
    ],
)
def test_predicates_keep_and_drop(spec: str, kept: bool) -> None:
    dump = _dump(spec)
    vm = _vm(dump)
    events = _run(dump, [META, TASK], vm)
    assert len(events) == int(kept)
    if not kept:
        assert Helper.seq_write not in vm.run(generate(dump.resolved.plan, 0), [META, TASK]).helpers


def test_a_failed_read_is_flagged_not_zero() -> None:
    dump = _dump("task(task->pid, task->mm->total_vm)")
    (event,) = _run(dump, [META, TASK], _vm(dump, memory=_memory(task=_task(9, b"kthread", mm=0))))
    assert event.values == (9, READ_FAILED)


def test_records_are_appended_object_after_object() -> None:
    dump = _dump("task(task->pid)")
    vm = _vm(dump, memory={**_memory(), PARENT: _task(1, b"init")})
    events = _run(dump, [META, TASK], vm) + _run(dump, [META, PARENT], vm)
    assert [e.values for e in events] == [(4242,), (1,)]
    size = generate(dump.resolved.plan, 0).layout.size
    assert len(vm.seq) == 2 * size


def test_a_record_that_does_not_fit_is_not_cut() -> None:
    """seq_write takes a record only while count + len < size: the kernel then shows the object
    again in the next read; nothing partial reaches the buffer."""
    dump = _dump("task(task->pid)")
    size = generate(dump.resolved.plan, 0).layout.size
    vm = _vm(dump, seq_size=2 * size + 1)
    assert len(_run(dump, [META, TASK], vm)) == 1
    assert len(_run(dump, [META, TASK], vm)) == 1
    assert _run(dump, [META, TASK], vm) == []
    assert vm.seq_writes == [0, 0, -EOVERFLOW] and vm.overflowed and len(vm.seq) == 2 * size


def test_whole_structs_are_copied_into_the_scratch_record() -> None:
    dump = _dump("bpf_map_elem(map, key)", params=IterParams(map_id=7))
    (event,) = _run(dump, [META, MAP, KEY, VALUE])
    raw, key = event.values
    assert isinstance(raw, RawValue) and raw.data[:4] == struct.pack("<I", 7)
    assert key == KEY


def test_two_specs_two_programs_each_with_its_probe_index() -> None:
    dump = _dump("task(task->pid)", "tcp(sk_common->skc_num, uid)")
    assert [p.kind for p in dump.resolved.plan.probes] == [ProbeKind.ITER, ProbeKind.ITER]
    vm = _vm(dump, memory={**_memory(), 0xFFFF888000020000: struct.pack("<IH2x", 0x0100007F, 22)})
    (tcp,) = _run(dump, [META, 0xFFFF888000020000, 1000], vm, index=1)
    assert tcp.probe == 1 and tcp.values == (22, 1000)


def test_the_generator_refuses_what_an_iterator_cannot_do() -> None:
    dump = _dump("task(task->pid)")
    plan = dump.resolved.plan
    with pytest.raises(CodegenError, match="reader's task"):
        generate(dataclasses.replace(plan, filters=Filters(pid=1)), 0)
    probe = dataclasses.replace(plan.probes[0], kstack_depth=4)
    with pytest.raises(PlanError, match="an iterator program only tests and captures"):
        dataclasses.replace(plan, probes=(probe,))


def test_generation_is_deterministic() -> None:
    dump = _dump('task_file(task->pid, fd > 2, file->f_path.dentry->d_name.name == "passwd")')
    assert generate(dump.resolved.plan, 0) == generate(dump.resolved.plan, 0)


def test_json_lines_of_a_whole_buffer_equal_the_per_record_lines() -> None:
    """JsonFormatter.batch, which dump uses for JSON, gives each record's line exactly as decoding
    and formatting it alone would: names, ints, a failed read, text that needs escaping."""
    from ksnoop.output.decode import record_fields
    from ksnoop.output.json_lines import JsonFormatter

    dump = _dump("task_file(task->pid, fd, file->f_path.dentry->d_name.name, task->mm->total_vm)")
    vm = _vm(dump)
    program = generate(dump.resolved.plan, 0)
    names = [
        b"passwd\0",
        b'quote"and\\back\0',
        b"tab\tnew\nline\0",
        "caf\u00e9".encode() + b"\0",
        b"\xff\xfe bad utf-8\0",
        b"passwd\0",
    ]
    for n, name in enumerate(names):
        vm.kernel[[r.base for r in vm.kernel].index(NAME)].data[:] = name.ljust(64, b"\0")
        task = _task(100 + n, b"curl", mm=0 if n == 2 else MM)  # the third: total_vm unreadable
        vm.kernel[[r.base for r in vm.kernel].index(TASK)].data[:] = task
        vm.run(program, [META, TASK, n, FILE])
    btf = dump.iters[0].target.btf
    decode = build_decoder(dump.resolved.plan, 0, btf)
    formatter = JsonFormatter(dump.resolved)
    batch = formatter.batch(0, record_fields(dump.resolved.plan, 0, btf), decode)
    assert batch is not None
    one_by_one = [formatter.format(decode(record)) for record in vm.records]
    assert batch(memoryview(b"".join(vm.records))) == one_by_one
    assert '"fd": 2' in one_by_one[2] and '{"error": "read failed"}' in one_by_one[2]
    assert '"quote\\"and\\\\back"' in one_by_one[1]
