"""Debian's PgBouncer in transaction mode in front of the test cluster: installed when missing,
run by process id (as tests/frontend/chromium.py does for Chromium)."""

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests import debian
from tests.cluster.servers import Server, free_port, own, run_as, stop_by_pid

START_SECONDS = 15.0
STOP_SECONDS = 15.0
PLACES = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")


def _found() -> str | None:
    return shutil.which("pgbouncer") or next((p for p in PLACES if os.access(p, os.X_OK)), None)


def find_or_install() -> tuple[str | None, str]:
    """PgBouncer's path, installing Debian's `pgbouncer` package when it is missing."""
    return debian.find_or_install("pgbouncer", _found)


@dataclass(frozen=True)
class Bouncer:
    port: int

    def url(self, database: str, user: str) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"


def _config(port: int, databases: dict[str, Server], pool_size: int, workdir: Path) -> str:
    lines = ["[databases]"]
    lines += [
        f"{alias} = host=127.0.0.1 port={server.port} dbname=tasks"
        for alias, server in databases.items()
    ]
    lines += [
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        "auth_type = trust",  # loopback only, like the test servers
        f"auth_file = {workdir / 'userlist.txt'}",
        "pool_mode = transaction",
        f"default_pool_size = {pool_size}",
        "max_client_conn = 200",
        "ignore_startup_parameters = extra_float_digits",
        f"logfile = {workdir / 'pgbouncer.log'}",
    ]
    return "\n".join(lines) + "\n"


@contextmanager
def bouncing(
    program: str, databases: dict[str, Server], workdir: Path, *, pool_size: int
) -> Iterator[Bouncer]:
    """PgBouncer serving `databases` (alias -> server's `tasks` database) on a free loopback
    port, `pool_size` server connections per database and user, until the block ends; then it
    is stopped by its process id."""
    workdir = own(workdir)
    port = free_port()
    (workdir / "userlist.txt").write_text('"taskapi_app" ""\n"postgres" ""\n')
    config = workdir / "pgbouncer.ini"
    config.write_text(_config(port, databases, pool_size, workdir))
    process = subprocess.Popen(
        [program, str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        user=run_as(),
    )
    try:
        _wait_for(port, process)
        yield Bouncer(port)
    finally:
        stop_by_pid(process, signal.SIGTERM, STOP_SECONDS)  # PgBouncer's immediate shutdown


def _wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
