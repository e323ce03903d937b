"""`taskapi serve` and `taskapi migrate`."""

import argparse
import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn

from api.auth.config import auth_mode, auth_unconfigured
from api.auth.errors import AuthNotConfigured
from db import embedded
from db.engine import bypasses_row_security
from db.migrate import upgrade
from db.settings import Settings

log = logging.getLogger("taskapi")


@contextmanager
def database(settings: Settings) -> Iterator[Settings]:
    """The settings as configured, or pointed at an embedded server started here (stopped on exit).

    The embedded server's superuser migrates; the service connects as the app role.
    """
    if settings.database_url:
        yield settings
        return
    server = embedded.start(settings.data_dir / "postgres")
    log.warning("DATABASE_URL is unset: using the embedded PostgreSQL in %s", server.pgdata)
    try:
        yield settings.model_copy(
            update={"database_url": server.app_url(), "migration_database_url": server.url}
        )
    finally:
        embedded.stop(server)


def migrate(_: argparse.Namespace) -> None:
    with database(Settings()) as settings:
        upgrade(settings.migration_url())


def refuse_to_serve_unauthenticated(settings: Settings) -> None:
    """Exit unless authentication is configured; the embedded default may fall back to none."""
    if settings.database_url is None and auth_unconfigured(settings):
        # Workers are separate processes that read their settings from the environment.
        os.environ["AUTH_MODE"] = "none"
        return
    try:
        auth_mode(settings)
    except AuthNotConfigured as exc:
        log.error("refusing to start: %s", exc)
        raise SystemExit(2) from None


def exit_cleanly(signum: int, _: FrameType | None) -> None:
    """Turn SIGTERM/SIGINT into SystemExit, so `finally` blocks run and stop the database.

    uvicorn re-raises the signal it caught once it has shut down; with the default handler the
    process would die there and leave an embedded PostgreSQL running.
    """
    raise SystemExit(0 if signum == signal.SIGTERM else 128 + signum)


def serve(args: argparse.Namespace) -> None:
    signal.signal(signal.SIGTERM, exit_cleanly)
    signal.signal(signal.SIGINT, exit_cleanly)
    settings = Settings()
    refuse_to_serve_unauthenticated(settings)
    with database(settings) as running:
        upgrade(running.migration_url())
        if bypasses_row_security(running.write_url()):
            log.warning(
                "DATABASE_URL connects as a superuser or BYPASSRLS role: row-level security is "
                "not enforced. Connect as taskapi_app (see README, 'Database roles')."
            )
        # Workers are separate processes that read their settings from the environment.
        os.environ["DATABASE_URL"] = running.write_url()
        uvicorn.run(
            "api.app:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
        )


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="taskapi", description="Tasks API")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve_parser = commands.add_parser("serve", help="migrate, then serve the API")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.add_argument("--workers", type=int, default=1)
    serve_parser.set_defaults(run=serve)

    migrate_parser = commands.add_parser("migrate", help="apply migrations and exit")
    migrate_parser.set_defaults(run=migrate)

    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
