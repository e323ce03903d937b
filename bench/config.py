"""The knobs of one run: the full run's defaults, and the tiny `--smoke` variant the tests run."""

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from db.settings import PROJECT_ROOT

DATA = PROJECT_ROOT / ".data" / "bench"
DOCS = PROJECT_ROOT / "docs"


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
    report_path: Path | None = DOCS / "bench-latest.md"  # rewritten whole
    database_name: str = "taskapi_bench"
    keep_database: bool = True  # left behind after a full run, for EXPLAIN and profiling
    budget_seconds: float = 14 * 60  # cells that would end later are skipped, not run
    seed: int = 42
    pair_samples: int = 10_000
    pgdata: Path = PROJECT_ROOT / ".data" / "bench-postgres"
    work_dir: Path = DATA
    command: str = ".venv/bin/python -m bench"


# Each mode's defaults over the full run's. `--growth`: no heavy user (growth appends where its
# ids would be). `--replica`: a server of its own (pg_basebackup copies a whole server). `--smoke`:
# a second or so per cell on a tiny dataset, proving that the pipeline works, in any mode.
SMOKE: dict[str, Any] = {
    "tasks": 2_000,
    "users": 20,
    "duration": 1.0,
    "warmup": 1.0,
    "heavy_user_tasks": 500,
    "heavy_connections": 1,
    "growth_tasks": 20_000,
    "growth_batch": 5_000,
    "work_dir": DATA / "smoke",
    "keep_database": False,
    "budget_seconds": 200.0,
    "pair_samples": 500,
}
GROWTH: dict[str, Any] = {"workloads": ("list", "get"), "heavy_user_tasks": 0}
REPLICA: dict[str, Any] = {"heavy_user_tasks": 0, "keep_database": False}


def config(
    *, smoke: bool, growth: bool = False, replica: bool = False, **overrides: Any
) -> BenchConfig:
    """The defaults (the full run's, or a mode's) with the command line's choices on top."""
    modes = [("smoke", smoke, SMOKE), ("growth", growth, GROWTH), ("replica", replica, REPLICA)]
    names = [name for name, chosen, _ in modes if chosen]
    defaults: dict[str, Any] = {name: chosen for name, chosen, _ in modes}
    defaults |= {k: v for _, chosen, values in modes if chosen for k, v in values.items()}
    # Each mode, and its smoke, writes results of its own; only a full run writes its report.
    defaults["json_path"] = DATA / "-".join([*names, "results.json"])
    if growth or replica:
        defaults |= {"connections": (16,), "report_path": DOCS / f"bench-{names[-1]}.md"}
    if replica:
        defaults["pgdata"] = defaults.get("work_dir", DATA) / "replica-run" / "primary"
    # A replica run's database is on a server of its own; a smoke run's is unique (never a full
    # run's or another smoke's) and dropped afterwards.
    database = "_".join(["taskapi_bench", *(name for name in names if name != "replica")])
    defaults["database_name"] = f"{database}_{os.getpid()}" if smoke else database
    if smoke:
        defaults |= {"connections": (2,), "report_path": None}
    return replace(BenchConfig(), **(defaults | overrides))
