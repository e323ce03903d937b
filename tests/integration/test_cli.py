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

import jwt
import pytest

from db.embedded import postmaster_pid
from tests.auth_support import BASE_URL, claims_for

STARTUP_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


SECRET = "cli-test-secret-" * 4
AUTH_VARIABLES = ("AUTH_MODE", "AUTH_JWKS_URL", "AUTH_JWT_SECRET", "BETTER_AUTH_SECRET")


def clean_environment(**variables: str) -> dict[str, str]:
    """This process's environment without database or authentication settings, plus `variables`."""
    dropped = {"DATABASE_URL", "READ_DATABASE_URL", "MIGRATION_DATABASE_URL", *AUTH_VARIABLES}
    return {k: v for k, v in os.environ.items() if k not in dropped} | variables


def authenticated(**variables: str) -> dict[str, str]:
    """`clean_environment` with the tests' HS256 secret, issuer and audience."""
    return clean_environment(
        AUTH_JWT_SECRET=SECRET, AUTH_ISSUER=BASE_URL, AUTH_AUDIENCE=BASE_URL, **variables
    )


def call(
    base: str, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("content-type", "application/json")
    if token is not None:
        request.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def wait_until_serving(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, "taskapi serve exited during startup"
        try:
            call(base, "GET", "/openapi.json")
            return
        # Refused, reset, or a read timeout on a connection queued while the server starts (serve
        # listens before the database is up, and a worker still starting leaves it queued).
        except OSError:
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


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A DATA_DIR whose embedded server is stopped by pid even if the code under test leaks it."""
    yield tmp_path
    leaked = postmaster_pid(tmp_path / "postgres")
    if leaked is not None:
        os.kill(leaked, signal.SIGINT)


def test_serve_with_a_database_url_answers_on_loopback(
    database_url: str, app_database_url: str
) -> None:
    env = authenticated(DATABASE_URL=app_database_url, MIGRATION_DATABASE_URL=database_url)
    token = jwt.encode(claims_for("cli-smoke"), SECRET, algorithm="HS256")
    with serving(env, "--workers", "2") as base:
        task = call(base, "POST", "/api/cli-smoke/tasks", {"title": "from a real server"}, token)
        assert call(base, "GET", f"/api/cli-smoke/tasks/{task['id']}", token=token) == task
        with pytest.raises(urllib.error.HTTPError) as refused:
            call(base, "GET", "/api/cli-smoke/tasks")
        assert refused.value.code == 401
        call(base, "DELETE", f"/api/cli-smoke/tasks/{task['id']}", token=token)


def test_serve_with_a_database_url_but_no_authentication_refuses_to_start(
    database_url: str,
) -> None:
    env = clean_environment(DATABASE_URL=database_url)
    command = [sys.executable, "-m", "api.cli", "serve", "--port", str(free_port())]
    finished = subprocess.run(command, env=env, capture_output=True, timeout=STARTUP_SECONDS)
    assert finished.returncode == 2
    assert b"AUTH_MODE=none" in finished.stderr


@pytest.mark.slow
def test_embedded_database_keeps_tasks_across_restarts_and_stops_with_the_server(
    data_dir: Path,
) -> None:
    env = clean_environment(DATA_DIR=str(data_dir))

    with serving(env) as base:
        task = call(base, "POST", "/api/alice/tasks", {"title": "survive a restart"})
    assert postmaster_pid(data_dir / "postgres") is None

    with serving(env) as base:
        assert call(base, "GET", "/api/alice/tasks") == [task]
    assert postmaster_pid(data_dir / "postgres") is None
