# SPDX-License-Identifier: GPL-2.0-only
"""The mini kernel plus BPF iterators, as the kernel's BTF describes them: for `dump` unit tests.

On top of minikernel.make_builder(): struct bpf_iter_meta, the contexts struct bpf_iter__<target>
(pointers wrapped in the anonymous `__bpf_md_ptr` unions, scalars `__aligned(8)`) with their
FUNCs bpf_iter_<target>(meta, ...), union bpf_iter_link_info and enum bpf_cgroup_iter_order, and
decoys that are not targets: a context without a FUNC (the verifier's
bpf_iter__task__safe_trusted), open-coded iterator kfuncs (bpf_iter_num_new) and a context whose
members are not one per u64 slot. Layouts are in the comments (bytes).
"""

from __future__ import annotations

from btf import BTF
from btf.uapi import FuncLinkage
from ksnoop.spec.targets import KernelBTF

from . import minikernel
from .btfbuilder import BTFBuilder

TARGETS = ("bpf_map_elem", "cgroup", "task", "task_file", "tcp")


def build(byteorder: str = "little") -> tuple[bytes, dict[str, int]]:
    b, ids = minikernel.make_builder()
    static = FuncLinkage.STATIC
    ulong, u32, char16 = ids["long unsigned int"], ids["u32"], ids["char[16]"]
    ids["u64"] = b.typedef("u64", ulong)
    ids["__u32"] = b.typedef("__u32", ids["unsigned int"])
    ids["__u64"] = b.typedef("__u64", ulong)
    ids["uid_t"] = b.typedef("uid_t", ids["unsigned int"])
    ids["pid_t"] = b.typedef("pid_t", ids["int"])
    ids["const unsigned char"] = b.const(ids["unsigned char"])
    ids["const unsigned char *"] = b.ptr(ids["const unsigned char"])
    ids["const u8"] = b.const(ids["__u8"])
    ids["const u8 *"] = b.ptr(ids["const u8"])

    # struct mm_struct { unsigned long total_vm; };                          8
    ids["struct mm_struct"] = b.struct("mm_struct", 8, [("total_vm", ulong, 0)])
    ids["struct mm_struct *"] = b.ptr(ids["struct mm_struct"])
    # struct task_struct { pid_t pid; pid_t tgid; char comm[16];             0 4 8
    #     struct mm_struct *mm; struct task_struct *real_parent; };         24 32; size 40
    ids["struct task_struct"] = b.reserve()
    ids["struct task_struct *"] = b.ptr(ids["struct task_struct"])
    b.struct(
        "task_struct",
        40,
        [
            ("pid", ids["pid_t"], 0),
            ("tgid", ids["pid_t"], 32),
            ("comm", char16, 64),
            ("mm", ids["struct mm_struct *"], 192),
            ("real_parent", ids["struct task_struct *"], 256),
        ],
        at=ids["struct task_struct"],
    )
    # struct qstr { u32 hash; const unsigned char *name; };   0 8; size 16
    ids["struct qstr"] = b.struct("qstr", 16, [("hash", u32, 0), ("name", ids["const unsigned char *"], 64)])
    # struct dentry { struct qstr d_name; };                   size 16
    ids["struct dentry"] = b.struct("dentry", 16, [("d_name", ids["struct qstr"], 0)])
    ids["struct dentry *"] = b.ptr(ids["struct dentry"])
    # struct path { void *mnt; struct dentry *dentry; };       0 8; size 16
    ids["struct path"] = b.struct("path", 16, [("mnt", ids["void *"], 0), ("dentry", ids["struct dentry *"], 64)])
    # struct file { unsigned int f_flags; struct path f_path; const u8 *f_bytes; };   0 8 24; size 32
    ids["struct file"] = b.struct(
        "file",
        32,
        [
            ("f_flags", ids["unsigned int"], 0),
            ("f_path", ids["struct path"], 64),
            ("f_bytes", ids["const u8 *"], 192),
        ],
    )
    ids["struct file *"] = b.ptr(ids["struct file"])
    # struct bpf_map { u32 id; char name[16]; u32 key_size; u32 value_size; };   0 4 20 24; size 28
    ids["struct bpf_map"] = b.struct(
        "bpf_map",
        28,
        [
            ("id", u32, 0),
            ("name", char16, 32),
            ("key_size", u32, 160),
            ("value_size", u32, 192),
        ],
    )
    ids["struct bpf_map *"] = b.ptr(ids["struct bpf_map"])
    # struct cgroup { u64 id; int level; };                    0 8; size 16
    ids["struct cgroup"] = b.struct("cgroup", 16, [("id", ids["u64"], 0), ("level", ids["int"], 64)])
    ids["struct cgroup *"] = b.ptr(ids["struct cgroup"])
    # struct sock_common { unsigned int skc_daddr; short unsigned int skc_num; };   0 4; size 8
    ids["struct sock_common"] = b.struct(
        "sock_common",
        8,
        [
            ("skc_daddr", ids["unsigned int"], 0),
            ("skc_num", ids["short unsigned int"], 32),
        ],
    )
    ids["struct sock_common *"] = b.ptr(ids["struct sock_common"])
    # struct big_thing { char blob[4096]; } is too large to copy whole.
    ids["unsigned char[4096]"] = b.array(ids["unsigned char"], 4096, ids["int"])
    ids["struct big_thing"] = b.struct("big_thing", 4096, [("blob", ids["unsigned char[4096]"], 0)])

    # struct bpf_iter_meta { __bpf_md_ptr(struct seq_file *, seq); u64 session_id; u64 seq_num; };
    ids["struct seq_file"] = b.fwd("seq_file")
    ids["struct seq_file *"] = b.ptr(ids["struct seq_file"])
    ids["u64:64"] = b.int_("long long unsigned int", 8)
    seq_union = _md_ptr(b, "seq", ids["struct seq_file *"], ids["u64:64"])
    ids["struct bpf_iter_meta"] = b.struct(
        "bpf_iter_meta",
        24,
        [
            ("", seq_union, 0),
            ("session_id", ids["u64"], 64),
            ("seq_num", ids["u64"], 128),
        ],
    )
    ids["struct bpf_iter_meta *"] = b.ptr(ids["struct bpf_iter_meta"])
    meta = ("meta", ids["struct bpf_iter_meta *"])
    pointers = {type_id for name, type_id in ids.items() if name.endswith("*")}

    def target(name: str, members: list[tuple[str, int]], *, offsets: list[int] | None = None) -> None:
        """struct bpf_iter__<name> { meta; members... } (a u64 slot each) and FUNC bpf_iter_<name>."""
        fields = [meta, *members]
        layout = []
        for k, (member, type_id) in enumerate(fields):
            bit = 64 * k if offsets is None else offsets[k]
            if type_id in pointers:
                layout.append(("", _md_ptr(b, member, type_id, ids["u64:64"]), bit))
            else:
                layout.append((member, type_id, bit))
        ids[f"struct bpf_iter__{name}"] = b.struct(f"bpf_iter__{name}", 8 * len(fields), layout)
        proto = b.func_proto(ids["int"], fields)
        ids[f"bpf_iter_{name}"] = b.func(f"bpf_iter_{name}", proto, static)

    target("task", [("task", ids["struct task_struct *"])])
    target("task_file", [("task", ids["struct task_struct *"]), ("fd", u32), ("file", ids["struct file *"])])
    target("bpf_map_elem", [("map", ids["struct bpf_map *"]), ("key", ids["void *"]), ("value", ids["void *"])])
    target("cgroup", [("cgroup", ids["struct cgroup *"])])
    target("tcp", [("sk_common", ids["struct sock_common *"]), ("uid", ids["uid_t"])])
    # Not targets: a context with no FUNC, a FUNC with no context, a context not one member per slot.
    b.struct(
        "bpf_iter__task__safe_trusted",
        16,
        [("meta", ids["struct bpf_iter_meta *"], 0), ("task", ids["struct task_struct *"], 64)],
    )
    b.func("bpf_iter_num_new", b.func_proto(ids["int"], [("it", ids["void *"])]), static)
    target("crooked", [("fd", u32), ("task", ids["struct task_struct *"])], offsets=[0, 64, 96])

    # union bpf_iter_link_info and enum bpf_cgroup_iter_order, as in v6.1+.
    ids["enum bpf_cgroup_iter_order"] = b.enum(
        "bpf_cgroup_iter_order",
        4,
        [
            ("BPF_CGROUP_ITER_ORDER_UNSPEC", 0),
            ("BPF_CGROUP_ITER_SELF_ONLY", 1),
            ("BPF_CGROUP_ITER_DESCENDANTS_PRE", 2),
            ("BPF_CGROUP_ITER_DESCENDANTS_POST", 3),
            ("BPF_CGROUP_ITER_ANCESTORS_UP", 4),
        ],
    )
    link_map = b.struct("", 4, [("map_fd", ids["__u32"], 0)])
    link_cgroup = b.struct(
        "",
        16,
        [
            ("order", ids["enum bpf_cgroup_iter_order"], 0),
            ("cgroup_fd", ids["__u32"], 32),
            ("cgroup_id", ids["__u64"], 64),
        ],
    )
    link_task = b.struct("", 12, [("tid", ids["__u32"], 0), ("pid", ids["__u32"], 32), ("pid_fd", ids["__u32"], 64)])
    ids["union bpf_iter_link_info"] = b.union(
        "bpf_iter_link_info",
        16,
        [
            ("map", link_map, 0),
            ("cgroup", link_cgroup, 0),
            ("task", link_task, 0),
        ],
    )
    return b.to_bytes(byteorder), ids


def _md_ptr(b: BTFBuilder, name: str, ptr_id: int, u64_id: int) -> int:
    """union { type *name; __u64 :64; } __aligned(8): the kernel's __bpf_md_ptr(type, name)."""
    return b.union("", 8, [(name, ptr_id, 0), ("", u64_id, 0)])


_BLOB, IDS = build()


def blob() -> bytes:
    return _BLOB


def kernel() -> KernelBTF:
    return KernelBTF(BTF.from_bytes(_BLOB), [])
