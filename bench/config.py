"""The knobs of one run: issue 4's defaults, and the tiny `--smoke` variant the test suite runs."""

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from db.settings import PROJECT_ROOT

Generator = Literal["auto", "wrk", "python"]


def cores() -> int:
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    tasks: int = 1_000_000
    users: int = 10_000
    duration: float = 15.0
    """Seconds of measured load per cell, for the service and again for pgbench."""
    warmup: float = 2.0
    """Seconds of unmeasured load before each service cell: pools filled, code paths hot."""
    connections: tuple[int, ...] = (1, 16, 64)
    heavy_user_tasks: int = 200_000
    """Tasks of the one heavy user whom the head-of-line workload's slow searches go to."""
    head_of_line_connections: int = 16
    """Ordinary users' `list` connections in the head-of-line workload (issue 4's 16)."""
    slow_connections: int = 2
    """Connections sending the heavy user's slow search meanwhile."""
    growth: bool = False
    """Measure `list` and `get` at `tasks`, grow the table to `growth_tasks`, measure again."""
    growth_tasks: int = 10_000_000
    growth_batch: int = 1_000_000
    """Rows per INSERT ... SELECT while growing."""
    workloads: tuple[str, ...] | None = None
    """Names of the workloads to run (None: all of them, in the usual order)."""
    workers: int = field(default_factory=cores)
    generator: Generator = "auto"
    install_wrk: bool = True
    generator_threads: int = 1
    """wrk threads; one keeps the generator's share of the two cores small, like pgbench -j1."""
    smoke: bool = False
    json_path: Path = PROJECT_ROOT / ".data" / "bench" / "results.json"
    doc_path: Path | None = PROJECT_ROOT / "docs" / "PERFORMANCE.md"
    database_name: str = "taskapi_bench"
    keep_database: bool = True
    """Leave the loaded database behind after a full run, for EXPLAIN and profiling."""
    budget_seconds: float = 14 * 60
    """Cells that would end after this many seconds from the start are skipped, not run."""
    seed: int = 42
    pair_samples: int = 10_000
    max_requests: int = 2_000_000
    """Upper bound on responses per load run, on top of the time bound."""
    pgdata: Path = PROJECT_ROOT / ".data" / "bench-postgres"
    work_dir: Path = PROJECT_ROOT / ".data" / "bench"
    command: str = ".venv/bin/python -m bench"


def config(*, smoke: bool, growth: bool = False, **overrides: Any) -> BenchConfig:
    """The defaults (issue 4's, or the smoke run's) with the command line's choices on top."""
    defaults = (smoke_defaults() if smoke else {}) | (growth_defaults(smoke) if growth else {})
    return replace(BenchConfig(), **(defaults | overrides))


def growth_defaults(smoke: bool) -> dict[str, Any]:
    """`--growth`: `list` and `get` at 16 connections, before and after growing the table tenfold.

    No heavy user: growth appends ordinary tasks after the loaded ids, where its rows would be.
    Its own JSON file, database and section of docs/PERFORMANCE.md, so it never replaces the
    default run's.
    """
    defaults: dict[str, Any] = {
        "growth": True,
        "workloads": ("list", "get"),
        "connections": (16,),
        "heavy_user_tasks": 0,
        "json_path": PROJECT_ROOT / ".data" / "bench" / "growth-results.json",
        "database_name": "taskapi_bench_growth",
    }
    if smoke:
        defaults |= {
            "connections": (2,),
            "growth_tasks": 20_000,
            "growth_batch": 5_000,
            "json_path": PROJECT_ROOT / ".data" / "bench" / "smoke-growth-results.json",
            "database_name": f"taskapi_bench_smoke_growth_{os.getpid()}",
        }
    return defaults


def smoke_defaults() -> dict[str, Any]:
    """A few seconds per workload on a tiny dataset: proves the harness works, measures nothing."""
    return {
        "tasks": 2_000,
        "users": 20,
        "duration": 0.5,
        "warmup": 0.2,
        "connections": (2,),
        "heavy_user_tasks": 500,
        "head_of_line_connections": 2,
        "slow_connections": 1,
        "install_wrk": False,
        "smoke": True,
        "json_path": PROJECT_ROOT / ".data" / "bench" / "smoke-results.json",
        "doc_path": None,
        # Unique, so a smoke run never touches a full run's database or another smoke run's.
        "database_name": f"taskapi_bench_smoke_{os.getpid()}",
        "keep_database": False,
        "budget_seconds": 200.0,
        "pair_samples": 500,
    }
