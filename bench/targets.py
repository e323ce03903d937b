"""Issue 4's targets, checked against one run's cells (and a growth run's two sets of cells)."""

from dataclasses import dataclass
from typing import Literal

from bench.results import Cell, Latency
from bench.workloads import HEAD_OF_LINE

TARGET_CONNECTIONS = 16
WORKER_RSS_LIMIT_MB = 150.0
HEAD_OF_LINE_P99_MS = 20.0
GROWTH_LIMIT = 1.5
GROWTH_WORKLOADS = ("list", "get")
GROWTH_PERCENTILES: tuple[Literal["p50", "p99"], ...] = ("p50", "p99")
GROWTH_LABEL = "`list` and `get` latency at 10M tasks vs 1M"
HEAD_OF_LINE_LABEL = "other users' `list` p99 while slow searches run"


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
            GROWTH_LABEL,
            f"within {GROWTH_LIMIT:g}x",
            "-",
            "not measured in this run (`python -m bench --growth` has its own table)",
        ),
        head_of_line_verdict(next((c for c in cells if c.workload == HEAD_OF_LINE), None)),
    ]


def head_of_line_verdict(cell: Cell | None) -> Verdict:
    """Other users' `list` p99 in the head-of-line cell, provided slow searches really ran."""
    required = f"< {HEAD_OF_LINE_P99_MS:g} ms"
    if cell is None:
        return Verdict(HEAD_OF_LINE_LABEL, required, "-", "not measured (workload not run)")
    latency = cell.service.latency if cell.service else None
    if latency is None:
        reason = cell.note or "no ordinary request completed"
        return Verdict(HEAD_OF_LINE_LABEL, required, "-", f"not measured ({reason})")
    if cell.slow is None or cell.slow.latency is None:
        return Verdict(HEAD_OF_LINE_LABEL, required, "-", "not measured (no slow search completed)")
    measured = (
        f"{latency.p99_ms:.1f} ms ({cell.connections} connections; meanwhile"
        f" {cell.slow_connections} slow: {cell.slow.rps:.1f} req/s, p50"
        f" {cell.slow.latency.p50_ms:.0f} ms)"
    )
    if cell.pgbench is not None and cell.pgbench.latency is not None:
        measured += f"; pgbench's own `list` meanwhile: p99 {cell.pgbench.latency.p99_ms:.1f} ms"
    if latency.p99_ms < HEAD_OF_LINE_P99_MS:
        return Verdict(HEAD_OF_LINE_LABEL, required, measured, "met")
    over = latency.p99_ms / HEAD_OF_LINE_P99_MS
    return Verdict(HEAD_OF_LINE_LABEL, required, measured, f"not met ({over:.1f}x over)")


def evaluate_growth(
    base: list[Cell], grown: list[Cell] | None, *, base_tasks: int, grown_tasks: int | None
) -> list[Verdict]:
    """`list` and `get` p50 and p99 after growing against before, each within GROWTH_LIMIT."""
    before = {c.workload: c for c in base if c.connections == TARGET_CONNECTIONS}
    after = {c.workload: c for c in grown or [] if c.connections == TARGET_CONNECTIONS}
    verdicts = []
    for workload in GROWTH_WORKLOADS:
        for name in GROWTH_PERCENTILES:
            label = (
                f"`{workload}` {name} at {grown_tasks or 0:,} tasks / at {base_tasks:,},"
                f" {TARGET_CONNECTIONS} connections"
            )
            verdicts.append(
                _growth_verdict(
                    label, name, _latency(before.get(workload)), _latency(after.get(workload))
                )
            )
    return verdicts


def _latency(cell: Cell | None) -> Latency | None:
    return None if cell is None or cell.service is None else cell.service.latency


def _growth_verdict(
    label: str, name: Literal["p50", "p99"], before: Latency | None, after: Latency | None
) -> Verdict:
    required = f"<= {GROWTH_LIMIT:g}x"
    if before is None or after is None:
        return Verdict(label, required, "-", "not measured")
    old, new = (before.p50_ms, after.p50_ms) if name == "p50" else (before.p99_ms, after.p99_ms)
    ratio = new / old if old > 0 else float("inf")
    measured = f"{ratio:.2f}x ({old:.2f} -> {new:.2f} ms)"
    return Verdict(label, required, measured, "met" if ratio <= GROWTH_LIMIT else "not met")


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
    service = [c.errors for c in cells if c.errors is not None]
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
