"""Issue 12's targets (and issue 4's that still stand), checked against one run's cells."""

from dataclasses import dataclass
from typing import Literal

from bench.results import Cell, Latency

TARGET_CONNECTIONS = 16
WORKER_RSS_LIMIT_MB = 150.0
HEAD_OF_LINE_FACTOR = 2.0
HEAVY_SEARCH_P50_MS = 3.0
GROWTH_LIMIT = 1.5
HEAD_OF_LINE_LABEL = "other users' `list` p99 while the heavy user searches / `list` alone"
HEAVY_SEARCH_LABEL = "`heavy-search` p50 in PostgreSQL (pgbench, fewest connections measured)"


@dataclass(frozen=True)
class Target:
    workload: str
    metric: Literal["ratio", "p99_ms"]
    limit: float

    @property
    def label(self) -> str:
        what = "rate / pgbench rate" if self.metric == "ratio" else "p99"
        return f"`{self.workload}` {what}, {TARGET_CONNECTIONS} connections"

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


def _p99(cell: Cell | None) -> float | None:
    latency = cell.service.latency if cell and cell.service else None
    return latency.p99_ms if latency else None


def evaluate(cells: list[Cell], *, growth: bool = False) -> list[Verdict]:
    if growth:
        return evaluate_growth(cells)
    at = {(c.workload, c.connections): c for c in cells}
    verdicts = [_verdict(t, at.get((t.workload, TARGET_CONNECTIONS))) for t in TARGETS]
    return [
        *verdicts,
        head_of_line_verdict(cells),
        heavy_search_verdict(cells),
        _errors_verdict(cells),
        _memory_verdict(cells),
        Verdict(
            "`list` and `get` latency at 10M tasks vs 1M",
            f"within {GROWTH_LIMIT:g}x",
            "-",
            "not measured in this run (`make bench-growth` has its own report)",
        ),
    ]


def _first(cells: list[Cell], workload: str) -> Cell | None:
    """The workload's cell at the fewest connections."""
    return min(
        (c for c in cells if c.workload == workload), key=lambda c: c.connections, default=None
    )


def head_of_line_verdict(cells: list[Cell]) -> Verdict:
    """Other users' `list` p99 while the heavy user searches, against `list` alone."""
    during = _first(cells, "head-of-line")
    alone = next(
        (
            c
            for c in cells
            if during and (c.workload, c.connections) == ("list", during.connections)
        ),
        None,
    )
    required = f"<= {HEAD_OF_LINE_FACTOR:g}x"
    before, after = _p99(alone), _p99(during)
    background = during.background if during else None
    if before is None or after is None or background is None or not background.requests:
        return Verdict(HEAD_OF_LINE_LABEL, required, "-", "not measured")
    factor = after / before
    measured = f"{factor:.1f}x ({before:.1f} -> {after:.1f} ms)"
    met = factor <= HEAD_OF_LINE_FACTOR
    return Verdict(HEAD_OF_LINE_LABEL, required, measured, "met" if met else "not met")


def heavy_search_verdict(cells: list[Cell]) -> Verdict:
    cell = _first(cells, "heavy-search")
    required = f"<= {HEAVY_SEARCH_P50_MS:g} ms"
    latency = cell.pgbench.latency if cell and cell.pgbench else None
    if latency is None:
        return Verdict(HEAVY_SEARCH_LABEL, required, "-", "not measured")
    p50 = latency.p50_ms
    status = (
        "met" if p50 <= HEAVY_SEARCH_P50_MS else f"not met ({p50 / HEAVY_SEARCH_P50_MS:.1f}x over)"
    )
    return Verdict(HEAVY_SEARCH_LABEL, required, f"{p50:.2f} ms", status)


def evaluate_growth(cells: list[Cell]) -> list[Verdict]:
    """`list` and `get` p50 and p99 at the grown size against the loaded one, each <= 1.5x."""
    sizes = sorted({c.tasks for c in cells})
    at = {(c.workload, c.tasks): c for c in cells if c.connections == TARGET_CONNECTIONS}
    verdicts = []
    for workload in ("list", "get"):
        for name in ("p50", "p99"):
            label = f"`{workload}` {name} at the grown size / at {sizes[0]:,}"
            before = _latency(at.get((workload, sizes[0])))
            after = _latency(at.get((workload, sizes[-1]))) if len(sizes) > 1 else None
            verdicts.append(_growth_verdict(label, name, before, after))
    return verdicts


def _latency(cell: Cell | None) -> Latency | None:
    return None if cell is None or cell.service is None else cell.service.latency


def _growth_verdict(
    label: str, name: str, before: Latency | None, after: Latency | None
) -> Verdict:
    required = f"<= {GROWTH_LIMIT:g}x"
    if before is None or after is None:
        return Verdict(label, required, "-", "not measured")
    old, new = (before.p50_ms, after.p50_ms) if name == "p50" else (before.p99_ms, after.p99_ms)
    ratio = new / old if old > 0 else float("inf")
    measured = f"{ratio:.2f}x ({old:.2f} -> {new:.2f} ms)"
    return Verdict(label, required, measured, "met" if ratio <= GROWTH_LIMIT else "not met")


def _verdict(target: Target, cell: Cell | None) -> Verdict:
    value = (cell.ratio if cell else None) if target.metric == "ratio" else _p99(cell)
    if value is None:
        return Verdict(target.label, target.required, "-", "not measured")
    if target.metric == "ratio":
        met = value >= target.limit
        measured, gap = f"{value:.3f}", f"{target.limit / value:.1f}x short" if value else ""
    else:
        met = value <= target.limit
        measured, gap = f"{value:.1f} ms", f"{value / target.limit:.1f}x over"
    return Verdict(target.label, target.required, measured, "met" if met else f"not met ({gap})")


def _errors_verdict(cells: list[Cell]) -> Verdict:
    service = [c.errors for c in cells if c.errors is not None]
    if not service:
        return Verdict("errors in every workload", "0", "-", "not measured")
    database = sum(c.pgbench.failed for c in cells if c.pgbench is not None)
    measured = f"{sum(service)} (pgbench failures: {database})"
    return Verdict(
        "errors in every workload", "0", measured, "met" if sum(service) == 0 else "not met"
    )


def _memory_verdict(cells: list[Cell]) -> Verdict:
    required = f"< {WORKER_RSS_LIMIT_MB:g} MB"
    peaks = [c.peak_rss_mb for c in cells if c.peak_rss_mb is not None]
    if not peaks:
        return Verdict("peak RSS per worker", required, "-", "not measured")
    peak = max(peaks)
    over = f"not met ({peak / WORKER_RSS_LIMIT_MB:.1f}x over)"
    return Verdict(
        "peak RSS per worker",
        required,
        f"{peak:.0f} MB",
        "met" if peak < WORKER_RSS_LIMIT_MB else over,
    )
