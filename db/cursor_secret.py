"""The key that signs list cursors when CURSOR_SECRET is unset, made once by migration 0005."""

from sqlalchemy import Engine, select
from sqlalchemy.exc import ProgrammingError
from sqlmodel import col

from db.models import CursorSecretRow

STORED_SECRET = select(col(CursorSecretRow.secret))


class CursorSecretMissing(RuntimeError):
    pass


def stored_cursor_secret(engine: Engine) -> bytes:
    """The database's cursor key: the same for every instance on it, and across restarts."""
    try:
        with engine.connect() as conn:
            secret = conn.execute(STORED_SECRET).scalar_one()
    except ProgrammingError as exc:
        raise CursorSecretMissing(
            "the database has no cursor secret: run `taskapi migrate`, or set CURSOR_SECRET"
        ) from exc
    return bytes(secret)
