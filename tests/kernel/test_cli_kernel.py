# SPDX-License-Identifier: GPL-2.0-only
"""`ksnoop info` and `ksnoop list` on the running kernel's BTF, run as `python3 -m ksnoop` from the
checkout and checked against `bpftool btf dump file /sys/kernel/btf/vmlinux format raw`."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[2]
VMLINUX = "/sys/kernel/btf/vmlinux"
BPFTOOL = next((p for p in ("/usr/sbin/bpftool", shutil.which("bpftool")) if p and os.access(p, os.X_OK)), None)
NOBODY = "65534"


@pytest.fixture(scope="module", autouse=True)
def _vmlinux_btf():
    if not os.path.exists(VMLINUX):
        pytest.skip(f"{VMLINUX} is missing: the kernel has no CONFIG_DEBUG_INFO_BTF")


def ksnoop(*args, prefix=(), **kwargs):
    return subprocess.run(
        [*prefix, sys.executable, "-m", "ksnoop", *args],
        cwd=kwargs.pop("cwd", REPO),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        **kwargs,
    )


def ok(result):
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


class RawDump:
    """bpftool's raw dump: each type's header fields and its member/param/value lines."""

    _HEADER = re.compile(r"^\[(\d+)\] (\w+) '([^']*)'(.*)$")
    _SUB = re.compile(r"^\t'([^']*)'(.*)$")

    def __init__(self, text):
        self.types = {}  # id -> (kind, name, {field: value}, [(name, {field: value})])
        self.by_kind = {}  # kind -> [(name, id)]
        current = None
        for line in text.splitlines():
            m = self._HEADER.match(line)
            if m:
                current = (m[2], m[3], self._fields(m[4]), [])
                self.types[int(m[1])] = current
                self.by_kind.setdefault(m[2], []).append((m[3], int(m[1])))
                continue
            m = self._SUB.match(line)
            if m and current is not None:
                current[3].append((m[1], self._fields(m[2])))

    @staticmethod
    def _fields(text):
        return dict(re.findall(r"(\w+)=(\S+)", text))

    def names(self, kind):
        return {name for name, _ in self.by_kind.get(kind, [])}

    def first(self, kind, name):
        return next(self.types[i] for n, i in self.by_kind[kind] if n == name)


@pytest.fixture(scope="module")
def raw():
    if BPFTOOL is None:
        pytest.skip("bpftool is not installed (Debian package bpftool)")
    result = subprocess.run(
        [BPFTOOL, "btf", "dump", "file", VMLINUX, "format", "raw"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        pytest.skip(f"bpftool cannot dump {VMLINUX}: {result.stderr.strip()}")
    return RawDump(result.stdout)


def test_info_function():
    assert ok(ksnoop("info", "ip_send_skb")) == "int ip_send_skb(struct net *net, struct sk_buff *skb);\n"


def test_info_function_json(raw):
    data = json.loads(ok(ksnoop("info", "--json", "ip_send_skb")))
    assert data == {
        "name": "ip_send_skb",
        "kind": "func",
        "module": "vmlinux",
        "return": "int",
        "params": [{"name": "net", "type": "struct net *"}, {"name": "skb", "type": "struct sk_buff *"}],
    }
    _kind, _name, func, _ = raw.first("FUNC", "ip_send_skb")
    params = raw.types[int(func["type_id"])][3]
    assert [p["name"] for p in data["params"]] == [name for name, _ in params]


def test_info_tracepoint(raw):
    assert ok(ksnoop("info", "tp:net_dev_queue")) == "tp:net_dev_queue(struct sk_buff *skb);\n"
    data = json.loads(ok(ksnoop("info", "--json", "tp:net_dev_queue")))
    assert data["kind"] == "tracepoint" and data["name"] == "net_dev_queue"
    # The names come from __probestub_/__traceiter_, whose first parameter is the tracepoint's __data.
    source = (
        "__probestub_net_dev_queue" if "__probestub_net_dev_queue" in raw.names("FUNC") else "__traceiter_net_dev_queue"
    )
    _kind, _name, func, _ = raw.first("FUNC", source)
    names = [name for name, _ in raw.types[int(func["type_id"])][3]][1:]
    assert [p["name"] for p in data["params"]] == names == ["skb"]


def _layout_rows(text):
    """{member name: (offset, bit offset or None, size)} of the top-level named members of a layout."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\t(\S.*?);\s+/\*\s+(\d+)(?::\s*(\d+))?\s+(\d+) \*/$", line)  # depth 1 only
        if m and m[1] != "}":
            name = re.search(r"\(\*(\w+)\)|(\w+)(?:\[\d+\])*(?::\d+)?$", m[1])
            rows[name[1] or name[2]] = (int(m[2]), None if m[3] is None else int(m[3]), int(m[4]))
    return rows


