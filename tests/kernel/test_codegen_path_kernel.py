# SPDX-License-Identifier: GPL-2.0-only
"""Call-path (-s) programs on this machine's kernel, which refuses fentry/fexit: the generated path
programs are loaded as tp_btf programs on tracepoints that bracket a call the way an fentry/fexit
pair does, and fed syscalls this test makes.

The path: sys_enter (entry) ... sys_exit (return) of one sendto, and inside it net_dev_start_xmit
(entry) ... net_dev_xmit (return) of its datagram on loopback. Both pairs see the u64 argument array
a function would; each probe reads its own slots (sys_exit's `ret`, net_dev_xmit's `rc`), so the
generator cannot tell these from functions. Ground truth: the sizes we send (skb->len at the
device = payload + 42; sendto returns the payload size), our own pid, and syscalls we make that
leave no path (getpid: an entry and a return with no transmit inside).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import socket
import sys
import time
from collections.abc import Iterator

import pytest

from bpf.codegen import MapRole, generate
from bpf.loader import attach_tracing, load_program
from bpf.maps import Map, create_maps
from bpf.plan import PROBE_OFFSET, CompareOp, Filters, PathStep, Plan, Predicate, Probe
from bpf.plan import ProbeKind
from bpf.plan import Test as ValueTest  # not named Test*, or pytest tries to collect it
from bpf.ringbuf import RingBuffer
from bpf.uapi import AttachType
from ksnoop.output.decode import Event, build_decoder
from ksnoop.spec.resolve import TASK_EXIT_TRACEPOINT, resolve
from ksnoop.spec.language import parse_spec
from ksnoop.spec.targets import KernelBTF, Target

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_kernel")]

SENDTO = {"x86_64": 44, "aarch64": 206}
ETH_IP_UDP = 14 + 20 + 8
RING_SIZE = 1 << 20


def _captures(kernel: KernelBTF, spec: str) -> tuple[Target, Probe]:
    resolved = resolve([parse_spec(spec)], kernel, Filters())
    return resolved.targets[0], resolved.plan.probes[0]


@dataclasses.dataclass
class PathRun:
    plan: Plan
    targets: list[Target]
    state: Map
    events: list[Event] = dataclasses.field(default_factory=list)


@contextlib.contextmanager
def path_attached(kernel: KernelBTF, pid: int) -> Iterator[tuple[PathRun, RingBuffer]]:
    if platform.machine() not in SENDTO:
        pytest.skip(f"no sendto syscall number for {platform.machine()} in this test")
    enter_t, enter = _captures(kernel, "tp:sys_enter(id)")
    leave_t, leave = _captures(kernel, "tp:sys_exit(ret)")
    start_t, start = _captures(kernel, "tp:net_dev_start_xmit(skb->len)")
    done_t, done = _captures(kernel, "tp:net_dev_xmit(rc)")
    exit_t = kernel.find_tracepoint(TASK_EXIT_TRACEPOINT)
    is_sendto = ValueTest(enter.captures[0], Predicate(CompareOp.EQ, SENDTO[platform.machine()], signed=True))

    def step(probe: Probe, kind: ProbeKind, level: int, *tests: ValueTest) -> Probe:
        return dataclasses.replace(probe, kind=kind, tests=tests, path=PathStep(level, 2))

    probes = (
        Probe(ProbeKind.TP_BTF, exit_t.name, exit_t.attach_btf_id, emits=False, forgets_path=True),
        step(done, ProbeKind.FEXIT, 1),
        step(start, ProbeKind.FENTRY, 1),
        step(leave, ProbeKind.FEXIT, 0),
        step(enter, ProbeKind.FENTRY, 0, is_sendto),
    )
    plan = Plan(probes=probes, filters=Filters(pid=pid))
    targets = [exit_t, done_t, start_t, leave_t, enter_t]
    with contextlib.ExitStack() as stack:
        programs = [generate(plan, index) for index in range(len(probes))]
        maps = create_maps(stack, programs)
        events, state = maps.shared(MapRole.EVENTS), maps.shared(MapRole.PATH)
        for index, (probe, program) in enumerate(zip(probes, programs)):  # attached in plan order, as ksnoop does
            loaded = stack.enter_context(
                load_program(
                    program.bind_maps(maps.fds(index)),
                    program.prog_type,
                    AttachType.TRACE_RAW_TP,
                    probe.attach_btf_id,
                    name=program.name,
                )
            )
            stack.enter_context(attach_tracing(loaded))
        ring = stack.enter_context(RingBuffer(events.fd, plan.ringbuf_size))
        yield PathRun(plan, targets, state), ring


def _drain(run: PathRun, ring: RingBuffer) -> list[tuple[str, str, tuple, int | None]]:
    decoders = [build_decoder(run.plan, i, t.btf) for i, t in enumerate(run.targets)]
    out = []

    def take(record: memoryview) -> None:
        index = int.from_bytes(record[PROBE_OFFSET : PROBE_OFFSET + 4], sys.byteorder)
        event = decoders[index](record)
        probe = run.plan.probes[index]
        assert event.pid == os.getpid()
        out.append((probe.target, probe.kind.value, event.values, event.duration_ns))

    ring.drain(take)
    return out


def test_verifier_takes_every_level_and_side_and_each_send_shows_its_path(kernel: KernelBTF) -> None:
    sizes = (100, 200, 300)
    with (
        path_attached(kernel, os.getpid()) as (run, ring),
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind(("127.0.0.1", 0))
        for size in sizes:
            os.getpid()  # a syscall with no transmit inside: joins no path
            tx.sendto(b"p" * size, rx.getsockname())
            rx.recv(4096)
        time.sleep(0.05)
        got = _drain(run, ring)
        left = list(run.state.iter_keys())
    outline = [(target, kind) for target, kind, _, _ in got]
    assert outline == [
        ("sys_enter", "fentry"),
        ("net_dev_start_xmit", "fentry"),
        ("net_dev_xmit", "fexit"),
        ("sys_exit", "fexit"),
    ] * len(sizes), got
    for n, size in enumerate(sizes):
        enter, start, done, leave = got[4 * n : 4 * n + 4]
        assert enter[2] == (SENDTO[platform.machine()],)
        assert start[2] == (size + ETH_IP_UDP,)
        assert done[2] == (0,) and leave[2] == (size,)  # NETDEV_TX_OK; sendto's byte count
        assert 0 < done[3] < leave[3]  # durations, the outer spanning the inner
    assert left == []  # every path ended: no task state is left


def test_the_exit_hook_forgets_exactly_the_exiting_task(kernel: KernelBTF) -> None:
    with path_attached(kernel, os.getpid()) as (run, _ring):
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # wait for the parent to plant a state, then exit
            os.read(read, 1)
            os._exit(0)
        size = run.state.value_size
        mine, childs = (os.getpid() << 32 | os.getpid()), (child << 32 | child)
        run.state.update(childs.to_bytes(8, sys.byteorder), bytes(size))
        run.state.update(mine.to_bytes(8, sys.byteorder), bytes(size))
        os.write(write, b"x")
        os.waitpid(child, 0)
        left = set(run.state.iter_keys())
        os.close(read)
        os.close(write)
    assert left == {mine.to_bytes(8, sys.byteorder)}
