"""Migration 0006 on a database holding idempotency answers stored the old way (a rendered HTTP
response): a retry across the deploy still replays the same task, and a downgrade renders it back.

Runs on a scratch database of its own, migrated to 0005, filled as the superuser owner.
"""

import json
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from commands.dispatch import dispatch_once
from commands.idempotency import IdempotencyKey
from commands.tasks import CreateTask
from db.connections import sqlalchemy_url
from db.migrate import alembic_config, upgrade
from db.scope import WriteSessions
from tests.conftest import scratch_database

RENDERED = {
    "id": 1,
    "user_id": "alice",
    "title": "Buy milk",
    "description": None,
    "completed": False,
    "completed_at": None,
    "due_date": "2026-12-01",
    "created_at": "2026-11-30T10:00:00.123456+00:00",
    "updated_at": "2026-11-30T10:00:00.123456+00:00",
    "version": 1,
    "priority": "high",
    "tags": ["home"],
    "due_at": None,
}
STORE_OLD = text(
    "INSERT INTO idempotency_keys (user_id, key, fingerprint, status_code, headers, body)"
    " VALUES ('alice', 'k-1', 'f-1', 201, CAST(:headers AS jsonb), :body)"
)
OLD_ROW = text("SELECT status_code, headers, body FROM idempotency_keys WHERE key = 'k-1'")


@pytest.fixture
def scratch(server_url: str) -> Iterator[str]:
    with scratch_database(server_url, "0005", prefix="taskapi_0006") as url:
        engine = create_engine(sqlalchemy_url(url))
        with engine.begin() as conn:
            headers = json.dumps({"ETag": '"1"', "Location": "/api/alice/tasks/1"})
            conn.execute(STORE_OLD, {"headers": headers, "body": json.dumps(RENDERED)})
        engine.dispose()
        yield url


def test_an_answer_stored_before_the_migration_is_replayed_after_it(scratch: str) -> None:
    upgrade(scratch)
    engine = create_engine(sqlalchemy_url(scratch))
    key = IdempotencyKey(user_id="alice", key="k-1", fingerprint="f-1")
    try:
        task, replayed = dispatch_once(
            CreateTask(user_id="alice", title="x"), WriteSessions(engine), key
        )
    finally:
        engine.dispose()

    assert replayed
    assert task.title == "Buy milk"
    assert task.priority == 3
    assert task.tags == ["home"]
    assert task.created_at is not None
    assert task.created_at.isoformat() == RENDERED["created_at"]


def test_a_downgrade_renders_the_stored_result_back(scratch: str) -> None:
    upgrade(scratch)
    command.downgrade(alembic_config(scratch), "0005")
    engine = create_engine(sqlalchemy_url(scratch))
    try:
        with engine.connect() as conn:
            row = conn.execute(OLD_ROW).one()
    finally:
        engine.dispose()

    assert row.status_code == 200
    assert row.headers == {"ETag": '"1"'}
    assert json.loads(row.body) == RENDERED
