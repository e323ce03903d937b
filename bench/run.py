"""One benchmark run: a fresh database and dataset, then every workload, all within a time
budget; whatever the run starts it stops, however it ends. A workload is the service under load at
each connection count, then pgbench on the same statements, then the dataset put back if the
workload wrote to it. pgbench runs while the service is stopped (its 64 clients and the service's
pool would pass max_connections = 100); the service is restarted for each workload, so each
workload's memory is its own. A growth run measures its workloads, grows the same database, and
measures them again, in one budget."""

import logging
import os
import platform
import threading
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import psutil
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from bench import pgbench, replica, wrk
from bench.config import BenchConfig
from bench.database import engine_at, fresh_database, postgres_server, sample_pairs, settings
from bench.dataset import LoadStats, grow, load, remove_added_rows
from bench.results import Cell, Latency, Usage
from bench.service import HOST, BenchAuth, change_tokens, consistency_token, running_service
from bench.workloads import HEAVY_USER, REPLICA_WORKLOADS, WORKLOADS, Workload
from db.embedded import APP_ROLE, as_role
from db.migrate import upgrade

log = logging.getLogger(__name__)

GROWTH_SLOWDOWN = 1.5  # index builds grow a little faster than the rows they sort
SERVER_START_ALLOWANCE = 10.0
CELL_OVERHEAD_ALLOWANCE = 3.0
MEMORY_SAMPLE_SECONDS = 0.25


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


@dataclass(kw_only=True)
class Session:
    """What the workloads of one run share."""

    config: BenchConfig
    owner_url: str
    app_url: str  # the service's own role (row-level security applies); pgbench's too
    db_pid: int | None
    dataset: LoadStats
    pairs: list[tuple[str, int]]  # real (user_id, task id) pairs of ordinary tasks
    wrk: str
    deadline: float  # time.monotonic() of the time budget's end: no cell may end later
    auth: BenchAuth
    pgbench_scripts: dict[str, str] = field(default_factory=dict)
    replica_url: str | None = None  # `--replica`: the replica, as the service's role
    reads_on_replica: bool = False  # whether the service reads from it (else from the primary)

    def allows(self, seconds: float) -> bool:
        return time.monotonic() + seconds <= self.deadline


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
            pairs=sample_pairs(engine, dataset.tasks, config),
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
            # Growing: about as long per row as loading (with a margin); then all measured again.
            growing = dataset.total_seconds * config.growth_tasks / max(1, dataset.last_id)
            per_cell = config.warmup + 2 * (config.duration + CELL_OVERHEAD_ALLOWANCE)
            per_workload = len(config.connections) * per_cell + SERVER_START_ALLOWANCE
            estimate = growing * GROWTH_SLOWDOWN + len(config.workloads or ()) * per_workload
            if session.allows(estimate):
                grown = grow(engine, dataset, config)
                # New pairs, drawn from all of the grown table.
                pairs = sample_pairs(engine, grown.tasks, config)
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


def measure(session: Session, workload: Workload) -> list[Cell]:
    base = Cell(workload=workload.name, connections=0, tasks=session.dataset.tasks)
    cells = {c: replace(base, connections=c) for c in workload.counts(session.config.connections)}
    if workload.needs_heavy_user and not session.dataset.heavy_user_tasks:
        note = "not run: no heavy user was loaded (--heavy-user-tasks 0)"
        return [_noted(cell, note) for cell in cells.values()]
    log.info("workload %s", workload.name)
    measure_service(session, workload, cells)
    if session.replica_url is None:
        measure_pgbench(session, workload, cells)
    if workload.writes:
        with engine_at(session.owner_url) as engine:
            seconds = remove_added_rows(engine, session.dataset)
        log.info("  removed the rows this workload added, vacuumed (%.1fs)", seconds)
    return list(cells.values())


def _noted(cell: Cell, note: str) -> Cell:
    return replace(cell, note="; ".join(filter(None, [cell.note, note])))


def _log(tool: str, cell: Cell, rate: float, latency: Latency | None, errors: int) -> None:
    p99 = latency.p99_ms if latency else float("nan")
    line = "  %s %-12s c=%-3d %8.0f/s  p99 %6.1f ms  errors %d"
    log.info(line, tool, cell.workload, cell.connections, rate, p99, errors)