def test_info_struct_offsets_match_bpftool(raw):
    text = ok(ksnoop("info", "struct sk_buff"))
    _kind, _name, fields, members = raw.first("STRUCT", "sk_buff")
    rows = _layout_rows(text)
    assert rows["len"][0] == int(dict(members)["len"]["bits_offset"]) // 8
    checked = 0
    for name, m in members:
        if name == "(anon)":
            continue
        assert name in rows, f"top-level member {name} is missing from the layout"
        offset, bit, _size = rows[name]
        if int(m.get("bitfield_size", 0)):
            assert offset * 8 + bit == int(m["bits_offset"]), name
        else:
            assert offset * 8 == int(m["bits_offset"]), name
        checked += 1
    assert checked >= 10
    assert f"/* size: {fields['size']}," in text


def _flattened_bit_offsets(raw, type_id, base=0):
    """{name: bit offset} of a struct/union's members as C code names them (anonymous ones flattened)."""
    _kind, _name, _fields, members = raw.types[type_id]
    out = {}
    for name, m in members:
        bits = base + int(m["bits_offset"])
        if name == "(anon)":
            inner = int(m["type_id"])
            while raw.types[inner][0] in ("CONST", "VOLATILE", "TYPEDEF", "TYPE_TAG", "RESTRICT"):
                inner = int(raw.types[inner][2]["type_id"])
            out.update(_flattened_bit_offsets(raw, inner, bits))
        else:
            out[name] = bits
    return out


STRUCTS = [
    "struct sk_buff",
    "struct sock",
    "struct net_device",
    "struct task_struct",
    "struct file",
    "struct inode",
    "union bpf_attr",
    "struct page",
]


def test_info_json_offsets_match_bpftool(raw):
    lines = ok(ksnoop("info", "--json", *STRUCTS)).splitlines()
    assert len(lines) == len(STRUCTS)
    for text, data in zip(STRUCTS, map(json.loads, lines)):
        kind, name = text.split()
        _k, _n, fields, _m = raw.first(kind.upper(), name)
        type_id = next(i for n, i in raw.by_kind[kind.upper()] if n == name)
        assert (data["name"], data["kind"], data["size"]) == (text, kind, int(fields["size"]))
        got = {m["name"]: m["offset"] * 8 + m.get("bit_offset", 0) for m in data["members"]}
        assert got == _flattened_bit_offsets(raw, type_id), text


def test_list_functions_match_bpftool(raw):
    lines = ok(ksnoop("list", "tcp_v4_*")).splitlines()
    assert lines == sorted(lines)
    funcs = {n for n in raw.names("FUNC") if fnmatch.fnmatchcase(n, "tcp_v4_*")}
    tracepoints = {
        "tp:" + n[len("btf_trace_") :] for n in raw.names("TYPEDEF") if fnmatch.fnmatchcase(n, "btf_trace_tcp_v4_*")
    }
    assert funcs, "this kernel has no tcp_v4_* functions in BTF"
    assert set(lines) == funcs | tracepoints
    assert len(lines) == len(set(lines))


