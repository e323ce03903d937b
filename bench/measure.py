"""Measuring one workload: the service under load at each connection count, then pgbench on the
same statements, then the dataset put back if the workload wrote to it.

pgbench runs while the service is stopped: its 64 clients plus the service's pooled connections
would pass a default max_connections of 100, and an idle service would still be in the picture.
The service is restarted for each workload, so each workload's memory is its own. A workload
with a `background` kind sends it meanwhile on `--heavy-connections` more connections, through
the service in the service's cells and as a second pgbench in pgbench's.
"""

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import create_engine

from bench import pgbench, wrk
from bench.config import BenchConfig
from bench.dataset import LoadStats, remove_added_rows
from bench.results import Cell, LoadResult, PgbenchResult, Usage
from bench.service import BenchAuth, Service, running_service
from bench.usage import UsageMeter
from bench.workloads import Kind, Workload
from db.engine import sqlalchemy_url
from db.settings import PROJECT_ROOT

log = logging.getLogger(__name__)

SERVER_START_ALLOWANCE = 10.0
CELL_OVERHEAD_ALLOWANCE = 3.0


class Budget:
    def __init__(self, seconds: float) -> None:
        self.started = time.monotonic()
        self._deadline = self.started + seconds

    def allows(self, seconds: float) -> bool:
        return time.monotonic() + seconds <= self._deadline

    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass(kw_only=True)
class Session:
    """What the workloads of one run share."""

    config: BenchConfig
    owner_url: str
    app_url: str
    """The service's own role, which row-level security applies to; pgbench connects as it too."""
    db_pid: int | None
    dataset: LoadStats
    pairs: list[tuple[str, int]]
    """Real (user_id, task id) pairs of ordinary tasks, sampled from the table."""
    tokens: dict[str, str]
    """A bearer token per sampled user and for the heavy user."""
    wrk: str
    budget: Budget
    auth: BenchAuth
    pgbench_scripts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceRun:
    result: LoadResult
    background: LoadResult | None
    usage: Usage


def measure(session: Session, workload: Workload) -> list[Cell]:
    counts = workload.counts(session.config.connections)
    cell = Cell(workload=workload.name, connections=0, tasks=session.dataset.tasks)
    if workload.needs_heavy_user and not session.dataset.heavy_user_tasks:
        note = "not run: no heavy user was loaded (--heavy-user-tasks 0)"
        return [replace(cell, connections=c, note=note) for c in counts]
    log.info("workload %s", workload.name)
    service = measure_service(session, workload, counts)
    database = measure_pgbench(session, workload, counts)
    if workload.writes:
        restore_dataset(session)
    cells = []
    for c in counts:
        run, db = service[c], database[c]
        notes = [note for note in (run, db) if isinstance(note, str)]
        cell = replace(cell, connections=c, note="; ".join(notes) or None)
        if isinstance(run, ServiceRun):
            cell = replace(cell, service=run.result, background=run.background, usage=run.usage)
        cells.append(replace(cell, pgbench=db) if isinstance(db, PgbenchResult) else cell)
    return cells


def restore_dataset(session: Session) -> None:
    engine = create_engine(sqlalchemy_url(session.owner_url))
    try:
        seconds = remove_added_rows(engine, session.dataset)
    finally:
        engine.dispose()
    log.info("  removed the rows this workload added, vacuumed (%.1fs)", seconds)


def _cell_seconds(config: BenchConfig) -> float:
    return config.warmup + config.duration + CELL_OVERHEAD_ALLOWANCE


def _background(session: Session, workload: Workload) -> list[tuple[Kind, int]]:
    """The background kind with its connections, or nothing."""
    return [(workload.background, session.config.heavy_connections)] if workload.background else []


