"""One benchmark run: a fresh database and dataset, then every workload (bench/measure.py),
all within a time budget; whatever the run starts it stops, however it ends."""

import logging
import os
import platform
from contextlib import ExitStack
from dataclasses import dataclass
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
from bench.dataset import LoadStats, load
from bench.loadgen import choose
from bench.measure import Budget, Prepared, Session, measure
from bench.results import Cell
from bench.server import Features
from bench.workloads import WORKLOADS
from db.engine import sqlalchemy_url
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


def run(config: BenchConfig) -> RunReport:
    started_at = datetime.now(UTC)
    budget = Budget(config.budget_seconds)
    machine = machine_facts()
    with ExitStack() as stack:
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
        chosen = [w for w in WORKLOADS if config.workloads is None or w.name in config.workloads]
        cells = [cell for workload in chosen for cell in measure(session, workload)]
    return RunReport(
        config=config,
        started_at=started_at,
        elapsed_seconds=budget.elapsed(),
        machine=machine,
        postgres=prepared.postgres,
        dataset=prepared.dataset,
        generator=session.generator.name,
        features=session.features,
        service_role=_role_description(session),
        row_security=prepared.row_security,
        pgbench_scripts=session.pgbench_scripts,
        cells=cells,
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
        log.info("loading %s tasks over %s users", f"{config.tasks:,}", f"{config.users:,}")
        dataset = load(engine, tasks=config.tasks, users=config.users, seed=config.seed)
        log.info("dataset loaded in %.1fs (%s)", dataset.total_seconds, dataset.method)
        return Prepared(
            dataset=dataset,
            pairs=sample_pairs(
                engine, tasks=config.tasks, count=config.pair_samples, seed=config.seed
            ),
            postgres=settings(engine),
            app_url=app_role_url(engine, url),
            row_security=row_security(engine),
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
