"""One benchmark run: a fresh database and dataset, then every workload (bench/measure.py), all
within a time budget; whatever the run starts it stops, however it ends. A growth run measures
its workloads, grows the same database, and measures them again, in one budget."""

import logging
import os
import platform
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import psutil
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from bench import replica, wrk
from bench.config import BenchConfig
from bench.database import engine_at, fresh_database, postgres_server, sample_pairs, settings
from bench.dataset import LoadStats, grow, load
from bench.measure import CELL_OVERHEAD_ALLOWANCE, SERVER_START_ALLOWANCE, Session, measure
from bench.results import Cell
from bench.service import HOST, BenchAuth
from bench.workloads import REPLICA_WORKLOADS, WORKLOADS
from db.embedded import APP_ROLE, as_role
from db.migrate import upgrade

log = logging.getLogger(__name__)

GROWTH_SLOWDOWN = 1.5  # index builds grow a little faster than the rows they sort


@dataclass(frozen=True, kw_only=True)
class Report:
    config: BenchConfig
    started_at: datetime
    elapsed_seconds: float
    machine: dict[str, object]
    postgres: dict[str, str]
    datasets: list[LoadStats]  # the loaded dataset, and the grown one after it in a growth run
    generator: str
    pgbench_scripts: dict[str, str]
    cells: list[Cell]
    note: str | None = None


def run(config: BenchConfig) -> Report:
    started_at = datetime.now(UTC)
    machine = machine_facts()
    started = time.monotonic()
    binary, generator = wrk.find_or_install(allow_install=config.install_wrk)
    with ExitStack() as stack:
        server = stack.enter_context(postgres_server(os.environ.get("DATABASE_URL"), config.pgdata))
        url = stack.enter_context(
            fresh_database(server, config.database_name, keep=config.keep_database)
        )
        upgrade(url)
        engine = stack.enter_context(engine_at(url))
        dataset = load(engine, config)
        session = Session(
            config=config,
            owner_url=url,
            app_url=as_role(url, APP_ROLE),
            db_pid=server.postmaster_pid,
            dataset=dataset,
            pairs=sample_pairs(engine, dataset.tasks, count=config.pair_samples, seed=config.seed),
            wrk=binary,
            deadline=started + config.budget_seconds,
            auth=BenchAuth(),
        )
        datasets, note = [dataset], None
        if config.replica:
            cells = _replicated(session, server.admin_url, engine, stack)
        else:
            cells = _measure_all(session)
        if config.growth:
            # Growing takes about as long per row as loading did (with a margin), then every
            # workload is measured again.
            growing = dataset.total_seconds * config.growth_tasks / max(1, dataset.last_id)
            per_cell = config.warmup + 2 * (config.duration + CELL_OVERHEAD_ALLOWANCE)
            per_workload = len(config.connections) * per_cell + SERVER_START_ALLOWANCE
            estimate = growing * GROWTH_SLOWDOWN + len(config.workloads or ()) * per_workload
            if session.allows(estimate):
                grown = grow(engine, dataset, config)
                # New pairs, drawn from all of the grown table.
                pairs = sample_pairs(
                    engine, grown.tasks, count=config.pair_samples, seed=config.seed
                )
                cells += _measure_all(replace(session, dataset=grown, pairs=pairs))
                datasets.append(grown)
            else:
                note = f"not grown: about {estimate / 60:.0f} min more would pass the time budget"
                log.warning(note)
        return Report(
            config=config,
            started_at=started_at,
            elapsed_seconds=time.monotonic() - started,
            machine=machine,
            postgres=settings(engine),
            datasets=datasets,
            generator=generator,
            pgbench_scripts=session.pgbench_scripts,
            cells=cells,
            note=note,
        )


def _measure_all(session: Session) -> list[Cell]:
    config = session.config
    every = REPLICA_WORKLOADS if config.replica else WORKLOADS
    chosen = [w for w in every if config.workloads is None or w.name in config.workloads]
    return [cell for workload in chosen for cell in measure(session, workload)]


def _replicated(session: Session, admin_url: str, primary: Engine, stack: ExitStack) -> list[Cell]:
    """The workloads reading from the primary, then again reading from a streaming replica."""
    log.info("making a streaming replica (pg_basebackup)")
    port = stack.enter_context(replica.streaming_replica(admin_url, session.config.pgdata))
    on_replica = make_url(session.app_url).set(host=HOST, port=port, query={})
    session = replace(session, replica_url=on_replica.render_as_string(hide_password=False))
    replica.wait_for_replay(primary, session.replica_url or "")
    cells = []
    for reads_on_replica, label in ((False, "primary only"), (True, "primary + replica")):
        run = _measure_all(replace(session, reads_on_replica=reads_on_replica))
        cells += [replace(cell, workload=f"{cell.workload}, {label}") for cell in run]
    return cells


def machine_facts() -> dict[str, object]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((x.split(":", 1)[1].strip() for x in cpuinfo if x.startswith("model name")), "?")
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
