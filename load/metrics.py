"""Gateway metrics through `prometheus_client`: requests and their latency by route template,
results by code, batch sizes, replication lag, and the event loop's watch.

Each gateway app has a registry of its own (not the process-global one), so that tests and
several apps in one process never share or collide. Every label value comes from a bounded
set the gateway defines (route templates, HTTP statuses, result codes, region and peer
names): a client cannot mint a series, and the library escapes every value.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from load.loopwatch import LoopWatch

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8190)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
disable_created_metrics()  # no `_created` series: a scrape of a gateway is read by people too, keep it short


class GatewayMetrics:
    """One gateway's series; `render` is the /metrics body."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter("geoledger_requests", "HTTP requests by route template and status.",
                                 ("region", "route", "status"), registry=self.registry)
        self._latency = Histogram("geoledger_request_duration_seconds",
                                  "Time from a request's arrival to its answer's last byte, by route template.",
                                  ("region", "route"), buckets=LATENCY_BUCKETS, registry=self.registry)
        self._results = Counter("geoledger_transfer_results", "Transfer outcomes by result code.",
                                ("region", "result"), registry=self.registry)
        self._batch = Histogram("geoledger_batch_size", "Transfers per committed ledger batch (group commit, bulk).",
                                ("region",), buckets=BATCH_BUCKETS, registry=self.registry)
        self._lag = Gauge("geoledger_replication_lag_seconds", "How far each peer's log trails this region's.",
                          ("region", "peer"), registry=self.registry)
        self._reports = Gauge("geoledger_region_reports", "What the region node reported since it started, by kind "
                              "(promotion, divergence, peer_message_refused, ...).", ("region", "kind"),
                              registry=self.registry)
        self._batch_here = self._batch.labels(region)
        hot = Counter("geoledger_hot_path_requests", "Requests of the hot routes: served by the fast lane, or "
                      "passed to the full app (anything not ordinary: refusals, odd encodings).",
                      ("region", "outcome"), registry=self.registry)
        self._hot = {True: hot.labels(region, "served"), False: hot.labels(region, "passed")}
        self._intake = Counter("geoledger_intake_calls", "Calls from the region's HTTP workers (`serve --workers`): "
                               "rows to commit, and requests forwarded to this process's full app.",
                               ("region", "kind"), registry=self.registry)

    def observe_request(self, route: str, status: int, seconds: float | None = None) -> None:
        """`route` is the matched route's template (`/accounts/{account_id}`) or `unmatched`,
        never the raw path: a client must not be able to mint label values (a crafted path
        once injected a fake series, and random paths grew the output without bound)."""
        self._requests.labels(self.region, route, str(status)).inc()
        if seconds is not None:
            self._latency.labels(self.region, route).observe(seconds)

    def observe_hot(self, served: bool) -> None:
        self._hot[served].inc()

    def observe_intake(self, kind: str) -> None:
        self._intake.labels(self.region, kind).inc()

    def observe_result(self, code: str, count: int = 1) -> None:
        self._results.labels(self.region, code).inc(count)

    def observe_batch(self, size: int) -> None:
        self._batch_here.observe(size)

    def watch(self, loop_watch: LoopWatch) -> None:
        """Serve the event loop's histograms (`load.loopwatch`) from this registry too."""
        self.registry.register(_LoopCollector(loop_watch, self.region))

    def render(self, lag: dict[str, float], reports: dict[str, int] | None = None) -> str:
        """The /metrics body; `reports`: the node's report counts by kind (kinds are the
        node's own fixed names, never a client's or a peer's words)."""
        for peer, seconds in lag.items():
            self._lag.labels(self.region, peer).set(seconds)
        for kind, count in (reports or {}).items():
            self._reports.labels(self.region, kind).set(count)
        return generate_latest(self.registry).decode()


class _LoopCollector(Collector):
    """LoopWatch's own histograms (observed on its timer, not per request) as metric families."""

    def __init__(self, watch: LoopWatch, region: str) -> None:
        self._watch = watch
        self._region = region

    def collect(self) -> Iterator[HistogramMetricFamily]:
        for name, hist, help_text in (
            ("geoledger_event_loop_busy_seconds", self._watch.busy,
             "CPU time the event loop's thread used between two 10 ms ticks (work that held the loop)."),
            ("geoledger_event_loop_lag_seconds", self._watch.lag, "How late the loop's 10 ms tick fired (wall clock)."),
        ):
            family = HistogramMetricFamily(name, help_text, labels=["region"])
            buckets = [(str(b), float(n)) for b, n in zip(hist.buckets, hist.counts, strict=True)]
            family.add_metric([self._region], buckets + [("+Inf", float(hist.count))], sum_value=hist.sum)
            yield family


__all__ = ["BATCH_BUCKETS", "CONTENT_TYPE", "LATENCY_BUCKETS", "GatewayMetrics"]
