# SPDX-License-Identifier: GPL-2.0-only
"""`ksnoop dump` end to end on this machine's kernel: `python3 -m ksnoop dump ...` in a subprocess,
checked against ground truth the test makes or reads itself.

- tasks against /proc (every process alive before and after the walk is in it, comm and all);
- task_file for a child this test spawns, which opened files of known names at known fds;
- predicates that keep and drop, the task and map parameters, a record cut to fit, the errors;
- every iterator target this kernel has: its default program passes the verifier, and the
  targets that need no parameter walk.

Other sessions may run on this machine at the same time: checks look at this test's own
processes, maps and files. "Nothing left loaded" is test_trace_cli's check (bpftool).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from bpf import syscall
from bpf.loader import load_program
from bpf.maps import Map, create_maps
from bpf.uapi import MapType
from tests.kernel.test_cli_kernel import as_nobody  # noqa: F401  (a fixture: uid 65534 with ksnoop's imports)
from tests.kernel.test_trace_cli import nothing_left_loaded  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_kernel", "nothing_left_loaded")]

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60.0
CHILD_FDS = (40, 41, 42, 43, 44)


def ksnoop(
    *args: str, prefix: Sequence[str] = (), env: Optional[Dict[str, str]] = None, cwd: Any = REPO
) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [*prefix, sys.executable, "-m", "ksnoop", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )


def dump_json(*args: str) -> List[Dict[str, Any]]:
    result = ksnoop("dump", "-o", "json", *args)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.stderr.endswith(f"ksnoop: {len(records)} record{'' if len(records) == 1 else 's'}\n"), result.stderr
    for record in records:
        assert record["probe"] == "iter" and "pid" not in record and "comm" not in record
    return records


def one_error(result: "subprocess.CompletedProcess[str]", status: int) -> List[str]:
    assert (result.returncode, result.stdout) == (status, ""), result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("ksnoop: error: ") and not any(line.startswith("ksnoop:") for line in lines[1:]), lines
    return lines


# ---- ground truth ------------------------------------------------------------------------------------------
def hidden_from_root(pid: int) -> bool:
    """A process this root may not inspect: reading its exe link is refused (EACCES). This machine's
    sandbox init (pid 1) is one, and the kernel's task iterator does not walk it either."""
    try:
        os.readlink(f"/proc/{pid}/exe")
    except PermissionError:
        return True
    except OSError:
        pass  # a kernel thread (no exe) or gone
    return False


def proc_pids() -> Dict[int, str]:
    """pid -> comm of the processes /proc lists now."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/comm") as f:
                    out[int(name)] = f.read().rstrip("\n")
            except OSError:
                pass  # gone meanwhile
    return out


_CHILD = r"""
import os, sys
for fd, path in zip(map(int, sys.argv[1].split(",")), sys.argv[2:]):
    opened = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.dup2(opened, fd)
    os.close(opened)
