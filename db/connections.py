"""How the service connects, on either side: the URL each driver takes, and how to tell that
the server has closed an idle connection without a round trip."""

import select
from typing import Any

from sqlalchemy.engine import make_url


def _with_driver(url: str, drivername: str, database: str | None = None) -> str:
    """Accept the `postgres://`, `postgresql://` and `postgresql+driver://` forms."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1)).set(drivername=drivername)
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def sqlalchemy_url(url: str) -> str:
    """`url` for SQLAlchemy, with the psycopg2 driver pinned."""
    return _with_driver(url, "postgresql+psycopg2")


def libpq_url(url: str, database: str | None = None) -> str:
    """`url` as libpq takes it (psycopg 3, pgbench, psql), for `database` if given."""
    return _with_driver(url, "postgresql", database)


def has_unread_input(dbapi_connection: Any) -> bool:
    """Is there anything to read on an idle connection? Then the server has closed it.

    An idle PostgreSQL connection receives nothing unless the server ends it: a terminated
    backend, a restart or an idle-session timeout send a FATAL message and close the socket, a
    pooler or proxy closes it. Either makes the socket readable, which one `poll` with a zero
    timeout sees without the round trip of a pre-ping.
    """
    if dbapi_connection.closed:
        return True
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))
