# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop/output/decode.py: records packed by bpf.plan's RecordLayout, as programs write them, back into Events."""

from __future__ import annotations

import dataclasses
import struct

import pytest

from bpf.plan import ProbeKind, RecordLayout
from ksnoop.output.decode import READ_FAILED, Event, build_decoder
from ksnoop.spec.resolve import ResolvedTrace
from tests.support.records import PID, TID, TS, event, probe_index, record, trace

STACK = (0xFFFFFFFF81A0011D, 0xFFFFFFFF81B00420, 0xFFFFFFFFC0A00010)


def test_event_fields_keep_their_positions() -> None:
    # Output modules and callers unpack Events by position; the stack came last.
    assert Event._fields == ("ts_ns", "pid", "tid", "cpu", "probe", "comm", "values", "duration_ns", "kstack")
    ev = event(trace("seven_args(a)"), 0, 5)
    assert (ev.values, ev.duration_ns, ev.kstack) == ((5,), None, None)


def test_the_stack_area_follows_the_captures() -> None:
    t = trace("tp:net_dev_queue(skb->len, skb->dev->name)", kstack_depth=4)
    layout = RecordLayout.of(t.plan.probes[0], t.plan.with_comm)
    assert layout.capture_offsets == (56, 64) and (layout.kstack_offset, layout.kstack_depth) == (80, 4)
    assert layout.size == 80 + 8 + 4 * 8
    raw = record(t, 0, 228, b"lo", kstack=STACK)
    assert struct.unpack_from("=q3Q", raw, 80) == (24, *STACK)
    ev = build_decoder(t.plan, 0, t.targets[0].btf)(raw)
    assert (ev.ts_ns, ev.pid, ev.tid, ev.values, ev.kstack) == (TS, PID, TID, (228, "lo"), STACK)


@pytest.mark.parametrize(
    "frames, written, expected",
    [
        (STACK, None, STACK),
        ((), 0, ()),
        (STACK, -14, ()),  # -EFAULT: the helper failed
        (STACK, 16, STACK[:2]),  # only what the helper says it wrote
        (STACK + STACK[:1], 8 * 9, STACK + STACK[:1]),  # never past the area, whatever it says
    ],
)
def test_frames_are_what_bpf_get_stack_wrote(frames, written, expected) -> None:
    t = trace("tp:net_dev_queue(skb->len)", kstack_depth=4)
    assert event(t, 0, 228, kstack=frames, kstack_written=written).kstack == expected


def test_failed_reads_and_the_stack_together() -> None:
    t = trace("tp:net_dev_queue(skb->len, skb->dev->name)", kstack_depth=3)
    ev = event(t, 0, 0, b"", failed=0b10, kstack=STACK)
    assert ev.values == (0, READ_FAILED) and ev.kstack == STACK


def test_a_probe_with_no_captures_still_has_its_stack() -> None:
    t = trace("tp:net_dev_queue", kstack_depth=2)
    probe = dataclasses.replace(t.plan.probes[0], captures=())
    t = ResolvedTrace(dataclasses.replace(t.plan, probes=(probe,)), t.targets)
    assert RecordLayout.of(probe, True).kstack_offset == 56
    ev = event(t, 0, kstack=STACK[:2])
    assert (ev.values, ev.kstack) == ((), STACK[:2])


def test_only_entry_records_of_a_function_carry_it() -> None:
    t = trace("seven_args(a, return)", kstack_depth=2)
    entry, ret = probe_index(t, ProbeKind.FENTRY), probe_index(t, ProbeKind.FEXIT)
    assert event(t, entry, 1, kstack=STACK[:2]).kstack == STACK[:2]
    assert event(t, ret, 0, entry_ts=TS - 5).kstack is None
