"""A client that only ever applies the change feed ends with exactly the server's tasks.

Several users write through concurrent transactions that commit for real (separate sessions on
separate threads, as the service's role), interleaved on purpose: every transaction of a batch
begins (and fixes its `now()`) in one order, writes in another and commits in a third, so a
transaction that started first often commits last, and a write of one user may wait on
another of the same user. Between commits the model client of a random user reads a page of
random size, sometimes going back to a token it was given earlier (as a client restored from an
older copy would). A feed ordered by time or by one global sequence misses changes here; the
per-user sequence taken under the counter's row lock must not (docs/adr/0014).
"""

import asyncio
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, TextClause, text

from commands.dispatch import Command, handle, unit_of_work
from commands.errors import TaskNotFound
from commands.tasks import CreateTask, DeleteTask, ToggleTask, UpdateTask
from db.reads import Row
from db.scope import Timeouts, WriteSessions, act_as
from queries.changes import read_changes
from queries.tasks import TaskRow

USERS = 3
STEP_SECONDS = 0.3
"""How long the conductor waits for a step that may be blocked on another transaction's lock."""
END_SECONDS = 30.0

Op = Literal["create", "rename", "toggle", "delete"]

SERVER_TASKS = text(
    "SELECT id, user_id, title, description, completed, completed_at, due_date, created_at,"
    " updated_at, version, priority, tags, due_at FROM task_list_v WHERE user_id = :user_id"
)


class EngineReader:
    """The query side on its own connection per read, as the service's role (like db/reads.py:
    the user is named for the read's transaction only)."""

    def __init__(self, engine: Engine, user_id: str) -> None:
        self.engine = engine
        self.user_id = user_id

    async def fetch(self, statement: TextClause, params: Mapping[str, Any]) -> list[Row]:
        with self.engine.connect() as conn:
            act_as(conn, self.user_id)
            rows = [tuple(row) for row in conn.execute(statement, params)]
            conn.rollback()
        return rows


@dataclass
class ModelClient:
    """Knows the server's tasks only from the feed: applies each page, keeps every token."""

    reader: EngineReader
    token: int | None = None
    tasks: dict[int, TaskRow] = field(default_factory=dict)
    history: list[tuple[int | None, dict[int, TaskRow]]] = field(default_factory=list)

    def read_page(self, limit: int) -> bool:
        """Apply one page; whether more are waiting."""
        page = asyncio.run(
            read_changes(self.reader, user_id=self.reader.user_id, since=self.token, limit=limit)
        )
        for change in page.changes:
            if change.task is not None:
                self.tasks[change.id] = change.task
            else:
                self.tasks.pop(change.id, None)
        self.token = page.next
        self.history.append((self.token, dict(self.tasks)))
        return page.has_more

    def go_back(self, index: int) -> None:
        """Continue from an earlier token, with the copy the client had when it got it."""
        if self.history:
            self.token, tasks = self.history[index % len(self.history)]
            self.tasks = dict(tasks)

    def catch_up(self) -> None:
        for _ in range(1000):
            if not self.read_page(limit=7):
                return
        raise AssertionError("the feed never ended")


@dataclass(frozen=True)
class Write:
    user: int
    op: Op
    target: int
    """Which of the user's known task ids (modulo how many there are)."""


class Writer(threading.Thread):
    """One transaction: begin, then write and commit when the conductor says."""

    def __init__(self, engine: Engine, user_id: str, cmd: Command) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.user_id = user_id
        self.cmd = cmd
        self.begun, self.go_write = threading.Event(), threading.Event()
        self.written, self.go_commit, self.committed = (threading.Event() for _ in range(3))
        self.created: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            # Waits on a same-user lock can outlast the service's 2 s lock timeout here.
            patient = WriteSessions(self.engine, Timeouts(statement_ms=60_000, lock_ms=60_000))
            with patient.as_user(self.user_id) as session:
                session.execute(text("SELECT now()"))  # the transaction (and its now()) begins
                self.begun.set()
                self.go_write.wait(END_SECONDS)
                with unit_of_work(session):
                    try:
                        task = handle(self.cmd, session)
                        if isinstance(self.cmd, CreateTask):
                            self.created = task.id
                    except TaskNotFound:
                        pass  # deleted by an earlier write: a no-op, as over HTTP (404)
                    self.written.set()
                    self.go_commit.wait(END_SECONDS)
        except BaseException as exc:
            self.error = exc
        finally:
            self.written.set()
            self.committed.set()


