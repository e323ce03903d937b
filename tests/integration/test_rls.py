"""Row-level security: the database keeps users apart even when the application's SQL does not."""

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, TextClause, event, text
from sqlalchemy.exc import ProgrammingError
from sqlmodel import Session

import queries.tasks
from api.settings import Settings
from commands.dispatch import dispatch
from commands.errors import TaskNotFound
from commands.tasks import CreateTask, DeleteTask, ToggleTask
from db.engine import make_write_engine
from db.reads import ReadPool
from db.scope import WriteSessions, act_as
from tests.readers import ConnectionReader

INSERT = text("INSERT INTO tasks (user_id, id, title) VALUES (:user_id, :id, :title)")
CURRENT_USER_SETTING = text("SELECT current_setting('app.user_id', true)")


@pytest.fixture
def two_users(app_connection: Connection) -> Connection:
    """Two tasks of alice's and one of bob's, written as each of them."""
    for user, task_id, title in (("alice", 1, "a1"), ("alice", 2, "a2"), ("bob", 1, "b1")):
        act_as(app_connection, user)
        app_connection.execute(INSERT, {"user_id": user, "id": task_id, "title": title})
    return app_connection


def test_a_list_query_without_its_user_filter_still_returns_only_the_callers_rows(
    two_users: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    honest = queries.tasks.list_statement

    def leaky(shape: queries.tasks.ListShape) -> TextClause:
        sql = honest(shape).text
        return text(sql.replace("WHERE user_id = :user_id", "WHERE :user_id = :user_id"))

    monkeypatch.setattr(queries.tasks, "list_statement", leaky)

    reader = ConnectionReader(two_users, "bob", app_role=False)  # already the service's role
    rows = asyncio.run(queries.tasks.list_tasks(reader, user_id="bob"))

    assert [(row.user_id, row.title) for row in rows] == [("bob", "b1")]


def test_without_a_user_setting_the_service_role_sees_no_rows(two_users: Connection) -> None:
    act_as(two_users, "")
    assert two_users.execute(text("SELECT count(*) FROM tasks")).scalar_one() == 0
    assert two_users.execute(text("SELECT count(*) FROM task_list_v")).scalar_one() == 0


def test_the_view_is_filtered_for_its_reader_not_its_owner(two_users: Connection) -> None:
    act_as(two_users, "alice")
    users = two_users.execute(text("SELECT DISTINCT user_id FROM task_list_v")).scalars().all()
    assert users == ["alice"]


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO tasks (user_id, id, title) VALUES ('bob', 9, 'planted')",
        "UPDATE tasks SET user_id = 'bob'",
    ],
    ids=["insert-for-another-user", "move-to-another-user"],
)
def test_the_service_role_cannot_write_rows_for_another_user(
    two_users: Connection, statement: str
) -> None:
    act_as(two_users, "alice")
    with pytest.raises(ProgrammingError, match="row-level security"), two_users.begin_nested():
        two_users.execute(text(statement))


def test_the_service_role_cannot_change_or_delete_another_users_rows(
    two_users: Connection,
) -> None:
    act_as(two_users, "alice")
    assert (
        two_users.execute(text("UPDATE tasks SET title = 'x' WHERE user_id = 'bob'")).rowcount == 0
    )
    assert two_users.execute(text("DELETE FROM tasks WHERE user_id = 'bob'")).rowcount == 0
    act_as(two_users, "bob")
    titles = two_users.execute(text("SELECT title FROM tasks")).scalars().all()
    assert titles == ["b1"]


def test_the_service_role_cannot_switch_off_row_security(app_connection: Connection) -> None:
    with pytest.raises(ProgrammingError), app_connection.begin_nested():
        app_connection.execute(text("ALTER TABLE tasks DISABLE ROW LEVEL SECURITY"))
    app_connection.execute(text("SET LOCAL row_security = off"))
    with pytest.raises(ProgrammingError, match="row-level security"), app_connection.begin_nested():
        app_connection.execute(text("SELECT count(*) FROM tasks"))


@pytest.fixture
def pooled_settings(app_database_url: str) -> Settings:
    """One pooled connection per engine, so the next checkout is the connection just used."""
    return Settings(database_url=app_database_url, pool_size=1, max_overflow=0)


@pytest.fixture
def committed_task(pooled_settings: Settings) -> Iterator[tuple[str, int]]:
    """A task really committed through the write engine (and deleted afterwards)."""
    engine = make_write_engine(pooled_settings)
    user = "rls-pool-user"
    task = dispatch(CreateTask(user_id=user, title="committed"), WriteSessions(engine))
    assert task.id is not None
    try:
        yield user, task.id
    finally:
        dispatch(DeleteTask(user_id=user, task_id=task.id), WriteSessions(engine))
        engine.dispose()


def test_the_user_setting_does_not_outlive_a_write_transaction(
    pooled_settings: Settings,
) -> None:
    engine = make_write_engine(pooled_settings)
    try:
        writes = WriteSessions(engine)
        dispatch(CreateTask(user_id="rls-writer", title="t"), writes)
        with pytest.raises(TaskNotFound):
            dispatch(DeleteTask(user_id="rls-writer", task_id=2**62), writes)
        with engine.connect() as conn:
            assert conn.execute(CURRENT_USER_SETTING).scalar() in (None, "")
            act_as(conn, "rls-writer")
            conn.execute(text("DELETE FROM tasks"))
            conn.commit()
    finally:
        engine.dispose()


def test_a_write_names_its_user_in_the_same_round_trip_as_its_statement(
    pooled_settings: Settings, committed_task: tuple[str, int]
) -> None:
    user, task_id = committed_task
    engine = make_write_engine(pooled_settings.model_copy(update={"pool_pre_ping": False}))
    sent: list[str] = []
    event.listen(engine, "after_cursor_execute", lambda *args: sent.append(args[2]))
    try:
        dispatch(ToggleTask(user_id=user, task_id=task_id), WriteSessions(engine))
    finally:
        engine.dispose()

    (statement,) = sent
    assert statement.startswith("SELECT set_config('app.user_id'")
    assert "UPDATE tasks SET" in statement


def test_a_transaction_that_ran_nothing_leaves_no_user_for_the_next(
    pooled_settings: Settings, committed_task: tuple[str, int]
) -> None:
    user, _ = committed_task
    engine = make_write_engine(pooled_settings)
    try:
        with WriteSessions(engine).as_user(user) as session:
            session.connection()  # begins, with the user's settings waiting for a statement
            session.rollback()
        with Session(engine) as session:  # the same pooled connection, no user named
            assert session.execute(text("SELECT count(*) FROM tasks")).scalar_one() == 0
    finally:
        engine.dispose()


def test_the_user_setting_does_not_outlive_a_read(
    pooled_settings: Settings, committed_task: tuple[str, int]
) -> None:
    user, task_id = committed_task

    async def read_then_look() -> tuple[list[int], object, list[int]]:
        pool = ReadPool(pooled_settings)
        await pool.open()
        try:
            rows = await queries.tasks.list_tasks(pool.as_user(user), user_id=user)
            async with pool.connection() as conn:  # the same connection: the pool holds one
                cursor = await conn.execute(CURRENT_USER_SETTING.text)
                (setting,) = await cursor.fetchone() or (None,)
                cursor = await conn.execute("SELECT id FROM task_list_v")
                unscoped = [row[0] for row in await cursor.fetchall()]
            return [row.id for row in rows], setting, unscoped
        finally:
            await pool.close()

    read, setting, unscoped = asyncio.run(read_then_look())

    assert read == [task_id]
    assert setting in (None, "")
    assert unscoped == []
