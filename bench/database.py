"""The database a run measures: a fresh one on DATABASE_URL's server, or on the benchmark's own
embedded server in `.data/bench-postgres` (never `.data/postgres`, which a developer may be using).
"""

import contextlib
import logging
import os
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from db import embedded
from db.connections import libpq_url, sqlalchemy_url

log = logging.getLogger(__name__)

SAFE_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
REPORTED_SETTINGS = (
    "shared_buffers",
    "max_connections",
    "synchronous_commit",
    "fsync",
    "wal_level",
    "effective_cache_size",
    "work_mem",
)
SETTINGS_SQL = text(
    "SELECT name, current_setting(name) AS value FROM pg_settings WHERE name = ANY(:names)"
)
SAMPLE_PAIRS_SQL = text("SELECT user_id, id FROM tasks WHERE id = ANY(:ids) ORDER BY id")

APP_ROLE = "taskapi_app"
"""The role the service connects as in production (migration 0002 and db/embedded.py)."""
APP_ROLE_CAN_LOGIN_SQL = text("SELECT rolcanlogin FROM pg_roles WHERE rolname = :role")
ROW_SECURITY_SQL = text("SELECT EXISTS (SELECT FROM pg_policies WHERE tablename = 'tasks')")


@dataclass(frozen=True)
class PostgresServer:
    admin_url: str
    """A libpq URL to the server's `postgres` database."""
    postmaster_pid: int | None
    """Known when the server runs on this machine and its data directory is readable."""


def as_role(url: str, role: str) -> str:
    """The same database as another role (the servers the bench uses trust local logins)."""
    parsed = make_url(url).set(username=role, password=None)
    return parsed.render_as_string(hide_password=False)


def app_role_url(engine: Engine, owner_url: str) -> str | None:
    """The database as the service's own role, when the migrations made one that can log in."""
    with engine.connect() as conn:
        can_login = conn.execute(APP_ROLE_CAN_LOGIN_SQL, {"role": APP_ROLE}).scalar()
    return as_role(owner_url, APP_ROLE) if can_login else None


def row_security(engine: Engine) -> bool:
    """Does a policy guard `tasks`? Then the service names the caller before each statement."""
    with engine.connect() as conn:
        return bool(conn.execute(ROW_SECURITY_SQL).scalar())


def admin_engine(server: PostgresServer) -> Engine:
    return create_engine(sqlalchemy_url(server.admin_url), isolation_level="AUTOCOMMIT")


@contextlib.contextmanager
def postgres_server(database_url: str | None, pgdata: Path) -> Iterator[PostgresServer]:
    """DATABASE_URL's server, or the bench's embedded server (stopped on exit if started here)."""
    if database_url:
        server = PostgresServer(libpq_url(database_url, "postgres"), None)
        yield PostgresServer(server.admin_url, _local_postmaster_pid(server))
        return
    started_here = not _postmaster_running(pgdata)
    running = embedded.start(pgdata)
    try:
        yield PostgresServer(running.admin_url(), running.pid)
    finally:
        if started_here:
            embedded.stop(running)
        else:
            log.warning("left the embedded server in %s running: it was not started here", pgdata)


@contextlib.contextmanager
def fresh_database(server: PostgresServer, name: str, *, keep: bool) -> Iterator[str]:
    """Drop and create database `name`; yield its URL; drop it afterwards unless `keep`."""
    if not SAFE_DATABASE_NAME.fullmatch(name):
        raise ValueError(f"database name {name!r} must match {SAFE_DATABASE_NAME.pattern}")
    _recreate_database(server, name)
    try:
        yield libpq_url(server.admin_url, name)
    finally:
        if not keep:
            _drop_database(server, name)


def _recreate_database(server: PostgresServer, name: str) -> None:
    engine = admin_engine(server)
    try:
        with engine.connect() as conn:
            # Names are checked against SAFE_DATABASE_NAME; DDL takes no bind parameters.
            conn.execute(text("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"))
            conn.execute(text("CREATE DATABASE " + name))
    finally:
        engine.dispose()


def _drop_database(server: PostgresServer, name: str) -> None:
    engine = admin_engine(server)
    try:
        with engine.connect() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"))
    finally:
        engine.dispose()


def settings(engine: Engine) -> dict[str, str]:
    """The server version and the settings that decide write and cache speed."""
    with engine.connect() as conn:
        version = str(conn.execute(text("SHOW server_version")).scalar_one())
        rows = conn.execute(SETTINGS_SQL, {"names": list(REPORTED_SETTINGS)}).all()
    return {"server_version": version} | {row.name: row.value for row in rows}


def sample_pairs(engine: Engine, *, tasks: int, count: int, seed: int) -> list[tuple[str, int]]:
    """Real (user_id, id) pairs read back from the table, for the HTTP load generators."""
    ids = random.Random(seed).sample(  # noqa: S311 -- sampling, not secrets
        range(1, tasks + 1), min(count, tasks)
    )
    with engine.connect() as conn:
        return [(row.user_id, row.id) for row in conn.execute(SAMPLE_PAIRS_SQL, {"ids": ids})]


def _postmaster_running(pgdata: Path) -> bool:
    pid = _postmaster_pid_file(pgdata)
    return pid is not None and Path(f"/proc/{pid}").exists()


def _postmaster_pid_file(pgdata: Path) -> int | None:
    try:
        first_line = (pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
    except OSError:
        return None
    return int(first_line) if first_line.strip().isdigit() else None


def _local_postmaster_pid(server: PostgresServer) -> int | None:
    """The postmaster's pid, when its data directory is on this machine and readable."""
    engine = admin_engine(server)
    try:
        with engine.connect() as conn:
            data_directory = conn.execute(text("SHOW data_directory")).scalar_one()
    except Exception:  # lacking the privilege only costs the DB CPU figure
        return None
    finally:
        engine.dispose()
    pid = _postmaster_pid_file(Path(str(data_directory)))
    return pid if pid is not None and os.path.exists(f"/proc/{pid}") else None
