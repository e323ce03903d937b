"""Idempotency keys: a retried write is answered with the first answer, never run twice.

A key belongs to one user. The first request holding it runs its command and stores its response
in the same transaction; a repeat within 24 hours gets that response back. A transaction-level
advisory lock on (user, key) serialises requests that share a key: a repeat that arrives while
the first is running waits for it (up to LOCK_WAIT) and then replays its answer.
"""

import hashlib
import json
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from commands.errors import CommandError

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


@dataclass(frozen=True, kw_only=True)
class StoredResponse:
    status_code: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


LOCK_KEY = text(
    "SET LOCAL lock_timeout = '10s';"
    " SELECT pg_advisory_xact_lock(hashtextextended(:user_id || chr(31) || :key, 0))"
)
FIND_RESPONSE = text(
    "SELECT fingerprint, status_code, headers, body FROM idempotency_keys"
    " WHERE user_id = :user_id AND key = :key"
    " AND created_at > now() - interval '24 hours'"
)
PURGE_EXPIRED = text(
    "DELETE FROM idempotency_keys"
    " WHERE user_id = :user_id AND created_at <= now() - interval '24 hours'"
)
STORE_RESPONSE = text(
    "INSERT INTO idempotency_keys (user_id, key, fingerprint, status_code, headers, body)"
    " VALUES (:user_id, :key, :fingerprint, :status_code, CAST(:headers AS jsonb), :body)"
)


def claim(session: Session, key: IdempotencyKey) -> StoredResponse | None:
    """Hold the key for this transaction; the stored response if it was used before."""
    params = {"user_id": key.user_id, "key": key.key}
    try:
        session.execute(LOCK_KEY, params)
    except OperationalError as error:
        if getattr(error.orig, "pgcode", None) == LOCK_NOT_AVAILABLE:
            raise IdempotencyKeyInUse(key.key) from error
        raise
    row = session.execute(FIND_RESPONSE, params).one_or_none()
    if row is None:
        return None
    if row.fingerprint != key.fingerprint:
        raise IdempotencyKeyReused(key.key)
    return StoredResponse(status_code=row.status_code, body=row.body, headers=row.headers)


def remember(session: Session, key: IdempotencyKey, response: StoredResponse) -> None:
    params = {"user_id": key.user_id, "key": key.key}
    session.execute(PURGE_EXPIRED, params)
    session.execute(
        STORE_RESPONSE,
        {
            **params,
            "fingerprint": key.fingerprint,
            "status_code": response.status_code,
            "headers": json.dumps(response.headers),
            "body": response.body,
        },
    )
