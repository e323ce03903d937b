"""The embedded database's lifecycle with real `taskapi` processes: sharing, signals, backups.

Every server runs on its own temporary DATA_DIR (never the checkout's `.data`) and is stopped by
process id; the `data_dirs` fixture stops any PostgreSQL a failing test leaves behind.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import jwt
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from db.backup import ClientFailed, run_script
from db.connections import sqlalchemy_url
from db.embedded import postmaster_pid
from tests.auth_support import claims_for
from tests.integration.test_cli import (
    SECRET,
    STARTUP_SECONDS,
    authenticated,
    call,
    clean_environment,
    free_port,
    serving,
    wait_until_serving,
)

STOP_SECONDS = 30


@pytest.fixture
def data_dirs(tmp_path: Path) -> Iterator[Callable[[], Path]]:
    """Fresh DATA_DIRs; afterwards any PostgreSQL still running on one is stopped by pid."""
    made: list[Path] = []

    def make() -> Path:
        made.append(tmp_path / f"data-{len(made)}")
        return made[-1]

    yield make
    for data_dir in made:
        leaked = postmaster_pid(data_dir / "postgres")
        if leaked is not None:
            os.kill(leaked, signal.SIGINT)


def taskapi(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "api.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, timeout=STARTUP_SECONDS)


@pytest.fixture
def started() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """`taskapi serve` in a session (process group) of its own; the group is killed afterwards."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str], port: int, *args: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "api.cli", "serve", "--port", str(port), *args]
        processes.append(subprocess.Popen(command, env=env, start_new_session=True))
        wait_until_serving(f"http://127.0.0.1:{port}", processes[-1])
        return processes[-1]

    yield start
    for process in processes:
        # The group is the one this fixture made (its id is the server's pid): whatever the code
        # under test left of it, workers included, goes.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def group_is_gone(pgid: int) -> bool:
    """Wait (bounded) until no process is left in the process group `pgid`."""
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def write_and_read(base: str, user: str, title: str) -> None:
    task = call(base, "POST", f"/api/{user}/tasks", {"title": title})
    assert call(base, "GET", f"/api/{user}/tasks/{task['id']}") == task


@pytest.mark.slow
def test_a_second_server_on_a_busy_port_says_so_in_one_line_and_stops_nothing(
    data_dirs: Callable[[], Path],
) -> None:
    env = clean_environment(DATA_DIR=str(data_dirs()))
    with serving(env) as base:
        port = urlsplit(base).port
        assert port is not None

        second = taskapi(env, "serve", "--port", str(port))

        assert second.returncode == 2
        assert second.stderr.decode() == (
            f"port {port} is in use; stop the other server or use --port\n"
        )
        write_and_read(base, "alice", "still served")


@pytest.mark.slow
def test_servers_on_one_data_directory_share_its_database_and_the_last_one_out_stops_it(
    data_dirs: Callable[[], Path],
) -> None:
    data_dir = data_dirs()
    env = clean_environment(DATA_DIR=str(data_dir))
    with serving(env) as first:
        with serving(env) as second:
            task = call(first, "POST", "/api/alice/tasks", {"title": "written on the first"})
            assert call(second, "GET", "/api/alice/tasks") == [task]
            write_and_read(second, "bob", "written on the second")
        write_and_read(first, "alice", "after the second stopped")
        assert postmaster_pid(data_dir / "postgres") is not None
    assert postmaster_pid(data_dir / "postgres") is None


@pytest.mark.slow
def test_migrate_while_serving_migrates_and_leaves_the_server_serving(
    data_dirs: Callable[[], Path],
) -> None:
    env = clean_environment(DATA_DIR=str(data_dirs()))
    with serving(env) as base:
        assert taskapi(env, "migrate").returncode == 0
        write_and_read(base, "alice", "after migrate")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stop_signal", "exit_status"), [(signal.SIGHUP, 0), (signal.SIGINT, 128 + signal.SIGINT)]
)
def test_a_hang_up_or_ctrl_c_stops_the_server_its_workers_and_its_database(
    data_dirs: Callable[[], Path],
    started: Callable[..., subprocess.Popen[bytes]],
    stop_signal: signal.Signals,
    exit_status: int,
) -> None:
    data_dir = data_dirs()
    env = clean_environment(DATA_DIR=str(data_dir))
    port = free_port()
    server = started(env, port, "--workers", "2")
    task = call(f"http://127.0.0.1:{port}", "POST", "/api/alice/tasks", {"title": "kept"})

    # What closing the terminal (or Ctrl-C) does: signal every process of the session's group.
    os.killpg(server.pid, stop_signal)

    assert server.wait(timeout=STOP_SECONDS) == exit_status
    assert group_is_gone(server.pid), "a worker outlived its master"
    assert postmaster_pid(data_dir / "postgres") is None
    with serving(env) as base:
        assert call(base, "GET", "/api/alice/tasks") == [task]


