# SPDX-License-Identifier: GPL-2.0-only
"""Values as a kernel developer reads them, end to end on this kernel with traffic this test makes:
a __be16 compared and shown as written (skb->protocol == 0x0800 matches IPv4), an IPv4 address
field showing the address the datagrams went to, and 64-bit values coming out of jq exactly as
the kernel held them."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import subprocess
from typing import Iterator

import pytest

from tests.kernel.test_trace_cli import (  # noqa: F401  (nothing_left_loaded: a fixture)
    Trace,
    ksnoop,
    nothing_left_loaded,
    skb_len,
)

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_kernel", "nothing_left_loaded")]

# A loopback address other than 127.0.0.1, so that what is shown is what this test chose.
ADDRESS = "127.3.2.1"
SYS_GETPID = 39  # x86-64


class Connected:
    """A UDP receiver on ADDRESS and a sender connected to it (so the socket holds the address)."""

    def __init__(self) -> None:
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind((ADDRESS, 0))
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tx.connect(self.rx.getsockname())

    def send(self, payload: int) -> None:
        self.tx.send(b"b" * payload)
        self.rx.recv(65536)

    def close(self) -> None:
        self.tx.close()
        self.rx.close()


@pytest.fixture
def connected() -> Iterator[Connected]:
    c = Connected()
    try:
        yield c
    finally:
        c.close()


def test_be16_predicate_matches_as_written_and_shows_so(connected: Connected) -> None:
    payload = 321
    spec = (
        "tp:net_dev_queue(skb->protocol == 0x0800, skb->len, skb->protocol, "
        "skb->sk->__sk_common.skc_daddr, skb->sk->__sk_common.skc_dport)"
    )
    with Trace("-p", str(os.getpid()), spec) as t:
        t.attached()
        connected.send(payload)
        assert t.stop() == 0, t.stderr
    (record,) = [r for r in t.text_records() if r.values["skb->len"] == f"(unsigned int){skb_len(payload)}"]
    port = connected.rx.getsockname()[1]
    assert record.values["skb->protocol"] == "(__be16)0x0800"
    assert record.values["skb->sk->__sk_common.skc_daddr"] == f"(__be32)0x7f030201 /* {ADDRESS} */"
    assert record.values["skb->sk->__sk_common.skc_dport"] == f"(__be16)0x{port:04x}"
    # JSON has the plain numbers, in the fields' own (network) order.
    with Trace("-o", "json", "-p", str(os.getpid()), spec) as t:
        got = t.first_record(lambda: connected.send(payload), lambda r: r["args"]["skb->len"] == skb_len(payload))
        assert t.stop() == 0, t.stderr
    assert got["args"]["skb->protocol"] == 0x0800
    assert got["args"]["skb->sk->__sk_common.skc_daddr"] == int.from_bytes(socket.inet_aton(ADDRESS), "big")
    assert got["args"]["skb->sk->__sk_common.skc_dport"] == port


def test_be16_predicate_for_another_protocol_drops_ipv4(connected: Connected) -> None:
    """ETH_P_IPV6 (0x86dd) keeps none of the IPv4 datagrams; a marker datagram matching a second
    spec proves the trace saw the traffic."""
    with Trace(
        "-o",
        "json",
        "-p",
        str(os.getpid()),
        "tp:net_dev_queue(skb->protocol == 0x86dd, skb->len)",
        "tp:net_dev_xmit(skb->len)",
    ) as t:
        t.first_record(lambda: connected.send(77), lambda r: r["func"] == "tp:net_dev_xmit")
        connected.send(78)
        assert t.stop() == 0, t.stderr
    assert not [r for r in t.json_records() if r["func"] == "tp:net_dev_queue"]


def test_be16_orders_do_not_compare() -> None:
    result = ksnoop("tp:net_dev_queue(skb->protocol > 0x0800)")
    assert (result.returncode, result.stdout) == (2, "")
    first = result.stderr.splitlines()[0]
    assert first == (
        "ksnoop: error: 'skb->protocol' (__be16) is in network byte order: compare it with == or !=, not >"
    )


def test_64_bit_values_survive_jq_exactly() -> None:
    """A syscall argument this test chooses, past 2**53 (where jq 1.6's doubles round), read back
    through `jq -r` unchanged: integers of more than 32 bits are decimal strings in JSON."""
    jq = shutil.which("jq")
    if jq is None:
        pytest.skip("jq is not installed (Debian package jq)")
    value = (1 << 63) + 12345  # odd, and far past 2**53
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.argtypes = [ctypes.c_long, ctypes.c_ulong]
    spec = f"tp:sys_enter(id == {SYS_GETPID}, regs->di == {value}, regs->di)"  # di: the first argument
    with Trace("-o", "json", "-p", str(os.getpid()), spec) as t:
        t.first_record(lambda: libc.syscall(SYS_GETPID, value), lambda r: True)
        assert t.stop() == 0, t.stderr
    lines = t.stdout.splitlines()
    assert lines and all(json.loads(line)["args"]["regs->di"] == str(value) for line in lines)
    through_jq = subprocess.run(
        [jq, "-r", '.args["regs->di"]'], input=lines[0] + "\n", capture_output=True, text=True, check=True
    ).stdout
    assert through_jq == f"{value}\n"
    # The same value as a JSON number would not have survived: that is why it is a string.
    rounded = subprocess.run([jq, "-c", "."], input=f"{value}\n", capture_output=True, text=True, check=True).stdout
    assert rounded.strip() != str(value)


def test_a_followed_struct_shows_where_it_is(connected: Connected) -> None:
    """`skb->sk` followed shows its address: the same the kernel holds in skb's own sk member."""
    with Trace("-p", str(os.getpid()), "tp:net_dev_queue(skb->protocol == 0x0800, skb->sk, skb)") as t:
        t.attached()
        connected.send(99)
        assert t.stop() == 0, t.stderr
    lines = t.stdout.splitlines()
    followed = [line for line in lines if line.startswith("    skb->sk = *(struct sock *)0x")]
    members = [line for line in lines if line.startswith("      .sk = (struct sock *)0x")]
    assert followed and len(followed) == len(members), t.stdout[:2000]
    for shown, member in zip(followed, members):
        address = shown.split(")", 1)[1].split()[0]
        assert member == f"      .sk = (struct sock *){address},"
    assert any(line.startswith("    skb = *(struct sk_buff *)0xffff") and line.endswith(" {") for line in lines)
