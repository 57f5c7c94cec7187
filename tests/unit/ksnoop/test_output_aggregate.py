# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.output.aggregate_text: the reports of `trace --count-by/--hist` as text (a table per
function, or a log2 histogram per key) and as JSON (one object per report), from KeyTotals made by
hand and from keys that programs run in tests/support/bpfvm.py counted."""

from __future__ import annotations

import json

import pytest

from bpf.codegen import generate
from bpf.plan import HIST_NEGATIVE, HIST_UNREADABLE
from ksnoop.output.aggregate_text import AggregateFormatter, Report
from ksnoop.output.decode import READ_FAILED
from ksnoop.output.summary_text import BAR_WIDTH
from ksnoop.run.aggregate import AggregateRequest, Dropped, KeyTotal, aggregate_calls, key_decoders, key_totals
from ksnoop.spec.language import parse_spec
from ksnoop.spec.resolve import ResolvedTrace, resolve
from tests.support import records
from tests.support.bpfvm import VM

SKB, DEV = 0xFFFF888000001000, 0xFFFF888000002000


def _aggregate(*specs: str, count_by: str = "", hist: str = "") -> ResolvedTrace:
    resolved = resolve([parse_spec(s) for s in specs], records.kernel(), defaults=False)
    return aggregate_calls(resolved, AggregateRequest(count_by, hist))


def _formatter(resolved: ResolvedTrace, count_by: str = "", hist: str = "", **kwargs) -> AggregateFormatter:
    """The formatter run_aggregate makes: the key labels and the hist label as the user wrote them."""
    request = AggregateRequest(count_by, hist)
    hist_value = request.hist_value()
    labels = [k.text for k in request.keys()]
    return AggregateFormatter(resolved, labels, hist_value.text if hist_value else None, **kwargs)


def _bar(n: int, top: int) -> str:
    filled = n * BAR_WIDTH // top
    return "|" + "@" * filled + " " * (BAR_WIDTH - filled) + "|"


def _control_free(text: str) -> bool:
    """No C0 control but newline, no DEL, no C1: nothing a terminal would act on."""
    return not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F for c in text)


SEND = _aggregate("ip_send_skb", count_by="comm,return,skb->len")
SEND_TOTALS = [
    KeyTotal(0, "ip_send_skb", ("curl", 0, 242), 1234),
    KeyTotal(0, "ip_send_skb", ("ping", -22, 84), 7),
    KeyTotal(0, "ip_send_skb", ("systemd-resolve", 0, READ_FAILED), 3),
    KeyTotal(0, "ip_send_skb", ("nc", 1, 1), 1),
]


# ---- text: tables -------------------------------------------------------------------------------------


def test_a_table_per_function_count_right_aligned_values_left_aligned() -> None:
    text = _formatter(SEND, "comm,return,skb->len").format(Report(SEND_TOTALS, Dropped()))
    assert text.split("\n") == [
        "ip_send_skb: 1245 calls, 4 keys",
        "  COUNT  comm               return             skb->len",
        '   1234  "curl"             0                  242',
        '      7  "ping"             -22 /* -EINVAL */  84',
        '      3  "systemd-resolve"  0                  <read failed>',
        '      1  "nc"               1                  1',
    ]


def test_top_keeps_each_functions_most_counted_and_counts_the_rest() -> None:
    text = _formatter(SEND, "comm,return,skb->len", top=2).format(Report(SEND_TOTALS, Dropped()))
    lines = text.split("\n")
    assert lines[0] == "ip_send_skb: 1245 calls, 4 keys"  # the whole function, not what is shown
    assert [line.split()[0] for line in lines[2:-1]] == ["1234", "7"]
    assert lines[-1] == "  ... 2 more keys: 4 calls"
    # --top at least as large as the keys: nothing more to say.
    assert "more key" not in _formatter(SEND, "comm,return,skb->len", top=4).format(Report(SEND_TOTALS, Dropped()))


def test_top_says_one_call_in_the_singular() -> None:
    text = _formatter(SEND, "comm,return,skb->len", top=3).format(Report(SEND_TOTALS, Dropped()))
    assert text.split("\n")[-1] == "  ... 1 more key: 1 call"


def test_each_function_is_a_block_of_its_own_in_order_of_its_first_key() -> None:
    resolved = _aggregate("ip_send_skb", "tp:net_dev_queue", count_by="comm")
    totals = [
        KeyTotal(1, "tp:net_dev_queue", ("curl",), 5),
        KeyTotal(0, "ip_send_skb", ("curl",), 3),
        KeyTotal(1, "tp:net_dev_queue", ("ping",), 1),
    ]
    assert _formatter(resolved, "comm").format(Report(totals, Dropped())).split("\n") == [
        "tp:net_dev_queue: 6 calls, 2 keys",
        "  COUNT  comm",
        '      5  "curl"',
        '      1  "ping"',
        "",
        "ip_send_skb: 3 calls, 1 key",
        "  COUNT  comm",
        '      3  "curl"',
    ]


def test_values_render_as_records_show_them() -> None:
    resolved = _aggregate("tp:net_dev_queue", count_by="skb,skb->dev,skb->dev->name,skb->cloned,cpu")
    totals = [
        KeyTotal(0, "tp:net_dev_queue", (SKB, DEV, "lo", 1, 3), 2),
        KeyTotal(0, "tp:net_dev_queue", (SKB, 0, READ_FAILED, 0, 0), 1),
    ]
    text = _formatter(resolved, "skb,skb->dev,skb->dev->name,skb->cloned,cpu").format(Report(totals, Dropped()))
    assert text.split("\n")[1:] == [
        "  COUNT  skb                 skb->dev            skb->dev->name  skb->cloned  cpu",
        '      2  0xffff888000001000  0xffff888000002000  "lo"            1            3',
        "      1  0xffff888000001000  NULL                <read failed>   0            0",
    ]


def test_no_calls_counted() -> None:
    formatter = _formatter(SEND, "comm,return,skb->len")
    assert formatter.format(Report([], Dropped())) == "no calls counted"
    assert formatter.format(Report([], Dropped(), interval=4, elapsed_s=4.04)) == (
        "--- interval 4, 4.0 s ---\nno calls counted\n"
    )


def test_an_intervals_report_has_a_header() -> None:
    text = _formatter(SEND, "comm,return,skb->len").format(Report(SEND_TOTALS[:1], Dropped(), 3, 2.54))
    assert text.split("\n") == [
        "--- interval 3, 2.5 s ---",
        "ip_send_skb: 1234 calls, 1 key",
        "  COUNT  comm    return  skb->len",
        '   1234  "curl"  0       242',
        "",
    ]


def test_without_count_by_the_head_alone() -> None:
    resolved = _aggregate("ip_send_skb", hist="duration")
    total = KeyTotal(0, "ip_send_skb", (), 1, {1: 1})
    assert _formatter(resolved, hist="duration").format(Report([total], Dropped())).split("\n")[0] == (
        "ip_send_skb: 1 call"
    )


# ---- text: histograms ---------------------------------------------------------------------------------


def test_a_histogram_per_key_every_bucket_from_the_first_to_the_last() -> None:
    resolved = _aggregate("tp:net_dev_queue", count_by="comm", hist="skb->len")
    buckets = {HIST_NEGATIVE: 1, 0: 2, 1: 1, 2: 4, 3: 0, 5: 1, HIST_UNREADABLE: 3}
    totals = [
        KeyTotal(0, "tp:net_dev_queue", ("curl",), 12, buckets),
        KeyTotal(0, "tp:net_dev_queue", ("ping",), 1, {11: 1}),
    ]
    text = _formatter(resolved, "comm", "skb->len").format(Report(totals, Dropped()))
    assert text.split("\n") == [
        "tp:net_dev_queue: 13 calls, 2 keys",
        '  comm="curl": 12',
        "    skb->len:",
        f"    (..., 0)      1 {_bar(1, 4)}",
        f"    [0]           2 {_bar(2, 4)}",
        f"    [1]           1 {_bar(1, 4)}",
        f"    [2, 4)        4 {_bar(4, 4)}",
        f"    [4, 8)        0 {_bar(0, 4)}",
        f"    [8, 16)       0 {_bar(0, 4)}",
        f"    [16, 32)      1 {_bar(1, 4)}",
        f"    <read failed> 3 {_bar(3, 4)}",
        '  comm="ping": 1',
        "    skb->len:",
        f"    [1K, 2K) 1 {_bar(1, 1)}",
    ]


@pytest.mark.parametrize(
    "bucket,label",
    [
        (0, "[0]"),
        (1, "[1]"),
        (2, "[2, 4)"),
        (10, "[512, 1K)"),
        (11, "[1K, 2K)"),
        (21, "[1M, 2M)"),
        (64, "[8E, 16E)"),
        (HIST_NEGATIVE, "(..., 0)"),
        (HIST_UNREADABLE, "<read failed>"),
    ],
)
def test_bucket_labels(bucket: int, label: str) -> None:
    resolved = _aggregate("ip_send_skb", hist="duration")
    text = _formatter(resolved, hist="duration").format(
        Report([KeyTotal(0, "ip_send_skb", (), 1, {bucket: 1})], Dropped())
    )
    assert text.split("\n") == ["ip_send_skb: 1 call", "  duration:", f"  {label} 1 {_bar(1, 1)}"]


def test_a_histogram_with_only_negatives_and_failures_has_no_buckets_between() -> None:
    resolved = _aggregate("ip_send_skb", hist="return")
    total = KeyTotal(0, "ip_send_skb", (), 3, {HIST_NEGATIVE: 2, HIST_UNREADABLE: 1})
    assert _formatter(resolved, hist="return").format(Report([total], Dropped())).split("\n")[2:] == [
        f"  (..., 0)      2 {_bar(2, 2)}",
        f"  <read failed> 1 {_bar(1, 2)}",
    ]


# ---- what came from the kernel cannot reach the terminal raw ----------------------------------------

HOSTILE = "e\x1b]0;owned\x07\x1b[2J\nx\x9b\x7f\t"


def test_text_values_are_sanitised() -> None:
    resolved = _aggregate("seven_args", count_by="comm,f,e->dev->name")
    totals = [KeyTotal(0, "seven_args", (HOSTILE, HOSTILE, HOSTILE), 1)]
    text = _formatter(resolved, "comm,f,e->dev->name").format(Report(totals, Dropped()))
    assert _control_free(text) and len(text.split("\n")) == 3
    assert "\\x1b" in text.split("\n")[2]
    hist = _aggregate("seven_args", count_by="comm", hist="a")
    text = _formatter(hist, "comm", "a").format(Report([KeyTotal(0, "seven_args", (HOSTILE,), 1, {1: 1})], Dropped()))
    assert _control_free(text)


def test_a_comm_with_an_escape_character_from_the_kernel_is_shown_escaped() -> None:
    resolved = _aggregate("tp:net_dev_queue", count_by="comm")
    vm = VM(comm=b"\x1b[31mred\x1b[0m")
    vm.run(generate(resolved.plan, 0), [SKB])
    totals = key_totals(key_decoders(resolved), vm.aggregate_counts(), hist=False)
    text = _formatter(resolved, "comm").format(Report(totals, Dropped()))
    assert _control_free(text) and text.split("\n")[2] == '      1  "\\x1b[31mred\\x1b[0m"'
    parsed = json.loads(_formatter(resolved, "comm", output="json").format(Report(totals, Dropped())))
    assert parsed["counts"][0]["key"] == {"comm": "\x1b[31mred\x1b[0m"}  # escaped in JSON, the same string


# ---- JSON ------------------------------------------------------------------------------------------------


def test_json_is_one_object_per_report() -> None:
    text = _formatter(SEND, "comm,return,skb->len", output="json").format(
        Report(SEND_TOTALS, Dropped(5, 2), 7, 1.23456)
    )
    assert "\n" not in text
    assert json.loads(text) == {
        "counts": [
            {"func": "ip_send_skb", "key": {"comm": "curl", "return": 0, "skb->len": 242}, "count": 1234},
            {"func": "ip_send_skb", "key": {"comm": "ping", "return": -22, "skb->len": 84}, "count": 7},
            {
                "func": "ip_send_skb",
                "key": {"comm": "systemd-resolve", "return": 0, "skb->len": {"error": "read failed"}},
                "count": 3,
            },
            {"func": "ip_send_skb", "key": {"comm": "nc", "return": 1, "skb->len": 1}, "count": 1},
        ],
        "more": {"keys": 0, "count": 0},
        "dropped": {"keys": 2, "calls": 5},
        "interval": 7,
        "elapsed_s": 1.235,
    }


def test_json_with_top_counts_what_it_leaves_out_over_every_function() -> None:
    resolved = _aggregate("ip_send_skb", "tp:net_dev_queue", count_by="skb,skb->dev")
    totals = [
        KeyTotal(1, "tp:net_dev_queue", (SKB, DEV), 9),
        KeyTotal(0, "ip_send_skb", (SKB, DEV), 5),
        KeyTotal(1, "tp:net_dev_queue", (SKB + 1, 0), 4),
        KeyTotal(0, "ip_send_skb", (SKB + 1, DEV), 2),
        KeyTotal(0, "ip_send_skb", (SKB + 2, DEV), 1),
    ]
    parsed = json.loads(_formatter(resolved, "skb,skb->dev", top=1, output="json").format(Report(totals, Dropped())))
    assert parsed["counts"] == [
        {
            "func": "tp:net_dev_queue",
            "key": {"skb": "0xffff888000001000", "skb->dev": "0xffff888000002000"},
            "count": 9,
        },
        {"func": "ip_send_skb", "key": {"skb": "0xffff888000001000", "skb->dev": "0xffff888000002000"}, "count": 5},
    ]
    assert parsed["more"] == {"keys": 3, "count": 7}
    assert (parsed["interval"], parsed["elapsed_s"]) == (None, 0.0)


def test_json_histograms_by_low_bound() -> None:
    resolved = _aggregate("ip_send_skb", count_by="return", hist="duration")
    buckets = {0: 1, 1: 2, 2: 3, 3: 0, 11: 4, 64: 1, HIST_NEGATIVE: 5, HIST_UNREADABLE: 6}
    totals = [KeyTotal(0, "ip_send_skb", (-1,), 22, buckets)]
    parsed = json.loads(_formatter(resolved, "return", "duration", output="json").format(Report(totals, Dropped())))
    assert parsed["counts"] == [
        {
            "func": "ip_send_skb",
            "key": {"return": -1},
            "count": 22,
            "hist_log2": {
                "0": 1,
                "1": 2,
                "2": 3,
                "1024": 4,
                str(1 << 63): 1,
                "negative": 5,
                "unreadable": 6,
            },  # only the buckets holding anything
        }
    ]


def test_json_of_nothing_counted() -> None:
    parsed = json.loads(_formatter(SEND, "comm", output="json").format(Report([], Dropped(), 1, 0.5)))
    assert parsed == {
        "counts": [],
        "more": {"keys": 0, "count": 0},
        "dropped": {"keys": 0, "calls": 0},
        "interval": 1,
        "elapsed_s": 0.5,
    }


def test_json_without_count_by_has_an_empty_key() -> None:
    resolved = _aggregate("tp:net_dev_queue", hist="skb->len")
    totals = [KeyTotal(0, "tp:net_dev_queue", (), 2, {9: 2})]
    (count,) = json.loads(_formatter(resolved, hist="skb->len", output="json").format(Report(totals, Dropped())))[
        "counts"
    ]
    assert count == {"func": "tp:net_dev_queue", "key": {}, "count": 2, "hist_log2": {"256": 2}}


# ---- from keys programs counted ------------------------------------------------------------------------


def test_keys_counted_by_the_programs_render_as_text_and_json() -> None:
    from tests.unit.bpf.test_codegen import _memory, _net_device, _sk_buff

    resolved = _aggregate("tp:net_dev_queue", count_by="comm,skb->dev->name,skb->pkt_type,skb->len", hist="skb->len")
    memory = {**_memory(), SKB + 0x10000: _sk_buff(dev=0, length=1500), DEV: _net_device(b"eth0")}
    vm = VM(memory, comm=b"curl")
    for skb in (SKB, SKB, SKB + 0x10000):
        vm.run(generate(resolved.plan, 0), [skb])
    totals = key_totals(key_decoders(resolved), vm.aggregate_counts(), hist=True)
    labels = "comm,skb->dev->name,skb->pkt_type,skb->len"
    text = _formatter(resolved, labels, "skb->len").format(Report(totals, Dropped()))
    assert text.split("\n") == [
        "tp:net_dev_queue: 3 calls, 2 keys",
        '  comm="curl" skb->dev->name="eth0" skb->pkt_type=5 skb->len=242: 2',
        "    skb->len:",
        f"    [128, 256) 2 {_bar(2, 2)}",
        '  comm="curl" skb->dev->name=<read failed> skb->pkt_type=5 skb->len=1500: 1',
        "    skb->len:",
        f"    [1K, 2K) 1 {_bar(1, 1)}",
    ]
    parsed = json.loads(_formatter(resolved, labels, "skb->len", output="json").format(Report(totals, Dropped())))
    assert [(c["key"], c["count"], c["hist_log2"]) for c in parsed["counts"]] == [
        ({"comm": "curl", "skb->dev->name": "eth0", "skb->pkt_type": 5, "skb->len": 242}, 2, {"128": 2}),
        (
            {"comm": "curl", "skb->dev->name": {"error": "read failed"}, "skb->pkt_type": 5, "skb->len": 1500},
            1,
            {"1024": 1},
        ),
    ]


# ---- metric labels ---------------------------------------------------------------------------------


def test_labels_name_a_returned_errno_and_leave_strings_unquoted() -> None:
    from ksnoop.output.aggregate_text import key_renders

    comm, ret, length = key_renders(SEND, ["comm", "return", "skb->len"], "label")[0]
    assert [ret(-22), ret(0), ret(1), ret(-4096)] == ["-EINVAL", "0", "1", "-4096"]
    assert comm("\x1b[31mred") == "\\x1b[31mred"  # sanitised, not quoted
    assert length(84) == "84"
