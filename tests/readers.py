"""The query side on a test's own connection, so API tests read inside their rolled-back
transaction (production reads through db/reads.py's pool; tests/integration/test_reads.py)."""

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, TextClause, text

from db import embedded
from db.reads import ReadPool, Row
from db.replication import WalPosition
from db.scope import act_as
from db.settings import DatabaseSettings


@contextmanager
def as_app_role(conn: Connection, enabled: bool = True) -> Iterator[None]:
    """Run the block as the service's role on a connection that logged in as the owner."""
    if not enabled:
        yield
        return
    conn.execute(text("SET ROLE " + embedded.APP_ROLE))
    try:
        yield
    finally:
        conn.execute(text("RESET ROLE"))


class ConnectionReader:
    """A Reader on `conn`: like production's, it names the user (and the timeouts) for the
    transaction, then runs the query; here the transaction is the test's."""

    def __init__(self, conn: Connection, user_id: str, *, app_role: bool = True) -> None:
        self.conn = conn
        self.user_id = user_id
        self.app_role = app_role

    async def fetch(self, statement: TextClause, params: Mapping[str, Any]) -> list[Row]:
        with as_app_role(self.conn, self.app_role):
            act_as(self.conn, self.user_id)
            return [tuple(row) for row in self.conn.execute(statement, params)]


class ConnectionReaders:
    """ConnectionReaders on `conn` for each caller: the read side a test hands to create_app."""

    def __init__(self, conn: Connection, *, app_role: bool = True) -> None:
        self.conn = conn
        self.app_role = app_role

    def as_user(self, user_id: str, after: WalPosition | None = None) -> ConnectionReader:
        # One connection, to the primary: it has every write, whatever position is asked for.
        return ConnectionReader(self.conn, user_id, app_role=self.app_role)

    def primary_as_user(self, user_id: str) -> ConnectionReader:
        return self.as_user(user_id)


T = TypeVar("T")


def with_pool(settings: DatabaseSettings, use: Callable[[ReadPool], Awaitable[T]]) -> T:
    """`use` run on a ReadPool of `settings`, opened before and closed after."""

    async def run() -> T:
        pool = ReadPool(settings)
        await pool.open()
        try:
            return await use(pool)
        finally:
            await pool.close()

    return asyncio.run(run())
