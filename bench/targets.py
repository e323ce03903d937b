"""Issue 12's targets (and issue 4's that still stand), checked against one run's cells."""

from dataclasses import dataclass

from bench.results import Cell, Latency, find

TARGET_CONNECTIONS = 16
WORKER_RSS_LIMIT_MB = 150.0
HEAD_OF_LINE_FACTOR = 2.0
HEAVY_SEARCH_P50_MS = 3.0
GROWTH_LIMIT = 1.5
# At TARGET_CONNECTIONS: the least service rate / pgbench rate (None: none asked), the most p99 ms.
TARGETS: dict[str, tuple[float | None, float]] = {
    "list": (0.18, 6),
    "get": (0.18, 6),
    "create": (0.25, 8),
    "toggle": (0.25, 8),
    "mixed": (None, 8),
}


@dataclass(frozen=True)
class Verdict:
    target: str
    required: str
    measured: str
    status: str  # `met`, `not met (...)` or `not measured`


def _judge(target: str, required: str, measured: str | None, met: bool, gap: str = "") -> Verdict:
    if measured is None:
        return Verdict(target, required, "-", "not measured")
    status = "met" if met else f"not met ({gap})" if gap else "not met"
    return Verdict(target, required, measured, status)


def _at_most(
    target: str, value: float | None, limit: float, unit: str, digits: int, strict: bool = False
) -> Verdict:
    """`value` (in `unit`) at most `limit`, or below it if `strict`; if not, by how much over."""
    required = f"{'<' if strict else '<='} {limit:g} {unit}"
    measured = None if value is None else f"{value:.{digits}f} {unit}"
    met = value is not None and (value < limit if strict else value <= limit)
    return _judge(target, required, measured, met, f"{(value or 0) / limit:.1f}x over")


def _latency(cell: Cell | None) -> Latency | None:
    return cell.service.latency if cell and cell.service else None


def evaluate(cells: list[Cell], *, growth: bool = False) -> list[Verdict]:
    if growth:
        return evaluate_growth(cells)
    growth_status = "not measured in this run (`make bench-growth` has its own report)"
    return [
        *(verdict for name in TARGETS for verdict in _workload_verdicts(cells, name)),
        head_of_line_verdict(cells),
        heavy_search_verdict(cells),
        _errors_verdict(cells),
        _memory_verdict(cells),
        Verdict("`list` and `get` at 10M tasks vs 1M", f"<= {GROWTH_LIMIT:g}x", "-", growth_status),
    ]


def _workload_verdicts(cells: list[Cell], workload: str) -> list[Verdict]:
    cell, (least_ratio, most_p99) = find(cells, workload, TARGET_CONNECTIONS), TARGETS[workload]
    label = f"`{workload}` {{}}, {TARGET_CONNECTIONS} connections"
    latency = _latency(cell)
    p99 = latency.p99_ms if latency else None
    verdicts = [_at_most(label.format("p99"), p99, most_p99, "ms", 1)]
    if least_ratio is not None:
        ratio = cell.ratio if cell else None
        gap = f"{least_ratio / ratio:.1f}x short" if ratio else ""
        measured = None if ratio is None else f"{ratio:.3f}"
        met = (ratio or 0) >= least_ratio
        ratio_label = label.format("rate / pgbench rate")
        verdicts.insert(0, _judge(ratio_label, f">= {least_ratio:g}", measured, met, gap))
    return verdicts


def head_of_line_verdict(cells: list[Cell]) -> Verdict:
    during = find(cells, "head-of-line")
    alone = _latency(find(cells, "list", during.connections) if during else None)
    meanwhile = _latency(during)
    searched = during is not None and during.background is not None and during.background.requests
    measured = factor = None
    if alone and meanwhile and searched:
        factor = meanwhile.p99_ms / alone.p99_ms
        measured = f"{factor:.1f}x ({alone.p99_ms:.1f} -> {meanwhile.p99_ms:.1f} ms)"
    met = factor is not None and factor <= HEAD_OF_LINE_FACTOR
    label = "other users' `list` p99 while the heavy user searches / `list` alone"
    return _judge(label, f"<= {HEAD_OF_LINE_FACTOR:g}x", measured, met)


def heavy_search_verdict(cells: list[Cell]) -> Verdict:
    cell = find(cells, "heavy-search")
    latency = cell.pgbench.latency if cell and cell.pgbench else None
    label = "`heavy-search` p50 in PostgreSQL (pgbench, fewest connections measured)"
    return _at_most(label, latency.p50_ms if latency else None, HEAVY_SEARCH_P50_MS, "ms", 2)


def evaluate_growth(cells: list[Cell]) -> list[Verdict]:
    """`list` and `get` p50 and p99 at the grown size against the loaded one, each <= 1.5x."""
    sizes = sorted({c.tasks for c in cells})
    verdicts = []
    for workload in ("list", "get"):
        at = {c.tasks: _latency(c) for c in cells if c.workload == workload}
        before, after = at.get(sizes[0]), at.get(sizes[-1]) if len(sizes) > 1 else None
        for name in ("p50_ms", "p99_ms"):
            label = f"`{workload}` {name[:3]} at the grown size / at {sizes[0]:,}"
            measured, ratio = None, 0.0
            if before and after:
                old, new = getattr(before, name), getattr(after, name)
                ratio = new / old if old > 0 else float("inf")
                measured = f"{ratio:.2f}x ({old:.2f} -> {new:.2f} ms)"
            verdicts.append(_judge(label, f"<= {GROWTH_LIMIT:g}x", measured, ratio <= GROWTH_LIMIT))
    return verdicts


def _errors_verdict(cells: list[Cell]) -> Verdict:
    service = [c.errors for c in cells if c.errors is not None]
    failed = sum(c.pgbench.failed for c in cells if c.pgbench is not None)
    measured = f"{sum(service)} (pgbench failures: {failed})" if service else None
    return _judge("errors in every workload", "0", measured, sum(service) == 0)


def _memory_verdict(cells: list[Cell]) -> Verdict:
    peak = max((c.peak_rss_mb for c in cells if c.peak_rss_mb is not None), default=None)
    return _at_most("peak RSS per worker", peak, WORKER_RSS_LIMIT_MB, "MB", 0, strict=True)
