"""Database faults under a real server: killed connections, an outage, a slow network, and a
database that stops and starts again. No 500s; 503 with Retry-After while the database is gone;
full recovery without a restart; no task lost or doubled."""

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from db import embedded
from db.connections import sqlalchemy_url
from tests.integration.test_cli import serving
from tests.reliability.proxy import Proxy, upstream_for
from tests.reliability.test_concurrent_writes import Reply, request

OUTAGE_ANSWER_SECONDS = 15.0


@pytest.fixture(scope="module")
def proxy(app_database_url: str) -> Iterator[Proxy]:
    proxy = Proxy(upstream_for(app_database_url))
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def server(proxy: Proxy, app_database_url: str, database_url: str) -> Iterator[str]:
    env = {
        **os.environ,
        "DATABASE_URL": proxy.url_for(app_database_url),
        "MIGRATION_DATABASE_URL": database_url,
        "AUTH_MODE": "none",
    }
    env.pop("READ_DATABASE_URL", None)
    with serving(env) as base:
        yield base


@pytest.fixture
def user() -> str:
    return f"fault-{uuid.uuid4().hex[:12]}"


def assert_unavailable(reply: Reply) -> None:
    status, headers, body = reply
    assert status == 503, body
    assert headers["content-type"] == "application/problem+json"
    assert int(headers["retry-after"]) > 0
    assert json.loads(body)["status"] == 503


def create_with_retries(base: str, user: str, title: str, attempts: int = 100) -> int:
    """Create a task the way a careful client does: one key, retried while the answer is 503."""
    key = {"Idempotency-Key": f"{user}-{title}"}
    for _ in range(attempts):
        status, _, body = request(base, "POST", f"/api/{user}/tasks", {"title": title}, key)
        if status == 201:
            task_id: int = json.loads(body)["id"]
            return task_id
        assert status == 503, body
        time.sleep(0.05)
    raise AssertionError(f"{title} was never created")


def test_killed_database_connections_are_replaced_unnoticed(
    server: str, user: str, database_url: str
) -> None:
    for n in range(5):
        assert request(server, "POST", f"/api/{user}/tasks", {"title": f"t{n}"})[0] == 201
    admin = create_engine(sqlalchemy_url(database_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND usename = :role"
            ),
            {"role": embedded.APP_ROLE},
        ).scalar_one()
    admin.dispose()
    assert killed >= 1

    replies = [request(server, "GET", f"/api/{user}/tasks") for _ in range(10)]

    assert [status for status, _, _ in replies] == [200] * 10
    assert len(json.loads(replies[-1][2])) == 5


def test_an_outage_answers_503_with_retry_after_and_recovers(
    server: str, user: str, proxy: Proxy
) -> None:
    assert request(server, "POST", f"/api/{user}/tasks", {"title": "before"})[0] == 201
    proxy.cut()
    try:
        for method, path, payload in [
            ("GET", f"/api/{user}/tasks", None),
            ("POST", f"/api/{user}/tasks", {"title": "during"}),
            ("GET", "/readyz", None),
        ]:
            started = time.monotonic()
            assert_unavailable(request(server, method, path, payload))
            assert time.monotonic() - started < OUTAGE_ANSWER_SECONDS
        assert request(server, "GET", "/healthz")[0] == 200
    finally:
        proxy.restore()

    status, _, body = request(server, "GET", f"/api/{user}/tasks")
    assert status == 200
    assert [task["title"] for task in json.loads(body)] == ["before"]
    assert request(server, "GET", "/readyz")[0] == 200


def test_a_slow_network_slows_answers_but_breaks_none(server: str, user: str, proxy: Proxy) -> None:
    proxy.delay = 0.02
    try:
        replies = [request(server, "POST", f"/api/{user}/tasks", {"title": "slow"})]
        replies += [request(server, "GET", f"/api/{user}/tasks") for _ in range(3)]
    finally:
        proxy.delay = 0.0
    assert [status for status, _, _ in replies] == [201, 200, 200, 200]


def test_no_task_is_lost_or_doubled_across_outages(server: str, user: str, proxy: Proxy) -> None:
    stop = threading.Event()

    def flap() -> None:
        while not stop.wait(0.3):
            proxy.cut()
            time.sleep(0.2)
            proxy.restore()

    flapper = threading.Thread(target=flap, daemon=True)
    flapper.start()
    try:
        created = [create_with_retries(server, user, f"task-{n}") for n in range(30)]
    finally:
        stop.set()
        flapper.join()
        proxy.restore()

    status, _, body = request(server, "GET", f"/api/{user}/tasks")
    assert status == 200
    listed = json.loads(body)
    assert sorted(task["title"] for task in listed) == sorted(f"task-{n}" for n in range(30))
    assert sorted(task["id"] for task in listed) == sorted(created)


@pytest.mark.slow
def test_a_database_that_stops_and_starts_again_is_recovered_without_a_restart(
    tmp_path: Path,
) -> None:
    database = embedded.start(tmp_path / "pg")
    try:
        env = {
            **os.environ,
            "DATABASE_URL": database.app_url(),
            "MIGRATION_DATABASE_URL": database.url,
            "AUTH_MODE": "none",
        }
        with serving(env) as base:
            assert request(base, "POST", "/api/alice/tasks", {"title": "kept"})[0] == 201
            embedded.stop(database)
            assert_unavailable(request(base, "GET", "/api/alice/tasks"))
            database = embedded.start(tmp_path / "pg")
            status, _, body = request(base, "GET", "/api/alice/tasks")
            assert status == 200
            assert [task["title"] for task in json.loads(body)] == ["kept"]
    finally:
        embedded.stop(database)
