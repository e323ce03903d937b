"""The change feed as JSON and as Server-Sent Events, and the worker's open streams.

A stream is one long response: first every change since its token, then each change as it
commits. It waits on its user's waiter in the worker's one LISTEN connection (db/notifications.py)
and re-reads the feed when woken, and also every heartbeat, so a lost notification costs at most
one heartbeat. Every event's `id` is the token after that change: a client that reconnects with
it in `Last-Event-ID` gets exactly the changes it has not seen.

Streams end cleanly, with the response's last chunk, when the server starts to stop: uvicorn
waits for open responses to finish before it shuts the application down, so a stream that went
on would hold the shutdown forever (api/http_server.py calls `ChangeStreams.stop`).
"""

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC
from typing import Any

import orjson
import psycopg

from api.change_tokens import ChangeTokens
from api.task_json import task_document
from db.notifications import ChangeListener
from db.reads import Reader
from queries.changes import Change, ChangePage, ChangesGone, read_changes

log = logging.getLogger(__name__)

STREAM_PAGE = 500
RETRY_MILLISECONDS = 2000
"""How long a browser's EventSource waits before it reconnects after the stream ends."""
HEARTBEAT = b": heartbeat\n\n"


class TooManyStreams(Exception):
    """The user already holds the most streams a worker allows one user."""


class StreamsFull(Exception):
    """The worker holds the most streams it allows."""


def change_document(change: Change) -> dict[str, Any]:
    if change.task is not None:
        return {"op": "upsert", "task": task_document(change.task)}
    assert change.deleted_at is not None
    return {"op": "delete", "id": change.id, "deleted_at": change.deleted_at.astimezone(UTC)}


def feed_json(page: ChangePage, next_token: str) -> bytes:
    """ChangeFeed's JSON, built directly like task lists (api/task_json.py)."""
    changes = [change_document(change) for change in page.changes]
    return orjson.dumps({"changes": changes, "next": next_token, "has_more": page.has_more})


def event(change: Change, token: str) -> bytes:
    # orjson writes no newline, so the data is one `data:` line.
    return b"id: " + token.encode() + b"\ndata: " + orjson.dumps(change_document(change)) + b"\n\n"


class ChangeStreams:
    """The worker's open streams: their limits, their waiters, and the signal to stop."""

    def __init__(
        self,
        listener: ChangeListener,
        *,
        per_user: int,
        per_worker: int,
        heartbeat_seconds: float,
    ) -> None:
        self.listener = listener
        self.per_user = per_user
        self.per_worker = per_worker
        self.heartbeat_seconds = heartbeat_seconds
        self._open: Counter[str] = Counter()
        self._waiters: set[asyncio.Event] = set()
        self.stopping = False

    @property
    def open_streams(self) -> int:
        return self._open.total()

    def check(self, user_id: str) -> None:
        """Refuse a new stream beyond the limits (before its response starts)."""
        if self.open_streams >= self.per_worker:
            raise StreamsFull
        if self._open[user_id] >= self.per_user:
            raise TooManyStreams

    def stop(self) -> None:
        """End every stream at its next step; refuse none, since no new request arrives."""
        self.stopping = True
        for waiter in self._waiters:
            waiter.set()

    @contextmanager
    def held(self, user_id: str) -> Iterator[asyncio.Event]:
        """Count a stream for the limits and give it a waiter that this user's changes set."""
        waiter = asyncio.Event()
        self._open[user_id] += 1
        self._waiters.add(waiter)
        self.listener.add(user_id, waiter)
        try:
            yield waiter
        finally:
            self.listener.discard(user_id, waiter)
            self._waiters.discard(waiter)
            self._open[user_id] -= 1
            if not self._open[user_id]:
                del self._open[user_id]

    async def events(
        self,
        reader: Reader,
        tokens: ChangeTokens,
        *,
        user_id: str,
        first: ChangePage,
    ) -> AsyncIterator[bytes]:
        """The stream's body: `first` (already read, so errors were answered as problems), then
        every later change, until the client leaves or the server stops."""
        with self.held(user_id) as waiter:
            waiter.set()  # a change may have committed between `first` and this waiter
            yield b"retry: " + str(RETRY_MILLISECONDS).encode() + b"\n\n"
            page = first
            while not self.stopping:
                for change in page.changes:
                    yield event(change, tokens.encode(user_id, change.seq))
                since: int = page.next
                if not page.has_more:
                    if not await self._wait(waiter):
                        yield HEARTBEAT
                    if self.stopping:
                        break
                try:
                    page = await read_changes(
                        reader, user_id=user_id, since=since, limit=STREAM_PAGE
                    )
                except (ChangesGone, psycopg.OperationalError) as exc:
                    # The client reconnects with the last id it got and is answered properly.
                    log.warning("change stream ended: %s", exc.__class__.__name__)
                    break

    async def _wait(self, waiter: asyncio.Event) -> bool:
        """Wait for a change or the heartbeat; whether it was woken (a change, or stopping)."""
        try:
            await asyncio.wait_for(waiter.wait(), self.heartbeat_seconds)
        except TimeoutError:
            return False
        waiter.clear()
        return True
