"""One LISTEN connection per worker: which users' tasks changed, fanned out to waiters.

A trigger (migration 0007) notifies channel `task_changes` with the user id of every task
change; PostgreSQL delivers it when the transaction commits, once per transaction and user.
The notification says only who changed: a waiter re-reads the feed, so a notification lost
(while this connection is down, say) costs a delay, never a change. After a reconnect every
waiter is woken, since notifications may have been missed meanwhile.

The connection goes to the primary (`DATABASE_URL`): NOTIFY is not delivered on replicas, and a
transaction-mode pooler (PgBouncer, Neon's `-pooler` host) does not keep a LISTEN; point
DATABASE_URL at a direct connection, or the feed falls back to the streams' heartbeat polls.
"""

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

import psycopg

from db.connections import libpq_url

log = logging.getLogger(__name__)

CHANNEL = "task_changes"
RECONNECT_FIRST_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 10.0


class ChangeListener:
    """Listens while started; `waiter(user_id)` events are set when that user's tasks change."""

    def __init__(self, url: str, *, connect_timeout: int) -> None:
        self._url = libpq_url(url)
        self._connect_timeout = connect_timeout
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        """Set while the LISTEN is in place (tests wait for it)."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="change-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def add(self, user_id: str, waiter: asyncio.Event) -> None:
        self._waiters[user_id].add(waiter)

    def discard(self, user_id: str, waiter: asyncio.Event) -> None:
        waiters = self._waiters.get(user_id)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[user_id]

    def wake(self, user_id: str) -> None:
        for waiter in self._waiters.get(user_id, ()):
            waiter.set()

    def wake_all(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.set()

    async def _run(self) -> None:
        delay = RECONNECT_FIRST_SECONDS
        while True:
            try:
                await self._listen()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if self.listening.is_set():
                    delay = RECONNECT_FIRST_SECONDS
                    log.warning("change listener lost its connection: %s", exc)
                self.listening.clear()
                self.wake_all()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _listen(self) -> None:
        conn: psycopg.AsyncConnection[Any] = await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=self._connect_timeout
        )
        async with conn:
            await conn.execute("LISTEN " + CHANNEL)
            self.listening.set()
            self.wake_all()  # whatever committed while not listening is read now
            async for notify in conn.notifies():
                self.wake(notify.payload)