def test_list_tracepoints_match_bpftool(raw):
    lines = ok(ksnoop("list", "tp:sched_*")).splitlines()
    expected = {"tp:" + n[len("btf_trace_") :] for n in raw.names("TYPEDEF") if n.startswith("btf_trace_sched_")}
    assert expected
    assert lines == sorted(expected)


# ---- without root ---------------------------------------------------------------------------------------
_PROBE = r"""
import contextlib, io, json, os, sys, sysconfig
before = set(sys.modules)
from ksnoop.cli import app
for args in (["info", "ip_send_skb", "struct sk_buff", "tp:net_dev_queue"], ["list", "tcp_v4_*"]):
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            app(args)
        except SystemExit:
            pass
paths = sysconfig.get_paths()
std = [os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib")]
site = [os.path.realpath(paths[k]) for k in ("purelib", "platlib")]
checkout = os.path.realpath(sys.argv[1])
tops = {}
for name in set(sys.modules) - before:
    path = getattr(sys.modules[name], "__file__", None)
    top = sys.modules.get(name.split(".")[0])
    if not path or top is None or not getattr(top, "__file__", None):
        continue
    path = os.path.realpath(top.__file__)
    if os.path.basename(path) == "__init__.py":
        path = os.path.dirname(path)
    inside = lambda dirs: any(path.startswith(d + os.sep) for d in dirs)
    if inside([checkout]) or (inside(std) and not inside(site)):
        continue
    tops[name.split(".")[0]] = path
print(json.dumps(tops))
"""


