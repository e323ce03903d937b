"""`taskapi serve` as a user runs it: a real process on loopback, stopped by process id."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

STARTUP_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def call(base: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def wait_until_serving(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, "taskapi serve exited during startup"
        try:
            call(base, "GET", "/openapi.json")
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise AssertionError(f"taskapi serve did not answer within {STARTUP_SECONDS}s")


@contextmanager
def serving(env: dict[str, str], *args: str) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "api.cli", "serve", "--port", str(port), *args]
    process = subprocess.Popen(command, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base, process)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid of a postmaster still running on `pgdata`, if any."""
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A DATA_DIR whose embedded server is stopped by pid even if the code under test leaks it."""
    yield tmp_path
    leaked = postmaster_pid(tmp_path / "postgres")
    if leaked is not None:
        os.kill(leaked, signal.SIGINT)


def test_serve_with_a_database_url_answers_on_loopback(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    with serving(env, "--workers", "2") as base:
        task = call(base, "POST", "/api/cli-smoke/tasks", {"title": "from a real server"})
        assert call(base, "GET", f"/api/cli-smoke/tasks/{task['id']}") == task
        call(base, "DELETE", f"/api/cli-smoke/tasks/{task['id']}")


@pytest.mark.slow
def test_embedded_database_keeps_tasks_across_restarts_and_stops_with_the_server(
    data_dir: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["DATA_DIR"] = str(data_dir)

    with serving(env) as base:
        task = call(base, "POST", "/api/alice/tasks", {"title": "survive a restart"})
    assert postmaster_pid(data_dir / "postgres") is None

    with serving(env) as base:
        assert call(base, "GET", "/api/alice/tasks") == [task]
    assert postmaster_pid(data_dir / "postgres") is None
