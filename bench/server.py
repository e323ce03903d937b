"""The service under test, started as production starts it: `taskapi serve --workers N`."""

import contextlib
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procstat

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
LIST_PATH = "/api/{user_id}/tasks"
READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 15.0
WORKER_MARK = "multiprocessing.spawn"


class ServiceExited(RuntimeError):
    """`taskapi serve` exited before it answered."""


@dataclass(frozen=True)
class Features:
    """What the list endpoint accepts today, read from the service's own /openapi.json."""

    limit: bool
    search: bool
    auth: bool
    """Requests need a bearer token (the operation names a security scheme)."""


@dataclass(frozen=True)
class ServiceSettings:
    database_url: str
    """The role the service connects as (in production one that row-level security applies to)."""
    migration_url: str
    """The schema owner, which `taskapi serve` migrates with before serving."""
    auth: dict[str, str]

    def environment(self) -> dict[str, str]:
        # Every URL set explicitly, so a developer's .env cannot point a side elsewhere.
        return {
            "DATABASE_URL": self.database_url,
            "READ_DATABASE_URL": self.database_url,
            "MIGRATION_DATABASE_URL": self.migration_url,
            **self.auth,
        }


@dataclass(frozen=True)
class Service:
    pid: int
    port: int
    workers: list[int]
    features: Features

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def serve_command(port: int, workers: int) -> list[str]:
    script = Path(sys.executable).with_name("taskapi")
    program = [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]
    return [*program, "serve", "--host", HOST, "--port", str(port), "--workers", str(workers)]


@contextlib.contextmanager
def running_service(
    settings: ServiceSettings, *, workers: int, log_path: Path, cwd: Path
) -> Iterator[Service]:
    """Start the service on a free loopback port; stop it by pid however the block ends."""
    port = free_port()
    env = os.environ | settings.environment()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # Its access log lands here, one file per workload, replaced on every run.
    with log_path.open("wb") as log_file:
        # A session of its own: the bench, not a terminal's Ctrl-C, decides how it stops.
        proc = subprocess.Popen(  # noqa: S603 -- our own interpreter and arguments
            serve_command(port, workers),
            env=env,
            cwd=cwd,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        features = _wait_ready(proc, port, log_path)
        yield Service(proc.pid, port, _workers(proc.pid), features)
    finally:
        stop(proc)


def _workers(master: int) -> list[int]:
    # Workers are multiprocessing children; the master also has a resource tracker, which is
    # counted in the CPU figures but is not a worker. With one worker the master serves.
    workers = [pid for pid in procstat.children(master) if WORKER_MARK in procstat.cmdline(pid)]
    return workers or [master]


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log_path: Path) -> Features:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceExited(f"the service exited with {proc.returncode}; see {log_path}")
        document = _get_json(port, "/openapi.json")
        if document is not None:
            return features_of(document)
        time.sleep(0.2)
    raise TimeoutError(f"the service was not ready in {READY_TIMEOUT_SECONDS:.0f}s; see {log_path}")


def _get_json(port: int, path: str) -> Any:
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return json.loads(response.read()) if response.status == 200 else None
    except OSError:
        return None
    finally:
        connection.close()


def features_of(openapi: Any) -> Features:
    """Does GET /api/{user_id}/tasks take `limit` and `q`, and want a token? The harness adapts."""
    operation = openapi.get("paths", {}).get(LIST_PATH, {}).get("get", {})
    names = {p.get("name") for p in operation.get("parameters", []) if p.get("in") == "query"}
    security = operation.get("security", openapi.get("security", []))
    return Features(limit="limit" in names, search="q" in names, auth=bool(security))


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the master (uvicorn stops its workers), then SIGKILL whatever is left, by pid."""
    family = [(pid, procstat.start_time(pid)) for pid in procstat.descendants(proc.pid)]
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("the service (pid %s) ignored SIGTERM; killing it", proc.pid)
            proc.kill()
            proc.wait()
    for pid, started in family:
        # Compare start times so a pid the kernel has since reused is left alone.
        if started is not None and procstat.start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
