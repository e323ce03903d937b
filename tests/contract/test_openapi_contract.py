"""Schemathesis against the service's own OpenAPI document, on a real server: every check and
every phase (examples, coverage, fuzzing, and the stateful phase that follows the documented
links from create to read, update, complete and delete with ETags), for several seeds.

Two runs share the checks between them, because one server cannot serve both purposes:
- open: authentication off, so generated user ids reach the task routes and whole
  create -> read -> update -> delete chains run; every check except `ignored_auth`, which is
  meaningless with authentication off.
- authenticated: a real token for one user (the path's user is pinned to it); every check except
  `negative_data_rejection`, because with the path pinned schemathesis cannot send the invalid
  user ids it believes it sends. This run checks that missing or bad credentials are refused.
Any failure fails the test and prints schemathesis' report.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from tests.integration.test_cli import serving

SECRET = "contract-test-secret-" + "x" * 32
MAX_EXAMPLES = 10

# Statuses a schema-valid request may still get by design: 412 when If-Match names another
# version; 422 when an Idempotency-Key is reused for another body, for a `cursor` or change
# token (`since`) that this server did not sign, or for a `tz` that is not a zone name (no
# schema can say which strings those are: the zone list is the server's and is a plain string
# in the document).
#
# The change stream is left out: a valid request's answer never ends, so no tool that waits for
# a whole response can check it. tests/integration/test_changes_stream.py does, with real clients.
EXPECTED = """
[checks.positive_data_acceptance]
expected-statuses = ["2XX", "3XX", "401", "403", "404", "409", "412"]

[[operations]]
include-operation-id = ["streamChanges"]
enabled = false

[[operations]]
include-operation-id = ["createTask", "completeTask", "listTasks", "taskStats", "listChanges"]
checks.positive_data_acceptance.expected-statuses = [
    "2XX", "3XX", "401", "403", "404", "409", "412", "422",
]

# The coverage phase cannot make a header value that needs a `"` (it narrows header values to
# letters and digits), so it sends `If-Match: 0` as "valid"; the service rightly answers 422.
# Only there, for the operations that take If-Match/If-None-Match, 422 is expected; the other
# phases generate real ETags and still must not get it.
[[operations]]
include-operation-id = ["readTask", "updateTask", "patchTask", "deleteTask"]
phases.coverage.checks.positive_data_acceptance.expected-statuses = [
    "2XX", "3XX", "401", "403", "404", "409", "412", "422",
]
"""
PINNED_USER = """
[parameters]
"path.user_id" = "{user}"

[headers]
Authorization = "Bearer {token}"
"""


def server_env(database_url: str, app_database_url: str, **auth: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": app_database_url, "MIGRATION_DATABASE_URL": database_url}
    for name in ("AUTH_MODE", "AUTH_JWKS_URL", "AUTH_JWT_SECRET", "AUTH_ISSUER", "AUTH_AUDIENCE"):
        env.pop(name, None)
    return env | auth


@pytest.fixture(scope="module")
def open_server(database_url: str, app_database_url: str) -> Iterator[str]:
    with serving(server_env(database_url, app_database_url, AUTH_MODE="none")) as base:
        yield base


@pytest.fixture(scope="module")
def authenticated_server(database_url: str, app_database_url: str) -> Iterator[str]:
    with serving(server_env(database_url, app_database_url, AUTH_JWT_SECRET=SECRET)) as base:
        yield base


def schemathesis(
    server: str, config: str, seed: int, workdir: Path, *args: str, document: str | None = None
) -> None:
    """Run schemathesis against `server`, with its own document or the one given as a file."""
    config_file = workdir / "schemathesis.toml"
    config_file.write_text(config)
    location = f"{server}/openapi.json"
    if document is not None:
        location = str(workdir / "openapi.json")
        Path(location).write_text(document)
        args = (*args, "--url", server)
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config_file),
        "--no-color",
        "run",
        location,
        "--seed",
        str(seed),
        "--max-examples",
        str(MAX_EXAMPLES),
        # One worker: with two threads, Hypothesis' ast.parse of lambdas can hit CPython 3.11's
        # "AST constructor recursion depth mismatch" (seen once here, a crash of the tool).
        "--workers",
        "1",
        *args,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False, cwd=workdir
    )
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_the_api_honours_its_contract_for_any_user(
    open_server: str, seed: int, tmp_path: Path
) -> None:
    # The document always declares the bearer scheme (clients generated from a development
    # server must match production); this server does not enforce it, so it is tested against
    # the document without it.
    with urllib.request.urlopen(f"{open_server}/openapi.json", timeout=10) as response:
        document = json.loads(response.read())
    for operations in document["paths"].values():
        for operation in operations.values():
            operation.pop("security", None)
    schemathesis(
        open_server,
        EXPECTED,
        seed,
        tmp_path,
        "--checks",
        "all",
        "--exclude-checks",
        "ignored_auth",
        document=json.dumps(document),
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3])
def test_the_api_honours_its_contract_with_authentication_on(
    authenticated_server: str, seed: int, tmp_path: Path
) -> None:
    user = f"contract-{uuid.uuid4().hex[:10]}"
    now = int(time.time())
    token = jwt.encode({"sub": user, "iat": now, "exp": now + 3600}, SECRET, algorithm="HS256")
    config = PINNED_USER.format(user=user, token=token) + EXPECTED
    schemathesis(
        authenticated_server,
        config,
        seed,
        tmp_path,
        "--checks",
        "all",
        "--exclude-checks",
        "negative_data_rejection",
    )
