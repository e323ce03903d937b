"""Shared fixtures: one migrated scratch database per run, one rolled-back transaction per test.

With TEST_DATABASE_URL set, the scratch database is created on that server (for example the
machine's PostgreSQL 15); otherwise an embedded PostgreSQL is started in a temporary directory
and stopped by process id when the run ends.

Two roles, as in production: the server's superuser migrates and owns the schema (`engine`,
`connection`), and the API under test runs as `taskapi_app`, which row-level security applies
to. `app_engine`/`app_connection` log in as that role. The `client` shares the test's own
`connection` (so a test can arrange and inspect rows in the same transaction) and switches it to
`taskapi_app` with `SET ROLE` for the duration of each request. It runs with authentication on
(JWKS mode, against a loopback JWKS server) and sends the path user's token with each request.
"""

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from api.app import create_app
from api.settings import Settings
from db import embedded
from db.connections import sqlalchemy_url
from db.migrate import upgrade
from db.scope import WriteSessions
from tests.auth_support import TokenForPathUser, TokenIssuer, running_issuer
from tests.readers import ConnectionReaders, as_app_role


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


@contextmanager
def scratch_database(
    server_url: str, revision: str = "head", prefix: str = "taskapi_test"
) -> Iterator[str]:
    """A database of its own on the test server, migrated to `revision` as the server's
    superuser (with the service's role in place), and dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    embedded.ensure_app_role(server_url)
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url, revision)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A fresh database on the test server, migrated to head once for the whole run (as owner)."""
    with scratch_database(server_url) as url:
        yield url


@pytest.fixture(scope="session")
def app_database_url(database_url: str) -> str:
    """The scratch database as the service's role (both test servers trust local logins)."""
    return embedded.as_role(database_url, embedded.APP_ROLE)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(sqlalchemy_url(database_url))
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def app_engine(app_database_url: str) -> Iterator[Engine]:
    engine = create_engine(sqlalchemy_url(app_database_url))
    yield engine
    engine.dispose()


def rolled_back(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            yield conn
        finally:
            transaction.rollback()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """An owner's connection inside a transaction that is rolled back after the test."""
    yield from rolled_back(engine)


@pytest.fixture
def app_connection(app_engine: Engine) -> Iterator[Connection]:
    """The service role's connection inside a transaction that is rolled back after the test."""
    yield from rolled_back(app_engine)


class WritesOnConnection(WriteSessions):
    """The write side on a test's connection: dispatch's commit releases a savepoint and the
    test's outer transaction stays open. Runs as the service's role unless `app_role` is off."""

    def __init__(self, conn: Connection, *, app_role: bool = True) -> None:
        # Positions on, as when the service reads from replicas: every API test sees tokens.
        super().__init__(conn, join_transaction_mode="create_savepoint", positions=True)
        self._conn = conn
        self._app_role = app_role

    @contextmanager
    def as_user(self, user_id: str) -> Iterator[Session]:
        with as_app_role(self._conn, self._app_role), super().as_user(user_id) as session:
            yield session


@pytest.fixture(scope="session")
def issuer() -> Iterator[TokenIssuer]:
    """A Better Auth stand-in: an Ed25519 key published as a JWKS on loopback for the run."""
    with running_issuer() as issuer:
        yield issuer


def client_on(
    conn: Connection,
    issuer: TokenIssuer | None,
    *,
    auto_token: bool = True,
    app_role: bool = True,
    **settings: Any,
) -> TestClient:
    """A TestClient whose reads and writes all run on `conn` (and so inside its transaction), as
    the service's role.

    With an issuer the app verifies its tokens, and (unless `auto_token` is off) each request to
    `/api/{user}/...` that carries no Authorization header gets `{user}`'s token. Without one the
    app runs with AUTH_MODE=none. With `app_role` off, requests run as whoever `conn` logged in as.
    """
    auth = issuer.settings() if issuer is not None else {"auth_mode": "none"}
    url = conn.engine.url.render_as_string(hide_password=False)
    app = create_app(
        Settings(database_url=url, **(auth | settings)),
        readers=ConnectionReaders(conn, app_role=app_role),
        writes=WritesOnConnection(conn, app_role=app_role),
    )
    client = TestClient(app)
    if issuer is not None and auto_token:
        client.auth = TokenForPathUser(issuer)
    return client


@pytest.fixture
def client(connection: Connection, issuer: TokenIssuer) -> Iterator[TestClient]:
    with client_on(connection, issuer) as client:
        yield client
