"""Issue 4's targets, checked against one run's cells."""

from dataclasses import dataclass
from typing import Literal

from bench.results import Cell

TARGET_CONNECTIONS = 16
WORKER_RSS_LIMIT_MB = 150.0


@dataclass(frozen=True)
class Target:
    workload: str
    metric: Literal["ratio", "p99_ms"]
    limit: float

    @property
    def label(self) -> str:
        if self.metric == "ratio":
            return f"`{self.workload}` rate / pgbench rate, {TARGET_CONNECTIONS} connections"
        return f"`{self.workload}` p99, {TARGET_CONNECTIONS} connections"

    @property
    def required(self) -> str:
        return f">= {self.limit:g}" if self.metric == "ratio" else f"<= {self.limit:g} ms"


TARGETS = (
    Target("list", "ratio", 0.18),
    Target("list", "p99_ms", 6),
    Target("get", "ratio", 0.18),
    Target("get", "p99_ms", 6),
    Target("create", "ratio", 0.25),
    Target("create", "p99_ms", 8),
    Target("toggle", "ratio", 0.25),
    Target("toggle", "p99_ms", 8),
    Target("mixed", "p99_ms", 8),
)


@dataclass(frozen=True)
class Verdict:
    target: str
    required: str
    measured: str
    status: str
    """`met`, `not met (...)` or `not measured (...)`."""


def evaluate(cells: list[Cell]) -> list[Verdict]:
    at_target = {c.workload: c for c in cells if c.connections == TARGET_CONNECTIONS}
    return [
        *(_verdict(target, at_target.get(target.workload)) for target in TARGETS),
        _errors_verdict(cells),
        _memory_verdict(cells),
        Verdict(
            "`list` and `get` latency at 10M tasks vs 1M",
            "within 1.5x",
            "-",
            "not measured (compare with a run made with --tasks 10000000)",
        ),
        Verdict(
            "other users' `list` p99 while slow searches run",
            "< 20 ms",
            "-",
            "not measured (no scenario yet: one user with 200,000 tasks searched meanwhile)",
        ),
    ]


def _verdict(target: Target, cell: Cell | None) -> Verdict:
    value = _metric(target, cell)
    if value is None:
        return Verdict(target.label, target.required, "-", "not measured")
    if target.metric == "ratio":
        met = value >= target.limit
        measured, gap = f"{value:.3f}", f"{target.limit / value:.1f}x short" if value else ""
    else:
        met = value <= target.limit
        measured, gap = f"{value:.1f} ms", f"{value / target.limit:.1f}x over"
    return Verdict(target.label, target.required, measured, "met" if met else f"not met ({gap})")


def _metric(target: Target, cell: Cell | None) -> float | None:
    if cell is None:
        return None
    if target.metric == "ratio":
        return cell.ratio
    if cell.service is None or cell.service.latency is None:
        return None
    return cell.service.latency.p99_ms


def _errors_verdict(cells: list[Cell]) -> Verdict:
    service = [c.service.errors for c in cells if c.service is not None]
    database = sum(c.pgbench.failed for c in cells if c.pgbench is not None)
    measured = f"{sum(service)} (pgbench failures: {database})"
    if not service:
        return Verdict("errors in every workload", "0", "-", "not measured")
    status = "met" if sum(service) == 0 else "not met"
    return Verdict("errors in every workload", "0", measured, status)


def _memory_verdict(cells: list[Cell]) -> Verdict:
    peaks = [c.peak_rss_mb for c in cells if c.peak_rss_mb is not None]
    if not peaks:
        return Verdict("peak RSS per worker", f"< {WORKER_RSS_LIMIT_MB:g} MB", "-", "not measured")
    peak = max(peaks)
    met = peak < WORKER_RSS_LIMIT_MB
    return Verdict(
        "peak RSS per worker",
        f"< {WORKER_RSS_LIMIT_MB:g} MB",
        f"{peak:.0f} MB",
        "met" if met else f"not met ({peak / WORKER_RSS_LIMIT_MB:.1f}x over)",
    )
