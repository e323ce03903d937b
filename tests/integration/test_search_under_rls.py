"""Search and tags under row-level security (migration 0008, ADR 0013): the search index is out
of the service role's reach, its one reader answers only for the user named by `app.user_id`,
the trigger keeps it equal to `tasks`, and a list answers the same whichever branch serves it."""

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import DBAPIError

from db import embedded
from db.connections import sqlalchemy_url
from db.migrate import alembic_config, upgrade
from db.scope import act_as
from queries.tasks import ListShape, TaskFilters, like_pattern, list_query, list_statement
from tests.conftest import scratch_database
from tests.readers import as_app_role

INSERT = text(
    "INSERT INTO tasks (user_id, id, title, description, tags)"
    " VALUES (:user_id, :id, :title, :description, :tags)"
)
MATCHING = text(
    "SELECT matching_task_ids(CAST(:patterns AS text[]), CAST(:tags AS text[]), :all_tags, 100)"
    " AS id ORDER BY 1"
)
MIRROR = text("SELECT task_id, search_text, tags FROM task_search WHERE user_id = :user_id")
TITLES = (
    "Buy milk",
    "100% done",
    "1000 done",
    "snake_case name",
    "snakeXcase name",
    "back\\slash",
    "backslash",
    "call MUM",
)


@pytest.fixture
def as_app(connection: Connection) -> Iterator[Connection]:
    """The owner's connection switched to the service's role; tasks of alice's and bob's."""
    with as_app_role(connection):
        for user in ("alice", "bob"):
            act_as(connection, user)
            for n, title in enumerate(TITLES, start=1):
                binds = {"user_id": user, "id": n, "title": title, "description": None}
                connection.execute(INSERT, binds | {"tags": ["home"] if n % 2 else ["work"]})
        yield connection


def matching(
    conn: Connection, *terms: str, tags: tuple[str, ...] = (), all_tags: bool = False
) -> list[int]:
    binds = {"patterns": [like_pattern(t) for t in terms], "tags": list(tags), "all_tags": all_tags}
    return list(conn.execute(MATCHING, binds).scalars())


def refused(conn: Connection, sql: str) -> bool:
    with conn.begin_nested() as savepoint:
        try:
            conn.execute(text(sql))
        except DBAPIError as error:
            savepoint.rollback()
            return "permission denied" in str(error.orig)
    return False


def test_the_service_role_can_neither_read_nor_write_the_search_index(as_app: Connection) -> None:
    act_as(as_app, "alice")
    assert refused(as_app, "SELECT * FROM task_search")
    assert refused(as_app, "SELECT task_id FROM task_search WHERE user_id = 'bob'")
    assert refused(as_app, "INSERT INTO task_search VALUES ('alice', 99, 'x', '{}')")
    assert refused(as_app, "UPDATE task_search SET search_text = 'x'")
    assert refused(as_app, "DELETE FROM task_search")
    assert refused(as_app, "TRUNCATE task_search")


def test_the_service_role_cannot_run_the_trigger_function(as_app: Connection) -> None:
    assert refused(as_app, "SELECT task_search_sync()")


def test_the_search_function_answers_for_the_user_named_by_the_setting_only(
    as_app: Connection,
) -> None:
    act_as(as_app, "alice")
    assert matching(as_app, "milk") == [1]
    act_as(as_app, "bob")
    assert matching(as_app, "milk") == [1]
    assert matching(as_app, "done", tags=("home",)) == [3]


@pytest.mark.parametrize("setting", ["", None])
def test_the_search_function_finds_nothing_without_a_user(
    as_app: Connection, setting: str | None
) -> None:
    if setting is None:
        as_app.execute(text("RESET app.user_id"))
    else:
        act_as(as_app, setting)
    assert matching(as_app, "o") == []
    assert matching(as_app, tags=("home",)) == []


def test_the_search_function_takes_no_user(connection: Connection) -> None:
    arguments = connection.execute(
        text("SELECT pg_get_function_identity_arguments('matching_task_ids'::regproc)")
    ).scalar_one()
    assert arguments == "patterns text[], tags text[], all_tags boolean, most integer"


