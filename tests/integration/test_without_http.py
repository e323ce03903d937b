"""The write and read sides called directly, as a CLI command or a worker would: `dispatch` with a
command, the query functions with a reader. No app, no HTTP; real PostgreSQL, as the service's
role under row-level security, inside the test's rolled-back transaction."""

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection

from commands.dispatch import Command, dispatch, dispatch_once
from commands.errors import TaskNotFound, VersionConflict
from commands.idempotency import IdempotencyKey, IdempotencyKeyReused
from commands.tasks import (
    CreateTask,
    DeleteTask,
    SetTaskCompletion,
    ToggleTask,
    UpdateTask,
)
from db.models import Task
from queries.stats import Today, task_stats
from queries.tags import TagRow, list_tags
from queries.tasks import TaskFilters, TaskRow, get_task, list_tasks
from tests.conftest import WritesOnConnection
from tests.readers import ConnectionReader

T = TypeVar("T")
NOON = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
TODAY = Today(
    day=NOON.date(),
    now=NOON,
    starts=datetime(2026, 6, 15, tzinfo=UTC),
    ends=datetime(2026, 6, 16, tzinfo=UTC),
)


def run(connection: Connection, cmd: Command) -> Task:
    return dispatch(cmd, WritesOnConnection(connection))


def read(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def reader(connection: Connection, user: str) -> ConnectionReader:
    return ConnectionReader(connection, user)


def task_of(connection: Connection, user: str, task_id: int) -> TaskRow | None:
    return read(get_task(reader(connection, user), user_id=user, task_id=task_id))


def ids_listed(connection: Connection, user: str, **query: Any) -> list[int]:
    rows = read(list_tasks(reader(connection, user), user_id=user, **query))
    assert {row.user_id for row in rows} <= {user}
    return [row.id for row in rows]


def test_a_created_task_reads_back_through_the_query_side(connection: Connection) -> None:
    due = datetime(2026, 6, 15, 18, 30, tzinfo=UTC)
    created = run(
        connection,
        CreateTask(
            user_id="alice",
            title="Buy milk",
            description="2 litres",
            due_at=due,
            priority="high",
            tags=("errands", "home"),
        ),
    )
    assert created.id is not None

    row = task_of(connection, "alice", created.id)

    assert row is not None
    assert (row.user_id, row.title, row.description, row.completed, row.version) == (
        "alice",
        "Buy milk",
        "2 litres",
        False,
        1,
    )
    assert (row.priority, row.tags, row.due_at, row.due_date) == (
        "high",
        ["errands", "home"],
        due,
        None,
    )
    assert ids_listed(connection, "alice") == [created.id]
    stats = read(task_stats(reader(connection, "alice"), user_id="alice", today=TODAY))
    assert (stats.total, stats.pending, stats.due_today, stats.overdue, stats.high) == (
        1,
        1,
        1,
        0,
        1,
    )
    tags = read(list_tags(reader(connection, "alice"), user_id="alice"))
    assert tags == [TagRow("errands", 1, 1), TagRow("home", 1, 1)]


def test_a_conditional_update_with_a_stale_version_raises_version_conflict_and_changes_nothing(
    connection: Connection,
) -> None:
    task = run(connection, CreateTask(user_id="alice", title="Draft"))
    assert task.id is not None
    stale = UpdateTask(
        user_id="alice", task_id=task.id, if_version=frozenset({2}), changes={"title": "Lost"}
    )

    with pytest.raises(VersionConflict) as raised:
        run(connection, stale)

    assert (raised.value.current["title"], raised.value.current["version"]) == ("Draft", 1)
    row = task_of(connection, "alice", task.id)
    assert row is not None
    assert (row.title, row.version) == ("Draft", 1)


def test_a_conditional_update_with_the_current_version_applies_and_increments_it(
    connection: Connection,
) -> None:
    task = run(connection, CreateTask(user_id="alice", title="Draft"))
    assert task.id is not None

    run(
        connection,
        UpdateTask(
            user_id="alice",
            task_id=task.id,
            if_version=frozenset({1}),
            changes={"title": "Final"},
        ),
    )

    row = task_of(connection, "alice", task.id)
    assert row is not None
    assert (row.title, row.version) == ("Final", 2)


def test_an_update_that_changes_nothing_keeps_the_version(connection: Connection) -> None:
    task = run(connection, CreateTask(user_id="alice", title="Same", priority="low"))
    assert task.id is not None

    run(
        connection,
        UpdateTask(user_id="alice", task_id=task.id, changes={"title": "Same", "priority": "low"}),
    )

    row = task_of(connection, "alice", task.id)
    assert row is not None
    assert row.version == 1


def test_setting_a_due_instant_clears_the_due_day(connection: Connection) -> None:
    task = run(connection, CreateTask(user_id="alice", title="t", due_date=date(2026, 6, 20)))
    assert task.id is not None
    at = datetime(2026, 6, 21, 9, 0, tzinfo=UTC)

    run(connection, UpdateTask(user_id="alice", task_id=task.id, changes={"due_at": at}))

    row = task_of(connection, "alice", task.id)
    assert row is not None
    assert (row.due_date, row.due_at, row.version) == (None, at, 2)


# Each write bob could try on a task id of alice's.
BOBS_WRITES: dict[str, Callable[[int], Command]] = {
    "update": lambda task_id: UpdateTask(
        user_id="bob", task_id=task_id, changes={"title": "taken"}
    ),
    "conditional-update": lambda task_id: UpdateTask(
        user_id="bob", task_id=task_id, if_version=frozenset({1}), changes={"title": "taken"}
    ),
    "delete": lambda task_id: DeleteTask(user_id="bob", task_id=task_id),
    "toggle": lambda task_id: ToggleTask(user_id="bob", task_id=task_id),
    "set-completion": lambda task_id: SetTaskCompletion(
        user_id="bob", task_id=task_id, completed=True
    ),
}


@pytest.mark.parametrize("write", BOBS_WRITES.values(), ids=BOBS_WRITES.keys())
def test_another_users_task_is_not_found_and_stays_as_it_was(
    connection: Connection, write: Callable[[int], Command]
) -> None:
    task = run(connection, CreateTask(user_id="alice", title="Mine"))
    assert task.id is not None

    with pytest.raises(TaskNotFound):
        run(connection, write(task.id))

    row = task_of(connection, "alice", task.id)
    assert row is not None
    assert (row.title, row.completed, row.version) == ("Mine", False, 1)
    assert task_of(connection, "bob", task.id) is None


@pytest.fixture
def two_users_alike(connection: Connection) -> dict[str, list[int]]:
    """Alice and bob each with the same two tasks: one matching every filter below, one not."""
    ids: dict[str, list[int]] = {}
    for user in ("alice", "bob"):
        matching = CreateTask(
            user_id=user,
            title="Buy milk",
            due_date=NOON.date() - timedelta(days=1),
            priority="high",
            tags=("home",),
        )
        other = CreateTask(user_id=user, title="File taxes", priority="low", tags=("work",))
        ids[user] = [
            task.id for task in (run(connection, matching), run(connection, other)) if task.id
        ]
    return ids


@pytest.mark.parametrize(
    ("query", "matching"),
    [
        ({}, True),
        ({"status": "pending"}, True),
        ({"filters": TaskFilters(priorities=frozenset({3}))}, False),
        ({"filters": TaskFilters(tags=("home",))}, False),
        ({"filters": TaskFilters(terms=("milk",))}, False),
        ({"filters": TaskFilters(has_due=True)}, False),
        ({"sort": "title", "filters": TaskFilters(priorities=frozenset({1, 3}))}, True),
    ],
    ids=["all", "pending", "priority", "tag", "search", "has-due", "sorted-by-title"],
)
def test_list_filters_are_scoped_to_the_caller(
    connection: Connection,
    two_users_alike: dict[str, list[int]],
    query: dict[str, Any],
    matching: bool,
) -> None:
    for user, (first, second) in two_users_alike.items():
        expected = {first, second} if matching else {first}
        assert set(ids_listed(connection, user, **query)) == expected, user


def test_counts_and_tags_are_scoped_to_the_caller(
    connection: Connection, two_users_alike: dict[str, list[int]]
) -> None:
    run(connection, ToggleTask(user_id="bob", task_id=two_users_alike["bob"][0]))

    alice = read(task_stats(reader(connection, "alice"), user_id="alice", today=TODAY))
    bob = read(task_stats(reader(connection, "bob"), user_id="bob", today=TODAY))

    assert (alice.total, alice.completed, alice.overdue) == (2, 0, 1)
    assert (bob.total, bob.completed, bob.overdue) == (2, 1, 0)
    assert read(list_tags(reader(connection, "bob"), user_id="bob")) == [
        TagRow("home", 1, 0),
        TagRow("work", 1, 1),
    ]


def test_row_security_hides_another_users_rows_even_from_a_query_that_asks_for_them(
    connection: Connection, two_users_alike: dict[str, list[int]]
) -> None:
    as_bob = reader(connection, "bob")
    assert read(list_tasks(as_bob, user_id="alice")) == []
    assert read(get_task(as_bob, user_id="alice", task_id=two_users_alike["alice"][0])) is None


def test_a_keyed_command_runs_once_and_a_repeat_replays_its_answer(connection: Connection) -> None:
    key = IdempotencyKey(user_id="alice", key="k", fingerprint="create milk")
    cmd = CreateTask(user_id="alice", title="Buy milk")
    writes = WritesOnConnection(connection)
    first, first_replayed = dispatch_once(cmd, writes, key)
    again, again_replayed = dispatch_once(cmd, writes, key)

    assert (first_replayed, again_replayed) == (False, True)
    assert again == first
    assert ids_listed(connection, "alice") == [first.id]


def test_a_key_used_again_for_another_request_is_refused_and_runs_nothing(
    connection: Connection,
) -> None:
    writes = WritesOnConnection(connection)
    first, _ = dispatch_once(
        CreateTask(user_id="alice", title="Buy milk"),
        writes,
        IdempotencyKey(user_id="alice", key="k", fingerprint="create milk"),
    )
    with pytest.raises(IdempotencyKeyReused):
        dispatch_once(
            CreateTask(user_id="alice", title="Buy bread"),
            writes,
            IdempotencyKey(user_id="alice", key="k", fingerprint="create bread"),
        )

    assert ids_listed(connection, "alice") == [first.id]
