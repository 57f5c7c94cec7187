# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.run.describe: what `-v` says of trace, kernel-stack, summary and call-path plans resolved over
the mini kernel, and the resolver's notes, sanitised, on stderr."""

from __future__ import annotations

import dataclasses
import io

from bpf.codegen import Program, generate
from bpf.listing import format_insns
from ksnoop.run.describe import describe_plan, write_notes
from ksnoop.run.summary import count_calls
from ksnoop.spec.language import parse_spec
from ksnoop.spec.resolve import ResolvedTrace, resolve_path
from tests.support import records

IP_SEND_SKB, NOARGS, NET_DEV_QUEUE = (
    records.IDS["ip_send_skb"],
    records.IDS["noargs"],
    records.IDS["btf_trace_net_dev_queue"],
)


def _programs(resolved: ResolvedTrace) -> tuple[Program, ...]:
    return tuple(generate(resolved.plan, i) for i in range(len(resolved.plan.probes)))


def _described(resolved: ResolvedTrace) -> list[str]:
    """describe_plan's lines, each program's listing checked in its place and then shown as
    "  program" (instruction counts are codegen's business)."""
    programs = _programs(resolved)
    rest = describe_plan(resolved, programs)
    out = []
    for program in programs:
        head = rest.index(f"  program {program.name}: {len(program.insns)} instructions")
        listing = ["    " + line for line in format_insns(program.insns)]
        assert rest[head + 1 : head + 1 + len(listing)] == listing
        out.extend(rest[:head] + ["  program"])
        rest = rest[head + 1 + len(listing) :]
    assert rest == []
    return out


def test_a_trace_plan_its_tests_and_captures_with_their_offsets() -> None:
    resolved = records.trace("ip_send_skb(skb->len > 100, skb, skb->dev->name, net, return)")
    assert _described(resolved) == [
        f"probe fentry:ip_send_skb attach_btf_id {IP_SEND_SKB} (vmlinux), record 208 bytes",
        "  test skb->len > 100: slot 1 hops [] offset 80 size 4",
        "  capture skb->len: slot 1 hops [] offset 80 size 4 -> record +56",
        "  capture skb: slot 1 hops [] offset 0 size 104 -> record +64",
        "  capture skb->dev->name: slot 1 hops [24] offset 0 size 16 -> record +176",
        "  capture net: slot 0 hops [] offset 0 size 8 -> record +192",
        "  program",
        f"probe fexit:ip_send_skb attach_btf_id {IP_SEND_SKB} (vmlinux), record 64 bytes",
        "  capture return: slot 2 hops [] register size 4 -> record +56",
        "  program",
    ]


def test_a_string_test_and_a_capped_capture() -> None:
    resolved = records.trace('tp:net_dev_queue(skb->dev->name == "lo", skb)')
    resolved = records.with_captures(resolved, 0, skb=dict(size=64, full_size=104))
    assert _described(resolved) == [
        f"probe tp_btf:net_dev_queue attach_btf_id {NET_DEV_QUEUE} (vmlinux), record 144 bytes",
        "  test skb->dev->name == b'lo': slot 0 hops [24] offset 0 size 16",
        "  capture skb->dev->name: slot 0 hops [24] offset 0 size 16 -> record +56",  # a tested value is shown too
        "  capture skb: slot 0 hops [] offset 0 size 64 (of 104) -> record +72",  # its address, then 64 bytes
        "  program",
    ]


def test_a_kernel_stack() -> None:
    resolved = records.trace("tp:net_dev_queue(skb->len)", kstack_depth=4)
    assert _described(resolved) == [
        f"probe tp_btf:net_dev_queue attach_btf_id {NET_DEV_QUEUE} (vmlinux), record 104 bytes",
        "  capture skb->len: slot 0 hops [] offset 80 size 4 -> record +56",
        "  kstack: 4 frames -> record +64",
        "  program",
    ]


def test_a_summary_plan_says_what_each_probe_counts() -> None:
    resolved = count_calls(records.trace("ip_send_skb(return != 0)", "tp:net_dev_queue", "noargs"))
    assert _described(resolved) == [
        f"probe fentry:ip_send_skb attach_btf_id {IP_SEND_SKB} (vmlinux), record 56 bytes",
        "  program",
        f"probe fexit:ip_send_skb attach_btf_id {IP_SEND_SKB} (vmlinux), record 56 bytes",
        "  test return != 0: slot 2 hops [] offset 0 size 4",
        "  count: key 0, calls, errors of a 4-byte return, latency",
        "  program",
        f"probe tp_btf:net_dev_queue attach_btf_id {NET_DEV_QUEUE} (vmlinux), record 56 bytes",
        "  count: key 1, calls, no errors",
        "  program",
        f"probe fentry:noargs attach_btf_id {NOARGS} (vmlinux), record 56 bytes",
        "  program",
        f"probe fexit:noargs attach_btf_id {NOARGS} (vmlinux), record 56 bytes",
        "  count: key 2, calls, no errors, latency",
        "  program",
    ]


def test_calls_only_counts_at_entry() -> None:
    resolved = count_calls(records.trace("ip_send_skb"), calls_only=True)
    assert _described(resolved) == [
        f"probe fentry:ip_send_skb attach_btf_id {IP_SEND_SKB} (vmlinux), record 56 bytes",
        "  count: key 0, calls, no errors",
        "  program",
    ]


def test_a_call_path_plan_says_each_level() -> None:
    resolved = resolve_path([parse_spec("ip_send_skb(skb->len)"), parse_spec("noargs")], records.path_kernel())
    exit_id = records.path_kernel().vmlinux.lookup("btf_trace_sched_process_exit").id
    assert _described(resolved) == [
        f"probe tp_btf:sched_process_exit attach_btf_id {exit_id} (vmlinux), record 56 bytes",
        "  forgets the call-path state of each exiting task",
        "  program",
        f"probe fexit:noargs attach_btf_id {NOARGS} (vmlinux), record 56 bytes",
        "  call path: level 1 of 2, the innermost",
        "  program",
        f"probe fentry:noargs attach_btf_id {NOARGS} (vmlinux), record 56 bytes",
        "  call path: level 1 of 2, the innermost",
        "  program",
        f"probe fexit:ip_send_skb attach_btf_id {IP_SEND_SKB} (vmlinux), record 56 bytes",
        "  call path: level 0 of 2",
        "  program",
        f"probe fentry:ip_send_skb attach_btf_id {IP_SEND_SKB} (vmlinux), record 64 bytes",
        "  capture skb->len: slot 1 hops [] offset 80 size 4 -> record +56",
        "  call path: level 0 of 2",
        "  program",
    ]


def test_notes_always_and_the_plan_with_verbose_sanitised() -> None:
    resolved = dataclasses.replace(
        records.trace("noargs"), notes=("ksnoop: 'no*' matched 1 function", "a \x1b[2J note\n")
    )
    programs = _programs(resolved)
    err = io.StringIO()
    write_notes(resolved, programs, False, err)
    assert err.getvalue() == "ksnoop: 'no*' matched 1 function\na \\x1b[2J note\\x0a\n"
    err = io.StringIO()
    write_notes(resolved, programs, True, err)
    assert err.getvalue().splitlines() == [
        "ksnoop: 'no*' matched 1 function",
        "a \\x1b[2J note\\x0a",
        *describe_plan(resolved, programs),
    ]
