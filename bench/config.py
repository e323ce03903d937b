"""The knobs of one run: the full run's defaults, and the tiny `--smoke` variant the tests run."""

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from db.settings import PROJECT_ROOT

DATA = PROJECT_ROOT / ".data" / "bench"


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    tasks: int = 1_000_000
    users: int = 10_000
    duration: float = 15.0  # measured seconds per cell, for the service and again for pgbench
    warmup: float = 2.0  # unmeasured seconds before each service cell: pools filled, code hot
    connections: tuple[int, ...] = (1, 16, 64)
    heavy_user_tasks: int = 200_000  # of the user that `heavy-search` and `head-of-line` search
    heavy_connections: int = 2  # sending the heavy user's searches during `head-of-line`
    growth: bool = False  # measure, grow the table to `growth_tasks`, measure again
    growth_tasks: int = 10_000_000
    growth_batch: int = 1_000_000  # rows per INSERT ... SELECT while growing
    replica: bool = False  # REPLICA_WORKLOADS on the primary alone, then with a replica
    workloads: tuple[str, ...] | None = None  # None: all, in the usual order
    workers: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))  # one per core
    install_wrk: bool = True
    smoke: bool = False
    json_path: Path = DATA / "results.json"
    report_path: Path | None = PROJECT_ROOT / "docs" / "bench-latest.md"  # rewritten whole
    database_name: str = "taskapi_bench"
    keep_database: bool = True  # left behind after a full run, for EXPLAIN and profiling
    budget_seconds: float = 14 * 60  # cells that would end later are skipped, not run
    seed: int = 42
    pair_samples: int = 10_000
    pgdata: Path = PROJECT_ROOT / ".data" / "bench-postgres"
    work_dir: Path = DATA
    command: str = ".venv/bin/python -m bench"


# Each mode's defaults, applied in order over the full run's. `--growth`: no heavy user (growth
# appends where its ids would be). `--replica`: a server of its own (pg_basebackup copies a whole
# server). `--smoke`: a second or so per cell on a tiny dataset, proving that the pipeline works;
# unique database names, so a smoke run never touches a full run's database or another smoke's.
SMOKE: dict[str, Any] = {
    "tasks": 2_000,
    "users": 20,
    "duration": 1.0,
    "warmup": 1.0,
    "connections": (2,),
    "heavy_user_tasks": 500,
    "heavy_connections": 1,
    "smoke": True,
    "json_path": DATA / "smoke-results.json",
    "work_dir": DATA / "smoke",
    "report_path": None,
    "database_name": f"taskapi_bench_smoke_{os.getpid()}",
    "keep_database": False,
    "budget_seconds": 200.0,
    "pair_samples": 500,
}
GROWTH: dict[str, Any] = {
    "growth": True,
    "workloads": ("list", "get"),
    "connections": (16,),
    "heavy_user_tasks": 0,
    "json_path": DATA / "growth-results.json",
    "report_path": PROJECT_ROOT / "docs" / "bench-growth.md",
    "database_name": "taskapi_bench_growth",
}
SMOKE_GROWTH: dict[str, Any] = {
    "connections": (2,),
    "growth_tasks": 20_000,
    "growth_batch": 5_000,
    "json_path": DATA / "smoke-growth-results.json",
    "report_path": None,
    "database_name": f"taskapi_bench_smoke_growth_{os.getpid()}",
}
REPLICA: dict[str, Any] = {
    "replica": True,
    "connections": (16,),
    "heavy_user_tasks": 0,
    "keep_database": False,
    "pgdata": DATA / "replica-run" / "primary",
    "json_path": DATA / "replica-results.json",
    "report_path": PROJECT_ROOT / "docs" / "bench-replica.md",
}
SMOKE_REPLICA: dict[str, Any] = {
    "connections": (2,),
    "json_path": DATA / "smoke-replica-results.json",
    "report_path": None,
    "pgdata": DATA / "smoke" / "replica-run" / "primary",
}


def config(
    *, smoke: bool, growth: bool = False, replica: bool = False, **overrides: Any
) -> BenchConfig:
    """The defaults (the full run's, or a mode's) with the command line's choices on top."""
    modes = [
        (smoke, SMOKE),
        (growth, GROWTH),
        (growth and smoke, SMOKE_GROWTH),
        (replica, REPLICA),
        (replica and smoke, SMOKE_REPLICA),
    ]
    defaults = {k: v for chosen, values in modes if chosen for k, v in values.items()}
    return replace(BenchConfig(), **(defaults | overrides))
