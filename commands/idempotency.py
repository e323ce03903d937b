"""Idempotency keys: a retried write is answered with the first answer, never run twice.

A key belongs to one user. The first request holding it runs its command and stores its result
(the task as the command left it) in the same transaction; a repeat within 24 hours gets that
result back, and the caller renders it as it rendered the first. A transaction-level
advisory lock on (user, key) serialises requests that share a key: a repeat that arrives while
the first is running waits for it (up to LOCK_WAIT) and then replays its answer.
"""

import hashlib
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from commands.errors import CommandError
from db.models import Task

# The key lifetime (24 hours) and the wait for a running twin (10 s) are written into the SQL.
LOCK_NOT_AVAILABLE = "55P03"


class IdempotencyKeyReused(CommandError):
    """The key was used before with a different request."""


class IdempotencyKeyInUse(CommandError):
    """A request with this key is still running."""


@dataclass(frozen=True, kw_only=True)
class IdempotencyKey:
    user_id: str
    key: str
    fingerprint: str
    """A digest of what the request asks for (method, path, body): a reused key must match it."""


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


LOCK_KEY = text(
    "SET LOCAL lock_timeout = '10s';"
    " SELECT pg_advisory_xact_lock(hashtextextended(:user_id || chr(31) || :key, 0))"
)
FIND_RESULT = text(
    "SELECT fingerprint, result FROM idempotency_keys"
    " WHERE user_id = :user_id AND key = :key"
    " AND created_at > now() - interval '24 hours'"
)
PURGE_EXPIRED = text(
    "DELETE FROM idempotency_keys"
    " WHERE user_id = :user_id AND created_at <= now() - interval '24 hours'"
)
STORE_RESULT = text(
    "INSERT INTO idempotency_keys (user_id, key, fingerprint, result)"
    " VALUES (:user_id, :key, :fingerprint, CAST(:result AS jsonb))"
)


def claim(session: Session, key: IdempotencyKey) -> Task | None:
    """Hold the key for this transaction; the stored result if it was used before."""
    params = {"user_id": key.user_id, "key": key.key}
    try:
        session.execute(LOCK_KEY, params)
    except OperationalError as error:
        if getattr(error.orig, "pgcode", None) == LOCK_NOT_AVAILABLE:
            raise IdempotencyKeyInUse(key.key) from error
        raise
    row = session.execute(FIND_RESULT, params).one_or_none()
    if row is None:
        return None
    if row.fingerprint != key.fingerprint:
        raise IdempotencyKeyReused(key.key)
    return Task.model_validate(row.result)


def remember(session: Session, key: IdempotencyKey, result: Task) -> None:
    params = {"user_id": key.user_id, "key": key.key}
    session.execute(PURGE_EXPIRED, params)
    session.execute(
        STORE_RESULT,
        {
            **params,
            "fingerprint": key.fingerprint,
            "result": result.model_dump_json(),
        },
    )
