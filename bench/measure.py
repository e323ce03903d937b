"""One workload: the service under load at each connection count, then pgbench on the same
statements, then the dataset put back if the workload wrote to it. pgbench runs while the service
is stopped (its 64 clients and the service's pool would pass max_connections = 100); the service
is restarted for each workload, so each workload's memory is its own."""

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field, replace

import psutil

from bench import pgbench, replica, wrk
from bench.config import BenchConfig
from bench.database import engine_at
from bench.dataset import LoadStats, remove_added_rows
from bench.results import Cell, Latency, Usage
from bench.service import BenchAuth, Service, change_tokens, consistency_token, running_service
from bench.workloads import HEAVY_USER, Workload

log = logging.getLogger(__name__)

SERVER_START_ALLOWANCE = 10.0
CELL_OVERHEAD_ALLOWANCE = 3.0
MEMORY_SAMPLE_SECONDS = 0.25


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
        paths = []  # a wrk script per mix, the same in every cell
        for number, mix in enumerate(workload.mixes):
            path = config.work_dir / "wrk" / f"{workload.name}-{number}.lua"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                wrk.lua_script(mix, session.pairs, tokens, config.seed, sinces, token, follow)
            )
            paths.append(path)
        for connections, cell in cells.items():
            if not session.allows(cell_seconds):
                cells[connections] = _noted(cell, "skipped: time budget")
                continue
            # The measured mix at `connections`; a background mix at `--heavy-connections`.
            loads = list(zip(paths, [connections, config.heavy_connections], strict=False))
            if config.warmup > 0:
                wrk.run(session.wrk, loads, url=service.url, seconds=config.warmup)
            with UsageMeter(service, session.db_pid) as meter:
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
        with UsageMeter(None, session.db_pid) as meter:
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
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
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

    def __init__(self, service: Service | None, db_pid: int | None) -> None:
        self._pids = (service.pid if service else None, db_pid)
        self._workers = {pid: psutil.Process(pid) for pid in (service.workers if service else [])}
        self._peaks = dict.fromkeys(self._workers, 0)
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
                with contextlib.suppress(psutil.NoSuchProcess):
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
