"""One benchmark run: a fresh database and dataset, then every workload (bench/measure.py),
all within a time budget; whatever the run starts it stops, however it ends.

A growth run (`--growth`) measures its workloads, grows the same database tenfold, and measures
them again, in one invocation and one budget.
"""

import logging
import os
import platform
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine

from bench.config import BenchConfig
from bench.database import (
    app_role_url,
    fresh_database,
    postgres_server,
    row_security,
    sample_pairs,
    settings,
)
from bench.dataset import HEAVY_USER, LoadStats, grow, load
from bench.explain import SearchCost, search_cost
from bench.loadgen import choose
from bench.measure import (
    CELL_OVERHEAD_ALLOWANCE,
    SERVER_START_ALLOWANCE,
    Budget,
    Prepared,
    Session,
    measure,
)
from bench.results import Cell
from bench.server import Features
from bench.workloads import SLOW_SEARCH_WORD, WORKLOADS
from db.connections import sqlalchemy_url
from db.migrate import upgrade

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RunReport:
    config: BenchConfig
    started_at: datetime
    elapsed_seconds: float
    machine: dict[str, object]
    postgres: dict[str, str]
    dataset: LoadStats
    generator: str
    features: Features | None
    service_role: str
    row_security: bool
    pgbench_scripts: dict[str, str]
    cells: list[Cell]
    slow_search: SearchCost | None = None
    """What the head-of-line workload's slow search cost PostgreSQL on this run's data."""


@dataclass(frozen=True, kw_only=True)
class GrowthReport:
    """A growth run: the same workloads before (`base`) and after growing the table (`grown`)."""

    base: RunReport
    grown: RunReport | None
    """None when the table was not grown (the note says why)."""
    note: str | None = None

    @property
    def config(self) -> BenchConfig:
        return self.base.config


def run(config: BenchConfig) -> RunReport:
    started_at = datetime.now(UTC)
    budget = Budget(config.budget_seconds)
    machine = machine_facts()
    with ExitStack() as stack:
        session = _session(stack, config, budget)
        cells = _measure_all(session)
    return _report(session, started_at, machine, cells)


def run_growth(config: BenchConfig) -> GrowthReport:
    """Measure at `config.tasks`, grow the database to `config.growth_tasks`, measure again."""
    started_at = datetime.now(UTC)
    budget = Budget(config.budget_seconds)
    machine = machine_facts()
    with ExitStack() as stack:
        session = _session(stack, config, budget)
        base = _report(session, started_at, machine, _measure_all(session))
        loaded = session.prepared.dataset
        estimate = growth_estimate(loaded, config.growth_tasks) + _measuring_seconds(config)
        if not budget.allows(estimate):
            note = f"not grown: about {estimate / 60:.0f} min more would pass the time budget"
            log.warning(note)
            return GrowthReport(base=base, grown=None, note=note)
        grown_session = _grow(session, config)
        grown = _report(grown_session, started_at, machine, _measure_all(grown_session))
    return GrowthReport(base=base, grown=grown)


GROWTH_SLOWDOWN = 1.5
"""Margin on a linear estimate: index builds grow a little faster than the rows they sort."""


def growth_estimate(loaded: LoadStats, tasks: int) -> float:
    """Seconds to grow a table loaded in `loaded.total_seconds` to `tasks` rows, roughly."""
    return loaded.total_seconds * tasks / max(1, loaded.last_id) * GROWTH_SLOWDOWN


def _measuring_seconds(config: BenchConfig) -> float:
    cells = len(config.workloads or ()) * len(config.connections)
    per_cell = config.warmup + 2 * config.duration + 2 * CELL_OVERHEAD_ALLOWANCE
    return cells * per_cell + len(config.workloads or ()) * SERVER_START_ALLOWANCE