def command(write: Write, user_id: str, known: list[int], n: int) -> Command:
    if write.op == "create" or not known:
        return CreateTask(user_id=user_id, title=f"task {n}")
    task_id = known[write.target % len(known)]
    if write.op == "rename":
        return UpdateTask(user_id=user_id, task_id=task_id, changes={"title": f"renamed {n}"})
    if write.op == "toggle":
        return ToggleTask(user_id=user_id, task_id=task_id)
    return DeleteTask(user_id=user_id, task_id=task_id)


writes = st.builds(
    Write,
    user=st.integers(0, USERS - 1),
    op=st.sampled_from(["create", "create", "rename", "toggle", "delete"]),
    target=st.integers(0, 30),
)
batches = st.lists(writes, min_size=1, max_size=4).flatmap(
    lambda batch: st.tuples(
        st.just(batch),
        st.permutations(range(len(batch))),  # the order of the writes
        st.permutations(range(len(batch))),  # the order of the commits
    )
)
# After each commit: nothing, or a page for a user of a size, maybe from an earlier token.
reads = st.none() | st.tuples(
    st.integers(0, USERS - 1), st.integers(1, 6), st.none() | st.integers(0, 50)
)


def run_batch(
    engine: Engine,
    users: list[str],
    known: list[list[int]],
    batch: tuple[list[Write], list[int], list[int]],
    clients: list[ModelClient],
    draw_read: Any,
    counter: list[int],
) -> None:
    planned, write_order, commit_order = batch
    writers = []
    for write in planned:
        counter[0] += 1
        cmd = command(write, users[write.user], known[write.user], counter[0])
        writers.append(Writer(engine, users[write.user], cmd))
    for writer in writers:  # begun in list order: the first begins first
        writer.start()
        assert writer.begun.wait(END_SECONDS)
    for index in write_order:
        writers[index].go_write.set()
        writers[index].written.wait(STEP_SECONDS)  # may wait on a same-user lock: go on
    for index in commit_order:
        writers[index].go_commit.set()
        writers[index].committed.wait(STEP_SECONDS)
        read = draw_read()
        if read is not None:
            user, limit, back = read
            if back is not None:
                clients[user].go_back(back)
            clients[user].read_page(limit)
    for writer in writers:
        writer.join(END_SECONDS)
        assert not writer.is_alive()
        if writer.error is not None:
            raise writer.error
    for writer, write in zip(writers, planned, strict=True):
        if writer.created is not None:
            known[write.user].append(writer.created)


def server_tasks(engine: Engine, user_id: str) -> dict[int, TaskRow]:
    with engine.connect() as conn:
        act_as(conn, user_id)
        rows = conn.execute(SERVER_TASKS, {"user_id": user_id}).all()
        conn.rollback()
    return {row[0]: TaskRow(*row) for row in rows}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(plan=st.lists(batches, min_size=1, max_size=6), data=st.data())
def test_a_client_applying_only_the_feed_ends_with_the_servers_tasks(
    app_engine: Engine, plan: list[Any], data: st.DataObject
) -> None:
    prefix = f"feed-{uuid.uuid4().hex[:10]}"
    users = [f"{prefix}-{n}" for n in range(USERS)]
    known: list[list[int]] = [[] for _ in users]
    clients = [ModelClient(EngineReader(app_engine, user)) for user in users]
    counter = [0]

    def draw_read() -> Any:
        return data.draw(reads)

    for batch in plan:
        run_batch(app_engine, users, known, batch, clients, draw_read, counter)

    for user, client in zip(users, clients, strict=True):
        client.catch_up()
        assert client.tasks == server_tasks(app_engine, user)
