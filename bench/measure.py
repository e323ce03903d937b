"""Measuring one workload: the service under load at each connection count, then pgbench on
the same statements, then the dataset put back if the workload wrote to it.

pgbench runs while the service is stopped: its 64 clients plus the service's pooled connections
would pass a default max_connections of 100, and an idle service would still be in the picture.
The service is restarted for each workload, so each workload's memory is its own.
"""

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import create_engine

from bench import pgbench
from bench.auth import BenchAuth
from bench.config import BenchConfig
from bench.dataset import HEAVY_USER, LoadStats, remove_added_rows
from bench.explain import SearchCost
from bench.loadgen import LoadGenerator
from bench.procstat import UsageMeter
from bench.results import Cell, LoadResult, PgbenchResult, Usage
from bench.server import Features, Service, ServiceExited, ServiceSettings, running_service
from bench.workloads import WORKLOADS, RequestPlan, Workload, routes, unavailable
from db.connections import sqlalchemy_url
from db.settings import PROJECT_ROOT

log = logging.getLogger(__name__)

SERVER_START_ALLOWANCE = 10.0
CELL_OVERHEAD_ALLOWANCE = 3.0
WRITE_KINDS = {"create", "toggle"}


@dataclass(frozen=True, kw_only=True)
class Prepared:
    """The loaded database, as the service and pgbench will see it."""

    dataset: LoadStats
    pairs: list[tuple[str, int]]
    postgres: dict[str, str]
    app_url: str | None
    row_security: bool
    slow_search: SearchCost | None = None


class Budget:
    def __init__(self, seconds: float) -> None:
        self.started = time.monotonic()
        self._deadline = self.started + seconds

    def allows(self, seconds: float) -> bool:
        return time.monotonic() + seconds <= self._deadline

    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass
class Session:
    """What the workloads of one run share, and what the first service start found out."""

    config: BenchConfig
    owner_url: str
    service_url: str
    """The role the service and pgbench connect as: the app role, or the owner as a fallback."""
    db_pid: int | None
    prepared: Prepared
    generator: LoadGenerator
    budget: Budget
    auth: BenchAuth = field(default_factory=BenchAuth)
    features: Features | None = None
    role_note: str | None = None
    started_once: bool = False
    pgbench_scripts: dict[str, str] = field(default_factory=dict)


def measure(session: Session, workload: Workload) -> list[Cell]:
    if workload.slow_mix:
        return [measure_head_of_line(session, workload)]
    reason = None if session.features is None else unavailable(workload, session.features)
    if reason is not None:
        return [Cell(workload=workload.name, connections=c, note=reason) for c in _counts(session)]
    log.info("workload %s", workload.name)
    service = measure_service(session, workload)
    database = measure_pgbench(session, workload)
    if set(workload.kinds) & WRITE_KINDS:
        restore_dataset(session)
    return [_cell(workload, c, service.get(c), database.get(c)) for c in _counts(session)]


def restore_dataset(session: Session) -> None:
    engine = create_engine(sqlalchemy_url(session.owner_url))
    try:
        seconds = remove_added_rows(engine, session.prepared.dataset)
    finally:
        engine.dispose()
    log.info("  removed the rows this workload added, vacuumed (%.1fs)", seconds)


def _counts(session: Session) -> tuple[int, ...]:
    return session.config.connections


ServiceRun = tuple[LoadResult, Usage] | str
PgbenchRun = PgbenchResult | str


def _cell(
    workload: Workload, connections: int, service: ServiceRun | None, db: PgbenchRun | None
) -> Cell:
    notes = [note for note in (service, db) if isinstance(note, str)]
    return Cell(
        workload=workload.name,
        connections=connections,
        service=None if service is None or isinstance(service, str) else service[0],
        usage=None if service is None or isinstance(service, str) else service[1],
        pgbench=db if isinstance(db, PgbenchResult) else None,
        note="; ".join(notes) or None,
    )


def measure_service(session: Session, workload: Workload) -> dict[int, ServiceRun]:
    config = session.config
    if not session.budget.allows(SERVER_START_ALLOWANCE + _service_cell_seconds(config)):
        return dict.fromkeys(config.connections, "skipped: time budget")
    with ExitStack() as stack:
        service = _start_service(session, workload, stack)
        session.features = service.features
        reason = unavailable(workload, service.features)
        if reason:
            return dict.fromkeys(config.connections, reason)
        return dict(_service_cells(session, service, _plan(session, workload, service.features)))


