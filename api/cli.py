"""`taskapi serve` and `taskapi migrate`."""

import argparse
import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn

from db import embedded
from db.migrate import upgrade
from db.settings import Settings

log = logging.getLogger("taskapi")


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The configured DATABASE_URL, or an embedded server started here and stopped on exit."""
    if settings.database_url:
        yield settings.database_url
        return
    server = embedded.start(settings.data_dir / "postgres")
    log.warning("DATABASE_URL is unset: using the embedded PostgreSQL in %s", server.pgdata)
    try:
        yield server.url
    finally:
        embedded.stop(server)


def migrate(_: argparse.Namespace) -> None:
    with database(Settings()) as url:
        upgrade(url)


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
    with database(settings) as url:
        upgrade(url)
        # Workers are separate processes that read their settings from the environment.
        os.environ["DATABASE_URL"] = url
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