@pytest.mark.slow
def test_a_killed_server_leaves_its_database_to_the_next_start_which_reuses_and_stops_it(
    data_dirs: Callable[[], Path], started: Callable[..., subprocess.Popen[bytes]]
) -> None:
    data_dir = data_dirs()
    env = clean_environment(DATA_DIR=str(data_dir))
    port = free_port()
    server = started(env, port, "--workers", "2")
    task = call(f"http://127.0.0.1:{port}", "POST", "/api/alice/tasks", {"title": "kept"})

    server.kill()
    server.wait()

    assert group_is_gone(server.pid), "the workers of a killed master kept running"
    orphan = postmaster_pid(data_dir / "postgres")
    assert orphan is not None
    with serving(env) as base:
        assert postmaster_pid(data_dir / "postgres") == orphan
        assert call(base, "GET", "/api/alice/tasks") == [task]
    assert postmaster_pid(data_dir / "postgres") is None


@pytest.mark.slow
def test_a_backup_restored_into_a_fresh_data_directory_has_every_users_tasks(
    data_dirs: Callable[[], Path], tmp_path: Path
) -> None:
    users = ("alice", "bob", "carol")
    original = clean_environment(DATA_DIR=str(data_dirs()))
    backup = tmp_path / "tasks.dump"
    with serving(original) as base:
        for user in users:
            for n in range(3):
                call(base, "POST", f"/api/{user}/tasks", {"title": f"{user} {n}", "tags": [user]})
        before = {user: call(base, "GET", f"/api/{user}/tasks") for user in users}
        # Taken while the server runs: the backup shares its database and leaves it serving.
        assert taskapi(original, "backup", str(backup)).returncode == 0
        write_and_read(base, "alice", "after the backup")

    restored = clean_environment(DATA_DIR=str(data_dirs()))
    assert taskapi(restored, "restore", str(backup)).returncode == 0
    with serving(restored) as base:
        after = {user: call(base, "GET", f"/api/{user}/tasks") for user in users}
    assert after == before
    assert all(len(tasks) == 3 for tasks in after.values())


@pytest.mark.slow
def test_restore_refuses_a_database_that_already_has_tables(
    data_dirs: Callable[[], Path], tmp_path: Path
) -> None:
    env = clean_environment(DATA_DIR=str(data_dirs()))
    backup = tmp_path / "tasks.dump"
    assert taskapi(env, "migrate").returncode == 0
    assert taskapi(env, "backup", str(backup)).returncode == 0

    again = taskapi(env, "restore", str(backup))

    assert again.returncode == 2
    assert b"the database already has tables" in again.stderr
    assert b"Traceback" not in again.stderr


@pytest.fixture
def empty_databases(server_url: str, database_url: str) -> Iterator[Callable[[], str]]:
    """New databases with nothing in them, on the test server, as its superuser; dropped after."""
    admin = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    names: list[str] = []

    def make() -> str:
        names.append(f"taskapi_restore_{uuid.uuid4().hex[:12]}")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{names[-1]}"'))
        return make_url(database_url).set(database=names[-1]).render_as_string(False)

    yield make
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_backup_and_restore_work_on_a_database_url_server(
    database_url: str, empty_databases: Callable[[], str], tmp_path: Path
) -> None:
    backup = tmp_path / "tasks.dump"
    target = empty_databases()

    dumped = taskapi(clean_environment(DATABASE_URL=database_url), "backup", str(backup))
    restored = taskapi(clean_environment(DATABASE_URL=target), "restore", str(backup))

    assert dumped.returncode == 0, dumped.stderr.decode()
    assert restored.returncode == 0, restored.stderr.decode()
    assert tables(target) == tables(database_url)


