# SPDX-License-Identifier: GPL-2.0-only
"""`trace --metrics HOST:PORT`: the counting loops' maps served as Prometheus metrics.

prometheus_client serves /metrics (text, or OpenMetrics when the scraper asks) from a thread of
its own; a scrape calls MapCollector.collect, which reads the maps there and then (no polling
thread, no copy to go stale). The server listens before anything is attached, so an address that
cannot be bound ends ksnoop with nothing attached; until the probes are attached a scrape sees
only `ksnoop_probes_attached 0`. Before the maps are closed the collector reads them one last
time and serves that from then on, so a scrape while ksnoop stops gets a whole page (the server
writes a page only once it is made) or, once the server is shut, a refused connection.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import socket
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, Optional

from ksnoop.errors import RuntimeFailure, UsageError
from ksnoop.run.options import ListenAt

METRICS_EXTRA = "pip install 'ksnoop[metrics]'"


def require_prometheus_client() -> None:
    """UsageError, before anything else is done, when prometheus_client is not installed."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise UsageError(f"--metrics needs the prometheus_client library: {METRICS_EXTRA}") from None


class MapCollector:
    """A prometheus_client collector whose families come from `read` (set once the maps exist),
    one scrape at a time."""

    def __init__(self, before: Callable[[], List[Any]]) -> None:
        self._lock = threading.Lock()
        self._read = before
        self._last: Optional[List[Any]] = None

    def serve(self, read: Callable[[], List[Any]]) -> None:
        with self._lock:
            self._read = read

    def close(self) -> None:
        """Read the maps a last time and serve that from now on: the maps are about to close."""
        with self._lock:
            self._last = self._read()

    def collect(self) -> Iterator[Any]:
        with self._lock:
            families = self._last if self._last is not None else self._read()
        return iter(families)


@dataclass(frozen=True)
class Exporter:
    collector: MapCollector
    url: str  # where it serves, the port a `:0` asked for filled in

    def serve(self, stack: contextlib.ExitStack, read: Callable[[], List[Any]]) -> None:
        """Serve `read`'s families from now on; `stack` (which closes the maps after this) has the
        collector read them once more before they close."""
        self.collector.serve(read)
        stack.callback(self.collector.close)
        # What ksnoop made to get here (the BTF's types above all) lives till it exits. Frozen out
        # of the garbage collector's sight, the 10,000s of small objects a scrape makes no longer
        # set off walks over all of it (a tenth of a scrape's time, measured).
        gc.freeze()


@contextlib.contextmanager
def serving(address: ListenAt, before: Callable[[], List[Any]]) -> Iterator[Exporter]:
    """prometheus_client's HTTP server on `address`, serving a MapCollector (its families `before`
    the maps exist) and ksnoop's own process metrics; shut when the block ends. RuntimeFailure
    when the address cannot be listened on, UsageError when the host is no address."""
    from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

    host, port = address.host, address.port
    registry = CollectorRegistry(auto_describe=False)
    collector = MapCollector(before)
    registry.register(collector)  # a collector is any object with collect()
    ProcessCollector(registry=registry)
    try:
        server, thread = start_http_server(port, host, registry)
    except socket.gaierror as err:
        raise UsageError(f"--metrics {address}: no such host ({err.strerror})") from None
    except OSError as err:
        raise RuntimeFailure(f"--metrics {address}: cannot listen there: {_why(err)}") from None
    try:
        yield Exporter(collector, f"http://{ListenAt(host, int(server.server_address[1]))}/metrics")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=1.0)


def _why(err: OSError) -> str:
    if err.errno == errno.EADDRINUSE:
        return "the port is in use"
    if err.errno == errno.EADDRNOTAVAIL:
        return "no interface of this machine has that address"
    if err.errno == errno.EACCES:
        return "permission denied"
    return err.strerror or str(err)


def open_exporter(stack: contextlib.ExitStack, address: Optional[ListenAt]) -> Optional[Exporter]:
    """The metrics server on `address` (None: no --metrics), shut by `stack`; until the loop
    serves its maps, a scrape sees that nothing is attached yet."""
    if address is None:
        return None
    from ksnoop.output.metrics import Health, health_families

    return stack.enter_context(serving(address, lambda: health_families(Health(0))))
