# SPDX-License-Identifier: GPL-2.0-only
"""btf/cdecl.py: C declarations written as kernel sources and bpftool's `format c` write them."""

from __future__ import annotations

import pytest

from btf import BTF
from btf.cdecl import base_name, declaration, function_declaration
from tests.support.btfbuilder import BTFBuilder


@pytest.mark.parametrize(
    "key, name, text",
    [
        ("struct net *", "net", "struct net *net"),
        ("struct net *", "", "struct net *"),
        ("const char *", "fmt", "const char *fmt"),
        ("const char *", "", "const char *"),
        ("const char __user *", "src", "const char __user *src"),
        ("const char __user *", "", "const char __user *"),
        ("void (*)(struct sk_buff *)", "cb", "void (*cb)(struct sk_buff *)"),
        ("void (*)(struct sk_buff *)", "", "void (*)(struct sk_buff *)"),
        ("char[16]", "name", "char name[16]"),
        ("char[16]", "", "char[16]"),
        ("u32", "g", "u32 g"),
        ("void *", "", "void *"),
        ("struct sock *", "sk", "struct sock *sk"),
        ("enum skb_drop_reason", "reason", "enum skb_drop_reason reason"),
        ("enum mini_flags64", "", "enum mini_flags64"),
        ("volatile long unsigned int", "", "volatile long unsigned int"),
        ("sk_buff anon union", "", "union {...}"),
        ("sk_buff anon struct", "", "struct {...}"),
        ("btf_trace_net_dev_queue", "", "btf_trace_net_dev_queue"),
        ("btf_trace_net_dev_queue *", "", "void (*)(void *, struct sk_buff *)"),
        ("jiffies", "", "volatile long unsigned int jiffies"),
        ("long unsigned int", "d", "long unsigned int d"),
    ],
)
def test_minikernel_declarations(kernel, key, name, text):
    btf, ids = kernel
    assert btf.decl(ids[key], name) == text


def test_void(mini):
    btf, _ = mini
    assert btf.decl(0) == "void"
    assert btf.decl(0, "x") == "void x"
    assert btf.type_name(0) == "void"


@pytest.mark.parametrize(
    "key, text",
    [
        ("ip_send_skb", "int ip_send_skb(struct net *net, struct sk_buff *skb)"),
        ("noargs", "void noargs(void)"),
        ("printk", "int printk(const char *fmt, ...)"),
        (
            "seven_args",
            "int seven_args(int a, long int b, char c, long unsigned int d, struct sk_buff *e, const char *f, u32 g)",
        ),
        (
            "strncpy_from_user",
            "long int strncpy_from_user(char *dst, const char __user *src, long int count)",
        ),
        ("__probestub_net_dev_queue", "void __probestub_net_dev_queue(void *__data, struct sk_buff *skb)"),
        ("__traceiter_net_dev_queue", "int __traceiter_net_dev_queue(void *__data, struct sk_buff *skb)"),
    ],
)
def test_function_signatures(kernel, key, text):
    btf, ids = kernel
    func = btf.type_by_id(ids[key])
    assert btf.signature(func) == text
    assert btf.decl(ids[key]) == text


def test_protos_without_a_name(mini):
    btf, ids = mini
    assert btf.decl(ids["noargs proto"]) == "void (void)"
    assert btf.decl(ids["printk proto"], "p") == "int p(const char *fmt, ...)"


@pytest.fixture(scope="module")
def odd():
    """Declarators that the mini kernel lacks."""
    b = BTFBuilder()
    ids = {}
    ids["int"] = b.int_("int", 4, signed=True)
    ids["char"] = b.int_("char", 1)
    ids["char *"] = b.ptr(ids["char"])
    ids["char * const"] = b.const(ids["char *"])
    ids["const char"] = b.const(ids["char"])
    ids["const char *"] = b.ptr(ids["const char"])
    ids["const char * const"] = b.const(ids["const char *"])
    ids["char **"] = b.ptr(ids["char *"])
    ids["char * const *"] = b.ptr(ids["char * const"])
    ids["char *[4]"] = b.array(ids["char *"], 4, ids["int"])
    ids["int[4]"] = b.array(ids["int"], 4, ids["int"])
    ids["int (*)[4]"] = b.ptr(ids["int[4]"])
    ids["int (*[2])[4]"] = b.array(ids["int (*)[4]"], 2, ids["int"])
    ids["int[3][4]"] = b.array(ids["int[4]"], 3, ids["int"])
    ids["void (int)"] = b.func_proto(0, [("", ids["int"])])
    ids["void (*)(int)"] = b.ptr(ids["void (int)"])
    ids["void (**)(int)"] = b.ptr(ids["void (*)(int)"])
    ids["void (*[2])(int)"] = b.array(ids["void (*)(int)"], 2, ids["int"])
    ids["sighandler_t"] = b.typedef("sighandler_t", ids["void (*)(int)"])
    ids["signal proto"] = b.func_proto(ids["void (*)(int)"], [("sig", ids["int"]), ("handler", ids["sighandler_t"])])
    ids["signal"] = b.func("signal", ids["signal proto"])
    ids["void (*(*)(int))(int)"] = b.ptr(b.func_proto(ids["void (*)(int)"], [("", ids["int"])]))
    ids["char *(void)"] = b.func_proto(ids["char *"], [])
    ids["char *(*)(void)"] = b.ptr(ids["char *(void)"])
    ids["const volatile int"] = b.const(b.volatile(ids["int"]))
    ids["char * restrict"] = b.restrict(ids["char *"])
    ids["union u"] = b.fwd("u", union=True)
    ids["union u *"] = b.ptr(ids["union u"])
    ids["int __percpu *"] = b.ptr(b.type_tag("percpu", ids["int"]))
    ids["int (...)"] = b.func_proto(ids["int"], [], variadic=True)
    ids["run proto"] = b.func_proto(
        ids["int"], [("cb", ids["void (*)(int)"]), ("arg", b.ptr(0)), ("", ids["char * const"])]
    )
    ids["run"] = b.func("run", ids["run proto"])
    ids["const void *"] = b.ptr(b.const(0))
    ids["const int[4]"] = b.array(ids["const volatile int"], 4, ids["int"])
    return BTF.from_bytes(b.to_bytes()), ids


