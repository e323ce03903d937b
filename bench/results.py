"""What one benchmark run measures: plain frozen records that serialise straight to JSON."""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

NS_PER_MS = 1_000_000


@dataclass(frozen=True, kw_only=True)
class Latency:
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float


def percentile(sorted_values: Sequence[int], pct: float) -> int:
    """Nearest-rank percentile: the smallest value that `pct` percent of samples do not exceed."""
    # Rounded first: 99.9 / 100 * 1000 is 999.0000000000001 in binary floating point.
    rank = max(1, math.ceil(round(pct / 100 * len(sorted_values), 9)))
    return sorted_values[rank - 1]


def latency_from_ns(samples: list[int]) -> Latency | None:
    if not samples:
        return None
    samples.sort()
    p50, p99, p999 = (percentile(samples, pct) / NS_PER_MS for pct in (50, 99, 99.9))
    return Latency(p50_ms=p50, p99_ms=p99, p999_ms=p999, max_ms=samples[-1] / NS_PER_MS)


@dataclass(frozen=True, kw_only=True)
class LoadResult:
    """One wrk run against the service."""

    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    latency: Latency | None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


@dataclass(frozen=True, kw_only=True)
class PgbenchResult:
    """One pgbench run of the statement(s) the service sends for the same workload."""

    transactions: int
    seconds: float
    tps: float
    failed: int
    latency: Latency | None
    db_cpu_ms_per_tx: float | None = None


@dataclass(frozen=True, kw_only=True)
class Usage:
    """CPU and memory of the processes under test while one load run lasted."""

    server_cpu_s: float
    db_cpu_s: float | None
    worker_cpu_s: dict[str, float] = field(default_factory=dict)  # by pid, as a string for JSON
    machine_busy_pct: float
    peak_rss_mb: dict[str, float] = field(default_factory=dict)  # the largest RSS sampled, by pid


@dataclass(frozen=True, kw_only=True)
class Cell:
    """One workload at one connection count: the service, then pgbench on the same statements."""

    workload: str
    connections: int
    tasks: int  # ordinary tasks in the table when measured (a growth run measures two sizes)
    service: LoadResult | None = None
    usage: Usage | None = None
    pgbench: PgbenchResult | None = None
    background: LoadResult | None = None  # the heavy user's searches meanwhile (head-of-line)
    replica_share_pct: float | None = None  # `--replica`: the replica's share of transactions
    note: str | None = None

    @property
    def errors(self) -> int | None:
        """Failed responses of every load generator in the cell (None: nothing was sent)."""
        runs = [run for run in (self.service, self.background) if run is not None]
        return sum(run.errors for run in runs) if runs else None

    @property
    def ratio(self) -> float | None:
        if self.service is None or self.pgbench is None or self.pgbench.tps <= 0:
            return None
        return self.service.rps / self.pgbench.tps

    def _per_request(self, seconds: float | None) -> float | None:
        if self.service is None or not self.service.requests or seconds is None:
            return None
        return 1000 * seconds / self.service.requests

    @property
    def server_cpu_ms_per_request(self) -> float | None:
        return self._per_request(self.usage.server_cpu_s if self.usage else None)

    @property
    def db_cpu_ms_per_request(self) -> float | None:
        return self._per_request(self.usage.db_cpu_s if self.usage else None)

    @property
    def worker_split(self) -> list[float] | None:
        """Each worker's share of the workers' CPU time, in percent, largest first."""
        total = sum(self.usage.worker_cpu_s.values()) if self.usage else 0
        if self.usage is None or total <= 0:
            return None
        return sorted((100 * s / total for s in self.usage.worker_cpu_s.values()), reverse=True)

    @property
    def peak_rss_mb(self) -> float | None:
        if self.usage is None or not self.usage.peak_rss_mb:
            return None
        return max(self.usage.peak_rss_mb.values())


def find(cells: list[Cell], workload: str, connections: int | None = None) -> Cell | None:
    """The workload's cell at `connections`, or at the fewest connections measured."""
    chosen = [c for c in cells if c.workload == workload and connections in (None, c.connections)]
    return min(chosen, key=lambda c: c.connections, default=None)
