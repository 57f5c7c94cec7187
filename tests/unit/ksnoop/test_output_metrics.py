# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop.output.metrics: counts to Prometheus families, written by prometheus_client and read
back by its parser; label names from expressions; the kernel's log2 buckets as cumulative `le`
buckets; and ksnoop.usage.ListenAddress."""

from __future__ import annotations

import click
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bpf.plan import HIST_NEGATIVE, HIST_UNREADABLE, LATENCY_BUCKETS
from ksnoop.output.metrics import (
    AggregateMetrics,
    Health,
    health_families,
    label_names,
    record_families,
    summary_families,
)
from ksnoop.run.aggregate import Dropped, KeyTotal
from ksnoop.run.options import ListenAt
from ksnoop.run.summary import FunctionCounts
from ksnoop.usage import BadValue, ListenAddress


def _samples(families: list) -> dict:
    """The families written as /metrics writes them, parsed back: (name, labels) -> value."""

    class Fixed:
        def collect(self):  # type: ignore[no-untyped-def]
            return iter(families)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_label_names_follow_prometheus_rules_and_stay_apart() -> None:
    assert label_names(["comm", "skb->dev->name", "return"]) == ("comm", "skb_dev_name", "return")
    assert label_names(["func", "le", "a.b", "a->b", "0x"]) == ("func_2", "le_2", "a_b", "a_b_2", "v_0x")


def test_summary_counts_errors_and_a_latency_histogram_in_seconds() -> None:
    buckets = tuple({9: 1, 12: 2}.get(k, 0) for k in range(LATENCY_BUCKETS))  # [512, 1K) once, [4K, 8K) twice
    samples = _samples(
        summary_families(
            [FunctionCounts("ip_send_skb", 3, 1, buckets, 10_600), FunctionCounts("tp:net_dev_queue", 7, None, None)]
        )
    )
    func = (("func", "ip_send_skb"),)
    assert samples[("ksnoop_calls_total", func)] == 3
    assert samples[("ksnoop_calls_total", (("func", "tp:net_dev_queue"),))] == 7
    assert samples[("ksnoop_errors_total", func)] == 1
    assert ("ksnoop_errors_total", (("func", "tp:net_dev_queue"),)) not in samples
    le = {dict(k)["le"]: v for (name, k), v in samples.items() if name == "ksnoop_call_duration_seconds_bucket"}
    # Each bucket's le is the largest whole ns it holds: 1023 ns, 2047, 4095, 8191, then +Inf.
    assert le == {"1.023e-06": 1, "2.047e-06": 1, "4.095e-06": 1, "8.191e-06": 3, "+Inf": 3}
    assert samples[("ksnoop_call_duration_seconds_count", func)] == 3
    assert samples[("ksnoop_call_duration_seconds_sum", func)] == pytest.approx(10.6e-6)


def _metrics(keys: list, hist: str | None) -> AggregateMetrics:
    return AggregateMetrics.of(keys, hist, {0: tuple(str for _ in keys), 1: tuple(str for _ in keys)})


def test_counts_by_key_are_a_counter_with_a_label_per_value() -> None:
    totals = [KeyTotal(0, "f", ("a", 1), 5), KeyTotal(0, "f", ("b", 1), 2), KeyTotal(1, "tp:t", ("a", 2), 1)]
    samples = _samples(_metrics(["comm", "skb->len"], None).families(totals))
    by_key = {k: v for (name, k), v in samples.items() if name == "ksnoop_calls_by_comm_skb_len_total"}
    assert by_key == {
        (("comm", "a"), ("func", "f"), ("skb_len", "1")): 5,
        (("comm", "b"), ("func", "f"), ("skb_len", "1")): 2,
        (("comm", "a"), ("func", "tp:t"), ("skb_len", "2")): 1,
    }
    assert samples[("ksnoop_calls_total", (("func", "f"),))] == 7


def test_each_scrape_counts_anew_with_the_labels_rendered_once() -> None:
    rendered = []

    def render(value: object) -> str:
        rendered.append(value)
        return f"<{value}>"

    metrics = AggregateMetrics.of(["comm"], None, {0: (render,)})
    first = _samples(metrics.families([KeyTotal(0, "f", ("a",), 1)]))
    second = _samples(metrics.families([KeyTotal(0, "f", ("a",), 4), KeyTotal(0, "f", ("b",), 2)]))
    series = "ksnoop_calls_by_comm_total"
    assert first[(series, (("comm", "<a>"), ("func", "f")))] == 1
    assert second[(series, (("comm", "<a>"), ("func", "f")))] == 4
    assert second[(series, (("comm", "<b>"), ("func", "f")))] == 2
    assert rendered == ["a", "b"]  # each key's values rendered at its first scrape only


def test_a_value_histogram_has_the_same_buckets_in_every_series() -> None:
    # --hist numbering: 0 holds 0, k holds [2**(k-1), 2**k).
    totals = [
        KeyTotal(0, "f", ("a",), 4, {0: 1, 3: 2, HIST_UNREADABLE: 1}),  # 0, two in [4, 8), one unreadable
        KeyTotal(0, "f", ("b",), 2, {HIST_NEGATIVE: 1, 5: 1}),  # a negative, one in [16, 32)
    ]
    samples = _samples(_metrics(["comm"], "skb->len").families(totals))

    def le(comm: str) -> dict:
        return {
            dict(k)["le"]: v
            for (name, k), v in samples.items()
            if name == "ksnoop_skb_len_bucket" and dict(k)["comm"] == comm
        }

    assert le("a") == {"-1.0": 0, "0.0": 1, "1.0": 1, "3.0": 1, "7.0": 3, "15.0": 3, "31.0": 3, "+Inf": 4}
    assert le("b") == {"-1.0": 1, "0.0": 1, "1.0": 1, "3.0": 1, "7.0": 1, "15.0": 1, "31.0": 2, "+Inf": 2}


def test_health() -> None:
    samples = _samples(health_families(Health(3, Dropped(calls=5, keys=2), keys=10, max_keys=10)))
    assert samples == {
        ("ksnoop_probes_attached", ()): 3,
        ("ksnoop_keys_dropped_total", ()): 2,
        ("ksnoop_calls_dropped_total", ()): 5,
        ("ksnoop_keys", ()): 10,
        ("ksnoop_keys_max", ()): 10,
    }


def test_records_per_function_and_records_lost() -> None:
    # Per probe: a function's entry and return probes, and a tracepoint.
    samples = _samples(record_families(["f", "f", "tp:t"], [3, 2, 7]) + health_families(Health(2, records_lost=4)))
    assert samples == {
        ("ksnoop_records_total", (("func", "f"),)): 5,
        ("ksnoop_records_total", (("func", "tp:t"),)): 7,
        ("ksnoop_probes_attached", ()): 2,
        ("ksnoop_records_lost_total", ()): 4,
    }


@pytest.mark.parametrize(
    "text, at",
    [
        ("127.0.0.1:9435", ListenAt("127.0.0.1", 9435)),
        (":9435", ListenAt("0.0.0.0", 9435)),
        ("[::1]:0", ListenAt("::1", 0)),
        ("localhost:80", ListenAt("localhost", 80)),
    ],
)
def test_listen_addresses(text: str, at: ListenAt) -> None:
    assert ListenAddress().convert(text, None, None) == at


@pytest.mark.parametrize("text", ["9435", "host:", "host:port", "::1:9435", "a b:1", "h:70000", "[::1]"])
def test_listen_addresses_refused(text: str) -> None:
    with pytest.raises((BadValue, click.BadParameter)):
        ListenAddress().convert(text, None, None)