def test_the_search_index_follows_every_change_of_a_task(as_app: Connection) -> None:
    act_as(as_app, "alice")
    as_app.execute(text("UPDATE tasks SET title = 'Buy oat milk', tags = '{shop}' WHERE id = 1"))
    as_app.execute(text("UPDATE tasks SET description = 'for real' WHERE id = 2"))
    as_app.execute(text("UPDATE tasks SET completed = true, completed_at = now() WHERE id = 3"))
    as_app.execute(text("DELETE FROM tasks WHERE id = 4"))
    as_app.execute(text("RESET ROLE"))  # the owner's view of the index
    mirror = {row.task_id: row for row in as_app.execute(MIRROR, {"user_id": "alice"})}
    as_app.execute(text("SET ROLE " + embedded.APP_ROLE))

    assert (mirror[1].search_text, mirror[1].tags) == ("Buy oat milk ", ["shop"])
    assert mirror[2].search_text == "100% done for real"
    assert mirror[3].search_text == "1000 done "
    assert 4 not in mirror
    assert len(mirror) == len(TITLES) - 1


def test_truncating_the_tasks_empties_the_search_index(as_app: Connection) -> None:
    as_app.execute(text("RESET ROLE"))  # only the owner may truncate
    as_app.execute(text("TRUNCATE tasks"))
    assert as_app.execute(text("SELECT count(*) FROM task_search")).scalar_one() == 0
    as_app.execute(text("SET ROLE " + embedded.APP_ROLE))


SEARCHES: list[dict[str, Any]] = [
    {"terms": ("milk",)},
    {"terms": ("100%",)},
    {"terms": ("_",)},
    {"terms": ("snake_case",)},
    {"terms": ("\\",)},
    {"terms": ("back\\s",)},
    {"terms": ("mum", "CALL")},
    {"terms": ("done", "1000")},
    {"terms": ("o",)},
    {"tags": ("home",)},
    {"tags": ("home", "work")},
    {"tags": ("home", "work"), "tag_mode": "all"},
    {"tags": ("work",), "terms": ("done",)},
]


@pytest.mark.parametrize("search", SEARCHES, ids=repr)
def test_a_list_is_the_same_through_the_search_index_and_through_the_sort_index(
    as_app: Connection, search: dict[str, Any]
) -> None:
    act_as(as_app, "alice")
    filters = TaskFilters(**search)
    statement, binds = list_query(user_id="alice", sort="title", filters=filters)
    shape = ListShape.of("all", "title", "asc", filters, after=False)
    # alice has few tasks: by default she is walked at once; walked_tasks=0 asks the index,
    # and then indexed_matches=0 walks as for a word too common to read by id.
    by_index = list_statement(replace(shape, walked_tasks=0))
    too_common = list_statement(replace(shape, walked_tasks=0, indexed_matches=0))
    ids = [[row.id for row in as_app.execute(s, binds)] for s in (statement, by_index, too_common)]
    assert ids[0] == ids[1] == ids[2]


def test_special_characters_match_literally_through_the_search_index(as_app: Connection) -> None:
    act_as(as_app, "alice")
    assert matching(as_app, "100%") == [2]
    assert matching(as_app, "snake_case") == [4]
    assert matching(as_app, "back\\s") == [6]
    assert matching(as_app, "\\") == [6]


@pytest.fixture
def migrated_to_0006(server_url: str) -> Iterator[str]:
    """A scratch database at 0006 holding a task of alice's, written as the superuser owner."""
    with scratch_database(server_url, "0006", prefix="taskapi_0008") as url:
        engine = create_engine(sqlalchemy_url(url))
        with engine.begin() as conn:
            binds = {"user_id": "alice", "id": 1, "title": "Buy milk", "description": "2%"}
            conn.execute(INSERT, binds | {"tags": ["home"]})
        engine.dispose()
        yield url


INDEXES = text("SELECT indexname FROM pg_indexes WHERE tablename = 'tasks' ORDER BY 1")


def test_the_migration_fills_the_search_index_and_its_downgrade_removes_it(
    migrated_to_0006: str,
) -> None:
    engine = create_engine(sqlalchemy_url(migrated_to_0006))
    try:
        with engine.connect() as conn:
            before = conn.execute(INDEXES).scalars().all()
        upgrade(migrated_to_0006, "0008")
        with engine.connect() as conn:
            mirrored = conn.execute(MIRROR, {"user_id": "alice"}).all()
        command.downgrade(alembic_config(migrated_to_0006), "0006")
        with engine.connect() as conn:
            after = conn.execute(INDEXES).scalars().all()
            left = conn.execute(
                text(
                    "SELECT to_regclass('task_search'), to_regproc('matching_task_ids'),"
                    " to_regproc('task_search_sync')"
                )
            ).one()
    finally:
        engine.dispose()

    assert mirrored == [(1, "Buy milk 2%", ["home"])]
    assert after == before
    assert tuple(left) == (None, None, None)
