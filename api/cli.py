"""`taskapi serve`, `taskapi migrate`, `taskapi backup`, `taskapi restore` and
`taskapi replica-status`."""

import argparse
import asyncio
import errno
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from api.auth.config import auth_mode, auth_unconfigured
from api.cors import DEVELOPMENT_ORIGIN, origins_problem
from api.cursors import CursorSecretTooShort, configured_secret
from api.http_server import server_options
from api.settings import ServiceMisconfigured, Settings
from db import backup as backups
from db import embedded
from db.engine import bypasses_row_security
from db.migrate import upgrade
from db.reads import ReadPool
from db.replicas import shown

log = logging.getLogger("taskapi")


@contextmanager
def database(settings: Settings) -> Iterator[Settings]:
    """The settings as configured, or pointed at the embedded server (started or joined here).

    The embedded server's superuser migrates; the service connects as the app role. On exit this
    process lets go of the server, which stops only if no other process still uses it.
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


def replica_status(_: argparse.Namespace) -> None:
    """Print each read target: the primary's position, each replica's lag and rotation."""
    install_stop_signals()
    with database(Settings()) as settings:
        for line in asyncio.run(read_targets(settings)):
            print(line)


async def read_targets(settings: Settings) -> list[str]:
    pool = ReadPool(settings)
    await pool.open()
    try:
        position = await pool.primary_position()
        await pool.replicas.check(position)
        lines = [f"primary  {shown(settings.write_url())}  at {position or 'unreachable'}"]
        for replica in pool.replicas.all:
            state = replica.state
            rotation = "in rotation" if state.in_rotation else "OUT of rotation"
            lag = "lag unknown" if state.lag_ms is None else f"lag {state.lag_ms:.0f} ms"
            replayed = state.replayed or "?"
            lines.append(
                f"replica  {replica.name}  {rotation}  {lag}  replayed {replayed}  ({state.reason})"
            )
        if not pool.replicas.all:
            lines.append("no replicas (READ_DATABASE_URL is unset): every read goes to the primary")
        return lines
    finally:
        await pool.close()


def migrate(_: argparse.Namespace) -> None:
    install_stop_signals()
    with database(Settings()) as settings:
        upgrade(settings.migration_url())


def backup(args: argparse.Namespace) -> None:
    install_stop_signals()
    with database(Settings()) as settings, refusing_on(backups.BackupError):
        backups.backup(settings.migration_url(), args.file)


def restore(args: argparse.Namespace) -> None:
    install_stop_signals()
    with database(Settings()) as settings, refusing_on(backups.BackupError):
        backups.restore(settings.migration_url(), args.file)
        upgrade(settings.migration_url())


@contextmanager
def refusing_on(error: type[Exception]) -> Iterator[None]:
    """`error` ends the command with its one-line message and exit status 2 (not a traceback)."""
    try:
        yield
    except error as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None


def refuse_to_serve_unauthenticated(settings: Settings) -> None:
    """Exit unless authentication is configured; the embedded default may fall back to none."""
    if settings.database_url is None and auth_unconfigured(settings):
        # Workers are separate processes that read their settings from the environment.
        os.environ["AUTH_MODE"] = "none"
        if settings.cors_origins is None:
            os.environ["CORS_ORIGINS"] = DEVELOPMENT_ORIGIN
            log.warning("CORS: pages on %s may call the API (CORS_ORIGINS)", DEVELOPMENT_ORIGIN)
        return
    try:
        mode = auth_mode(settings)
        problem = origins_problem(settings.allowed_origins(), authenticated=mode != "none")
        if problem is not None:
            raise ServiceMisconfigured(problem)
    except ServiceMisconfigured as exc:
        log.error("refusing to start: %s", exc)
        raise SystemExit(2) from None


def refuse_a_weak_cursor_secret(settings: Settings) -> None:
    """Exit if CURSOR_SECRET is set but short: anyone could then forge cursors."""
    try:
        configured_secret(settings)
    except CursorSecretTooShort as exc:
        log.error("refusing to start: %s", exc)
        raise SystemExit(2) from None


def refuse_to_bypass_row_security(settings: Settings) -> None:
    """Exit if a URL's role is exempt from row-level security, unless ALLOW_RLS_BYPASS is set."""
    urls = [("DATABASE_URL", settings.write_url())]
    urls += [("READ_DATABASE_URL", url) for url in settings.replica_urls()]
    for name, url in urls:
        if not bypasses_row_security(url):
            continue
        if not settings.allow_rls_bypass:
            log.error(
                "refusing to start: %s connects as a superuser or BYPASSRLS role, so one user "
                "could read another's tasks; connect as taskapi_app (README, 'Database roles') "
                "or set ALLOW_RLS_BYPASS=true",
                name,
            )
            raise SystemExit(2)
        log.warning("%s bypasses row-level security (ALLOW_RLS_BYPASS=true)", name)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def exit_cleanly(signum: int, _: FrameType | None) -> None:
    """Turn SIGTERM/SIGINT into SystemExit, so `finally` blocks run and let go of the database.

    uvicorn re-raises the signal it caught once it has shut down; with the default handler the
    process would die there and leave an embedded PostgreSQL running. Later signals are ignored:
    a second Ctrl-C must not cut the database's stop short.
    """
    for each in STOP_SIGNALS:
        signal.signal(each, signal.SIG_IGN)
    raise SystemExit(0 if signum == signal.SIGTERM else 128 + signum)


def hang_up_as_terminate(_signum: int, _frame: FrameType | None) -> None:
    """A closed terminal (SIGHUP) shuts down like SIGTERM: gracefully inside uvicorn, else here."""
    signal.raise_signal(signal.SIGTERM)