def _grow(session: Session, config: BenchConfig) -> Session:
    """The session again, over the grown table: new pairs drawn from all of it."""
    engine = create_engine(sqlalchemy_url(session.owner_url))
    try:
        loaded = session.prepared.dataset
        log.info("growing %s tasks to %s", f"{loaded.tasks:,}", f"{config.growth_tasks:,}")
        grown = grow(
            engine, loaded, tasks=config.growth_tasks, batch=config.growth_batch, seed=config.seed
        )
        log.info("grown in %.1fs", grown.total_seconds)
        pairs = sample_pairs(engine, tasks=grown.tasks, count=config.pair_samples, seed=config.seed)
    finally:
        engine.dispose()
    prepared = replace(session.prepared, dataset=grown, pairs=pairs)
    return replace(
        session,
        config=replace(config, tasks=grown.tasks),
        prepared=prepared,
        pgbench_scripts={},
    )


def _session(stack: ExitStack, config: BenchConfig, budget: Budget) -> Session:
    """The database server, a fresh database with the dataset, and what the workloads share."""
    server = stack.enter_context(
        postgres_server(os.environ.get("DATABASE_URL") or None, config.pgdata)
    )
    url = stack.enter_context(
        fresh_database(server, config.database_name, keep=config.keep_database)
    )
    prepared = prepare(config, url)
    session = Session(
        config=config,
        owner_url=url,
        service_url=prepared.app_url or url,
        db_pid=server.postmaster_pid,
        prepared=prepared,
        generator=choose(config),
        budget=budget,
    )
    log.info("load generator: %s", session.generator.name)
    return session


def _measure_all(session: Session) -> list[Cell]:
    config = session.config
    chosen = [w for w in WORKLOADS if config.workloads is None or w.name in config.workloads]
    return [cell for workload in chosen for cell in measure(session, workload)]


def _report(
    session: Session, started_at: datetime, machine: dict[str, object], cells: list[Cell]
) -> RunReport:
    prepared = session.prepared
    return RunReport(
        config=session.config,
        started_at=started_at,
        elapsed_seconds=session.budget.elapsed(),
        machine=machine,
        postgres=prepared.postgres,
        dataset=prepared.dataset,
        generator=session.generator.name,
        features=session.features,
        service_role=_role_description(session),
        row_security=prepared.row_security,
        pgbench_scripts=dict(session.pgbench_scripts),
        cells=cells,
        slow_search=prepared.slow_search,
    )


def _role_description(session: Session) -> str:
    if session.role_note:
        return session.role_note
    if session.service_url == session.owner_url:
        return "the database owner (no separate service role exists)"
    return "taskapi_app, the service's own role"


def prepare(config: BenchConfig, url: str) -> Prepared:
    """Migrate, load and sample the database; find the service's role and the settings."""
    upgrade(url)
    engine = create_engine(sqlalchemy_url(url))
    try:
        log.info(
            "loading %s tasks over %s users%s",
            f"{config.tasks:,}",
            f"{config.users:,}",
            f", and {config.heavy_user_tasks:,} of user {HEAVY_USER}"
            if config.heavy_user_tasks
            else "",
        )
        dataset = load(
            engine,
            tasks=config.tasks,
            users=config.users,
            heavy_user_tasks=config.heavy_user_tasks,
            seed=config.seed,
        )
        log.info("dataset loaded in %.1fs (%s)", dataset.total_seconds, dataset.method)
        app_url = app_role_url(engine, url)
        slow_search = None
        if dataset.heavy_user_tasks:
            # As the role the service will use (the owner when there is no app role).
            slow_search = search_cost(app_url or url, user=HEAVY_USER, word=SLOW_SEARCH_WORD)
            log.info(
                "the slow search costs PostgreSQL %.1f ms (%s)",
                slow_search.execution_ms,
                slow_search.plan,
            )
        return Prepared(
            dataset=dataset,
            # Ordinary tasks only (ids 1..tasks): the heavy user is never a sampled pair.
            pairs=sample_pairs(
                engine, tasks=config.tasks, count=config.pair_samples, seed=config.seed
            ),
            postgres=settings(engine),
            app_url=app_url,
            row_security=row_security(engine),
            slow_search=slow_search,
        )
    finally:
        engine.dispose()


def machine_facts() -> dict[str, object]:
    meminfo = Path("/proc/meminfo").read_text().split("\n", 1)[0]
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": round(int(meminfo.split()[1]) / 1024**2, 1),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
