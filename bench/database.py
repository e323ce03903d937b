"""The database a run measures: a fresh one on DATABASE_URL's server, or on the benchmark's own
embedded server in `.data/bench-postgres` (never `.data/postgres`, which a developer may be using).
"""

import contextlib
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text

from bench.config import BenchConfig
from db import embedded
from db.connections import libpq_url, sqlalchemy_url

SAFE_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# The server's version, and the settings that decide write and cache speed.
SETTINGS_SQL = text(
    "SELECT name, current_setting(name) AS value FROM pg_settings WHERE name IN ('server_version',"
    " 'shared_buffers', 'max_connections', 'synchronous_commit', 'fsync', 'wal_level',"
    " 'effective_cache_size', 'work_mem')"
)
SAMPLE_PAIRS_SQL = text("SELECT user_id, id FROM tasks WHERE id = ANY(:ids) ORDER BY id")


@dataclass(frozen=True)
class PostgresServer:
    admin_url: str  # a libpq URL to the server's `postgres` database
    postmaster_pid: int | None  # known when the server is on this machine and readable


@contextlib.contextmanager
def engine_at(url: str, **options: Any) -> Iterator[Engine]:
    """An engine on a libpq URL, disposed of (its pooled connections closed) when the block ends."""
    engine = create_engine(sqlalchemy_url(url), **options)
    try:
        yield engine
    finally:
        engine.dispose()


@contextlib.contextmanager
def postgres_server(database_url: str | None, pgdata: Path) -> Iterator[PostgresServer]:
    """DATABASE_URL's server, or the bench's embedded one (stopped by the last process using it)."""
    if database_url:
        admin_url = libpq_url(database_url, "postgres")
        yield PostgresServer(admin_url, _local_postmaster_pid(admin_url))
        return
    running = embedded.start(pgdata)
    try:
        yield PostgresServer(running.admin_url(), running.pid)
    finally:
        embedded.stop(running)


@contextlib.contextmanager
def fresh_database(server: PostgresServer, name: str, *, keep: bool) -> Iterator[str]:
    """Create database `name` and the app role anew; yield the owner's URL; drop unless `keep`."""
    if not SAFE_DATABASE_NAME.fullmatch(name):
        raise ValueError(f"database name {name!r} must match {SAFE_DATABASE_NAME.pattern}")
    _drop_database(server, name)
    embedded.create_database(server.admin_url, name)
    embedded.ensure_app_role(server.admin_url)
    try:
        yield libpq_url(server.admin_url, name)
    finally:
        if not keep:
            _drop_database(server, name)


def _drop_database(server: PostgresServer, name: str) -> None:
    with (
        engine_at(server.admin_url, isolation_level="AUTOCOMMIT") as engine,
        engine.connect() as conn,
    ):
        # Names are checked against SAFE_DATABASE_NAME; DDL takes no bind parameters.
        conn.execute(text("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"))


def settings(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {row.name: row.value for row in conn.execute(SETTINGS_SQL)}


def sample_pairs(engine: Engine, tasks: int, config: BenchConfig) -> list[tuple[str, int]]:
    """Real (user_id, id) pairs of ordinary tasks read back from the table, for wrk."""
    sampler = random.Random(config.seed)  # noqa: S311 -- sampling, not secrets
    ids = sampler.sample(range(1, tasks + 1), min(config.pair_samples, tasks))
    with engine.connect() as conn:
        return [(row.user_id, row.id) for row in conn.execute(SAMPLE_PAIRS_SQL, {"ids": ids})]


def _local_postmaster_pid(admin_url: str) -> int | None:
    """The postmaster's pid, when its data directory is on this machine and readable."""
    try:  # lacking the privilege or the directory only costs the DB CPU figure
        with engine_at(admin_url) as engine, engine.connect() as conn:
            data_directory = conn.execute(text("SHOW data_directory")).scalar_one()
        return embedded.postmaster_pid(Path(str(data_directory)))
    except Exception:
        return None