print("ready", flush=True)
sys.stdin.read()
"""


# The comm the kernel gives the child: the name of the file it executes (this interpreter), at most
# 15 bytes; "python3" only where the interpreter is called that.
CHILD_COMM = os.path.basename(sys.executable)[:15]


class Child:
    """A python child holding files named ksnoop-dump-<n>-<i> open at CHILD_FDS, until closed."""

    def __init__(self, directory: Path) -> None:
        self.names = [f"ksnoop-dump-{os.getpid()}-{i}" for i in range(len(CHILD_FDS))]
        paths = [str(directory / name) for name in self.names]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, ",".join(map(str, CHILD_FDS)), *paths],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "ready\n"
        self.pid = self.proc.pid

    def fds(self) -> Dict[int, str]:
        """fd -> what /proc says it is (a path, or pipe:[N]...)."""
        out = {}
        for name in os.listdir(f"/proc/{self.pid}/fd"):
            with contextlib.suppress(OSError):
                out[int(name)] = os.readlink(f"/proc/{self.pid}/fd/{name}")
        return out

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=TIMEOUT)
        self.proc.stdout.close()


@pytest.fixture
def child() -> Iterator[Child]:
    with tempfile.TemporaryDirectory(prefix="ksnoop-dump-") as directory:
        c = Child(Path(directory))
        try:
            yield c
        finally:
            c.close()


# ---- tasks ---------------------------------------------------------------------------------------------------
def test_every_process_in_proc_is_walked_with_its_comm() -> None:
    before = proc_pids()
    records = dump_json("task(task->pid, task->tgid, task->comm)")
    after = proc_pids()
    walked = {(r["args"]["task->pid"], r["args"]["task->tgid"]): r["args"]["task->comm"] for r in records}
    leaders = {pid: comm for (pid, tgid), comm in walked.items() if pid == tgid}
    alive = {pid for pid in before if pid in after and not hidden_from_root(pid)}
    assert alive, "no process in /proc"
    missing = sorted(pid for pid in alive if pid not in leaders)
    assert not missing, f"processes in /proc that the task iterator did not walk: {missing}"
    for pid in alive:
        if before[pid] == after[pid]:  # a comm that did not change during the walk
            # /proc/PID/comm of a kernel thread adds to the comm (a workqueue worker's queue...).
            assert leaders[pid] and before[pid].startswith(leaders[pid]), (pid, before[pid], leaders[pid])
            if len(before[pid]) < 15:
                assert leaders[pid] == before[pid]
    # Threads are tasks too: one of ours, named, is there.
    assert len(walked) >= len(leaders)


def test_threads_are_walked_and_tid_picks_one() -> None:
    started, release = threading.Event(), threading.Event()
    tids: List[int] = []

    def worker() -> None:
        tids.append(threading.get_native_id())
        started.set()
        release.wait(TIMEOUT)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        started.wait(TIMEOUT)
        (tid,) = tids
        mine = dump_json("--pid", str(os.getpid()), "task(task->pid, task->tgid)")
        assert {r["args"]["task->pid"] for r in mine} >= {os.getpid(), tid}
        assert {r["args"]["task->tgid"] for r in mine} == {os.getpid()}
        (one,) = dump_json("--tid", str(tid), "task(task->pid, task->tgid)")
        assert one["args"] == {"task->pid": tid, "task->tgid": os.getpid()}
    finally:
        release.set()
        thread.join()


def test_a_predicate_keeps_and_one_drops(child: Child) -> None:
    (kept,) = dump_json(f"task(task->pid == {child.pid}, task->comm, task->mm->total_vm > 0)")
    assert kept["args"]["task->pid"] == child.pid and kept["args"]["task->comm"] == CHILD_COMM
    assert int(kept["args"]["task->mm->total_vm"]) > 0  # an unsigned long: a decimal string in JSON
    assert dump_json(f'task(task->pid == {child.pid}, task->comm == "no-such-comm")') == []
    # A kernel thread has no mm: the read fails, and so does the test.
    assert dump_json("task(task->pid == 2, task->mm->total_vm > 0)") == []


def test_text_output(child: Child) -> None:
    result = ksnoop("dump", "--pid", str(child.pid), "task(task->pid, task->comm)")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f'dump:task(\n    task->pid = (pid_t){child.pid},\n    task->comm = (char[16])"{CHILD_COMM}"\n);\n'
    )
    assert result.stderr == "ksnoop: 1 record\n"


# ---- files --------------------------------------------------------------------------------------------------
def _files(records: List[Dict[str, Any]], pid: int) -> Dict[int, str]:
    assert {r["args"]["task->tgid"] for r in records} == {pid}
    return {r["args"]["fd"]: r["args"]["file->f_path.dentry->d_name.name"] for r in records}


def test_task_file_of_a_child_matches_proc(child: Child) -> None:
    spec = "task_file(task->tgid, fd, file->f_path.dentry->d_name.name)"
    walked = _files(dump_json("--pid", str(child.pid), spec), child.pid)
    proc = child.fds()
    assert sorted(walked) == sorted(proc)
    for fd, name in zip(CHILD_FDS, child.names):
        assert walked[fd] == name
    for fd, target in proc.items():
        if target.startswith("/"):
            assert walked[fd] == os.path.basename(target.removesuffix(" (deleted)")), (fd, target)
    # The same, walking every task and keeping the child's files with a predicate.
    spec = f"task_file(task->tgid == {child.pid}, fd, file->f_path.dentry->d_name.name)"
    assert _files(dump_json(spec), child.pid) == walked


def test_task_file_predicates_on_fd_and_name(child: Child) -> None:
    spec = f"task_file(task->tgid, fd >= {CHILD_FDS[0]}, file->f_path.dentry->d_name.name)"
    assert _files(dump_json("--pid", str(child.pid), spec), child.pid) == dict(zip(CHILD_FDS, child.names))
    spec = f'task_file(task->tgid, fd, file->f_path.dentry->d_name.name == "{child.names[2]}")'
    assert _files(dump_json("--pid", str(child.pid), spec), child.pid) == {CHILD_FDS[2]: child.names[2]}


# ---- maps ---------------------------------------------------------------------------------------------------
def refused_line(name: str, refusal: str) -> str:
    """What ksnoop says when this kernel refuses the iterator programs of `name`."""
    return f"ksnoop: error: this kernel refuses iterator programs for dump:{name} ({refusal})"


@contextlib.contextmanager
def hash_map(name: str = "ksnoop_dumptest", elements: int = 5) -> Iterator[int]:
    """A HASH map of ours holding `elements` u32 keys k with u64 values 1000 + k; yields its id."""
    with Map(MapType.HASH, 4, 8, 16, name=name) as m:
        for key in range(elements):
            m.update(key.to_bytes(4, sys.byteorder), (1000 + key).to_bytes(8, sys.byteorder))
        info = syscall.bpf_map_info()
        syscall.obj_get_info_by_fd(m.fd, info)
        yield int(info.id)


def test_map_elements_by_map_id(iterator_refusals: Dict[str, str]) -> None:
    """Where this kernel takes bpf_map_elem programs, a map's keys and values; where it refuses them
    (this machine's BPF LSM has since 2026-12-04), one line saying so, exit 1, nothing left loaded."""
    spec = "bpf_map_elem(map->id, map->name, key, value)"
    refusal = iterator_refusals["bpf_map_elem"]
    with hash_map() as map_id:
        if refusal:
            assert one_error(ksnoop("dump", "--map-id", str(map_id), spec), 1) == [
                refused_line("bpf_map_elem", refusal)
            ]
            return
        records = dump_json("--map-id", str(map_id), spec)
    assert {r["args"]["map->id"] for r in records} == {map_id}
    assert {r["args"]["map->name"] for r in records} == {"ksnoop_dumptest"}
    pairs = {bytes.fromhex(r["args"]["key"]["bytes"]): bytes.fromhex(r["args"]["value"]["bytes"]) for r in records}
    assert pairs == {k.to_bytes(4, sys.byteorder): (1000 + k).to_bytes(8, sys.byteorder) for k in range(5)}


def test_bpf_maps_lists_a_map_of_ours() -> None:
    with Map(MapType.ARRAY, 4, 8, 1, name="ksnoop_dumplist") as m:
        info = syscall.bpf_map_info()
        syscall.obj_get_info_by_fd(m.fd, info)
        records = dump_json(f"bpf_map(map->id == {info.id}, map->name, map->max_entries)")
    assert [r["args"] for r in records] == [{"map->id": info.id, "map->name": "ksnoop_dumplist", "map->max_entries": 1}]


# ---- cgroups --------------------------------------------------------------------------------------------------
def _cgroup_mount() -> Optional[str]:
    """The mounted cgroup hierarchy (v1 or v2) with the most child cgroups, or None."""
    mounts = []
    with open("/proc/self/mounts") as f:
        for line in f:
            _source, path, fstype, *_ = line.split()
            if fstype in ("cgroup", "cgroup2"):
                with contextlib.suppress(OSError):
                    mounts.append((sum(1 for e in os.scandir(path) if e.is_dir()), path))
    return max(mounts)[1] if mounts else None


def test_cgroups_below_a_path() -> None:
    mount = _cgroup_mount()
    if mount is None:
        pytest.skip("no cgroup hierarchy is mounted")
    children = sorted(e.name for e in os.scandir(mount) if e.is_dir())
    records = dump_json("--cgroup", mount, "cgroup(cgroup->level, cgroup->kn->name)")
    start = records[0]["args"]["cgroup->level"]  # descendants, pre-order: the start comes first
    assert all(r["args"]["cgroup->level"] > start for r in records[1:])
    assert sorted(r["args"]["cgroup->kn->name"] for r in records if r["args"]["cgroup->level"] == start + 1) == children
    (only,) = dump_json("--cgroup", mount, "--cgroup-order", "self-only", "cgroup(cgroup->level)")
    assert only["args"]["cgroup->level"] == start
    (line,) = one_error(ksnoop("dump", "--cgroup", "/proc", "cgroup"), 1)
    assert line.endswith("(/proc is not a cgroup directory)")


# ---- records larger than the iterator's buffer ------------------------------------------------------------
def test_a_record_too_large_for_the_buffer_is_cut_and_flagged() -> None:
    hops = ["real_parent", "parent", "group_leader"]
    values = ["task"] + [f"task->{a}" for a in hops] + [f"task->{a}->{b}" for a in hops for b in hops]  # 13 tasks
    result = ksnoop("dump", "-o", "json", "--pid", str(os.getpid()), f"task(task->pid, {', '.join(values)})")
    assert result.returncode == 0, result.stderr
    cut = re.findall(
        r"^ksnoop: dump:task: '([^']+)' cut to (\d+) of (\d+) bytes, so that a record fits the "
        r"iterator's buffer \((\d+) bytes\)$",
        result.stderr,
        re.MULTILINE,
    )
    assert cut, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["args"]["task->pid"] for r in records] == [os.getpid()]  # one thread: this test's process
    args = records[0]["args"]
    for label, _kept, _full, _limit in cut:
        assert args[label]["..."] == "truncated", label
    for value in set(values) - {label for label, *_ in cut}:
        assert "..." not in args[value], value