def measure_service(session: Session, workload: Workload, cells: dict[int, Cell]) -> None:
    config = session.config
    cell_seconds = config.warmup + config.duration + CELL_OVERHEAD_ALLOWANCE
    if not session.allows(SERVER_START_ALLOWANCE + cell_seconds):
        cells.update((c, _noted(cell, "skipped: time budget")) for c, cell in cells.items())
        return
    urls = [session.app_url, session.replica_url] if session.replica_url else []
    counted = [replica.transactions(url) for url in urls]
    with running_service(
        app_url=session.app_url,
        read_url=session.replica_url if session.reads_on_replica else None,
        owner_url=session.owner_url,
        auth=session.auth,
        workers=config.workers,
        log_path=config.work_dir / f"server-{workload.name}.log",
        # `--replica` compares like with like: inline reads serve the primary only (ADR 0018).
        inline_reads="off" if session.replica_url else "auto",
    ) as service:
        users = {user for user, _ in session.pairs} | {HEAVY_USER}
        tokens = {user: session.auth.token(user) for user in users}
        sinces = change_tokens(service.url, tokens) if "changes" in workload.kinds else {}
        # "replayed": the token of a write made now, long replayed when the cells run.
        user, replayed = session.pairs[0][0], workload.consistency == "replayed"
        token = consistency_token(service.url, user, tokens[user]) if replayed else None
        follow = workload.consistency == "latest"
        paths = []  # a wrk script per mix, the same in every cell, beside the service's log
        for number, mix in enumerate(workload.mixes):
            script = wrk.lua_script(mix, session.pairs, tokens, config.seed, sinces, token, follow)
            paths.append(config.work_dir / f"wrk-{workload.name}-{number}.lua")
            paths[-1].write_text(script)
        for connections, cell in cells.items():
            if not session.allows(cell_seconds):
                cells[connections] = _noted(cell, "skipped: time budget")
                continue
            # The measured mix at `connections`; a background mix at `--heavy-connections`.
            loads = list(zip(paths, [connections, config.heavy_connections], strict=False))
            if config.warmup > 0:
                wrk.run(session.wrk, loads, url=service.url, seconds=config.warmup)
            with UsageMeter(service.pid, service.workers, session.db_pid) as meter:
                result, *background = wrk.run(
                    session.wrk, loads, url=service.url, seconds=config.duration
                )
            _log("service", cell, result.rps, result.latency, result.errors)
            cells[connections] = replace(
                cell, service=result, background=next(iter(background), None), usage=meter.usage()
            )
    if urls:  # `--replica`, once the service's backends have ended (and reported)
        ended = [replica.transactions(url) - n for url, n in zip(urls, counted, strict=True)]
        share = 100 * ended[1] / max(1, sum(ended))
        cells.update((c, replace(cell, replica_share_pct=share)) for c, cell in cells.items())


def measure_pgbench(session: Session, workload: Workload, cells: dict[int, Cell]) -> None:
    config = session.config
    kinds = [kind for mix in workload.mixes for kind, _ in mix]
    texts = (f"-- {kind}\n{pgbench.script(kind)}" for kind in kinds)
    session.pgbench_scripts[workload.name] = "\n".join(texts)
    scripts = [
        pgbench.write_scripts(f"{workload.name}-{n}", mix, config.work_dir / "pgbench")
        for n, mix in enumerate(workload.mixes)
    ]
    for connections, cell in cells.items():
        if not session.allows(config.duration + CELL_OVERHEAD_ALLOWANCE):
            cells[connections] = _noted(cell, "pgbench skipped: time budget")
            continue
        loads = list(zip(scripts, [connections, config.heavy_connections], strict=False))
        with UsageMeter(None, [], session.db_pid) as meter:
            result = pgbench.run(
                loads, url=session.app_url, seconds=config.duration, dataset=session.dataset
            )
        db_cpu = meter.usage().db_cpu_s
        if db_cpu is not None and result.transactions:
            result = replace(result, db_cpu_ms_per_tx=1000 * db_cpu / result.transactions)
        _log("pgbench", cell, result.tps, result.latency, result.failed)
        cells[connections] = replace(cell, pgbench=result)


def _cpu(process: psutil.Process) -> float:
    """Own CPU plus that of reaped children: a backend that exits lands in its parent's count."""
    with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        times = process.cpu_times()
        return times.user + times.system + times.children_user + times.children_system
    return 0.0


def _tree_cpu(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:  # the process, its children, and theirs
        root = psutil.Process(pid)
        return sum(_cpu(p) for p in [root, *root.children(recursive=True)])
    except psutil.NoSuchProcess:
        return 0.0


class UsageMeter:
    """One load run (psutil): CPU of the service's and the database's process trees and of each
    worker, the share of the machine that was busy (other work included), and each worker's peak
    RSS, sampled meanwhile."""

    def __init__(self, server_pid: int | None, workers: list[int], db_pid: int | None) -> None:
        self._pids = (server_pid, db_pid)
        self._workers = {pid: psutil.Process(pid) for pid in workers}
        self._peaks = dict.fromkeys(workers, 0)
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample_memory, daemon=True)

    def _snapshot(self) -> tuple[float | None, float | None, dict[int, float]]:
        server, database = (_tree_cpu(pid) for pid in self._pids)
        return server, database, {pid: _cpu(p) for pid, p in self._workers.items()}

    def __enter__(self) -> "UsageMeter":
        self._start = self._snapshot()
        psutil.cpu_percent()  # the next call reports the busy share since this one
        self._sampler.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._sampler.join()
        self._busy = psutil.cpu_percent()
        # Let the postmaster reap backends that just exited, so their CPU is in its count.
        time.sleep(0.05)
        self._end = self._snapshot()

    def _sample_memory(self) -> None:
        while True:
            for pid, process in self._workers.items():
                with suppress(psutil.NoSuchProcess):
                    self._peaks[pid] = max(self._peaks[pid], process.memory_info().rss)
            if self._stop.wait(MEMORY_SAMPLE_SECONDS):
                return

    def usage(self) -> Usage:
        (server0, db0, workers0), (server1, db1, workers1) = self._start, self._end
        return Usage(
            server_cpu_s=(server1 or 0) - (server0 or 0),
            db_cpu_s=None if db0 is None or db1 is None else db1 - db0,
            worker_cpu_s={str(pid): workers1[pid] - workers0[pid] for pid in self._workers},
            machine_busy_pct=self._busy,
            peak_rss_mb={str(pid): rss / 2**20 for pid, rss in self._peaks.items() if rss},
        )
