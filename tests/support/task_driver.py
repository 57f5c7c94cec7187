# SPDX-License-Identifier: GPL-2.0-only
"""Runs a trace's programs in the BPF interpreter as the kernel would for a task's calls and
returns, and decodes what they wrote: call-path (-s) and function-graph (-g) modes, whose programs
keep per-task state. Programs are keyed by (function, probe kind); the sched_process_exit hook is
"exit_task". The mini kernel's memory holds an skb (len 242), a net and a destination buffer.
"""

from __future__ import annotations

import struct
from typing import Any, Dict, List, Optional, Tuple

from bpf.codegen import generate
from bpf.plan import HEADER, ProbeKind
from ksnoop.spec.resolve import ResolvedTrace
from tests.support import records
from tests.support.bpfvm import VM

SKB, NET, DST, SRC = 0xFFFF888000001000, 0xFFFF888000003000, 0xFFFF888000005000, 0x7FFE00001000
TASK_A, TASK_B = (100 << 32) | 101, (200 << 32) | 202


def skb(length: int) -> bytes:
    """A mini-kernel sk_buff whose len is `length`."""
    data = bytearray(104)
    struct.pack_into("<I", data, 80, length)
    return bytes(data)


class TaskDriver:
    """`resolved`'s programs over one VM, the task state `state_size` bytes a task."""

    def __init__(self, resolved: ResolvedTrace, state_size: int, **vm_options: Any) -> None:
        self.resolved = resolved
        self.programs: Dict[Any, Any] = {}
        for index, probe in enumerate(resolved.plan.probes):
            key = "exit_task" if probe.forgets_path else (probe.target, probe.kind)
            self.programs[key] = generate(resolved.plan, index)
        memory = {SKB: skb(242), NET: bytes(8), DST: bytes(64)}
        self.vm = VM(memory=memory, path_value_size=state_size, pid_tgid=TASK_A, **vm_options)
        self.seen = 0
        self.helpers: List[int] = []  # the helpers the last program run called, in order
        self.times: List[int] = []  # the records' times, of the last events()

    def task(self, pid_tgid: int) -> "TaskDriver":
        self.vm.pid_tgid = pid_tgid
        return self

    def enter(self, function: str, *ctx: int) -> "TaskDriver":
        self.helpers = self.vm.run(self.programs[(function, ProbeKind.FENTRY)], list(ctx)).helpers
        return self

    def leave(self, function: str, *ctx: int) -> "TaskDriver":
        self.helpers = self.vm.run(self.programs[(function, ProbeKind.FEXIT)], list(ctx)).helpers
        return self

    def exit_task(self) -> "TaskDriver":
        self.vm.run(self.programs["exit_task"], [0, 0])
        return self

    def events(self) -> List[Tuple[str, str, tuple, Optional[int]]]:
        """(function, "entry"/"return", values, duration_ns) of each record since the last call."""
        written = self.vm.records[self.seen :]
        self.times = [HEADER.unpack_from(rec)[0] for rec in written]
        out = []
        for rec in written:
            index = HEADER.unpack_from(rec)[3]
            probe = self.resolved.plan.probes[index]
            decode = records.build_decoder(self.resolved.plan, index, self.resolved.targets[index].btf)
            event = decode(rec)
            out.append((probe.target, "entry" if probe.kind.is_entry else "return", event.values, event.duration_ns))
        self.seen = len(self.vm.records)
        return out