def _wrk_loads(session: Session, workload: Workload, connections: int) -> list[tuple[Path, int]]:
    directory = session.config.work_dir / "wrk"
    directory.mkdir(parents=True, exist_ok=True)
    mixes = [(workload.mix, connections)]
    mixes += [(((kind, 1),), c) for kind, c in _background(session, workload)]
    loads = []
    for number, (mix, count) in enumerate(mixes):
        path = directory / f"{workload.name}-{number}.lua"
        path.write_text(
            wrk.lua_script(mix, session.pairs, session.tokens, seed=session.config.seed)
        )
        loads.append((path, count))
    return loads


def measure_service(
    session: Session, workload: Workload, counts: tuple[int, ...]
) -> dict[int, ServiceRun | str]:
    config = session.config
    if not session.budget.allows(SERVER_START_ALLOWANCE + _cell_seconds(config)):
        return dict.fromkeys(counts, "skipped: time budget")
    with running_service(
        app_url=session.app_url,
        owner_url=session.owner_url,
        auth=session.auth,
        workers=config.workers,
        log_path=config.work_dir / f"server-{workload.name}.log",
        cwd=PROJECT_ROOT,
    ) as service:
        runs: dict[int, ServiceRun | str] = {}
        for connections in counts:
            if not session.budget.allows(_cell_seconds(config)):
                runs[connections] = "skipped: time budget"
                continue
            runs[connections] = _service_cell(session, service, workload, connections)
        return runs


def _service_cell(
    session: Session, service: Service, workload: Workload, connections: int
) -> ServiceRun:
    config = session.config
    loads = _wrk_loads(session, workload, connections)
    if config.warmup > 0:
        wrk.run(session.wrk, loads, url=service.url, seconds=config.warmup)
    meter = UsageMeter(server_pid=service.pid, workers=service.workers, db_pid=session.db_pid)
    with meter:
        results = wrk.run(session.wrk, loads, url=service.url, seconds=config.duration)
    result = results[0]
    log.info(
        "  service %-12s c=%-3d %8.0f req/s  p99 %6.1f ms  errors %d",
        workload.name,
        connections,
        result.rps,
        result.latency.p99_ms if result.latency else float("nan"),
        result.errors,
    )
    return ServiceRun(result, results[1] if len(results) > 1 else None, meter.usage())


def measure_pgbench(
    session: Session, workload: Workload, counts: tuple[int, ...]
) -> dict[int, PgbenchResult | str]:
    config = session.config
    directory = config.work_dir / "pgbench"
    background = _background(session, workload)
    loads = [(pgbench.write_scripts(workload.name, workload.mix, directory), 0)]
    loads += [(pgbench.write_scripts("background", ((k, 1),), directory), c) for k, c in background]
    kinds = [kind for kind, _ in workload.mix] + [kind for kind, _ in background]
    session.pgbench_scripts[workload.name] = "\n".join(
        f"-- {kind}\n{pgbench.script(kind)}" for kind in dict.fromkeys(kinds)
    )
    runs: dict[int, PgbenchResult | str] = {}
    for connections in counts:
        if not session.budget.allows(config.duration + CELL_OVERHEAD_ALLOWANCE):
            runs[connections] = "pgbench skipped: time budget"
            continue
        loads[0] = (loads[0][0], connections)
        with UsageMeter(server_pid=None, workers=[], db_pid=session.db_pid) as meter:
            result = pgbench.run(
                loads,
                url=session.app_url,
                seconds=config.duration,
                tasks=session.dataset.tasks,
                users=session.dataset.users,
                log_dir=directory / "log",
            )[0]
        db_cpu = meter.usage().db_cpu_s
        if db_cpu is not None and result.transactions:
            result = replace(result, db_cpu_ms_per_tx=1000 * db_cpu / result.transactions)
        log.info(
            "  pgbench %-12s c=%-3d %8.0f tps    p99 %6.1f ms  failed %d",
            workload.name,
            connections,
            result.tps,
            result.latency.p99_ms if result.latency else float("nan"),
            result.failed,
        )
        runs[connections] = result
    return runs
