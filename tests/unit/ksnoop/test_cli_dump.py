# SPDX-License-Identifier: GPL-2.0-only
"""`ksnoop dump`, `list 'dump:*'` and `info dump:...` on synthetic BTF (tests/support/miniiter.py),
in-process: what the options become, the errors (one `ksnoop: error:` line, a spec and caret for a
spec's fault; 2 for usage, 1 for a kernel without iterators), and dump records as text and JSON."""

from __future__ import annotations

import json
import re

import pytest

from ksnoop.run import dump as dump_module
from ksnoop.run.dump import DumpOptions, DumpSummary
from ksnoop.spec.resolve_dump import IterParams, parse_dump_spec, resolve_dump
from ksnoop.spec.iter_targets import IterTargets
from ksnoop.output.json_lines import JsonFormatter
from ksnoop.output.text import TextFormatter
from ksnoop.spec.targets import KernelBTF
from tests.support import miniiter, records
from tests.support.btfbuilder import BTFBuilder

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@pytest.fixture
def iter_btf(write_btf) -> str:
    return write_btf(miniiter.blob(), "miniiter.btf")


def _one_error(outcome, status: int) -> list[str]:
    assert outcome.exit_code == status, (outcome.stdout, outcome.stderr)
    assert outcome.stdout == "" and "Traceback" not in outcome.stderr
    lines = outcome.stderr.splitlines()
    assert lines[0].startswith("ksnoop: error: ") and not any(line.startswith("ksnoop: error") for line in lines[1:])
    return lines


# ---- list and info --------------------------------------------------------------------------------------
def test_list_dump_targets(cli, iter_btf) -> None:
    out = cli("list", "--btf", iter_btf, "dump:*")
    assert out.exit_code == 0, out.stderr
    assert out.lines == [f"dump:{name}" for name in sorted(miniiter.TARGETS)]
    assert cli("list", "--btf", iter_btf, "dump:task*").lines == ["dump:task", "dump:task_file"]


def test_list_without_the_prefix_lists_no_iterators(cli, iter_btf) -> None:
    assert "dump:task" not in cli("list", "--btf", iter_btf, "*").lines


def test_info_dump_target(cli, iter_btf) -> None:
    out = cli("info", "--btf", iter_btf, "dump:task_file")
    assert out.exit_code == 0, out.stderr
    assert out.stdout == (
        "dump:task_file(struct task_struct *task, u32 fd, struct file *file); /* options: --pid PID, --tid TID */\n"
    )
    data = json.loads(cli("info", "--json", "--btf", iter_btf, "dump:tcp").stdout)
    assert data["params"] == [{"name": "sk_common", "type": "struct sock_common *"}, {"name": "uid", "type": "uid_t"}]
    assert data["kind"] == "iter" and data["object"] == "sk_common" and data["options"] == []


def test_info_unknown_dump_target(cli, iter_btf) -> None:
    (line,) = _one_error(cli("info", "--btf", iter_btf, "dump:tsk"), 2)
    assert "no iterator target 'tsk'" in line and "did you mean 'task'" in line


# ---- dump: options and errors ---------------------------------------------------------------------------
def test_dump_options_reach_the_session(cli, iter_btf, monkeypatch) -> None:
    seen = {}

    def fake_run(options: DumpOptions, out, err) -> DumpSummary:
        seen["options"] = options
        return DumpSummary(3, 144, 0.001, 0.002)

    monkeypatch.setattr(dump_module, "run", fake_run)
    out = cli("dump", "--btf", iter_btf, "--pid", "42", "-n", "5", "-o", "json", "task(task->pid)", "task_file")
    assert out.exit_code == 0, out.stderr
    assert out.stderr == "ksnoop: 3 records\n"
    assert seen["options"] == DumpOptions(
        specs=("task(task->pid)", "task_file"),
        params=IterParams(pid=42),
        count=5,
        output="json",
        color=False,
        verbose=False,
        btf_path=iter_btf,
    )
    out = cli("dump", "--btf", iter_btf, "--zeros", "--compact", "task")
    assert out.exit_code == 0, out.stderr
    assert (seen["options"].zeros, seen["options"].compact) == (True, True)


@pytest.mark.parametrize(
    "spec,says,caret_at",
    [
        ("taks(task->pid)", "no iterator target 'taks' in this kernel's BTF; did you mean 'task'", "taks"),
        ("task(tsk->pid)", "dump:task has no member 'tsk'; did you mean 'task'? its context gives: task", "tsk"),
        ("task_file(file->f_pathh)", "struct file has no member 'f_pathh'; did you mean 'f_path'?", "->f_pathh"),
        ("task(return != 0)", "an iterator has no return value", "return"),
    ],
)
def test_dump_spec_errors_have_a_caret(cli, iter_btf, spec: str, says: str, caret_at: str) -> None:
    first, shown, caret = _one_error(cli("dump", "--btf", iter_btf, spec), 2)
    assert says in first
    assert shown == "  " + spec
    assert caret.index("^") - 2 == spec.index(caret_at)


