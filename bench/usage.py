"""CPU time and resident memory of the service's and the database's process trees (psutil)."""

import contextlib
import threading
import time

import psutil

from bench.results import Usage

SAMPLE_SECONDS = 0.25


def _cpu(process: psutil.Process) -> float:
    """Own CPU plus that of reaped children: a backend that exits lands in its parent's count."""
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        times = process.cpu_times()
        return times.user + times.system + times.children_user + times.children_system
    return 0.0


def tree_cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:  # the process, its children, and theirs
        root = psutil.Process(pid)
        return sum(_cpu(p) for p in [root, *root.children(recursive=True)])
    except psutil.NoSuchProcess:
        return 0.0


class UsageMeter:
    """One load run: CPU of the server and database trees and of each worker, the share of the
    machine that was busy (other work included), and each worker's peak RSS, sampled meanwhile."""

    def __init__(self, server_pid: int | None, workers: list[int], db_pid: int | None) -> None:
        self._pids = (server_pid, db_pid)
        self._workers = {pid: psutil.Process(pid) for pid in workers}
        self._peaks = dict.fromkeys(workers, 0)
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample_memory, daemon=True)

    def _snapshot(self) -> tuple[float | None, float | None, dict[int, float]]:
        server, database = (tree_cpu_seconds(pid) for pid in self._pids)
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
            if self._stop.wait(SAMPLE_SECONDS):
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
