# SPDX-License-Identifier: GPL-2.0-only
"""bpfvm for iterator programs: a struct bpf_iter_meta the program reads its seq_file from, and
bpf_seq_write into a seq_file buffer that overflows as the kernel's does.

The program's ctx is a struct bpf_iter__<target>: pass `[META, object, ...]` as the u64 slots.
`ctx->meta` and `meta->seq` are direct loads from BTF-typed pointers in the kernel; here the meta
is a read-only region those loads may reach. bpf_seq_write(seq, data, len) copies while the
buffer's count + len < its size (seq_write()), and otherwise fills nothing, marks the buffer
overflowed and returns -EOVERFLOW, as the kernel's helper does.
"""

from __future__ import annotations

import struct
from typing import Any, List, Optional

from bpf.uapi import Helper

from .bpfvm import VM, VMError, _Region

META = 0x6000_0000  # struct bpf_iter_meta
SEQ = 0x6100_0000  # struct seq_file: only its address matters
EOVERFLOW = 75
SEQ_BUFFER_SIZE = 8 * 4096


class IterVM(VM):
    """A VM whose programs may call bpf_seq_write; `seq` holds what they wrote, `seq_writes` each call's
    result, `overflowed` whether a write did not fit. `reset_seq()` starts a new read's buffer."""

    def __init__(self, *args: Any, seq_size: int = SEQ_BUFFER_SIZE, seq_num: int = 0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.seq_size = seq_size
        self.meta = _Region(META, bytearray(struct.pack("<QQQ", SEQ, 1, seq_num)), False)
        self.seq = bytearray()
        self.seq_writes: List[int] = []
        self.overflowed = False

    def reset_seq(self) -> None:
        self.seq.clear()
        self.overflowed = False

    def _regions(self, direct: bool) -> List[_Region]:
        return [*super()._regions(direct), self.meta]

    def _call(self, helper: int, args: List[Optional[int]], pc: int) -> int:
        if helper != Helper.seq_write:
            return super()._call(helper, args, pc)
        self._helpers.append(helper)
        seq, data, size = (self._arg(args, n, pc) for n in (1, 2, 3))
        if seq != SEQ:
            raise VMError(f"{pc}: bpf_seq_write's r1 is not the iterator's seq_file (ctx->meta->seq)")
        payload = self._read(data, size)
        if len(self.seq) + size < self.seq_size:
            self.seq += payload
            self.records.append(payload)
            result = 0
        else:
            self.overflowed = True
            result = -EOVERFLOW
        self.seq_writes.append(result)
        return result