@pytest.mark.parametrize(
    "key, name, text",
    [
        ("char * const", "p", "char * const p"),
        ("char * const", "", "char * const"),
        ("const char * const", "p", "const char * const p"),
        ("char **", "pp", "char **pp"),
        ("char **", "", "char **"),
        ("char * const *", "p", "char * const *p"),
        ("char *[4]", "argv", "char *argv[4]"),
        ("char *[4]", "", "char *[4]"),
        ("int (*)[4]", "rows", "int (*rows)[4]"),
        ("int (*)[4]", "", "int (*)[4]"),
        ("int (*[2])[4]", "v", "int (*v[2])[4]"),
        ("int[3][4]", "grid", "int grid[3][4]"),
        ("int[3][4]", "", "int[3][4]"),
        ("void (*)(int)", "handler", "void (*handler)(int)"),
        ("void (**)(int)", "pp", "void (**pp)(int)"),
        ("void (*[2])(int)", "handlers", "void (*handlers[2])(int)"),
        ("sighandler_t", "h", "sighandler_t h"),
        ("signal", "", "void (*signal(int sig, sighandler_t handler))(int)"),
        ("void (*(*)(int))(int)", "get", "void (*(*get)(int))(int)"),
        ("void (*(*)(int))(int)", "", "void (*(*)(int))(int)"),
        ("char *(*)(void)", "getter", "char *(*getter)(void)"),
        ("char *(void)", "", "char *(void)"),
        ("const volatile int", "x", "const volatile int x"),
        ("char * restrict", "dst", "char * restrict dst"),
        ("union u *", "p", "union u *p"),
        ("int __percpu *", "p", "int __percpu *p"),
        ("int (...)", "f", "int f(...)"),
        ("run", "", "int run(void (*cb)(int), void *arg, char * const)"),
        ("const void *", "", "const void *"),
        ("const int[4]", "a", "const volatile int a[4]"),
    ],
)
def test_declarators(odd, key, name, text):
    btf, ids = odd
    assert declaration(btf, ids[key], name) == text


def test_function_declaration_from_parts(odd):
    btf, ids = odd
    assert function_declaration(btf, "f", ids["int"], []) == "int f(void)"
    assert function_declaration(btf, "f", ids["int"], [], variadic=True) == "int f(...)"
    assert (
        function_declaration(btf, "f", ids["char *"], [("a", ids["int"]), ("", ids["char **"])], variadic=True)
        == "char *f(int a, char **, ...)"
    )
    assert function_declaration(btf, "f", ids["void (*)(int)"], [("x", ids["int"])]) == "void (*f(int x))(int)"


def test_base_names(mini):
    btf, ids = mini
    assert base_name(btf.type_by_id(ids["struct sk_buff"])) == "struct sk_buff"
    assert base_name(btf.type_by_id(ids["struct sock"])) == "struct sock"
    assert base_name(btf.type_by_id(ids["enum mini_flags64"])) == "enum mini_flags64"
    assert base_name(btf.type_by_id(ids["u32"])) == "u32"
    assert base_name(btf.type_by_id(ids["double"])) == "double"
    assert base_name(btf.type_by_id(0)) == "void"


def test_declaration_loops_raise_btf_error():
    from btf import BTFError

    b = BTFBuilder()
    p = b.reserve()
    b.ptr(p, at=p)  # a pointer to itself
    a = b.reserve()
    b.array(b.ptr(a), 2, at=a)  # an array of pointers to itself
    btf = BTF.from_bytes(b.to_bytes())
    with pytest.raises(BTFError, match="nests too deeply"):
        btf.decl(p, "x")
    with pytest.raises(BTFError, match="nests too deeply"):
        btf.decl(a)
