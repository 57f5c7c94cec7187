# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.spec.iter_targets over synthetic BTF (tests/support/miniiter.py): which targets exist, what their
contexts give, which member is the object, which parameters they take, and how they are named."""

from __future__ import annotations

import pytest

from btf import BTF
from ksnoop.errors import UnknownTarget
from ksnoop.spec.iter_targets import (
    IterTargets,
    ParamKind,
    link_info_of,
    no_iterators_reason,
    signature_json,
    signature_text,
)
from ksnoop.spec.targets import KernelBTF, TargetKind
from tests.support import minikernel, miniiter


@pytest.fixture(scope="module")
def iters() -> IterTargets:
    return IterTargets(miniiter.kernel())


def test_targets_are_funcs_with_a_context(iters: IterTargets) -> None:
    # Not bpf_iter__task__safe_trusted (no FUNC), bpf_iter_num_new (no context) nor crooked (slots off).
    assert sorted(iters.all()) == sorted(miniiter.TARGETS)


def test_a_target_attaches_to_its_func_and_names_its_members(iters: IterTargets) -> None:
    task_file = iters.find("task_file")
    target = task_file.target
    assert target.kind is TargetKind.ITER and target.label == "dump:task_file"
    assert target.attach_btf_id == miniiter.IDS["bpf_iter_task_file"]
    assert task_file.context_id == miniiter.IDS["struct bpf_iter__task_file"]
    # meta first, so that argument k is u64 slot k of the context; the spec sees the rest.
    assert [a.name for a in target.args] == ["meta", "task", "fd", "file"]
    assert [a.name for a in task_file.members] == ["task", "fd", "file"]
    btf = target.btf
    assert [btf.type_name(a.type_id) for a in task_file.members] == ["struct task_struct *", "u32", "struct file *"]


@pytest.mark.parametrize(
    "name,obj,params",
    [
        ("task", "task", ParamKind.TASK),
        ("task_file", "file", ParamKind.TASK),  # the file, which the stop call lacks; the task is its owner
        ("bpf_map_elem", "key", ParamKind.MAP),  # the map stays set in the stop call; every element has a key
        ("cgroup", "cgroup", ParamKind.CGROUP),
        ("tcp", "sk_common", None),  # uid, a scalar, comes after the object
    ],
)
def test_object_and_parameters(iters: IterTargets, name: str, obj: str, params: ParamKind | None) -> None:
    target = iters.find(name)
    assert target.object_name == obj
    assert target.params is params


def test_the_dump_prefix_is_optional(iters: IterTargets) -> None:
    assert iters.find("dump:task") == iters.find("task")


def test_unknown_target_suggests_the_closest(iters: IterTargets) -> None:
    with pytest.raises(UnknownTarget) as err:
        iters.find("taks_file")
    assert err.value.suggestions[0] == "task_file"
    assert "no iterator target 'taks_file'" in str(err.value)


def test_a_name_like_nothing_lists_every_target(iters: IterTargets) -> None:
    with pytest.raises(UnknownTarget) as err:
        iters.find("xyzzy")
    assert sorted(err.value.suggestions) == sorted(miniiter.TARGETS)


def test_glob(iters: IterTargets) -> None:
    assert [t.name for t in iters.glob("dump:task*")] == ["task", "task_file"]
    assert [t.name for t in iters.glob("*")] == sorted(miniiter.TARGETS)
    assert iters.glob("dump:nothing*") == []


def test_link_info_fields_and_cgroup_orders(iters: IterTargets) -> None:
    info = iters.link_info
    assert info.has("task", "pid") and info.has("task", "tid") and info.has("map", "map_fd")
    assert info.has("cgroup", "cgroup_id") and not info.has("task", "tgid")
    assert info.cgroup_orders == ("self-only", "descendants-pre", "descendants-post", "ancestors-up")


def test_a_kernel_without_iterators() -> None:
    blob, _ = minikernel.build()
    btf = BTF.from_bytes(blob)
    iters = IterTargets(KernelBTF(btf, []))
    assert iters.all() == {}
    assert "no BPF iterators" in no_iterators_reason(btf)
    with pytest.raises(UnknownTarget, match="no BPF iterators"):
        iters.find("task")
    assert link_info_of(btf).members == {}


def test_signature_text_and_json(iters: IterTargets) -> None:
    info = iters.link_info
    assert signature_text(iters.find("task_file"), info) == (
        "dump:task_file(struct task_struct *task, u32 fd, struct file *file); /* options: --pid PID, --tid TID */"
    )
    assert signature_text(iters.find("tcp"), info) == "dump:tcp(struct sock_common *sk_common, uid_t uid);"
    assert signature_text(iters.find("bpf_map_elem"), info).endswith("/* options: --map-id ID (required) */")
    assert signature_json(iters.find("task_file"), info) == {
        "name": "task_file",
        "kind": "iter",
        "module": "vmlinux",
        "params": [
            {"name": "task", "type": "struct task_struct *"},
            {"name": "fd", "type": "u32"},
            {"name": "file", "type": "struct file *"},
        ],
        "object": "file",
        "options": ["--pid", "--tid"],
        "refused": None,
    }
    # The synthetic BTF is not the running kernel's: nothing is put to the kernel about it.
    assert iters.refusal(iters.find("bpf_map_elem")) == ""
    refused = "EPERM before verification"
    assert signature_text(iters.find("tcp"), info, refused) == (
        "dump:tcp(struct sock_common *sk_common, uid_t uid); /* refused by this kernel: EPERM before verification */"
    )
    assert signature_json(iters.find("tcp"), info, refused)["refused"] == refused
