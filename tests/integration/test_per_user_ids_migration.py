"""Migration 0005 on a database that already has tasks: ids kept, counters continue, downgrade.

Runs on a scratch database of its own (the session's is at head already), created from 0004,
filled as the owner, then moved forward and back.
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, TextClause, create_engine, text
from sqlalchemy.engine import make_url

from commands.dispatch import dispatch
from commands.tasks import CreateTask
from db import embedded
from db.connections import sqlalchemy_url
from db.migrate import alembic_config, upgrade
from db.scope import WriteSessions

# Ids as the global identity handed them out before 0005: interleaved between users.
BEFORE = [("alice", 1), ("bob", 2), ("alice", 3), ("carol", 4), ("bob", 5), ("alice", 7)]
INSERT_WITH_ID = text("INSERT INTO tasks (user_id, id, title) VALUES (:user_id, :id, 'old')")
INSERT_WITHOUT_ID = text(
    "INSERT INTO tasks (user_id, title) VALUES (:user_id, 'after') RETURNING id"
)
SET_USER = text("SELECT set_config('app.user_id', :user_id, true)")
COUNTERS = text("SELECT user_id, last_id FROM task_counters ORDER BY user_id")
TASK_IDS = text("SELECT user_id, id FROM tasks ORDER BY id, user_id")
IDENTITY = text(
    "SELECT attidentity FROM pg_attribute WHERE attrelid = 'tasks'::regclass AND attname = 'id'"
)


@dataclass(frozen=True)
class Scratch:
    url: str
    """The migrating owner's."""
    inspect: str
    """The server superuser's, which sees every row."""


@pytest.fixture(params=["superuser", "plain_owner"])
def scratch(server_url: str, request: pytest.FixtureRequest) -> Iterator[Scratch]:
    """A database of this test alone, migrated to 0004 and holding BEFORE's tasks.

    Owned either by the server's superuser (which row-level security never applies to) or by a
    plain role, as on a hosted server, where FORCE ROW LEVEL SECURITY hides the tasks from the
    migrating owner too.
    """
    name = f"taskapi_0005_{uuid.uuid4().hex[:12]}"
    plain = request.param == "plain_owner"
    admin = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if plain:
            conn.execute(text(f'CREATE ROLE "{name}" LOGIN NOSUPERUSER NOBYPASSRLS'))
        conn.execute(text(f'CREATE DATABASE "{name}"' + (f' OWNER "{name}"' if plain else "")))
    embedded.ensure_app_role(server_url)
    inspect = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    url = embedded.as_role(inspect, name) if plain else inspect
    try:
        upgrade(url, "0004")
        with owner(url) as engine, engine.begin() as conn:
            for user_id, task_id in BEFORE:
                conn.execute(SET_USER, {"user_id": user_id})  # the plain owner is under RLS
                conn.execute(INSERT_WITH_ID, {"user_id": user_id, "id": task_id})
        yield Scratch(url=url, inspect=inspect)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            if plain:
                conn.execute(text(f'DROP ROLE IF EXISTS "{name}"'))
        admin.dispose()


@contextmanager
def owner(url: str) -> Iterator[Engine]:
    """An engine on `url` as the migrating owner (the test server's superuser)."""
    engine = create_engine(sqlalchemy_url(url))
    try:
        yield engine
    finally:
        engine.dispose()


def create_as_service(url: str, user_id: str) -> int:
    """Create a task through the handler, as the service's role under row-level security."""
    engine = create_engine(sqlalchemy_url(embedded.as_role(url, embedded.APP_ROLE)))
    try:
        task = dispatch(CreateTask(user_id=user_id, title="new"), WriteSessions(engine))
    finally:
        engine.dispose()
    assert task.id is not None
    return task.id


def rows(conn: Connection, statement: TextClause) -> list[tuple[str, int]]:
    return [(row[0], row[1]) for row in conn.execute(statement)]


def test_upgrading_keeps_every_id_and_starts_each_counter_at_that_users_highest(
    scratch: Scratch,
) -> None:
    upgrade(scratch.url)

    with owner(scratch.inspect) as engine, engine.connect() as conn:
        assert rows(conn, TASK_IDS) == BEFORE
        assert rows(conn, COUNTERS) == [("alice", 7), ("bob", 5), ("carol", 4)]
        assert conn.execute(IDENTITY).scalar_one() == ""


def test_after_upgrading_each_users_next_task_continues_from_that_users_highest_id(
    scratch: Scratch,
) -> None:
    upgrade(scratch.url)

    assert create_as_service(scratch.url, "alice") == 8
    assert create_as_service(scratch.url, "bob") == 6
    assert create_as_service(scratch.url, "alice") == 9
    assert create_as_service(scratch.url, "carol") == 5
    assert create_as_service(scratch.url, "dave") == 1


def test_downgrading_restores_one_sequence_after_every_users_highest_id(
    scratch: Scratch,
) -> None:
    upgrade(scratch.url)
    create_as_service(scratch.url, "alice")  # alice 8, above everyone else's
    create_as_service(scratch.url, "dave")  # dave 1, which the old sequence had given to alice

    command.downgrade(alembic_config(scratch.url), "0004")

    with owner(scratch.inspect) as engine, engine.begin() as conn:
        assert conn.execute(IDENTITY).scalar_one() == "d"  # GENERATED BY DEFAULT AS IDENTITY
        assert conn.execute(text("SELECT to_regclass('task_counters')")).scalar() is None
        assert conn.execute(text("SELECT to_regclass('cursor_secret')")).scalar() is None
        assert conn.execute(INSERT_WITHOUT_ID, {"user_id": "erin"}).scalar_one() == 9
    upgrade(scratch.url)  # and forward again, now with the downgraded database's rows
    assert create_as_service(scratch.url, "erin") == 10
