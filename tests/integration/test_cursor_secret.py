"""Without CURSOR_SECRET, cursors are signed with the key migration 0005 stored in the database:
every instance on the database accepts them, across restarts. A short CURSOR_SECRET is refused.
"""

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import ProgrammingError

from api.app import create_app
from api.cursors import CursorSecretTooShort
from api.settings import Settings
from tests.auth_support import TokenIssuer
from tests.conftest import client_on
from tests.integration.test_cli import STARTUP_SECONDS, clean_environment, free_port, serving
from tests.integration.test_paging import cursor_of, next_url
from tests.integration.test_tasks_api import create, invalid_fields

FIRST_PAGE = "/api/alice/tasks?limit=2"
LONG_ENOUGH = "k" * 32
STORED_SECRET = text("SELECT secret FROM cursor_secret")
REPLACE_SECRET = text("UPDATE cursor_secret SET secret = :secret")


@pytest.fixture
def three_tasks(connection: Connection, issuer: TokenIssuer) -> None:
    with client_on(connection, issuer) as client:
        for n in range(3):
            create(client, title=f"t{n}")


def second_page(connection: Connection, issuer: TokenIssuer, **settings: Any) -> str:
    """The next-page URL a freshly built instance gives for FIRST_PAGE."""
    with client_on(connection, issuer, **settings) as client:
        url = next_url(client.get(FIRST_PAGE).headers)
    assert url is not None
    return url


def test_a_cursor_from_one_instance_is_accepted_by_another_built_fresh_on_the_database(
    connection: Connection, issuer: TokenIssuer, three_tasks: None
) -> None:
    url = second_page(connection, issuer)

    with client_on(connection, issuer) as other:
        response = other.get(url)

    assert response.status_code == 200, response.text
    assert [task["title"] for task in response.json()] == ["t0"]


def test_an_altered_cursor_from_another_instance_is_422(
    connection: Connection, issuer: TokenIssuer, three_tasks: None
) -> None:
    with client_on(connection, issuer) as client:
        cursor = cursor_of(client, FIRST_PAGE)
    payload, signature = cursor.split(".")
    altered = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature

    with client_on(connection, issuer) as other:
        assert "cursor" in invalid_fields(other.get(f"{FIRST_PAGE}&cursor={altered}"))
        assert other.get(f"{FIRST_PAGE}&cursor={cursor}").status_code == 200


def test_cursor_secret_when_set_is_used_instead_of_the_stored_key(
    connection: Connection, issuer: TokenIssuer, three_tasks: None
) -> None:
    url = second_page(connection, issuer, cursor_secret=LONG_ENOUGH)

    with client_on(connection, issuer) as stored_key:
        assert "cursor" in invalid_fields(stored_key.get(url))
    with client_on(connection, issuer, cursor_secret=LONG_ENOUGH) as same_secret:
        assert same_secret.get(url).status_code == 200


@pytest.fixture
def stored_secret_restored(engine: Engine) -> Iterator[None]:
    """Puts the stored key back after a test that replaced it (committed: each instance reads
    the key on a connection of its own, outside the test's transaction)."""
    with engine.begin() as conn:
        original = conn.execute(STORED_SECRET).scalar_one()
    yield
    with engine.begin() as conn:
        conn.execute(REPLACE_SECRET, {"secret": original})


def test_replacing_the_stored_key_invalidates_the_cursors_it_signed(
    connection: Connection,
    issuer: TokenIssuer,
    three_tasks: None,
    engine: Engine,
    stored_secret_restored: None,
) -> None:
    url = second_page(connection, issuer)

    with engine.begin() as conn:
        conn.execute(REPLACE_SECRET, {"secret": os.urandom(32)})

    with client_on(connection, issuer) as restarted:
        assert "cursor" in invalid_fields(restarted.get(url))
    assert second_page(connection, issuer) != url


@pytest.mark.parametrize("secret", ["", "short", "k" * 31, "é" * 15])
def test_a_cursor_secret_shorter_than_32_bytes_is_refused_at_startup(secret: str) -> None:
    settings = Settings(
        database_url="postgresql://x@localhost/x", auth_mode="none", cursor_secret=secret
    )
    with pytest.raises(CursorSecretTooShort, match="at least 32"):
        create_app(settings)


def test_a_cursor_secret_of_32_bytes_is_accepted() -> None:
    settings = Settings(
        database_url="postgresql://x@localhost/x", auth_mode="none", cursor_secret=LONG_ENOUGH
    )
    create_app(settings)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE cursor_secret SET secret = secret || 'x'",
        "DELETE FROM cursor_secret",
        "INSERT INTO cursor_secret (only_row, secret) VALUES (false, 'x')",
    ],
    ids=["update", "delete", "insert"],
)
def test_the_service_role_can_read_the_stored_key_but_not_change_it(
    app_connection: Connection, statement: str
) -> None:
    assert len(app_connection.execute(STORED_SECRET).scalar_one()) == 32
    with pytest.raises(ProgrammingError, match="permission denied"):
        app_connection.execute(text(statement))


def test_serve_with_a_short_cursor_secret_exits_2_with_one_line(database_url: str) -> None:
    env = clean_environment(DATABASE_URL=database_url, AUTH_MODE="none", CURSOR_SECRET="short")
    command = [sys.executable, "-m", "api.cli", "serve", "--port", str(free_port())]

    finished = subprocess.run(command, env=env, capture_output=True, timeout=STARTUP_SECONDS)

    assert finished.returncode == 2
    lines = finished.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "CURSOR_SECRET is 5 bytes" in lines[0]


def get(base: str, path: str) -> tuple[list[dict[str, Any]], str | None]:
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return json.loads(response.read()), next_url(response.headers)


def post(base: str, path: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST")
    request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=10):
        pass


@pytest.mark.slow
def test_a_cursor_survives_a_restart_of_the_server_without_cursor_secret(
    database_url: str, app_database_url: str
) -> None:
    env = clean_environment(
        DATABASE_URL=app_database_url, MIGRATION_DATABASE_URL=database_url, AUTH_MODE="none"
    )
    env.pop("CURSOR_SECRET", None)
    user = f"cursor-{uuid.uuid4().hex[:12]}"
    with serving(env, "--workers", "2") as base:
        for n in range(3):
            post(base, f"/api/{user}/tasks", {"title": f"t{n}"})
        _, url = get(base, f"/api/{user}/tasks?limit=2")
    assert url is not None

    with serving(env) as base:
        page, _ = get(base, url)

    assert [task["title"] for task in page] == ["t0"]