def install_stop_signals() -> None:
    signal.signal(signal.SIGTERM, exit_cleanly)
    signal.signal(signal.SIGINT, exit_cleanly)
    signal.signal(signal.SIGHUP, hang_up_as_terminate)


PORT_IN_USE = "port {port} is in use; stop the other server or use --port"


def claim_port(host: str, port: int, count: int) -> list[socket.socket]:
    """The listeners, bound before the database is touched; if not, one line and exit status 2."""
    try:
        return bind_listeners(host, port, count)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(PORT_IN_USE.format(port=port), file=sys.stderr)
        else:
            print(f"cannot listen on {host} port {port}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(2) from None


def serve(args: argparse.Namespace) -> None:
    install_stop_signals()
    settings = Settings()
    # A second server on a busy port must fail here, in one line, before it says anything else
    # or joins (or starts) the database.
    listeners = claim_port(args.host, args.port, args.workers)
    refuse_to_serve_unauthenticated(settings)
    refuse_a_weak_cursor_secret(settings)
    with database(settings) as running:
        refuse_to_bypass_row_security(running)
        upgrade(running.migration_url())
        # Workers are separate processes that read their settings from the environment.
        os.environ["DATABASE_URL"] = running.write_url()
        options = uvicorn_options(args.host, running)
        if args.workers == 1:
            run_worker(options, listeners[0])
        else:
            supervise(options, listeners)


def uvicorn_options(host: str, settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config` (picklable values: they travel to spawned workers)."""
    # loop "auto" picks uvloop; the protocol is httptools' with our limits (api/http_server.py).
    return {
        "app": "api.app:create_app",
        "factory": True,
        "host": host,
        "access_log": settings.access_log,
        **server_options(settings),
    }


def bind_listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """One listening socket per worker on the same port (SO_REUSEPORT), all with TCP_NODELAY.

    The kernel spreads new connections evenly over the sockets, where one shared socket lets
    whichever worker is awake accept nearly all of them. Accepted sockets inherit TCP_NODELAY:
    without it a response written in two parts waits for the client's delayed ACK (40 ms).
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    # SO_REUSEPORT would also let this group share a port another server already listens on;
    # a plain bind first keeps "address already in use" (and picks the port when it is 0).
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
        address = probe.getsockname()
    listeners: list[socket.socket] = []
    for _ in range(count):
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(2048)
        listeners.append(sock)
    return listeners


def run_worker(options: dict[str, Any], listener: socket.socket, master: int | None = None) -> None:
    """Serve on `listener` until SIGTERM/SIGINT/SIGHUP, then finish the requests in flight.

    A worker process (`master` given) also stops when its master dies without stopping it.
    """
    install_stop_signals()
    if master is not None:
        stop_when_orphaned(master)
    config = uvicorn.Config(**options)
    config.load()  # builds the app now; the server would otherwise build it on start
    # What is loaded by now (modules, schemas, the app) lives as long as the process. Frozen out
    # of the collector's sight, a full collection no longer walks it: ~50 ms each, every few
    # thousand requests, before; ~1.5 ms after (docs/PERFORMANCE.md).
    gc.collect()
    gc.freeze()
    uvicorn.Server(config).run(sockets=[listener])


WORKER_POLL_SECONDS = 0.5
WORKER_STOP_SECONDS = 30.0


def stop_when_orphaned(master: int) -> None:
    """SIGTERM this worker once `master` is gone (kill -9 runs no `finally` to stop workers)."""

    def watch() -> None:
        while os.getppid() == master:
            time.sleep(WORKER_POLL_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="master-watch", daemon=True).start()


def supervise(options: dict[str, Any], listeners: list[socket.socket]) -> None:
    """Run one worker process per listener, restart any that dies, stop them all on exit.

    The master keeps the listeners open, so a restarted worker takes over its socket and the
    connections queued on it meanwhile.
    """
    spawn = multiprocessing.get_context("spawn")

    def start(listener: socket.socket) -> BaseProcess:
        process = spawn.Process(
            target=run_worker, args=(options, listener, os.getpid()), daemon=False
        )
        process.start()
        return process

    workers = [start(listener) for listener in listeners]
    try:
        while True:
            time.sleep(WORKER_POLL_SECONDS)
            for index, process in enumerate(workers):
                if not process.is_alive():
                    log.warning(
                        "worker %s exited with %s; restarting it", process.pid, process.exitcode
                    )
                    workers[index] = start(listeners[index])
    finally:
        for process in workers:
            if process.pid is not None:
                with suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + WORKER_STOP_SECONDS
        for process in workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="taskapi", description="Tasks API")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve_parser = commands.add_parser("serve", help="migrate, then serve the API")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.add_argument("--workers", type=int, default=1)
    serve_parser.set_defaults(run=serve)

    status_parser = commands.add_parser(
        "replica-status", help="show each read target: its lag and whether reads go to it"
    )
    status_parser.set_defaults(run=replica_status)

    migrate_parser = commands.add_parser("migrate", help="apply migrations and exit")
    migrate_parser.set_defaults(run=migrate)

    backup_parser = commands.add_parser("backup", help="dump the database to FILE (pg_dump -Fc)")
    backup_parser.add_argument("file", type=Path, metavar="FILE")
    backup_parser.set_defaults(run=backup)

    restore_parser = commands.add_parser(
        "restore", help="load a backup FILE into an empty database, then migrate it"
    )
    restore_parser.add_argument("file", type=Path, metavar="FILE")
    restore_parser.set_defaults(run=restore)

    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
