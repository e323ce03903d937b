"""CPU time and resident memory of process trees, read from /proc (Linux)."""

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from bench.results import Usage

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")
# Fields of /proc/<pid>/stat counted after the ")" that closes the command name.
PPID, UTIME, STIME, CUTIME, CSTIME, START_TIME = 1, 11, 12, 13, 14, 19


def _stat(pid: int) -> list[str] | None:
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """When the process started, in clock ticks: tells a live process from a reused pid."""
    fields = _stat(pid)
    return None if fields is None else int(fields[START_TIME])


def cmdline(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _parents() -> dict[int, int]:
    parents = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[PPID])
    return parents


def children(pid: int) -> list[int]:
    return sorted(child for child, parent in _parents().items() if parent == pid)


def descendants(pid: int) -> list[int]:
    parents = _parents()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        kids = [child for child, parent in parents.items() if parent == current]
        found.extend(kids)
        frontier.extend(kids)
    return found


def _cpu_seconds(pid: int) -> float:
    """Own CPU plus that of reaped children: a backend that exits lands in its parent's count."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    ticks = sum(int(fields[i]) for i in (UTIME, STIME, CUTIME, CSTIME))
    return ticks / CLOCK_TICKS


def tree_cpu_seconds(root: int) -> float:
    return sum(_cpu_seconds(pid) for pid in (root, *descendants(root)))


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks over all cores since boot, from /proc/stat."""
    fields = [int(value) for value in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def status_kb(pid: int, field: str) -> int | None:
    """A `kB` figure such as VmRSS or VmHWM from /proc/<pid>/status."""
    try:
        lines = (PROC / str(pid) / "status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


@dataclass
class _Snapshot:
    server_cpu: float
    worker_cpu: dict[int, float]
    db_cpu: float | None
    machine: tuple[int, int]


class UsageMeter:
    """Measures one load run: CPU spent by the server and database trees, the share of the
    machine that was busy (other work included), and peak memory per worker, sampled meanwhile."""

    def __init__(
        self, *, server_pid: int | None, workers: Iterable[int], db_pid: int | None
    ) -> None:
        self._server_pid = server_pid
        self._workers = list(workers)
        self._db_pid = db_pid
        self._peaks: dict[int, int] = dict.fromkeys(self._workers, 0)
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample_memory, daemon=True)
        self._start: _Snapshot | None = None
        self._end: _Snapshot | None = None

    def __enter__(self) -> "UsageMeter":
        self._start = self._snapshot()
        self._sampler.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._sampler.join()
        # Let the postmaster reap backends that just exited, so their CPU is in its count.
        time.sleep(0.05)
        self._end = self._snapshot()

    def _snapshot(self) -> _Snapshot:
        server = 0.0 if self._server_pid is None else tree_cpu_seconds(self._server_pid)
        database = None if self._db_pid is None else tree_cpu_seconds(self._db_pid)
        workers = {pid: _cpu_seconds(pid) for pid in self._workers}
        return _Snapshot(server, workers, database, machine_ticks())

    def _sample_memory(self) -> None:
        while True:
            for pid in self._workers:
                # VmHWM is the process's own high-water mark, so no peak falls between samples.
                peak = max(status_kb(pid, "VmRSS") or 0, status_kb(pid, "VmHWM") or 0)
                self._peaks[pid] = max(self._peaks[pid], peak)
            if self._stop.wait(0.25):
                return

    def usage(self) -> Usage:
        assert self._start is not None, "use UsageMeter as a context manager"
        assert self._end is not None, "use UsageMeter as a context manager"
        busy = self._end.machine[0] - self._start.machine[0]
        total = self._end.machine[1] - self._start.machine[1]
        db_cpu = None
        if self._start.db_cpu is not None and self._end.db_cpu is not None:
            db_cpu = self._end.db_cpu - self._start.db_cpu
        return Usage(
            server_cpu_s=self._end.server_cpu - self._start.server_cpu,
            worker_cpu_s={
                str(pid): self._end.worker_cpu[pid] - self._start.worker_cpu[pid]
                for pid in self._workers
            },
            db_cpu_s=db_cpu,
            machine_busy_pct=100 * busy / total if total else 0.0,
            peak_rss_mb={str(pid): kb / 1024 for pid, kb in self._peaks.items() if kb},
        )