# ---- errors -------------------------------------------------------------------------------------------------
def test_unknown_target_suggests_real_ones() -> None:
    first, spec, caret = one_error(ksnoop("dump", "task_fil(fd)"), 2)
    assert "no iterator target 'task_fil'" in first and "task_file" in first
    assert (spec, caret) == ("  task_fil(fd)", "  ^")


def test_unknown_member_names_the_closest() -> None:
    first, spec, caret = one_error(ksnoop("dump", "task_file(task->pid, fdd)"), 2)
    assert first == (
        "ksnoop: error: dump:task_file has no member 'fdd'; did you mean 'fd'? its context gives: task, fd, file"
    )
    assert caret.index("^") == spec.index("fdd")
    first, spec, caret = one_error(ksnoop("dump", "task(task->commm)"), 2)
    assert "struct task_struct has no member 'commm'" in first and "comm" in first
    assert caret.index("^") == spec.index("->commm")


@pytest.mark.parametrize(
    "args,status,says",
    [
        (["--pid", "1", "tcp"], 2, "--pid is for dump:task, dump:task_file, dump:task_vma; dump:tcp takes no options"),
        (["bpf_map_elem"], 2, "walks the elements of one map: give --map-id ID"),
        (["--map-id", "4000000000", "bpf_map_elem"], 2, "--map-id 4000000000: not a valid id"),
        (["--pid", "1", "--tid", "2", "task"], 2, "--pid and --tid: give one"),
        (["--cgroup-order", "up", "cgroup"], 2, "--cgroup-order up: one of self-only, descendants-pre"),
    ],
)
def test_bad_options(args: List[str], status: int, says: str) -> None:
    (line,) = one_error(ksnoop("dump", *args), status)
    assert says in line


