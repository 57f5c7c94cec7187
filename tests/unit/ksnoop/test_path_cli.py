# SPDX-License-Identifier: GPL-2.0-only
"""`ksnoop trace -s` usage errors from the CLI: exit 2, an error naming what is wrong (with a caret
under the spec it is about), no traceback, before anything touches the kernel."""

from __future__ import annotations

import pytest

from tests.support import minikernel


@pytest.fixture
def path_btf(tmp_path) -> str:
    path = tmp_path / "mini-task-exit.btf"
    path.write_bytes(minikernel.build(task_exit=True)[0])
    return str(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["strncpy_*", "noargs"], "not a glob"),
        (["tp:net_dev_queue", "noargs"], "a tracepoint has no return"),
        (["noargs", "noargs"], "noargs is already in the call path"),
        (["ip_send_sbk", "noargs"], "did you mean 'ip_send_skb'"),
        (["--summary", "ip_send_skb", "noargs"], "-s shows the calls of one path, and --summary counts every call"),
        (["ip_send_skb(skb->lne)", "noargs"], "no member 'lne'; did you mean 'len'"),
        (["noargs"] * 17, "at most 16"),
    ],
)
def test_call_path_usage_errors(cli, path_btf: str, args: list[str], message: str) -> None:
    out = cli("trace", "-s", "--btf", path_btf, *args)
    assert out.exit_code == 2, (out.stdout, out.stderr)
    first = out.stderr.splitlines()[0]
    assert first.startswith("ksnoop: error: ") and message in first, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
