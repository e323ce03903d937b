"""What the head-of-line workload's slow search costs PostgreSQL, measured on the loaded data.

The scenario only means something while the search really is slow, and whether it is depends on
the plan PostgreSQL picks (which a change to the read side or an index can change). So each run
times the service's own statement with EXPLAIN ANALYZE, as the role the service connects as and
with the caller named first, as the service does, and the report says what it found.
"""

import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.workloads import LIST_LIMIT
from db.connections import sqlalchemy_url
from db.scope import act_as
from queries import tasks as task_queries

RUNS = 3
"""Timed runs; the median is reported (the first also warms the cache)."""
SCAN_NODES = {"Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan"}


@dataclass(frozen=True, kw_only=True)
class SearchCost:
    user: str
    word: str
    role: str
    """The role EXPLAIN ran as: the one the service connects as."""
    execution_ms: float
    """EXPLAIN ANALYZE's execution time, the median of RUNS runs."""
    rows_examined: int
    """Rows the table scans produced or threw away (filter and recheck), over all workers."""
    rows_returned: int
    plan: str
    """The plan's nodes from the top, e.g. `Limit > Sort > Gather > Bitmap Heap Scan (...)`."""


def search_cost(url: str, *, user: str, word: str) -> SearchCost:
    """EXPLAIN ANALYZE the service's one-word search (first page) as the role of `url`."""
    statement = task_queries.list_statement(task_queries.ListShape(terms=1)).text
    binds = {
        "user_id": user,
        "limit": LIST_LIMIT + 1,
        "term_0": task_queries.like_pattern(word),
    }
    engine = create_engine(sqlalchemy_url(url))
    plans = []
    try:
        for _ in range(RUNS):
            with engine.begin() as conn:
                act_as(conn, user)
                explain = text("EXPLAIN (ANALYZE, FORMAT JSON) " + statement)
                plans.append(conn.execute(explain, binds).scalar_one()[0])
    finally:
        engine.dispose()
    return summarise(plans, user=user, word=word, role=make_url(url).username or "?")


def summarise(plans: list[dict[str, Any]], *, user: str, word: str, role: str) -> SearchCost:
    """The median execution time of EXPLAIN (ANALYZE, FORMAT JSON) results, and the last plan."""
    last = plans[-1]["Plan"]
    scans = [node for node in _nodes(last) if node["Node Type"] in SCAN_NODES]
    return SearchCost(
        user=user,
        word=word,
        role=role,
        execution_ms=statistics.median(plan["Execution Time"] for plan in plans),
        rows_examined=sum(_examined(node) for node in scans),
        rows_returned=round(last.get("Actual Rows", 0) * last.get("Actual Loops", 1)),
        plan=" > ".join(_label(node) for node in _nodes(last) if node["Node Type"] != "Result"),
    )


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def _examined(node: dict[str, Any]) -> int:
    # A parallel node's row counts are averages per loop (per process).
    per_loop = sum(
        node.get(key, 0)
        for key in ("Actual Rows", "Rows Removed by Filter", "Rows Removed by Index Recheck")
    )
    return round(float(per_loop) * float(node.get("Actual Loops", 1)))


def _label(node: dict[str, Any]) -> str:
    index = node.get("Index Name")
    return str(node["Node Type"]) + (f" ({index})" if index else "")