def test_a_map_id_no_map_has() -> None:
    (line,) = one_error(ksnoop("dump", "--map-id", "2000000000", "bpf_map_elem"), 2)
    assert line == "ksnoop: error: --map-id 2000000000: no BPF map has that id"


def test_not_root(as_nobody: Tuple[Sequence[str], Dict[str, str], str]) -> None:  # noqa: F811
    prefix, env, cwd = as_nobody
    if not prefix:
        pytest.skip("already unprivileged")
    (line,) = one_error(ksnoop("dump", "task(task->pid)", prefix=prefix, env=env, cwd=cwd), 1)
    assert re.search(r"root|CAP_BPF", line), line
    lines = one_error(ksnoop("dump", "task(task->pidd)", prefix=prefix, env=env, cwd=cwd), 2)
    assert "no member 'pidd'" in lines[0]


def test_count_stops_early_and_verbose_shows_the_program() -> None:
    result = ksnoop("dump", "-n", "2", "-v", "-o", "json", "task(task->pid)")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    assert "probe iter:task attach_btf_id" in result.stderr and "call bpf_seq_write#127" in result.stderr


# ---- list, info, and every target ---------------------------------------------------------------------------
def test_list_and_info(iterator_refusals: Dict[str, str]) -> None:
    listed = ksnoop("list", "dump:*")
    assert listed.returncode == 0, listed.stderr
    names = listed.stdout.splitlines()
    assert {"dump:task", "dump:task_file", "dump:bpf_map", "dump:tcp"} <= {n.split(" (")[0] for n in names}
    # Each target this kernel refuses is marked with how, and only those.
    assert names == [
        f"dump:{name}" + (f" (refused by this kernel: {refusal})" if refusal else "")
        for name, refusal in sorted(iterator_refusals.items())
    ]
    info = ksnoop("info", "dump:task_file")
    assert info.stdout == (
        "dump:task_file(struct task_struct *task, u32 fd, struct file *file); /* options: --pid PID, --tid TID */\n"
    )
    info_json = ksnoop("info", "--json", *(f"dump:{name}" for name in sorted(iterator_refusals)))
    assert info_json.returncode == 0, info_json.stderr
    assert {o["name"]: o["refused"] for o in map(json.loads, info_json.stdout.splitlines())} == {
        name: refusal or None for name, refusal in iterator_refusals.items()
    }