def _plan(
    session: Session,
    workload: Workload,
    features: Features,
    pairs: list[tuple[str, int]] | None = None,
) -> RequestPlan:
    pairs = session.prepared.pairs if pairs is None else pairs
    tokens = session.auth.tokens(user for user, _ in pairs) if features.auth else {}
    return RequestPlan(workload, routes(features), pairs, tokens)


def _start_service(session: Session, workload: Workload, stack: ExitStack) -> Service:
    """Start the service as its own role; if this checkout cannot yet, as the owner, noted."""

    def start() -> Service:
        service_settings = ServiceSettings(
            database_url=session.service_url,
            migration_url=session.owner_url,
            auth=session.auth.environment(),
        )
        return stack.enter_context(
            running_service(
                service_settings,
                workers=session.config.workers,
                log_path=session.config.work_dir / f"server-{workload.name}.log",
                cwd=PROJECT_ROOT,
            )
        )

    try:
        service = start()
    except ServiceExited as exc:
        if session.started_once or session.service_url == session.owner_url:
            raise
        log.warning("the service did not start as taskapi_app (%s); serving as the owner", exc)
        session.role_note = (
            "the database owner, because `taskapi serve` did not start as taskapi_app"
            f" ({exc}); row-level security is bypassed"
        )
        session.service_url = session.owner_url
        service = start()
    session.started_once = True
    return service


def _service_cell_seconds(config: BenchConfig) -> float:
    return config.warmup + config.duration + CELL_OVERHEAD_ALLOWANCE


def _service_cells(
    session: Session, service: Service, plan: RequestPlan
) -> Iterator[tuple[int, ServiceRun]]:
    config = session.config
    for connections in config.connections:
        if not session.budget.allows(_service_cell_seconds(config)):
            yield connections, "skipped: time budget"
            continue
        run_load = session.generator.run
        if config.warmup > 0:
            run_load(plan, port=service.port, connections=connections, seconds=config.warmup)
        meter = UsageMeter(server_pid=service.pid, workers=service.workers, db_pid=session.db_pid)
        with meter:
            result = run_load(
                plan, port=service.port, connections=connections, seconds=config.duration
            )
        log.info(
            "  service %-6s c=%-3d %8.0f req/s  p99 %6.1f ms  errors %d",
            plan.workload.name,
            connections,
            result.rps,
            result.latency.p99_ms if result.latency else float("nan"),
            result.errors,
        )
        yield connections, (result, meter.usage())


def measure_pgbench(session: Session, workload: Workload) -> dict[int, PgbenchRun]:
    config = session.config
    if session.features is None:
        return dict.fromkeys(config.connections, "pgbench skipped: service never started")
    directory = config.work_dir / "pgbench"
    scripts = pgbench.write_scripts(
        workload, session.features, directory, row_security=session.prepared.row_security
    )
    if scripts is None:
        return dict.fromkeys(config.connections, f"no pgbench statement for {workload.name} yet")
    session.pgbench_scripts[workload.name] = _script_text(scripts)
    return {c: _pgbench_cell(session, scripts, c, directory) for c in config.connections}


def _script_text(arguments: list[str]) -> str:
    files = [arg for arg in arguments if arg != "-f"]
    return "\n".join(f"-- {Path(f).name}\n" + Path(f.rsplit("@", 1)[0]).read_text() for f in files)


def _pgbench_cell(
    session: Session, scripts: list[str], connections: int, directory: Path
) -> PgbenchRun:
    config = session.config
    if not session.budget.allows(config.duration + CELL_OVERHEAD_ALLOWANCE):
        return "pgbench skipped: time budget"
    with UsageMeter(server_pid=None, workers=(), db_pid=session.db_pid) as meter:
        result = _run_pgbench(session, scripts, connections, directory)
    db_cpu = meter.usage().db_cpu_s
    if db_cpu is not None and result.transactions:
        result = replace(result, db_cpu_ms_per_tx=1000 * db_cpu / result.transactions)
    log.info(
        "  pgbench c=%-3d %8.0f tps      p99 %6.1f ms  failed %d",
        connections,
        result.tps,
        result.latency.p99_ms if result.latency else float("nan"),
        result.failed,
    )
    return result


def _run_pgbench(
    session: Session, scripts: list[str], connections: int, directory: Path
) -> PgbenchResult:
    """pgbench on `scripts` as the service's role, for the run's duration and dataset."""
    config = session.config
    return pgbench.run(
        pgbench.binary(),
        scripts,
        database_url=session.service_url,
        connections=connections,
        seconds=config.duration,
        tasks=config.tasks,
        users=config.users,
        log_dir=directory,
    )


