# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.spec.resolve_dump over the mini kernel's iterators: dump specs -> one ITER probe each; errors
point into the spec like trace's; options are checked against targets; records are cut to fit."""

from __future__ import annotations

import pytest

from bpf.plan import CompareOp, ProbeKind, RecordLayout
from ksnoop.spec.resolve_dump import IterParams, fit_captures, parse_dump_spec, resolve_dump
from ksnoop.errors import RuntimeFailure, UsageError
from ksnoop.spec.iter_targets import IterTargets, LinkInfo
from ksnoop.spec.language import SpecError
from tests.support import miniiter

LIMIT = 32760


def _iters() -> IterTargets:
    return IterTargets(miniiter.kernel())


def _resolve(
    *specs: str,
    params: IterParams = IterParams(),
    limit: int = LIMIT,
    iters: IterTargets | None = None,
    element_sizes: tuple[int, int] | None = None,
):
    return resolve_dump(
        [parse_dump_spec(s) for s in specs],
        iters or _iters(),
        params,
        max_record_size=limit,
        element_sizes=element_sizes,
    )


def _spec_error(spec: str, **kwargs) -> SpecError:
    with pytest.raises(SpecError) as err:
        _resolve(spec, **kwargs)
    return err.value


def test_one_iter_probe_per_spec_whose_first_test_skips_the_stop_call() -> None:
    dump = _resolve("task_file(task->pid, fd, file)", "tcp")
    plan = dump.resolved.plan
    assert [p.kind for p in plan.probes] == [ProbeKind.ITER, ProbeKind.ITER]
    assert [p.target for p in plan.probes] == ["task_file", "tcp"]
    assert not plan.with_comm  # the comm would be the reader's
    stop = plan.probes[0].tests[0]
    assert (stop.value.slot, stop.value.in_memory, stop.predicate.op, stop.predicate.constant) == (
        3,
        False,
        CompareOp.NE,
        0,
    )
    assert [t.label for t in dump.resolved.targets] == ["dump:task_file", "dump:tcp"]
    assert [t.name for t in dump.iters] == ["task_file", "tcp"]


def test_members_are_context_slots() -> None:
    probe = _resolve("task_file(task->pid, fd, file->f_flags)").resolved.plan.probes[0]
    assert [(c.label, c.slot) for c in probe.captures] == [("task->pid", 1), ("fd", 2), ("file->f_flags", 3)]
    fd = probe.captures[1]
    assert (fd.in_memory, fd.size) == (False, 4)


def test_no_items_show_every_member_but_meta() -> None:
    probe = _resolve("task_file").resolved.plan.probes[0]
    assert [c.label for c in probe.captures] == ["task", "fd", "file"]
    assert probe.captures[0].in_memory and probe.captures[0].size == 40  # the whole task_struct


def test_comparisons_become_tests_after_the_stop_test() -> None:
    probe = _resolve('task(task->mm->total_vm > 10000, task->comm == "curl", task->pid)').resolved.plan.probes[0]
    assert [t.value.label for t in probe.tests] == ["task", "task->mm->total_vm", "task->comm"]
    assert [c.label for c in probe.captures] == ["task->mm->total_vm", "task->comm", "task->pid"]


def test_a_const_unsigned_char_pointer_is_text_and_u8_bytes_are_not() -> None:
    probe = _resolve("task_file(file->f_path.dentry->d_name.name, file->f_bytes)").resolved.plan.probes[0]
    name, raw = probe.captures
    assert name.string and name.in_memory
    assert not raw.string and raw.size == 8  # the pointer, not what it points to
    probe = _resolve('task_file(file->f_path.dentry->d_name.name == "passwd")').resolved.plan.probes[0]
    assert probe.tests[1].value.string and probe.tests[1].predicate.constant == b"passwd"


def test_the_dump_prefix_keeps_positions() -> None:
    spec = parse_dump_spec("dump:task(task->pidd)")
    assert (spec.target, spec.target_position, spec.text) == ("task", 0, "dump:task(task->pidd)")
    err = _spec_error("dump:task(task->pidd)")
    assert err.text == "dump:task(task->pidd)" and err.position == 14
    with pytest.raises(SpecError) as parse_error:
        parse_dump_spec("dump:task(task->pid >)")
    assert parse_error.value.text == "dump:task(task->pid >)"


@pytest.mark.parametrize(
    "spec,says,column",
    [
        ("taks(task->pid)", "no iterator target 'taks' in this kernel's BTF; did you mean 'task'", 0),
        ("task(tsk->pid)", "dump:task has no member 'tsk'; did you mean 'task'? its context gives: task", 5),
        ("task(task->pidd)", "struct task_struct has no member 'pidd'; did you mean 'pid'?", 9),
        ("task_file(meta->seq_num)", "no member 'meta' (meta is the iterator's own bookkeeping)", 10),
        ("task(return)", "an iterator has no return value; dump:task gives: task", 5),
        ("task*(task->pid)", "not a glob", 0),
        ('task(task->pid == "x")', "cannot compare 'task->pid' (pid_t) with a string", 18),
        ("task_file(fd > -1)", "-1 is out of range for 'fd' (u32: 0..4294967295)", 15),
    ],
)
def test_spec_errors_point_into_the_spec(spec: str, says: str, column: int) -> None:
    err = _spec_error(spec)
    assert says in err.reason
    assert err.position == column, str(err)


