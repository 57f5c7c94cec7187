# SPDX-License-Identifier: GPL-2.0-only
"""bpf.maps.create_maps on this kernel: one map per plan, per fentry/fexit pair or per program, as
the programs' MapSpecs share them, and every one of them gone when the stack closes."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest

from bpf.codegen import MapRole, generate
from bpf.maps import MapCreationFailed, create_maps
from tests.support.records import trace

pytestmark = pytest.mark.kernel


def _programs(resolved):
    return [generate(resolved.plan, i) for i in range(len(resolved.plan.probes))]


def _open_map_fds(fds) -> set:
    import os

    return {fd for fd in fds if os.path.exists(f"/proc/self/fd/{fd}")}


def test_maps_are_shared_as_their_specs_say(bpf_kernel) -> None:
    resolved = trace("seven_args(a, b, return == 1)", "ip_send_skb(skb, return)")
    programs = _programs(resolved)
    with contextlib.ExitStack() as stack:
        maps = create_maps(stack, programs)
        fds = [maps.fds(i) for i in range(len(programs))]
        for role in (MapRole.EVENTS, MapRole.DROPS):
            users = {f[role] for f in fds if role in f}
            assert users == {maps.shared(role).fd}, role
        stash_by_group = {}
        for probe, f in zip(resolved.plan.probes, fds):
            if MapRole.STASH in f:
                stash_by_group.setdefault(probe.stash_group, set()).add(f[MapRole.STASH])
        assert all(len(s) == 1 for s in stash_by_group.values())
        assert len({next(iter(s)) for s in stash_by_group.values()}) == len(stash_by_group) == 2
        every = {fd for f in fds for fd in f.values()}
        assert _open_map_fds(every) == every
    assert not _open_map_fds(every)


def test_a_map_the_kernel_refuses_says_which(bpf_kernel) -> None:
    resolved = trace("seven_args(a)")
    plan = dataclasses.replace(resolved.plan, ringbuf_size=3 * 4096)  # not a power of 2: EINVAL
    with contextlib.ExitStack() as stack, pytest.raises(MapCreationFailed) as refused:
        create_maps(stack, [generate(plan, 0)])
    assert refused.value.spec.role is MapRole.EVENTS and refused.value.errno == 22
