"""The service through PgBouncer in transaction mode (Debian's 1.18: no protocol-level prepared
statements, so PREPARED_STATEMENTS=false), on both sides, with row-level security intact: the
user a transaction names never reaches another client's transaction on the same server
connection."""

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from api.settings import Settings
from db.reads import ReadPool
from tests.cluster.conftest import Cluster
from tests.cluster.pgbouncer import Bouncer, bouncing, find_or_install
from tests.cluster.servers import Server

TOKEN = "X-Consistency-Token"
WHO_AND_WHAT = text(
    "SELECT pg_backend_pid(), current_setting('app.user_id', true),"
    " (SELECT count(*) FROM task_list_v), (SELECT count(*) FROM tasks)"
)


@pytest.fixture(scope="module")
def pgbouncer() -> str:
    program, reason = find_or_install()
    if program is None:
        pytest.skip(f"PgBouncer is not available: {reason}")
    return program


@pytest.fixture
def bouncer(pgbouncer: str, cluster: Cluster, replica: Server) -> Iterator[Bouncer]:
    """One PgBouncer, one server connection per database: `tasks` is the primary, `replica`
    the replica."""
    databases = {"tasks": cluster.primary, "replica": replica}
    with bouncing(pgbouncer, databases, cluster.workdir / "pgbouncer", pool_size=1) as bouncer:
        yield bouncer


def settings(cluster: Cluster, bouncer: Bouncer) -> Settings:
    return cluster.settings(
        database_url=bouncer.url("tasks", "taskapi_app"),
        read_database_url=bouncer.url("replica", "taskapi_app"),
        prepared_statements=False,
        pool_pre_ping=False,
        replica_wait_ms=200,
    )


def test_the_service_runs_through_the_pooler_on_both_sides(
    cluster: Cluster, bouncer: Bouncer
) -> None:
    user = f"user-{uuid.uuid4().hex[:12]}"
    with TestClient(create_app(settings(cluster, bouncer))) as client:
        created = client.post(f"/api/{user}/tasks", json={"title": "pooled"})
        task = f"/api/{user}/tasks/{created.json()['id']}"
        updated = client.put(task, json={"title": "pooled twice"}, headers={"If-Match": '"1"'})
        token = {TOKEN: updated.headers[TOKEN]}
        listed = [client.get(f"/api/{user}/tasks", headers=token) for _ in range(5)]
        got = client.get(task, headers=token)
        stats = client.get(f"/api/{user}/tasks/stats", headers=token)
    assert (created.status_code, updated.status_code, got.status_code) == (201, 200, 200)
    assert [[t["title"] for t in answer.json()] for answer in listed] == [["pooled twice"]] * 5
    assert got.json()["title"] == "pooled twice"
    assert stats.status_code == 200


def test_two_users_on_one_pooled_server_connection_each_see_only_their_own(
    cluster: Cluster, bouncer: Bouncer
) -> None:
    alice, bob = (f"{name}-{uuid.uuid4().hex[:8]}" for name in ("alice", "bob"))
    with TestClient(create_app(settings(cluster, bouncer))) as client:
        for user, count in ((alice, 2), (bob, 3)):
            for number in range(count):
                client.post(f"/api/{user}/tasks", json={"title": f"{user} {number}"})
    cluster.caught_up()

    async def interleaved() -> list[tuple[object, ...]]:
        # Two client connections (a pool of two), one server connection behind the pooler.
        pool = ReadPool(settings(cluster, bouncer).model_copy(update={"read_database_url": None}))
        await pool.open()
        try:
            seen: list[tuple[object, ...]] = []
            for _ in range(4):
                answers = await asyncio.gather(
                    pool.fetch(alice, WHO_AND_WHAT, {}), pool.fetch(bob, WHO_AND_WHAT, {})
                )
                seen += [row for rows in answers for row in rows]
            async with pool.connection() as conn:  # no user named: RLS shows nothing
                row = await (await conn.execute(WHO_AND_WHAT.text, prepare=False)).fetchone()
                assert row is not None
                seen.append(tuple(row))
            return seen
        finally:
            await pool.close()

    seen = asyncio.run(interleaved())
    assert len({pid for pid, *_ in seen}) == 1  # one server connection served them all
    users = [(user, visible, total) for _, user, visible, total in seen[:-1]]
    assert set(users) == {(alice, 2, 2), (bob, 3, 3)}
    _, nobody, visible, total = seen[-1]
    assert nobody in (None, "")
    assert (visible, total) == (0, 0)
