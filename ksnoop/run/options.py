# SPDX-License-Identifier: GPL-2.0-only
"""What a trace was asked to do, and what it did: the plain data the CLI, the record loop and the
summary loop share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class ListenAt:
    """Where a server listens (--metrics): a host ("0.0.0.0" for every IPv4 address) and a port (0: any free one)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RunOptions:
    specs: Tuple[str, ...]
    pid: Optional[int] = None
    comm: Optional[str] = None
    uid: Optional[int] = None
    cgroup_path: Optional[str] = None  # --cgroup: a cgroup v2 directory; its tasks and those below
    cgroup_id: Optional[int] = None  # --cgroup-id: the same, by the cgroup's id
    count: Optional[int] = None  # stop after this many calls (records where no return is traced)
    duration_s: Optional[float] = None
    min_duration_ns: int = 0  # --min-duration: only calls at least this slow; 0 for all
    pages: int = 1024  # ringbuf size in pages; a power of two
    output: str = "text"  # "text" or "json"
    color: bool = False
    verbose: int = 0  # 1: the plan, the listings and a rejected program's verifier log; 2: debug logs too
    quiet: bool = False  # no ready line
    btf_path: Optional[str] = None
    kstack_depth: int = 0  # kernel stack frames in each entry and tracepoint record; 0 for none
    # Functions and tracepoints, a glob's matches counted each; None: DEFAULT_MAX_PROBES, or more
    # where globs attach by kprobe_multi (MULTI_MAX_PROBES).
    max_probes: Optional[int] = None
    summary: bool = False  # count calls, errors and latency in the kernel; print totals at exit
    call_path: bool = False  # -s: the specs are a call path, outermost first
    calls_only: bool = False  # --summary counting calls alone, at entry (no fexit)
    count_by: str = ""  # --count-by: the values a call is counted by, as given ("comm,skb->len")
    hist: str = ""  # --hist: the value whose log2 histogram is counted, as given ("skb->len", "duration")
    top: Optional[int] = None  # --top: each function's N most counted keys shown, the rest counted
    interval_s: Optional[float] = None  # --interval: a report every SECONDS, of the calls since the last
    max_keys: int = 10240  # --max-keys: distinct keys the kernel's hash holds
    metrics: Optional[ListenAt] = None  # --metrics: where to serve Prometheus metrics
    records: bool = False  # --records: with --metrics, print records too (and serve records per function)
    graph: bool = False  # -g: the spec is a root; trace its static call graph, a tree per root call
    graph_depth: Optional[int] = None  # --graph-depth (None: ksnoop.graph.DEFAULT_DEPTH)
    graph_include: Tuple[str, ...] = ()  # --graph-include globs
    graph_exclude: Tuple[str, ...] = ()  # --graph-exclude globs
    graph_args: str = "scalars"  # --graph-args: "scalars" (structs by address) or "full"
    zeros: bool = False  # text: show struct members that are all zero
    compact: bool = False  # text: one line per record
    backend: str = "auto"  # functions by "fentry", "kprobe", or "auto": fentry where the kernel takes it

    @property
    def aggregates(self) -> bool:
        """--count-by or --hist: count per key in the kernel."""
        return bool(self.count_by or self.hist)


@dataclass(frozen=True)
class Summary:
    records: int
    lost: int
    calls: Optional[int] = None  # --summary: calls counted, over every function
