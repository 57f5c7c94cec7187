# SPDX-License-Identifier: GPL-2.0-only
"""Where a kprobe reads arguments and return values: the calling convention table, resolved
against a struct pt_regs from BTF (x86-64's and arm64's, built here, and this machine's own when
it has BTF), and the arguments refused rather than guessed at."""

from __future__ import annotations

import os
from typing import List, Tuple

import pytest

from bpf.codegen import generate
from bpf.plan import ProbeKind
from btf import BTF
from ksnoop.spec.calling import CONVENTIONS, NoConvention, register_offsets, registers
from ksnoop.spec.language import SpecError, parse_spec
from ksnoop.spec.resolve import resolve
from ksnoop.spec.targets import KernelBTF
from tests.support.btfbuilder import BTFBuilder

X86_REGS = ["r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si", "di"]


def _kernel(arch: str) -> KernelBTF:
    """A kernel with its own struct pt_regs (x86-64's members in its order, or arm64's regs[31] in
    an anonymous union), and functions whose arguments exercise every rule."""
    b = BTFBuilder()
    u64 = b.int_("unsigned long", 8)
    s32 = b.int_("int", 4, signed=True)
    dbl = b.float_("double", 8)
    if arch == "x86_64":
        b.struct("pt_regs", 8 * (len(X86_REGS) + 6), [(name, u64, 64 * n) for n, name in enumerate(X86_REGS)])
    else:
        regs = b.array(u64, 31)
        inner = b.struct("", 8 * 34, [("regs", regs, 0), ("sp", u64, 64 * 31), ("pc", u64, 64 * 32)])
        user = b.struct("user_pt_regs", 8 * 34, [("regs", regs, 0), ("sp", u64, 64 * 31), ("pc", u64, 64 * 32)])
        both = b.union("", 8 * 34, [("user_regs", user, 0), ("", inner, 0)])
        b.struct("pt_regs", 8 * 40, [("", both, 0), ("orig_x0", u64, 64 * 34)])
    pair = b.struct("pair", 16, [("a", u64, 0), ("b", u64, 64)])
    ptr = b.ptr(pair)
    many = [(f"a{n}", u64) for n in range(9)]
    b.func("nine_args", b.func_proto(s32, many))
    b.func("by_value", b.func_proto(s32, [("p", ptr), ("v", pair), ("after", u64)]))
    b.func("floating", b.func_proto(dbl, [("x", u64), ("d", dbl), ("y", u64)]))
    b.func("returns_pair", b.func_proto(pair, [("p", ptr)]))
    return KernelBTF(BTF.from_bytes(b.to_bytes()), [])


def _offsets(arch: str) -> Tuple[List[int], int]:
    arguments, returned = register_offsets(_kernel(arch).vmlinux, arch)
    return list(arguments), returned


def test_x86_64_reads_di_si_dx_cx_r8_r9_and_ax() -> None:
    arguments, returned = _offsets("x86_64")
    assert arguments == [8 * X86_REGS.index(r) for r in ("di", "si", "dx", "cx", "r8", "r9")]
    assert returned == 8 * X86_REGS.index("ax")


def test_arm64_reads_x0_to_x7_and_x0_through_the_anonymous_union() -> None:
    arguments, returned = _offsets("aarch64")
    assert arguments == [8 * n for n in range(8)] and returned == 0
    assert CONVENTIONS["arm64"] is CONVENTIONS["aarch64"]


def test_an_architecture_with_no_convention_is_refused() -> None:
    with pytest.raises(NoConvention, match="on riscv64"):
        register_offsets(_kernel("x86_64").vmlinux, "riscv64")
    b = BTFBuilder()
    u64 = b.int_("unsigned long", 8)
    b.struct("pt_regs", 16, [("ip", u64, 0), ("sp", u64, 64)])
    with pytest.raises(NoConvention, match="struct pt_regs has no di"):
        register_offsets(BTF.from_bytes(b.to_bytes()), "x86_64")


