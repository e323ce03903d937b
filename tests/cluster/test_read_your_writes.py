"""Read your writes through a replica (docs/adr/0016): a read that sends back a write's
X-Consistency-Token sees that write, from the replica once it has replayed it, else from the
primary after REPLICA_WAIT_MS; a read without it may be as stale as the replica."""

import time
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from db.reads import ReadPool
from tests.cluster.conftest import Cluster
from tests.cluster.servers import Server

TOKEN = "X-Consistency-Token"
WAIT_SECONDS = 10.0


@pytest.fixture
def client(cluster: Cluster, replica: Server) -> Iterator[TestClient]:
    """The service with writes on the primary and reads on the replica, once it is in rotation."""
    with TestClient(create_app(cluster.settings(replica, replica_wait_ms=50))) as client:
        pool: ReadPool = client.app.state.read_pool  # type: ignore[attr-defined]
        deadline = time.monotonic() + WAIT_SECONDS
        while not pool.replicas.all[0].state.in_rotation:
            assert time.monotonic() < deadline, pool.replicas.all[0].state
            time.sleep(0.02)
        yield client


@pytest.fixture
def user() -> str:
    """A user of this test only: the cluster's writes are committed, never rolled back."""
    return f"user-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def paused(replica: Server) -> Iterator[Server]:
    """The replica with replay paused: it receives the primary's WAL but applies none of it."""
    replica.execute("SELECT pg_wal_replay_pause()")
    yield replica
    replica.execute("SELECT pg_wal_replay_resume()")


@pytest.fixture
def delayed(replica: Server) -> Iterator[Server]:
    """The replica applying each commit 30 ms after the primary made it: always a little
    behind, sometimes within REPLICA_WAIT_MS, sometimes not."""
    replica.execute("ALTER SYSTEM SET recovery_min_apply_delay = '30ms'")
    replica.execute("SELECT pg_reload_conf()")
    yield replica
    replica.execute("ALTER SYSTEM RESET recovery_min_apply_delay")
    replica.execute("SELECT pg_reload_conf()")


def titles(client: TestClient, user: str, token: str | None = None) -> list[str]:
    headers = {} if token is None else {TOKEN: token}
    answer = client.get(f"/api/{user}/tasks", headers=headers)
    assert answer.status_code == 200, answer.text
    return [task["title"] for task in answer.json()]


def create(client: TestClient, user: str, title: str) -> str:
    answer = client.post(f"/api/{user}/tasks", json={"title": title})
    assert answer.status_code == 201, answer.text
    return answer.headers[TOKEN]


def test_with_the_token_a_read_never_misses_the_write(client: TestClient, user: str) -> None:
    for number in range(30):
        token = create(client, user, f"task {number}")
        assert f"task {number}" in titles(client, user, token)


def test_with_replay_delayed_a_read_with_the_token_never_misses_the_write(
    client: TestClient, user: str, delayed: Server
) -> None:
    missed_without = 0
    for number in range(20):
        token = create(client, user, f"task {number}")
        missed_without += f"task {number}" not in titles(client, user)
        assert f"task {number}" in titles(client, user, token)
    assert missed_without > 0  # the delay is real: reads without the token do miss writes


def test_with_replay_paused_the_token_read_waits_then_asks_the_primary(
    client: TestClient, user: str, paused: Server
) -> None:
    token = create(client, user, "written while replay is paused")
    started = time.monotonic()
    seen = titles(client, user, token)
    waited = time.monotonic() - started
    assert seen == ["written while replay is paused"]
    assert waited >= 0.05  # REPLICA_WAIT_MS, spent waiting for the replica first


def test_without_the_token_a_read_may_miss_the_write(
    client: TestClient, user: str, paused: Server
) -> None:
    token = create(client, user, "not replayed yet")
    assert titles(client, user) == []  # the replica's answer: stale, as documented
    assert titles(client, user, token) == ["not replayed yet"]


def test_a_malformed_token_is_refused_with_a_problem(client: TestClient, user: str) -> None:
    answer = client.get(f"/api/{user}/tasks", headers={TOKEN: "yesterday"})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"


def test_with_the_replica_stopped_every_read_is_answered(
    client: TestClient, user: str, replica: Server
) -> None:
    token = create(client, user, "before the stop")
    replica.stop()
    answers = [titles(client, user), titles(client, user, token)] * 5
    assert answers == [["before the stop"]] * 10


def test_without_replicas_writes_carry_no_token(cluster: Cluster, user: str) -> None:
    with TestClient(create_app(cluster.settings())) as client:
        answer = client.post(f"/api/{user}/tasks", json={"title": "primary only"})
    assert answer.status_code == 201
    assert TOKEN not in answer.headers


def test_the_change_feed_reads_the_primary_even_with_the_replica_paused(
    client: TestClient, user: str, paused: Server
) -> None:
    before = client.get(f"/api/{user}/changes")
    assert before.status_code == 200, before.text
    create(client, user, "written while the replica waits")

    after = client.get(f"/api/{user}/changes", params={"since": before.json()["next"]})

    assert after.status_code == 200, after.text
    changed = [change["task"]["title"] for change in after.json()["changes"]]
    assert changed == ["written while the replica waits"]
    assert titles(client, user) == []  # a plain list, from the paused replica, is behind