@pytest.fixture(scope="module")
def as_nobody():
    """(command prefix, env, cwd) that run `python3 -m ksnoop` as uid/gid 65534 with no groups."""
    if os.geteuid() != 0:
        yield (), dict(os.environ), REPO  # already unprivileged
        return
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed, so there is no way to drop to another uid")
    if not os.stat(VMLINUX).st_mode & 0o004:
        pytest.skip(f"{VMLINUX} is not world-readable on this system")
    # The interpreter's third-party packages may sit where uid 65534 cannot read (/root/.pyenv): copy
    # the ones ksnoop imports into a world-readable directory. ksnoop and btf come from the checkout.
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, str(REPO)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    packages = json.loads(probe.stdout)
    assert "ksnoop" not in packages and "btf" not in packages, packages
    site = tempfile.mkdtemp(prefix="ksnoop-nobody-")
    try:
        os.chmod(site, 0o755)
        for path in packages.values():
            target = os.path.join(site, os.path.basename(path))
            if os.path.isdir(path):
                shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(path, target)
        for root, dirs, files in os.walk(site):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
            for f in files:
                os.chmod(os.path.join(root, f), 0o644)
        prefix = (setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), site]), PYTHONDONTWRITEBYTECODE="1")
        check = subprocess.run(
            [*prefix, sys.executable, "-c", "import os, ksnoop.cli; print(os.getuid())"],
            cwd=site,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if check.returncode != 0:
            pytest.skip(
                f"python cannot start with ksnoop's imports as uid {NOBODY}: "
                f"{(check.stderr.strip().splitlines() or ['?'])[-1]}"
            )
        assert check.stdout.strip() == NOBODY
        yield prefix, env, site
    finally:
        shutil.rmtree(site, ignore_errors=True)


def test_works_without_root(as_nobody):
    prefix, env, cwd = as_nobody
    result = ksnoop("info", "ip_send_skb", prefix=prefix, env=env, cwd=cwd)
    assert ok(result) == "int ip_send_skb(struct net *net, struct sk_buff *skb);\n"
    assert (
        ok(ksnoop("info", "tp:net_dev_queue", prefix=prefix, env=env, cwd=cwd))
        == "tp:net_dev_queue(struct sk_buff *skb);\n"
    )
    assert "tcp_v4_connect" in ok(ksnoop("list", "tcp_v4_*", prefix=prefix, env=env, cwd=cwd)).splitlines()


# ---- output closed early --------------------------------------------------------------------------------
def test_head_1_exits_quietly():
    proc = subprocess.Popen(
        [sys.executable, "-m", "ksnoop", "list"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    first = proc.stdout.readline()  # `| head -1`
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    status = proc.wait(timeout=120)
    assert first.strip()
    assert "Traceback" not in stderr
    assert (status, stderr) == (1, "")


def test_head_1_through_a_shell_pipeline():
    shell = shutil.which("bash")
    if shell is None:
        pytest.skip("bash is not installed")
    script = f'{sys.executable} -m ksnoop list 2>"$1" | head -1; echo "status=${{PIPESTATUS[0]}}"'
    with tempfile.NamedTemporaryFile("r") as err:
        result = subprocess.run(
            [shell, "-c", script, "sh", err.name],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        stderr = err.read()
    first, status = result.stdout.splitlines()
    assert first and not first.startswith("status=")
    assert status == "status=1"
    assert stderr == ""


def test_a_program_the_verifier_rejects_is_its_reason_and_with_v_its_whole_log(capsys):
    """A generated tp_btf program broken on purpose (it returns R2, which no one set) goes through
    the runner's load and the CLI's error report as a real rejection would: one line with the
    verifier's own reason; with -v the whole log from this kernel's verifier above it."""
    import contextlib
    import dataclasses

    import click

    from bpf.codegen import generate_all
    from bpf.insn import exit_, mov64_reg
    from bpf.maps import create_maps
    from bpf.plan import Filters
    from ksnoop.cli import _reported_errors
    from ksnoop.errors import VerifierRejected
    from ksnoop.run.runner import load_generated
    from ksnoop.spec.language import parse_spec
    from ksnoop.spec.resolve import resolve
    from ksnoop.spec.targets import KernelBTF

    if os.geteuid() != 0:
        pytest.skip("loading BPF programs needs root")
    resolved = resolve([parse_spec("tp:sys_enter(id)")], KernelBTF.load(), Filters())
    (program,) = generate_all(resolved.plan)
    broken = dataclasses.replace(program, insns=(mov64_reg(0, 2), exit_()), map_slots=())
    with contextlib.ExitStack() as stack, pytest.raises(VerifierRejected) as rejected:
        load_generated(broken, create_maps(stack, [broken]).fds(0), "tp:sys_enter")
    assert "R2 !read_ok" in str(rejected.value) and "R2 !read_ok" in rejected.value.log
    for verbose in (0, 1):
        with pytest.raises(click.exceptions.Exit) as exited, _reported_errors(verbose):
            raise rejected.value
        assert exited.value.exit_code == 1
        lines = capsys.readouterr().err.splitlines()
        assert lines[-1].startswith("ksnoop: error: the kernel's verifier rejected the program for tp:sys_enter: ")
        assert lines[-1].endswith("R2 !read_ok (-v shows the program and the verifier's whole log)"), lines[-1]
        if verbose:  # the log as the kernel wrote it, statistics line included
            assert lines[0] == "ksnoop: the verifier's log:" and any(line.startswith("processed ") for line in lines)
            assert len(lines) == 2 + len(rejected.value.log.rstrip("\n").splitlines())
        else:
            assert len(lines) == 1


def test_vv_turns_the_debug_logs_on_and_v_alone_does_not():
    if os.geteuid() != 0:
        pytest.skip("tracing needs root")
    for verbose, debug in (("-v", False), ("-vv", True)):
        result = ksnoop("trace", verbose, "-q", "-n", "1", "tp:sys_enter(id)")
        assert result.returncode == 0, result.stderr
        assert "probe tp_btf:sys_enter" in result.stderr  # the plan, with -v and -vv alike
        said = "ksnoop: debug: ksnoop.run.runner: 1 programs attached in " in result.stderr
        assert said is debug, result.stderr
