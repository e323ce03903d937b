"""The benchmark's dataset under per-user ids: new tasks continue each user's ids, and removing a
workload's rows leaves exactly what the load wrote (on a scratch database: the load truncates)."""

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bench.dataset import HEAVY_USER, LoadStats, load, remove_added_rows
from db import embedded
from db.connections import sqlalchemy_url
from db.migrate import upgrade
from tests.integration.test_per_user_ids_migration import create_as_service

TASKS = 40
USERS = 6
HEAVY_TASKS = 5
ALL_TASKS = text("SELECT user_id, id FROM tasks ORDER BY user_id, id")


@pytest.fixture
def scratch(server_url: str) -> Iterator[tuple[str, Engine]]:
    """A migrated database of this test alone: its URL and an engine as its owner."""
    name = f"taskapi_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    embedded.ensure_app_role(server_url)
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(sqlalchemy_url(url))
    try:
        upgrade(url)
        yield url, engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def loaded(engine: Engine) -> LoadStats:
    return load(engine, tasks=TASKS, users=USERS, heavy_user_tasks=HEAVY_TASKS, seed=1)


def test_a_new_task_after_the_load_continues_its_users_ids(scratch: tuple[str, Engine]) -> None:
    url, engine = scratch
    loaded(engine)

    # User 1 owns tasks 1, 7, ..., 37; user 6 owns 6, 12, ..., 36; the heavy user 41..45.
    assert create_as_service(url, "1") == 38
    assert create_as_service(url, "6") == 37
    assert create_as_service(url, HEAVY_USER) == 46


def test_removing_added_rows_leaves_the_loaded_ones_and_their_counters(
    scratch: tuple[str, Engine],
) -> None:
    url, engine = scratch
    stats = loaded(engine)
    with engine.connect() as conn:
        before = conn.execute(ALL_TASKS).all()
    for user in ("1", "2", "6", HEAVY_USER, "1"):
        create_as_service(url, user)

    remove_added_rows(engine, stats)

    with engine.connect() as conn:
        assert conn.execute(ALL_TASKS).all() == before
    assert create_as_service(url, "1") == 38  # the same id as the first run's first create
