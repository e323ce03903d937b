"""The query side's replicas and which of them are in rotation (docs/adr/0016).

Each worker checks each replica every REPLICA_CHECK_MS on a connection of its own: is it up, is
it still replaying (a promoted replica is not: it has left the primary's history), and how far
behind the primary is it. A replica that is down, promoted or more than REPLICA_MAX_LAG_MS
behind is out of rotation until a later check finds it well again; a read that finds its
replica dead takes it out at once. Reads go to the replicas in rotation in turn, and to the
primary when there is none.
"""

import asyncio
import functools
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url

from db.connections import libpq_url
from db.replication import WalPosition
from db.settings import DatabaseSettings

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0
"""A check that has not connected and answered in this long finds the replica down."""

_REPLICA_NOW = (
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,"
    " pg_last_wal_replay_lsn() >= %(primary)s::pg_lsn,"
    " extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000"
)


@dataclass(frozen=True)
class ReplicaState:
    """What the last check (or read) found."""

    in_rotation: bool
    reason: str
    lag_ms: float | None = None
    replayed: str | None = None


NOT_CHECKED = ReplicaState(in_rotation=False, reason="not checked yet")


def shown(url: str) -> str:
    """`url` without its password, for logs and status."""
    return make_url(libpq_url(url)).render_as_string(hide_password=True)


class Replica:
    def __init__(self, url: str, make_pool: Callable[[], AsyncConnectionPool[Any]]) -> None:
        self.url = url
        self.name = shown(url)
        self._make_pool = make_pool
        self.pool = make_pool()
        self._pool_failed = False
        self.state = NOT_CHECKED
        self._behind_since: float | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None

    def take_out(self, reason: str) -> None:
        """Out of rotation now, because a read failed on it."""
        self._pool_failed = True
        if self.state.in_rotation:
            log.warning("replica %s out of rotation: %s", self.name, reason)
        self.state = ReplicaState(in_rotation=False, reason=reason, replayed=self.state.replayed)

    async def check(self, primary: WalPosition | None, max_lag_ms: float, every_ms: float) -> None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                in_recovery, replayed, caught_up, age_ms = await self._ask(primary)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            await self.close()
            self._behind_since = None
            self._pool_failed = True
            self._judge(ReplicaState(in_rotation=False, reason=f"down: {first_line(exc)}"))
            return
        if not in_recovery:
            self._judge(
                ReplicaState(False, "promoted: it no longer replays the primary", None, replayed)
            )
            return
        if primary is None:
            # The primary does not answer: the replica is all there is to read from.
            if self._pool_failed:
                await self._fresh_pool()
            self._judge(ReplicaState(True, "replaying; the primary's position is unknown"))
            return
        lag_ms = self._lag_ms(caught_up, age_ms, every_ms)
        if lag_ms > max_lag_ms:
            self._judge(ReplicaState(False, f"lagging {lag_ms:.0f} ms", lag_ms, replayed))
            return
        if self._pool_failed:
            await self._fresh_pool()
        self._judge(ReplicaState(True, "replaying", lag_ms, replayed))

    async def _fresh_pool(self) -> None:
        """A new pool for a replica that is back: the old one may be sleeping between
        reconnection attempts (with delays grown during the outage) and would keep the first
        reads waiting for it."""
        old, self.pool = self.pool, self._make_pool()
        self._pool_failed = False
        await self.pool.open(wait=False)
        await old.close(timeout=1.0)

    def _lag_ms(self, caught_up: bool, age_ms: float | None, every_ms: float) -> float:
        """How far behind, in time: 0 when it has replayed what the primary had flushed just
        before the check. Behind, it is the age of the last commit it replayed, but at most
        the time since a check first found it behind (plus one interval): after an idle spell
        the last commit is old although the replica is only a moment behind."""
        if caught_up:
            self._behind_since = None
            return 0.0
        now = time.monotonic()
        if self._behind_since is None:
            self._behind_since = now
        seen_behind_ms = (now - self._behind_since) * 1000 + every_ms
        return min(math.inf if age_ms is None else float(age_ms), seen_behind_ms)

    def _judge(self, state: ReplicaState) -> None:
        if state.in_rotation != self.state.in_rotation:
            change = "back in rotation" if state.in_rotation else "out of rotation"
            log.warning("replica %s %s: %s", self.name, change, state.reason)
        self.state = state

    async def _ask(self, primary: WalPosition | None) -> tuple[Any, ...]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                libpq_url(self.url),
                autocommit=True,
                connect_timeout=math.ceil(CHECK_TIMEOUT_SECONDS),
            )
        # Never prepared: a pooler without protocol-level prepared statements may sit between.
        cursor = await self._conn.execute(
            _REPLICA_NOW, {"primary": None if primary is None else str(primary)}, prepare=False
        )
        row = await cursor.fetchone()
        assert row is not None
        return tuple(row)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class Replicas:
    """The replicas of READ_DATABASE_URL, checked in the background while open."""

    def __init__(
        self, settings: DatabaseSettings, make_pool: Callable[[str, int], AsyncConnectionPool[Any]]
    ) -> None:
        self.all = [
            Replica(url, functools.partial(make_pool, url, number))
            for number, url in enumerate(settings.replica_urls(), start=1)
        ]
        self._every_ms = float(settings.replica_check_ms)
        self._max_lag_ms = float(settings.replica_max_lag_ms)
        self._turn = itertools.count()
        self._watch: asyncio.Task[None] | None = None

    def next(self) -> Replica | None:
        """The next replica in rotation, in turn; None when there is none."""
        usable = [replica for replica in self.all if replica.state.in_rotation]
        if not usable:
            return None
        return usable[next(self._turn) % len(usable)]

    async def open(self, primary_position: Callable[[], Awaitable[WalPosition | None]]) -> None:
        for replica in self.all:
            await replica.pool.open(wait=False)
        if self.all:
            self._watch = asyncio.create_task(self._keep_checking(primary_position))

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        for replica in self.all:
            await replica.close()
            await replica.pool.close()

    async def check(self, primary: WalPosition | None) -> None:
        await asyncio.gather(
            *(replica.check(primary, self._max_lag_ms, self._every_ms) for replica in self.all)
        )

    async def _keep_checking(
        self, primary_position: Callable[[], Awaitable[WalPosition | None]]
    ) -> None:
        while True:
            try:
                await self.check(await primary_position())
            except Exception:  # a check must never stop the checking
                log.exception("checking the replicas failed")
            await asyncio.sleep(self._every_ms / 1000)
