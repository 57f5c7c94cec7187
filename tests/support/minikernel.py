# SPDX-License-Identifier: GPL-2.0-only
"""A canned mini kernel in BTF for unit tests: sk_buff, net_device, a tracepoint, odd functions.

`build()` returns (blob, ids) where ids maps names (see each ids[...] line) to type ids;
`build_module()` makes split BTF for a module on top of `make_builder()`. Type names, FUNC linkage and the
tracepoint's three-part layout copy what pahole writes into a real x86-64 vmlinux.
"""

from __future__ import annotations

from btf.uapi import FuncLinkage, VarLinkage

from .btfbuilder import BTFBuilder

MODULE_NAME = "nf_minimod"


def make_builder(task_exit: bool = False) -> tuple[BTFBuilder, dict[str, int]]:
    """The mini kernel as a builder, so a split module can be built on it; with `task_exit`, also the
    sched_process_exit tracepoint call-path mode needs (last, so the other ids stay put)."""
    b = BTFBuilder()
    ids: dict[str, int] = {}
    static = FuncLinkage.STATIC  # every FUNC in vmlinux BTF is static, as pahole writes them

    # Base types under the names gcc's DWARF gives them; pahole sets no encoding on "char".
    ids["int"] = b.int_("int", 4, signed=True)
    ids["unsigned int"] = b.int_("unsigned int", 4)
    ids["char"] = b.int_("char", 1)
    ids["unsigned char"] = b.int_("unsigned char", 1)
    ids["short unsigned int"] = b.int_("short unsigned int", 2)
    ids["long int"] = b.int_("long int", 8, signed=True)
    ids["long unsigned int"] = b.int_("long unsigned int", 8)
    ids["_Bool"] = b.int_("_Bool", 1, bool_=True)
    ids["double"] = b.float_("double", 8)
    ids["bool"] = b.typedef("bool", ids["_Bool"])
    ids["__u8"] = b.typedef("__u8", ids["unsigned char"])
    ids["__u16"] = b.typedef("__u16", ids["short unsigned int"])
    ids["u32"] = b.typedef("u32", ids["unsigned int"])

    ids["void *"] = b.ptr(0)
    ids["char *"] = b.ptr(ids["char"])
    ids["const char"] = b.const(ids["char"])
    ids["const char *"] = b.ptr(ids["const char"])
    # pahole puts type tags right after the pointer: PTR -> TYPE_TAG -> CONST -> char.
    ids["type_tag user"] = b.type_tag("user", ids["const char"])
    ids["const char __user *"] = b.ptr(ids["type_tag user"])
    ids["unsigned char *"] = b.ptr(ids["unsigned char"])
    ids["char[16]"] = b.array(ids["char"], 16, ids["int"])
    ids["char[48]"] = b.array(ids["char"], 48, ids["int"])  # vmlinux arrays index with "int"

    ids["struct sock"] = b.fwd("sock")
    ids["struct sock *"] = b.ptr(ids["struct sock"])

    # struct list_head { struct list_head *next, *prev; };  size 16
    ids["struct list_head"] = b.reserve()
    ids["struct list_head *"] = b.ptr(ids["struct list_head"])
    b.struct(
        "list_head",
        16,
        [("next", ids["struct list_head *"], 0), ("prev", ids["struct list_head *"], 64)],
        at=ids["struct list_head"],
    )

    # struct net_device { char name[16]; int ifindex; };  size 24
    ids["struct net_device"] = b.struct("net_device", 24, [("name", ids["char[16]"], 0), ("ifindex", ids["int"], 128)])
    ids["struct net_device *"] = b.ptr(ids["struct net_device"])

    # struct net { unsigned int hash_mix; int ifindex; };  size 8
    ids["struct net"] = b.struct("net", 8, [("hash_mix", ids["unsigned int"], 0), ("ifindex", ids["int"], 32)])
    ids["struct net *"] = b.ptr(ids["struct net"])

    # struct sk_buff {                                    bytes  bits
    #     union {
    #         struct { struct sk_buff *next, *prev; };     0      0, 64
    #         struct list_head list;                       0      0
    #     };
    #     struct sock *sk;                                 16     128
    #     struct net_device *dev;                          24     192
    #     char cb[48];                                     32     256
    #     unsigned int len;                                80     640
    #     __u8 pkt_type:3, ignore_df:1, cloned:1;          84     672, 675, 676
    #     __u16 protocol;                                  86     688
    #     void (*destructor)(struct sk_buff *);            88     704
    #     unsigned char *data;                             96     768
    # };                                                   size 104
    ids["struct sk_buff"] = b.reserve()
    ids["struct sk_buff *"] = b.ptr(ids["struct sk_buff"])
    ids["sk_buff anon struct"] = b.struct(
        "", 16, [("next", ids["struct sk_buff *"], 0), ("prev", ids["struct sk_buff *"], 64)]
    )
    ids["sk_buff anon union"] = b.union(
        "", 16, [("", ids["sk_buff anon struct"], 0), ("list", ids["struct list_head"], 0)]
    )
    ids["destructor proto"] = b.func_proto(0, [("", ids["struct sk_buff *"])])
    ids["void (*)(struct sk_buff *)"] = b.ptr(ids["destructor proto"])
    b.struct(
        "sk_buff",
        104,
        [
            ("", ids["sk_buff anon union"], 0),
            ("sk", ids["struct sock *"], 128),
            ("dev", ids["struct net_device *"], 192),
            ("cb", ids["char[48]"], 256),
            ("len", ids["unsigned int"], 640),
            ("pkt_type", ids["__u8"], 672, 3),
            ("ignore_df", ids["__u8"], 675, 1),
            ("cloned", ids["__u8"], 676, 1),
            ("protocol", ids["__u16"], 688),
            ("destructor", ids["void (*)(struct sk_buff *)"], 704),
            ("data", ids["unsigned char *"], 768),
        ],
        at=ids["struct sk_buff"],
    )

    ids["enum skb_drop_reason"] = b.enum(
        "skb_drop_reason",
        4,
        [
            ("SKB_NOT_DROPPED_YET", 0),
            ("SKB_CONSUMED", 1),
            ("SKB_DROP_REASON_NOT_SPECIFIED", 2),
            ("SKB_DROP_REASON_NO_SOCKET", 3),
        ],
    )
    ids["enum mini_flags64"] = b.enum64(
        "mini_flags64", 8, [("MINI_F_LOW", 1), ("MINI_F_HIGH", 1 << 40), ("MINI_F_ALL", (1 << 64) - 1)]
    )

    # int seven_args(int a, long b, char c, unsigned long d, struct sk_buff *e, const char *f, u32 g)
    ids["seven_args proto"] = b.func_proto(
        ids["int"],
        [
            ("a", ids["int"]),
            ("b", ids["long int"]),
            ("c", ids["char"]),
            ("d", ids["long unsigned int"]),
            ("e", ids["struct sk_buff *"]),
            ("f", ids["const char *"]),
            ("g", ids["u32"]),
        ],
    )
    ids["seven_args"] = b.func("seven_args", ids["seven_args proto"], static)

    ids["ip_send_skb proto"] = b.func_proto(
        ids["int"], [("net", ids["struct net *"]), ("skb", ids["struct sk_buff *"])]
    )
    ids["ip_send_skb"] = b.func("ip_send_skb", ids["ip_send_skb proto"], static)
    ids["decl_tag bpf_kfunc"] = b.decl_tag("bpf_kfunc", ids["ip_send_skb"])

    ids["noargs proto"] = b.func_proto(0, [])
    ids["noargs"] = b.func("noargs", ids["noargs proto"], static)

    ids["printk proto"] = b.func_proto(ids["int"], [("fmt", ids["const char *"])], variadic=True)
    ids["printk"] = b.func("printk", ids["printk proto"], static)

    # long strncpy_from_user(char *dst, const char __user *src, long count)
    ids["strncpy_from_user proto"] = b.func_proto(
        ids["long int"],
        [("dst", ids["char *"]), ("src", ids["const char __user *"]), ("count", ids["long int"])],
    )
    ids["strncpy_from_user"] = b.func("strncpy_from_user", ids["strncpy_from_user proto"], static)

    # A tracepoint as the kernel describes it: the typedef's params have no names, so
    # tools take them from __probestub_* (void) or __traceiter_* (int), which do.
    ids["btf_trace_net_dev_queue proto"] = b.func_proto(0, [("", ids["void *"]), ("", ids["struct sk_buff *"])])
    ids["btf_trace_net_dev_queue *"] = b.ptr(ids["btf_trace_net_dev_queue proto"])
    ids["btf_trace_net_dev_queue"] = b.typedef("btf_trace_net_dev_queue", ids["btf_trace_net_dev_queue *"])
    ids["__probestub_net_dev_queue proto"] = b.func_proto(
        0, [("__data", ids["void *"]), ("skb", ids["struct sk_buff *"])]
    )
    ids["__probestub_net_dev_queue"] = b.func(
        "__probestub_net_dev_queue", ids["__probestub_net_dev_queue proto"], static
    )
    ids["__traceiter_net_dev_queue proto"] = b.func_proto(
        ids["int"], [("__data", ids["void *"]), ("skb", ids["struct sk_buff *"])]
    )
    ids["__traceiter_net_dev_queue"] = b.func(
        "__traceiter_net_dev_queue", ids["__traceiter_net_dev_queue proto"], static
    )

    # volatile unsigned long jiffies; in .data
    ids["volatile long unsigned int"] = b.volatile(ids["long unsigned int"])
    ids["jiffies"] = b.var("jiffies", ids["volatile long unsigned int"], VarLinkage.GLOBAL_ALLOCATED)
    ids[".data"] = b.datasec(".data", 8, [(ids["jiffies"], 0, 8)])
    if not task_exit:
        return b, ids
    ids["btf_trace_sched_process_exit proto"] = b.func_proto(0, [("", ids["void *"]), ("", ids["void *"])])
    ids["btf_trace_sched_process_exit *"] = b.ptr(ids["btf_trace_sched_process_exit proto"])
    ids["btf_trace_sched_process_exit"] = b.typedef(
        "btf_trace_sched_process_exit", ids["btf_trace_sched_process_exit *"]
    )
    ids["__probestub_sched_process_exit proto"] = b.func_proto(0, [("__data", ids["void *"]), ("p", ids["void *"])])
    ids["__probestub_sched_process_exit"] = b.func(
        "__probestub_sched_process_exit", ids["__probestub_sched_process_exit proto"], static
    )
    return b, ids