@pytest.mark.parametrize("arch, held", [("x86_64", 6), ("aarch64", 8)])
def test_only_the_arguments_in_registers(arch: str, held: int) -> None:
    kernel = _kernel(arch)
    found = registers(kernel.find_target("nine_args"), arch)
    arguments, returned = register_offsets(kernel.vmlinux, arch)
    assert found.entry_offsets == (*arguments[:held], *[-1] * (9 - held))
    assert found.return_offsets == (*[-1] * 9, returned)
    assert sorted(found.refused) == [f"a{n}" for n in range(held, 9)]
    assert found.refused[f"a{held}"] == (
        f"it is argument {held + 1}, and a kprobe on {arch} sees only the first {held}, passed in registers "
        "(fentry reads them all)"
    )


def test_a_struct_or_float_by_value_and_what_follows_are_refused() -> None:
    kernel = _kernel("x86_64")
    found = registers(kernel.find_target("by_value"), "x86_64")
    assert set(found.refused) == {"v", "after"}
    assert found.refused["v"].startswith("it is a struct passed by value")
    assert found.refused["after"].startswith("it comes after 'v', passed by value")
    assert found.entry_offsets[0] >= 0 and found.entry_offsets[1:] == (-1, -1, -1)  # p; v's two slots; after
    found = registers(kernel.find_target("floating"), "x86_64")
    assert set(found.refused) == {"d", "y", "return"}
    assert "floating-point argument" in found.refused["d"]
    found = registers(kernel.find_target("returns_pair"), "x86_64")
    assert set(found.refused) == {"return"}


def _resolve(kernel: KernelBTF, text: str) -> object:
    return resolve([parse_spec(text)], kernel, function_kind=ProbeKind.KPROBE)


@pytest.mark.skipif(os.uname().machine not in CONVENTIONS, reason="no calling convention for this machine")
def test_the_resolver_refuses_by_name_and_leaves_out_of_the_defaults() -> None:
    kernel = _kernel(os.uname().machine)
    with pytest.raises(SpecError) as err:
        _resolve(kernel, "by_value(after > 1)")
    assert err.value.reason.startswith("a kprobe on by_value cannot read 'after': it comes after 'v'")
    assert err.value.position == len("by_value(")
    with pytest.raises(SpecError, match="cannot read 'return': a struct returned by value"):
        _resolve(kernel, "returns_pair(return)")
    resolved = _resolve(kernel, "by_value")  # every argument by default: those refused are left out, noted
    (entry,) = [p for p in resolved.plan.probes if p.kind is ProbeKind.KPROBE]  # type: ignore[attr-defined]
    assert [c.label for c in entry.captures] == ["p"]
    notes = resolved.notes  # type: ignore[attr-defined]
    assert any("'v' left out" in n for n in notes) and any("'after' left out" in n for n in notes), notes


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="reads x86-64's registers")
def test_kprobe_programs_read_the_registers() -> None:
    kernel = _kernel("x86_64")
    resolved = _resolve(kernel, "nine_args(a1 == 7, a0, return)")
    entry, ret = resolved.plan.probes  # type: ignore[attr-defined]
    assert (entry.kind, ret.kind) == (ProbeKind.KPROBE, ProbeKind.KRETPROBE)
    assert entry.context_offsets[:2] == (8 * X86_REGS.index("di"), 8 * X86_REGS.index("si"))
    assert ret.context_offsets[-1] == 8 * X86_REGS.index("ax")
    for index, probe in enumerate(resolved.plan.probes):  # type: ignore[attr-defined]
        program = generate(resolved.plan, index)  # type: ignore[attr-defined]
        assert program.kprobe_function == "nine_args" and program.retprobe == (probe is ret)
        assert program.attach_btf_id == 0
        loads = {insn.off for insn in program.insns if insn.code == 0x79 and insn.src == 6}  # r = *(u64 *)(ctx + off)
        wanted = {8 * X86_REGS.index("si"), 8 * X86_REGS.index("di")} if probe is entry else {8 * X86_REGS.index("ax")}
        assert loads == wanted, (probe.kind, sorted(loads))
