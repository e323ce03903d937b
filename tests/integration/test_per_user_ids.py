"""Each user's tasks are numbered 1, 2, 3...: an id says nothing about other users' tasks.

The concurrent tests commit through real connections of the service's role (a rolled-back test
transaction cannot be shared between threads), each as a user of its own, removed afterwards.
"""

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from commands.dispatch import dispatch
from commands.tasks import CreateTask, create_task
from db.scope import WriteSessions, act_as

WRITERS = 8
CREATES_EACH = 5
WAIT_SECONDS = 10.0
"""Bounds every wait on another thread; the waits that pass take milliseconds."""
BLOCKED_SECONDS = 0.5
"""How long a create must stay blocked to count as waiting for the other transaction."""


def create(client: TestClient, user: str) -> dict[str, Any]:
    response = client.post(f"/api/{user}/tasks", json={"title": "t"})
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def test_each_users_tasks_are_numbered_from_one(client: TestClient) -> None:
    ids = [(user, create(client, user)["id"]) for user in ("alice", "bob", "alice", "alice", "bob")]
    assert ids == [("alice", 1), ("bob", 1), ("alice", 2), ("alice", 3), ("bob", 2)]


def test_the_location_of_a_new_task_names_its_per_user_id(client: TestClient) -> None:
    create(client, "bob")
    response = client.post("/api/alice/tasks", json={"title": "t"})
    assert response.headers["location"].endswith("/api/alice/tasks/1")


def test_the_id_of_a_deleted_task_is_never_given_again(client: TestClient) -> None:
    create(client, "alice")
    second = create(client, "alice")
    assert client.delete(f"/api/alice/tasks/{second['id']}").status_code == 204

    assert create(client, "alice")["id"] == 3


def remove(engine: Engine, user_id: str) -> None:
    """Delete a user's committed tasks and counter (as the owner: the service may not)."""
    with engine.begin() as conn:
        act_as(conn, user_id)
        for table in ("tasks", "task_counters"):
            conn.execute(
                text(f"DELETE FROM {table} WHERE user_id = :user_id"), {"user_id": user_id}
            )


@pytest.fixture
def user(engine: Engine) -> Iterator[str]:
    """A user of this test alone, removed afterwards."""
    user_id = f"ids-{uuid.uuid4().hex[:12]}"
    yield user_id
    remove(engine, user_id)


def committed_create(app_engine: Engine, user_id: str) -> int:
    task = dispatch(CreateTask(user_id=user_id, title="concurrent"), WriteSessions(app_engine))
    assert task.id is not None
    return task.id


def test_concurrent_creates_by_one_user_get_distinct_consecutive_ids(
    app_engine: Engine, user: str
) -> None:
    start = threading.Barrier(WRITERS, timeout=WAIT_SECONDS)

    def writer(_: int) -> list[int]:
        start.wait()
        return [committed_create(app_engine, user) for _ in range(CREATES_EACH)]

    with ThreadPoolExecutor(WRITERS) as pool:
        ids = [task_id for batch in pool.map(writer, range(WRITERS)) for task_id in batch]

    assert sorted(ids) == list(range(1, WRITERS * CREATES_EACH + 1))


def test_a_create_waits_for_an_open_create_by_the_same_user_then_takes_the_next_id(
    app_engine: Engine, user: str
) -> None:
    with ThreadPoolExecutor(1) as pool, WriteSessions(app_engine).as_user(user) as first:
        assert create_task(CreateTask(user_id=user, title="open"), first).id == 1
        second = pool.submit(committed_create, app_engine, user)

        with pytest.raises(TimeoutError):
            second.result(timeout=BLOCKED_SECONDS)
        first.commit()

        assert second.result(timeout=WAIT_SECONDS) == 2


def test_a_create_by_another_user_does_not_wait_for_an_open_create(
    app_engine: Engine, user: str, engine: Engine
) -> None:
    other = f"{user}-other"
    with ThreadPoolExecutor(1) as pool, WriteSessions(app_engine).as_user(user) as first:
        create_task(CreateTask(user_id=user, title="open"), first)
        second = pool.submit(committed_create, app_engine, other)
        try:
            assert second.result(timeout=WAIT_SECONDS) == 1
        finally:
            first.rollback()
            remove(engine, other)