def test_list_as_nobody_marks_nothing(as_nobody: Tuple[Sequence[str], Dict[str, str], str]) -> None:  # noqa: F811
    """Without the privileges to load, ksnoop cannot ask: it lists every target and marks none."""
    prefix, env, cwd = as_nobody
    if not prefix:
        pytest.skip("already unprivileged")
    listed = ksnoop("list", "dump:*", prefix=prefix, env=env, cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    assert "dump:task" in listed.stdout.splitlines() and "refused" not in listed.stdout


def _targets() -> List[str]:
    from ksnoop.spec.iter_targets import IterTargets
    from ksnoop.spec.targets import KernelBTF

    return sorted(IterTargets(KernelBTF.load()).all())


@pytest.mark.parametrize("name", _targets() if os.path.exists("/sys/kernel/btf/vmlinux") else [])
def test_every_target_loads_and_walks(name: str, iterator_refusals: Dict[str, str]) -> None:
    """The default spec (every member) of every target this kernel takes passes the verifier, and
    each such target that needs no parameter walks to its end. A target it refuses gets one line
    from ksnoop dump saying so, exit 1, with nothing left loaded."""
    from bpf.codegen import generate
    from bpf.iter import max_record_size
    from ksnoop.spec.resolve_dump import IterParams, parse_dump_spec, resolve_dump
    from ksnoop.spec.iter_targets import IterTargets, ParamKind
    from ksnoop.spec.targets import KernelBTF

    iters = IterTargets(KernelBTF.load())
    needs_map = iters.find(name).params is ParamKind.MAP
    refusal = iterator_refusals[name]
    if refusal:
        assert refusal.endswith("before verification"), f"a return-0 program for {name} did not verify: {refusal}"
        with hash_map() as map_id:
            args = ("--map-id", str(map_id)) if needs_map else ()
            assert one_error(ksnoop("dump", *args, name), 1) == [refused_line(name, refusal)]
        return
    params = IterParams(map_id=1) if needs_map else IterParams()  # resolved, never linked: any id does
    dump = resolve_dump([parse_dump_spec(name)], iters, params, max_record_size=max_record_size())
    program = generate(dump.resolved.plan, 0)
    with contextlib.ExitStack() as stack:
        insns = program.bind_maps(create_maps(stack, [program]).fds(0))
        with load_program(
            insns, program.prog_type, program.expected_attach_type, program.attach_btf_id, name=program.name
        ):
            pass
    if not needs_map:
        result = ksnoop("dump", "-o", "json", "-n", "3", name)
        assert result.returncode == 0, result.stderr
        for line in result.stdout.splitlines():
            assert json.loads(line)["func"] == name


def test_stdout_closed_by_head_ends_quietly() -> None:
    """`ksnoop dump ... | head -1` on a long walk (every kernel symbol): exit 1, nothing on stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ksnoop", "dump", "-o", "json", "ksym(ksym->name)"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=TIMEOUT) == 1
    assert json.loads(first)["func"] == "ksym"
    assert err == b""
