"""The service purges expired tombstones itself: no cron job, no role that bypasses row security.

Row-level security lets a transaction see only the user it names, so purging goes user by user:
a user's tombstones are purged when that user reads the change feed (the only reader of them),
at most once per PURGE_INTERVAL_SECONDS per worker, after the answer is sent, in batches of
commands.changes.PURGE_BATCH rows, each its own short transaction, at most MAX_BATCHES per run.
A user who never syncs keeps their tombstones (a small row per deletion) until they do.
"""

import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

from commands.changes import PURGE_BATCH, PurgeTombstones, purge_tombstones
from commands.dispatch import unit_of_work
from db.scope import WriteSessions

log = logging.getLogger(__name__)

PURGE_INTERVAL_SECONDS = 3600.0
MAX_BATCHES = 20
REMEMBERED_USERS = 10_000
"""Users whose last purge time a worker remembers; the longest unseen is forgotten first."""


class TombstonePurger:
    def __init__(self, writes: WriteSessions, *, retention_days: float) -> None:
        self._writes = writes
        self._retention = timedelta(days=retention_days)
        self._last: OrderedDict[str, float] = OrderedDict()

    def due(self, user_id: str) -> bool:
        """Is a purge of this user due (and now counted as done, so it runs once)?"""
        now = time.monotonic()
        last = self._last.get(user_id)
        if last is not None and now - last < PURGE_INTERVAL_SECONDS:
            return False
        self._last[user_id] = now
        self._last.move_to_end(user_id)
        if len(self._last) > REMEMBERED_USERS:
            self._last.popitem(last=False)
        return True

    def purge(self, user_id: str) -> int:
        """Purge the user's expired tombstones, batch by batch; how many went."""
        cmd = PurgeTombstones(user_id=user_id, before=datetime.now(UTC) - self._retention)
        purged = 0
        try:
            for _ in range(MAX_BATCHES):
                with self._writes.as_user(user_id) as session, unit_of_work(session):
                    batch = purge_tombstones(cmd, session)
                purged += batch
                if batch < PURGE_BATCH:
                    break
        except Exception:  # a background chore: the next read tries again
            log.exception("purging tombstones failed")
            self._last.pop(user_id, None)
        return purged