@pytest.mark.parametrize(
    "spec,params,error,says",
    [
        ("tcp", IterParams(pid=1), UsageError, "--pid is for dump:task, dump:task_file; dump:tcp takes no options"),
        ("task", IterParams(map_id=1), UsageError, "--map-id is for dump:bpf_map_elem; dump:task takes --pid or --tid"),
        ("bpf_map_elem", IterParams(), UsageError, "dump:bpf_map_elem walks the elements of one map: give --map-id"),
        ("task", IterParams(pid=1, tid=2), UsageError, "--pid and --tid: give one"),
        ("cgroup", IterParams(cgroup_id=1, cgroup_path="/sys/fs/cgroup"), UsageError, "--cgroup-id and --cgroup"),
        (
            "cgroup",
            IterParams(cgroup_order="sideways"),
            UsageError,
            "--cgroup-order sideways: one of self-only, descendants-pre, descendants-post, ancestors-up",
        ),
    ],
)
def test_options_must_fit_the_target(spec: str, params: IterParams, error: type, says: str) -> None:
    with pytest.raises(error) as err:
        _resolve(spec, params=params)
    assert says in str(err.value)
    assert not isinstance(err.value, SpecError)


def test_options_this_kernel_lacks_are_a_runtime_failure() -> None:
    iters = _iters()
    iters._link_info = LinkInfo({"map": ("map_fd",)})  # a v5.9 kernel: no task or cgroup parameters
    with pytest.raises(RuntimeFailure, match="--pid: this kernel's iterators take no task pid"):
        _resolve("task", params=IterParams(pid=1), iters=iters)


def test_accepted_options() -> None:
    for spec, params in [
        ("task", IterParams(pid=1)),
        ("task_file", IterParams(tid=2)),
        ("bpf_map_elem", IterParams(map_id=3)),
        ("cgroup", IterParams(cgroup_order="self-only")),
    ]:
        assert len(_resolve(spec, params=params).resolved.plan.probes) == 1


def test_records_larger_than_the_buffer_cut_the_largest_structs_and_say_so() -> None:
    spec = "task(task, task->real_parent, task->comm, task->pid)"
    full = _resolve(spec).resolved.plan.probes[0]
    full_size = RecordLayout.of(full, False).size
    dump = _resolve(spec, limit=full_size - 16)
    probe = dump.resolved.plan.probes[0]
    assert RecordLayout.of(probe, False).size <= full_size - 16
    task, parent, comm, pid = probe.captures
    assert (task.size, task.full_size) == (40, 0)
    assert parent.size == 24 and parent.full_size == 40 and parent.truncated  # the later of two equals is cut
    assert (comm.size, pid.size) == (16, 4)  # strings and scalars are never cut
    (note,) = dump.resolved.notes
    assert "'task->real_parent' cut to 24 of 40 bytes" in note and f"({full_size - 16} bytes)" in note


def test_cuts_spread_over_structs_until_the_record_fits() -> None:
    spec = "task(task, task->real_parent, task->mm)"
    dump = _resolve(spec, limit=40 + 16 + 16 + 16)  # the header, then each struct's address and 8 bytes
    captures = dump.resolved.plan.probes[0].captures
    assert [(c.size, c.full_size) for c in captures] == [(8, 40), (8, 40), (8, 0)]  # mm is 8 bytes whole
    assert len(dump.resolved.notes) == 2


def test_a_record_that_cannot_be_cut_enough_is_a_spec_error() -> None:
    err = _spec_error("task(task->comm, task->pid)", limit=48)
    assert "more than the 48 an iterator's buffer takes" in err.reason


def test_fit_captures_leaves_small_records_alone() -> None:
    probe = _resolve("task(task, task->pid)").resolved.plan.probes[0]
    captures, cut = fit_captures(probe.captures, LIMIT, parse_dump_spec("task"), miniiter.kernel().vmlinux)
    assert captures == probe.captures and cut == []


def test_map_element_key_and_value_are_bytes_once_the_map_is_known() -> None:
    spec = "bpf_map_elem(map->id, key, value)"
    params = IterParams(map_id=7)
    addresses = _resolve(spec, params=params).resolved.plan.probes[0].captures
    assert [(c.in_memory, c.size) for c in addresses[1:]] == [(False, 8), (False, 8)]  # void pointers
    key, value = _resolve(spec, params=params, element_sizes=(4, 6000)).resolved.plan.probes[0].captures[1:]
    assert (key.slot, key.in_memory, key.offset, key.size, key.type_id) == (2, True, 0, 4, 0)
    assert (value.slot, value.size, value.full_size) == (3, 4096, 6000)  # a copy is at most 4 KiB, and says so
