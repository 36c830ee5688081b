"""Gateway metrics in Prometheus text format: requests, results by code, batch sizes, lag.

Every label value comes from a bounded set the gateway defines (route templates, result
codes, region names), and is escaped as the text format requires all the same."""

from __future__ import annotations

from collections import Counter

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8190)


class GatewayMetrics:
    def __init__(self, region: str) -> None:
        self.region = region
        self.requests: Counter[tuple[str, int]] = Counter()
        self.results: Counter[str] = Counter()
        self.batch_buckets = [0] * len(BATCH_BUCKETS)
        self.batch_count = 0
        self.batch_sum = 0

    def observe_request(self, route: str, status: int) -> None:
        """`route` is the matched route's template (`/accounts/{account_id}`) or `unmatched`,
        never the raw path: a client must not be able to mint label values (a crafted path
        once injected a fake series, and random paths grew the output without bound)."""
        self.requests[(route, status)] += 1

    def observe_result(self, code: str, count: int = 1) -> None:
        self.results[code] += count

    def observe_batch(self, size: int) -> None:
        self.batch_count += 1
        self.batch_sum += size
        for i, bound in enumerate(BATCH_BUCKETS):
            if size <= bound:
                self.batch_buckets[i] += 1

    def labels(self) -> str:
        """The labels every series of this gateway carries."""
        return f'region="{_label(self.region)}"'

    def render(self, lag: dict[str, float]) -> str:
        r = self.labels()
        lines = [
            "# HELP geoledger_requests_total HTTP requests by route and status.",
            "# TYPE geoledger_requests_total counter",
        ]
        for (route, status), n in sorted(self.requests.items()):
            lines.append(f'geoledger_requests_total{{{r},route="{_label(route)}",status="{status}"}} {n}')
        lines += [
            "# HELP geoledger_transfer_results_total Transfer outcomes by result code.",
            "# TYPE geoledger_transfer_results_total counter",
        ]
        for code, n in sorted(self.results.items()):
            lines.append(f'geoledger_transfer_results_total{{{r},result="{_label(code)}"}} {n}')
        lines += [
            "# HELP geoledger_batch_size Transfers per committed ledger batch (group commit).",
            "# TYPE geoledger_batch_size histogram",
        ]
        for bound, n in zip(BATCH_BUCKETS, self.batch_buckets, strict=True):
            lines.append(f'geoledger_batch_size_bucket{{{r},le="{bound}"}} {n}')
        lines.append(f'geoledger_batch_size_bucket{{{r},le="+Inf"}} {self.batch_count}')
        lines.append(f"geoledger_batch_size_sum{{{r}}} {self.batch_sum}")
        lines.append(f"geoledger_batch_size_count{{{r}}} {self.batch_count}")
        lines += [
            "# HELP geoledger_replication_lag_seconds How far each peer's log trails this region's.",
            "# TYPE geoledger_replication_lag_seconds gauge",
        ]
        for peer, seconds in sorted(lag.items()):
            lines.append(f'geoledger_replication_lag_seconds{{{r},peer="{_label(peer)}"}} {seconds}')
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    """A label value escaped for the text format (backslash, double quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