def build(byteorder: str = "little", task_exit: bool = False) -> tuple[bytes, dict[str, int]]:
    """The mini kernel as a BTF blob, and its name -> id map."""
    builder, ids = make_builder(task_exit)
    return builder.to_bytes(byteorder), ids


def build_module(base: BTFBuilder, base_ids: dict[str, int], byteorder: str = "little") -> tuple[bytes, dict[str, int]]:
    """Split BTF for module nf_minimod on `base`, `base_ids`, both from make_builder().

    int mini_hook(struct sk_buff *skb) uses the base's int and sk_buff pointer (and its
    string "skb"); struct nf_minimod_state and mini_state_get() bring new strings.
    """
    m = BTFBuilder(base=base)
    ids: dict[str, int] = {}
    ids["mini_hook proto"] = m.func_proto(base_ids["int"], [("skb", base_ids["struct sk_buff *"])])
    ids["mini_hook"] = m.func("mini_hook", ids["mini_hook proto"], FuncLinkage.STATIC)
    ids["struct nf_minimod_state"] = m.struct(
        "nf_minimod_state",
        16,
        [("skb", base_ids["struct sk_buff *"], 0), ("hook_calls", base_ids["unsigned int"], 64)],
    )
    ids["struct nf_minimod_state *"] = m.ptr(ids["struct nf_minimod_state"])
    ids["mini_state_get proto"] = m.func_proto(ids["struct nf_minimod_state *"], [("hooknum", base_ids["int"])])
    ids["mini_state_get"] = m.func("mini_state_get", ids["mini_state_get proto"], FuncLinkage.STATIC)
    return m.to_bytes(byteorder), ids
