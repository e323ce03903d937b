"""Shared fixtures: one migrated scratch database per run, one rolled-back transaction per test.

With TEST_DATABASE_URL set, the scratch database is created on that server (for example the
machine's PostgreSQL 15); otherwise an embedded PostgreSQL is started in a temporary directory
and stopped by process id when the run ends.
"""

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from api.app import create_app
from api.deps import get_read_connection, get_session
from db import embedded
from db.engine import sqlalchemy_url
from db.migrate import upgrade
from db.settings import Settings


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL of a running PostgreSQL server's database that scratch databases are made from."""
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield given
        return
    workdir = Path(tempfile.mkdtemp(prefix="taskapi-test-"))
    server = embedded.start(workdir / "pg")
    try:
        yield server.url
    finally:
        embedded.stop(server)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A fresh database on the test server, migrated to head once for the whole run."""
    name = f"taskapi_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(sqlalchemy_url(database_url))
    yield engine
    engine.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that is rolled back after the test."""
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            yield conn
        finally:
            transaction.rollback()


def bind_session(conn: Connection) -> Session:
    # dispatch's commit releases a savepoint; the test's outer transaction stays open.
    return Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)


@pytest.fixture
def session(connection: Connection) -> Iterator[Session]:
    with bind_session(connection) as session:
        yield session


def client_on(conn: Connection, database_url: str) -> TestClient:
    """A TestClient whose reads and writes all run on `conn` (and so inside its transaction)."""
    app = create_app(Settings(database_url=database_url))

    def session_on_connection() -> Iterator[Session]:
        with bind_session(conn) as session:
            yield session

    def read_on_connection() -> Iterator[Connection]:
        yield conn

    app.dependency_overrides[get_session] = session_on_connection
    app.dependency_overrides[get_read_connection] = read_on_connection
    return TestClient(app)


@pytest.fixture
def client(connection: Connection, database_url: str) -> Iterator[TestClient]:
    with client_on(connection, database_url) as client:
        yield client
