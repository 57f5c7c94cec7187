# SPDX-License-Identifier: GPL-2.0-only
"""`ksnoop trace` with glob targets on this machine's kernel, through the CLI in a subprocess:
`tp:net_dev_*` sees a UDP datagram the test sends on loopback at several tracepoints, the
--max-probes limit and a glob matching nothing are usage errors, and a function glob on a kernel
that refuses fentry everywhere reports that one error (fentry globs are tested in tests/vm)."""

from __future__ import annotations

import os
import re

import pytest

from tests.kernel.test_trace_cli import (  # noqa: F401  (udp, nothing_left_loaded: fixtures)
    Loopback,
    Trace,
    _no_traceback,
    ksnoop,
    nothing_left_loaded,
    skb_len,
    summary,
    udp,
)

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bpf_kernel", "nothing_left_loaded")]

TRACING = re.compile(r"ksnoop: tracing (\d+) tracepoints matching 'tp:net_dev_\*'\n")


def test_a_tracepoint_glob_sees_a_datagram_at_each_tracepoint(udp: Loopback) -> None:  # noqa: F811
    payload, marker = 321, 320
    with Trace("-o", "json", "-p", str(os.getpid()), "tp:net_dev_*(skb->len)") as t:
        t.first_record(
            lambda: udp.send(marker),
            lambda r: r["func"] == "tp:net_dev_queue" and r["args"]["skb->len"] == skb_len(marker),
        )
        udp.send(payload)
        assert t.stop() == 0, t.stderr
    records = t.json_records()
    m = TRACING.match(t.stderr)
    assert m and int(m[1]) >= 2, t.stderr  # net_dev_queue, net_dev_xmit and whatever else this kernel has
    # Tracepoints without an skb argument (net_dev_xmit_timeout) are left out, named on one line.
    rest = t.stderr[m.end() :]
    if rest.startswith("ksnoop: warning: "):
        warning, rest = rest.split("\n", 1)
        assert re.fullmatch(
            r"ksnoop: warning: left out \d+ tracepoints? matching 'tp:net_dev_\*' whose values "
            r"cannot be shown as asked \(the first: .*has no argument 'skb'.*\): [\w:, ]+",
            warning,
        )
        assert "tp:net_dev_queue" not in warning.split("): ")[-1]
    assert rest == summary(len(records))
    # loopback_xmit has pulled the Ethernet header (eth_type_trans) by net_dev_xmit.
    mine = [r for r in records if r["args"]["skb->len"] in (skb_len(payload), skb_len(payload) - 14)]
    funcs = [r["func"] for r in mine]
    assert "tp:net_dev_queue" in funcs and "tp:net_dev_xmit" in funcs, records
    assert funcs.index("tp:net_dev_queue") < funcs.index("tp:net_dev_xmit")
    assert all(r["probe"] == "tracepoint" and r["pid"] == os.getpid() for r in mine)
    assert {r["func"] for r in records} <= {
        "tp:net_dev_queue",
        "tp:net_dev_xmit",
        "tp:net_dev_start_xmit",
        "tp:net_dev_xmit_timeout",
    }


def test_max_probes_refuses_with_the_count_and_a_hint() -> None:
    result = ksnoop("--max-probes", "1", "tp:net_dev_*")
    _no_traceback(result)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    (line,) = result.stderr.splitlines()
    assert re.fullmatch(
        r"ksnoop: error: 'tp:net_dev_\*' matches \d+ tracepoints, more than --max-probes 1: "
        r"narrow the glob or raise --max-probes",
        line,
    ), line


def test_a_glob_matching_nothing_names_close_ones() -> None:
    result = ksnoop("tp:net_dev_qeue*")
    _no_traceback(result)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("ksnoop: error: no tracepoint matches 'tp:net_dev_qeue*'; did you mean ")
    assert "tp:net_dev_queue" in first


def test_a_function_glob_on_a_kernel_that_refuses_fentry_reports_that_once(
    fentry_refusal: str, kprobe_refusal: str
) -> None:
    """Where this kernel refuses fentry, the glob's refusal is one error, not one per function;
    where it loads it, the glob attaches and counts (globs are tested further in tests/vm)."""
    if not fentry_refusal:
        result = ksnoop("--summary", "--calls-only", "--duration", "0.5", "udp_send*")
        _no_traceback(result)
        assert result.returncode == 0, result.stderr
        return
    # auto falls back on kprobes where there are some (tested in tests/vm): then only fentry fails here.
    for backend in ("auto", "fentry") if kprobe_refusal else ("fentry",):
        result = ksnoop("--backend", backend, "udp_send*")
        _no_traceback(result)
        assert (result.returncode, result.stdout) == (1, ""), result.stderr
        *tracing, error = result.stderr.splitlines()
        if backend == "fentry":  # resolved, then refused once for the whole glob
            assert len(tracing) == 1 and re.fullmatch(
                r"ksnoop: tracing \d+ functions matching 'udp_send\*'", tracing[0]
            )
        else:  # the kernel is asked first: neither fentry nor kprobes (this machine), or it traces
            assert not tracing, result.stderr
        assert error.startswith("ksnoop: error: cannot trace udp_send") and "fentry/fexit" in error