def measure_head_of_line(session: Session, workload: Workload) -> Cell:
    """Ordinary users' lists and the heavy user's slow searches, at once, for the same seconds.

    Two load generators run side by side: `head_of_line_connections` connections send the
    workload's ordinary mix over the sampled pairs, `slow_connections` more send the slow mix as
    HEAVY_USER. The cell's `service` is the ordinary requests alone, `slow` the slow ones, so the
    slow requests' latency never dilutes the figure the target is about. No pgbench: the target
    is about how the service shares itself out, and `list` alone is measured by its own workload.
    """
    config = session.config
    connections = config.head_of_line_connections

    def cell(note: str) -> Cell:
        return Cell(workload=workload.name, connections=connections, note=note)

    reason = _head_of_line_unavailable(session, workload)
    if reason is not None:
        return cell(reason)
    if not session.budget.allows(SERVER_START_ALLOWANCE + _service_cell_seconds(config)):
        return cell("skipped: time budget")
    log.info("workload %s", workload.name)
    with ExitStack() as stack:
        service = _start_service(session, workload, stack)
        session.features = service.features
        reason = unavailable(workload, service.features)
        if reason:
            return cell(reason)
        heavy = [(HEAVY_USER, session.prepared.dataset.last_id)]
        loads = [
            (_plan(session, workload, service.features), connections),
            (
                _plan(session, workload.slow_part(), service.features, heavy),
                config.slow_connections,
            ),
        ]
        run_load = session.generator.run_together
        if config.warmup > 0:
            run_load(loads, port=service.port, seconds=config.warmup)
        meter = UsageMeter(server_pid=service.pid, workers=service.workers, db_pid=session.db_pid)
        with meter:
            ordinary, slow = run_load(loads, port=service.port, seconds=config.duration)
        baseline = _pgbench_beside(session, loads[1], service.port, connections)
    log.info(
        "  service %-6s c=%-3d %8.0f req/s  p99 %6.1f ms  errors %d;"
        " slow c=%d %6.1f req/s  p50 %6.1f ms  errors %d",
        workload.name,
        connections,
        ordinary.rps,
        ordinary.latency.p99_ms if ordinary.latency else float("nan"),
        ordinary.errors,
        config.slow_connections,
        slow.rps,
        slow.latency.p50_ms if slow.latency else float("nan"),
        slow.errors,
    )
    return Cell(
        workload=workload.name,
        connections=connections,
        service=ordinary,
        usage=meter.usage(),
        pgbench=baseline,
        slow=slow,
        slow_connections=config.slow_connections,
        note=(
            "pgbench: PostgreSQL's own `list` while the same slow searches run through the service"
            if baseline is not None
            else "no pgbench baseline (no list statement, or no time left)"
        ),
    )


def _pgbench_beside(
    session: Session, slow_load: tuple[RequestPlan, int], port: int, connections: int
) -> PgbenchResult | None:
    """PostgreSQL's own `list` at `connections` clients while the slow searches run as before.

    The same two cores serve wrk, the workers, the slow searches and the lists: this run shows
    how much of the lists' slowdown is the machine's (the database's own lists slow down too)
    and how much is the service's.
    """
    config = session.config
    if session.features is None or not session.budget.allows(
        config.duration + CELL_OVERHEAD_ALLOWANCE
    ):
        return None
    directory = config.work_dir / "pgbench-head-of-line"
    list_workload = next(w for w in WORKLOADS if w.name == "list")
    scripts = pgbench.write_scripts(
        list_workload, session.features, directory, row_security=session.prepared.row_security
    )
    if scripts is None:
        return None
    plan, slow_connections = slow_load
    with ThreadPoolExecutor(max_workers=1) as pool:
        # A second longer than pgbench, so the searches cover its whole run.
        searches = pool.submit(
            session.generator.run,
            plan,
            port=port,
            connections=slow_connections,
            seconds=config.duration + 1,
        )
        result = _run_pgbench(session, scripts, connections, directory)
        searches.result()
    log.info(
        "  pgbench list c=%-3d %8.0f tps      p99 %6.1f ms  beside the slow searches",
        connections,
        result.tps,
        result.latency.p99_ms if result.latency else float("nan"),
    )
    return result


def _head_of_line_unavailable(session: Session, workload: Workload) -> str | None:
    if session.prepared.dataset.heavy_user_tasks == 0:
        return "not run: no heavy user was loaded (--heavy-user-tasks 0)"
    if session.config.slow_connections < 1:
        return "not run: no slow connections (--slow-connections 0)"
    if session.features is not None:
        return unavailable(workload, session.features)
    return None