@pytest.mark.parametrize(
    "args,says",
    [
        (["--pid", "1", "tcp"], "--pid is for dump:task, dump:task_file; dump:tcp takes no options"),
        (["bpf_map_elem"], "give --map-id ID"),
        (["--pid", "0", "task"], "--pid 0: at least 1"),
        (["--pid", "-3", "task"], "--pid -3: at least 1"),
        (["-n", "0", "task"], "--count 0: at least 1"),
        (["--cgroup-order", "sideways", "cgroup"], "--cgroup-order sideways: one of self-only"),
        (["task*"], "not a glob"),
    ],
)
def test_dump_bad_options_are_usage_errors(cli, iter_btf, args: list[str], says: str) -> None:
    lines = _one_error(cli("dump", "--btf", iter_btf, *args), 2)
    assert says in lines[0]


def test_dump_on_a_kernel_without_iterators_is_a_runtime_failure(cli, mini_btf) -> None:
    (line,) = _one_error(cli("dump", "--btf", mini_btf, "task"), 1)
    assert line == (
        "ksnoop: error: cannot dump: this kernel has no BPF iterators (they came in 5.8; its BTF has "
        "no struct bpf_iter_meta)"
    )


# ---- kernel strings stay harmless -----------------------------------------------------------------------
def _evil_iter_btf() -> bytes:
    b = BTFBuilder()
    u64 = b.int_("long long unsigned int", 8)
    seq = b.ptr(b.fwd("seq_file"))
    meta = b.struct("bpf_iter_meta", 8, [("", b.union("", 8, [("seq", seq, 0), ("", u64, 0)]), 0)])
    meta_ptr = b.ptr(meta)
    obj = b.ptr(b.struct("thing", 8, [("x\x1b[2Jy", u64, 0)]))
    wrapped = [b.union("", 8, [(name, ptr, 0), ("", u64, 0)]) for name, ptr in (("meta", meta_ptr), ("ob\x07j", obj))]
    b.struct("bpf_iter__ev\x1b]0;il", 16, [("", wrapped[0], 0), ("", wrapped[1], 64)])
    b.func("bpf_iter_ev\x1b]0;il", b.func_proto(b.int_("int", 4, signed=True), [("meta", meta_ptr), ("ob\x07j", obj)]))
    return b.to_bytes()


def test_list_and_info_escape_control_characters(cli, write_btf) -> None:
    path = write_btf(_evil_iter_btf(), "evil.btf")
    listed = cli("list", "--btf", path, "dump:*")
    assert listed.exit_code == 0 and listed.stdout == "dump:ev\\x1b]0;il\n"
    info = cli("info", "--btf", path, "dump:ev\x1b]0;il")
    assert info.exit_code == 0, info.stderr
    assert not CONTROL.search(info.stdout.rstrip("\n")) and "ob\\x07j" in info.stdout


# ---- records as text and JSON ---------------------------------------------------------------------------
def _resolved(*specs: str):
    dump = resolve_dump(
        [parse_dump_spec(s) for s in specs],
        IterTargets(KernelBTF(miniiter.kernel().vmlinux, [])),
        IterParams(),
        max_record_size=32760,
    )
    return dump.resolved


def test_text_record_has_the_target_and_no_event_header() -> None:
    resolved = _resolved("task_file(task->pid, fd, file->f_path.dentry->d_name.name)")
    event = records.event(resolved, 0, 4242, 3, b"pass\x1b[2Jwd")
    text = TextFormatter(resolved, color=False).format(event)
    assert text == (
        "dump:task_file(\n"
        "    task->pid = (pid_t)4242,\n"
        "    fd = (u32)3,\n"
        '    file->f_path.dentry->d_name.name = (const unsigned char *)"pass\\x1b[2Jwd"\n'
        ");"
    )


def test_json_record_has_no_reader_pid_and_says_iter() -> None:
    resolved = _resolved("task(task->pid, task->comm)")
    event = records.event(resolved, 0, 4242, b"cu\x07rl", ts=123, cpu=1)
    data = json.loads(JsonFormatter(resolved).format(event))
    assert data == {
        "ts": 123,
        "cpu": 1,
        "func": "task",
        "probe": "iter",
        "args": {"task->pid": 4242, "task->comm": "cu\u0007rl"},
    }
    assert JsonFormatter(resolved).format(event).isascii()


def test_json_of_a_cut_struct_says_truncated() -> None:
    dump = resolve_dump(
        [parse_dump_spec("task(task, task->real_parent)")],
        IterTargets(miniiter.kernel()),
        IterParams(),
        max_record_size=40 + (8 + 40) + (8 + 16),
    )  # each with its address
    resolved = dump.resolved
    probe = resolved.plan.probes[0]
    assert probe.captures[1].truncated
    task = records.sk_buff_bytes()[:40]
    event = records.event(resolved, 0, task, task[:16])
    data = json.loads(JsonFormatter(resolved).format(event))
    assert data["args"]["task->real_parent"]["..."] == "truncated"
    text = TextFormatter(resolved, color=False).format(event)
    assert "/* truncated: 16 of 40 bytes */" in text
