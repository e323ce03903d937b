"""The HTTP load generator a run uses: wrk when it is (or can be made) available, else Python."""

import logging
from pathlib import Path
from typing import Protocol

from bench import pyload, wrk
from bench.config import BenchConfig
from bench.results import LoadResult
from bench.server import HOST
from bench.workloads import RequestPlan

log = logging.getLogger(__name__)


class LoadGenerator(Protocol):
    @property
    def name(self) -> str: ...

    def run(
        self, plan: RequestPlan, *, port: int, connections: int, seconds: float
    ) -> LoadResult: ...

    def run_together(
        self, loads: list[tuple[RequestPlan, int]], *, port: int, seconds: float
    ) -> list[LoadResult]:
        """Each (plan, connections) at the same time for the same seconds; results in order."""
        ...


class Wrk:
    def __init__(self, binary: str, config: BenchConfig) -> None:
        self._binary = binary
        self._config = config
        self._scripts: dict[str, tuple[RequestPlan, Path]] = {}
        self.name = wrk.version(binary) or wrk.NAME

    def run(self, plan: RequestPlan, *, port: int, connections: int, seconds: float) -> LoadResult:
        return wrk.run(
            self._binary,
            self._script(plan),
            url=f"http://{HOST}:{port}",
            connections=connections,
            threads=self._config.generator_threads,
            seconds=seconds,
        )

    def run_together(
        self, loads: list[tuple[RequestPlan, int]], *, port: int, seconds: float
    ) -> list[LoadResult]:
        return wrk.run_together(
            self._binary,
            [(self._script(plan), connections) for plan, connections in loads],
            url=f"http://{HOST}:{port}",
            threads=self._config.generator_threads,
            seconds=seconds,
        )

    def _script(self, plan: RequestPlan) -> Path:
        # Written once per plan: a growth run measures the same workload again with new pairs.
        cached = self._scripts.get(plan.workload.name)
        if cached is not None and cached[0] is plan:
            return cached[1]
        path = self._config.work_dir / "wrk" / f"{plan.workload.name}.lua"
        path.parent.mkdir(parents=True, exist_ok=True)
        # Per thread; one thread by default, so this is the cap per run.
        cap = self._config.max_requests
        path.write_text(wrk.lua_script(plan, max_requests=cap, seed=self._config.seed))
        self._scripts[plan.workload.name] = (plan, path)
        return path


class PythonLoad:
    name = pyload.NAME

    def __init__(self, config: BenchConfig) -> None:
        self._max_requests = config.max_requests

    def run(self, plan: RequestPlan, *, port: int, connections: int, seconds: float) -> LoadResult:
        return pyload.run(
            plan,
            port=port,
            connections=connections,
            seconds=seconds,
            max_requests=self._max_requests,
        )

    def run_together(
        self, loads: list[tuple[RequestPlan, int]], *, port: int, seconds: float
    ) -> list[LoadResult]:
        return pyload.run_together(
            loads, port=port, seconds=seconds, max_requests=self._max_requests
        )


def choose(config: BenchConfig) -> LoadGenerator:
    if config.generator == "python":
        return PythonLoad(config)
    binary = wrk.find_or_install(allow_install=config.install_wrk)
    if binary is not None:
        return Wrk(binary, config)
    if config.generator == "wrk":
        raise RuntimeError("--generator wrk was asked for, but wrk is not available")
    log.warning("wrk is not available: falling back to the Python load generator")
    return PythonLoad(config)
