"""Clients generated from a live server's /openapi.json (authentication on, so the production
document), used as frontend developers use them: openapi-python-client with its defaults, and
openapi-typescript + openapi-fetch. Each flow (client_flow.py, ts/flow.ts) is ordinary code, a
create body of only a title, `overdue` as a boolean, a time zone in a plain string; it must
type-check strictly against the generated types and then pass against the server.

Generated clients and `npm ci`'s node_modules are kept in ignored folders and reused while the
document (or package-lock.json) is unchanged.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from tests.frontend.conftest import token_for
from tests.integration.test_cli import serving

HERE = Path(__file__).parent
GENERATED = HERE / ".generated"
PYTHON_FLOW = HERE / "client_flow.py"
TS = HERE / "ts"
BIN = Path(sys.executable).parent
PACKAGE = "tasks_api_client"
"""openapi-python-client names the package after the document's title, "Tasks API"."""


README = Path(__file__).resolve().parents[2] / "README.md"
# What the README's example takes from the app around it: the signed-in session's token and user.
README_EXAMPLE_PRELUDE = (
    "declare const token: string;\ndeclare const session: { user: { id: string } };\nexport {};\n"
)


def run(command: list[str], cwd: Path, seconds: float, **env: str) -> str:
    """Run `command`, failing the test with its output unless it exits 0 within `seconds`."""
    path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
    done = subprocess.run(
        command,
        cwd=cwd,
        env=os.environ | {"PATH": path} | env,
        capture_output=True,
        text=True,
        timeout=seconds,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{output[-8000:]}"
    return output


@pytest.fixture(scope="module")
def api(api_env: dict[str, str]) -> Iterator[str]:
    with serving(api_env) as base:
        yield base


@pytest.fixture(scope="module")
def document(api: str) -> bytes:
    with urllib.request.urlopen(f"{api}/openapi.json", timeout=10) as response:
        body: bytes = response.read()
    assert json.loads(body)["components"]["securitySchemes"], "the production document"
    return body


@pytest.mark.slow
def test_every_operation_has_an_id_to_name_its_generated_function(document: bytes) -> None:
    paths = json.loads(document)["paths"]
    unnamed = [
        f"{method.upper()} {path}"
        for path, operations in paths.items()
        for method, operation in operations.items()
        if "operationId" not in operation
    ]
    assert unnamed == []


def digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def python_client(document: bytes) -> tuple[Path, str]:
    """The folder holding the generated package (made once per document and generator version),
    and what the generator printed."""
    generator = version("openapi-python-client")
    folder = GENERATED / "python" / digest(document, generator.encode())
    log = folder / "generate.log"
    if (folder / "tasks-api-client" / PACKAGE).is_dir():
        return folder / "tasks-api-client", log.read_text()
    # Generate beside it and rename, so that an interrupted run never leaves a half client.
    partial = folder.with_name(f"{folder.name}.{uuid.uuid4().hex[:8]}")
    partial.mkdir(parents=True)
    (partial / "openapi.json").write_bytes(document)
    try:
        output = run(
            [str(BIN / "openapi-python-client"), "generate", "--path", "openapi.json"],
            partial,
            180,
        )
        (partial / "generate.log").write_text(output)
        partial.rename(folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder / "tasks-api-client", output


def npm_ci() -> None:
    """`npm ci` in ts/, skipped while node_modules came from the same package-lock.json."""
    lock = digest((TS / "package-lock.json").read_bytes())
    marker = TS / "node_modules" / ".installed-from-lock"
    if marker.exists() and marker.read_text() == lock:
        return
    run(["npm", "ci", "--no-audit", "--no-fund"], TS, 600)
    marker.write_text(lock)


def flow_result(output: str) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return summary


@pytest.mark.slow
def test_the_generated_python_client_type_checks_and_runs_a_frontend_flow(
    api: str, document: bytes
) -> None:
    client, generated = python_client(document)
    assert "Warning" not in generated, generated

    # An empty --config-file ignores every config file: --strict alone decides, not the generated
    # project's settings nor ours (whose pydantic plugin and package list are for the service).
    run(
        [
            str(BIN / "mypy"),
            "--strict",
            "--config-file",
            "",
            "--cache-dir",
            str(GENERATED / "mypy-cache"),
            PACKAGE,
            str(PYTHON_FLOW),
        ],
        client,
        300,
    )

    user = f"pyclient-{uuid.uuid4().hex[:10]}"
    output = run(
        [sys.executable, str(PYTHON_FLOW), api, user, token_for(user)],
        client,
        120,
        PYTHONPATH=str(client),
    )
    summary = flow_result(output)
    assert len(summary["listed"]) == 4
    assert summary["deleted"] is True


@pytest.mark.slow
def test_the_generated_typescript_client_type_checks_and_runs_a_frontend_flow(
    api: str, document: bytes
) -> None:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("Node.js and npm are needed for the TypeScript client (none on PATH)")
    npm_ci()
    (TS / "generated").mkdir(exist_ok=True)
    (TS / "generated" / "openapi.json").write_bytes(document)
    tools = TS / "node_modules" / ".bin"
    run(
        [
            str(tools / "openapi-typescript"),
            "generated/openapi.json",
            "-o",
            "generated/schema.d.ts",
        ],
        TS,
        120,
    )
    # Strict type check and compile in one pass: tsconfig's noEmitOnError leaves no flow to run
    # (and tsc exits non-zero) unless flow.ts type-checks against the generated schema.
    run([str(tools / "tsc"), "-p", "."], TS, 180)

    # The README's example must type-check too, against the same generated schema.
    example = README.read_text().split("```ts\n", 1)[1].split("```", 1)[0]
    (TS / "generated" / "readme_example.ts").write_text(
        README_EXAMPLE_PRELUDE + example.replace('from "./schema"', 'from "./schema.js"')
    )
    run([str(tools / "tsc"), "-p", "tsconfig.readme.json"], TS, 180)

    user = f"tsclient-{uuid.uuid4().hex[:10]}"
    output = run(["node", "dist/flow.js", api, user, token_for(user)], TS, 120)
    summary = flow_result(output)
    assert len(summary["listed"]) == 4
    assert summary["deleted"] is True