def test_migrations_started_together_on_a_new_database_all_succeed(
    empty_databases: Callable[[], str],
) -> None:
    # What two servers starting at once on a new data directory (or replicas on one
    # DATABASE_URL) do first: without a lock, all create the same tables and all but one fail.
    env = clean_environment(DATABASE_URL=empty_databases())
    command = [sys.executable, "-m", "api.cli", "migrate"]
    migrations = [subprocess.Popen(command, env=env, stderr=subprocess.PIPE) for _ in range(4)]
    try:
        results = [m.communicate(timeout=STARTUP_SECONDS) for m in migrations]
    finally:
        for migration in migrations:
            if migration.poll() is None:
                migration.kill()
                migration.wait()
    assert [m.returncode for m in migrations] == [0, 0, 0, 0], [err for _, err in results]


FILL = "CREATE TABLE filler AS SELECT n, repeat('x', 100) AS pad FROM generate_series(1, 50000) n"


def test_a_backup_cut_short_restores_nothing(
    empty_databases: Callable[[], str], tmp_path: Path
) -> None:
    source, target = empty_databases(), empty_databases()
    engine = create_engine(sqlalchemy_url(source), poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text(FILL))
    engine.dispose()
    backup = tmp_path / "tasks.dump"
    assert taskapi(clean_environment(DATABASE_URL=source), "backup", str(backup)).returncode == 0
    # Cut inside the table's data: its CREATE TABLE has reached psql by the time the dump fails.
    backup.write_bytes(backup.read_bytes()[: backup.stat().st_size * 2 // 3])

    restored = taskapi(clean_environment(DATABASE_URL=target), "restore", str(backup))

    assert restored.returncode == 2
    assert b"Traceback" not in restored.stderr
    assert tables(target) == []


def test_a_script_whose_producer_fails_after_a_whole_statement_loads_nothing(
    empty_databases: Callable[[], str],
) -> None:
    target = empty_databases()
    # psql commits what it has read when its input ends; a dump that died cleanly between two
    # statements (not, as above, inside a row) would otherwise leave half a database behind.
    failing_dump = ["/bin/sh", "-c", "echo 'CREATE TABLE half_restored ();'; sleep 1; exit 1"]

    with pytest.raises(ClientFailed):
        run_script(failing_dump, target, server_version=150000)

    assert tables(target) == []


def tables(url: str) -> list[tuple[str, int]]:
    """Every table of the public schema with its row count (as a superuser: all users' rows)."""
    engine = create_engine(sqlalchemy_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            names = conn.execute(text(PUBLIC_TABLES)).scalars().all()
            return [
                (n, conn.execute(text(f'SELECT count(*) FROM "{n}"')).scalar_one()) for n in names
            ]
    finally:
        engine.dispose()


PUBLIC_TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"


def test_serve_refuses_a_database_url_that_bypasses_row_security(database_url: str) -> None:
    refused = taskapi(authenticated(DATABASE_URL=database_url), "serve", "--port", str(free_port()))

    assert refused.returncode == 2
    [line] = refused.stderr.decode().splitlines()
    assert "DATABASE_URL connects as a superuser or BYPASSRLS role" in line
    assert "ALLOW_RLS_BYPASS=true" in line


def test_serve_refuses_a_read_database_url_that_bypasses_row_security(
    database_url: str, app_database_url: str
) -> None:
    env = authenticated(
        DATABASE_URL=app_database_url,
        READ_DATABASE_URL=database_url,
        MIGRATION_DATABASE_URL=database_url,
    )

    refused = taskapi(env, "serve", "--port", str(free_port()))

    assert refused.returncode == 2
    [line] = refused.stderr.decode().splitlines()
    assert "READ_DATABASE_URL connects as a superuser or BYPASSRLS role" in line


def test_serve_with_allow_rls_bypass_serves_on_a_bypassing_database_url(database_url: str) -> None:
    env = authenticated(DATABASE_URL=database_url, ALLOW_RLS_BYPASS="true")
    token = jwt.encode(claims_for("rls-bypass"), SECRET, algorithm="HS256")
    with serving(env) as base:
        task = call(base, "POST", "/api/rls-bypass/tasks", {"title": "allowed"}, token)
        assert call(base, "GET", f"/api/rls-bypass/tasks/{task['id']}", token=token) == task
        call(base, "DELETE", f"/api/rls-bypass/tasks/{task['id']}", token=token)
