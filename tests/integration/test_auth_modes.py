"""The three ways to run: JWKS (Better Auth's keys), a shared HS256 secret, and none."""

import socket
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection

from api.app import create_app
from api.auth.errors import AuthNotConfigured
from api.settings import Settings
from tests.auth_support import TokenIssuer, claims_for, new_signing_key
from tests.conftest import client_on

SECRET = "a-shared-secret-" * 4  # 64 bytes: long enough for HS512 too


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def hs256(sub: str, secret: str = SECRET, **extra: Any) -> str:
    claims = claims_for(sub, **extra)
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.fixture
def secret_client(app_connection: Connection) -> Iterator[TestClient]:
    with client_on(
        app_connection,
        None,
        auth_mode=None,
        auth_jwt_secret=SECRET,
        auth_issuer="http://localhost:3000",
        auth_audience="http://localhost:3000",
    ) as client:
        yield client


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/auth/jwks"


# --- shared secret --------------------------------------------------------------------------------


def test_shared_secret_mode_accepts_hs256_tokens_signed_with_the_secret(
    secret_client: TestClient,
) -> None:
    response = secret_client.post(
        "/api/alice/tasks", json={"title": "t"}, headers=bearer(hs256("alice"))
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "token",
    [
        hs256("alice", secret="another-secret-" * 4),
        jwt.encode(
            claims_for("alice"),
            new_signing_key("k")[0],
            algorithm="EdDSA",
        ),
        jwt.encode(
            claims_for("alice"),
            SECRET,
            algorithm="HS512",
        ),
    ],
    ids=["other-secret", "eddsa", "hs512"],
)
def test_shared_secret_mode_refuses_other_keys_and_algorithms(
    secret_client: TestClient, token: str
) -> None:
    response = secret_client.get("/api/alice/tasks", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_better_auth_secret_is_accepted_as_the_secrets_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BETTER_AUTH_SECRET", SECRET)
    monkeypatch.delenv("AUTH_JWT_SECRET", raising=False)
    settings = Settings(database_url="postgresql://x@localhost/x")
    assert settings.auth_jwt_secret is not None
    assert settings.auth_jwt_secret.get_secret_value() == SECRET


def test_a_short_shared_secret_is_refused_at_startup() -> None:
    with pytest.raises(AuthNotConfigured, match="32 bytes"):
        create_app(Settings(database_url="postgresql://x@localhost/x", auth_jwt_secret="short"))


# --- startup ----------------------------------------------------------------------------------


def test_a_server_with_a_database_but_no_authentication_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AUTH_MODE", "AUTH_JWKS_URL", "AUTH_JWT_SECRET", "BETTER_AUTH_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(AuthNotConfigured, match="AUTH_MODE=none"):
        create_app(Settings(database_url="postgresql://x@localhost/x", _env_file=None))


def test_configuring_both_jwks_and_a_secret_needs_an_explicit_mode() -> None:
    settings = Settings(
        database_url="postgresql://x@localhost/x",
        auth_jwks_url="http://127.0.0.1:1/jwks",
        auth_jwt_secret=SECRET,
    )
    with pytest.raises(AuthNotConfigured, match="choose one"):
        create_app(settings)


def test_a_symmetric_algorithm_in_the_jwks_allow_list_is_refused_at_startup() -> None:
    settings = Settings(
        database_url="postgresql://x@localhost/x",
        auth_jwks_url="http://127.0.0.1:1/jwks",
        auth_algorithms="EdDSA,HS256",
    )
    with pytest.raises(AuthNotConfigured, match="HS256"):
        create_app(settings)


def test_auth_mode_none_serves_any_path_user_without_a_token(
    app_connection: Connection, caplog: pytest.LogCaptureFixture
) -> None:
    with client_on(app_connection, None) as client:
        response = client.post("/api/alice/tasks", json={"title": "t"})
    assert response.status_code == 201
    assert "AUTHENTICATION IS OFF" in caplog.text


# --- JWKS -------------------------------------------------------------------------------------


def test_an_unreachable_jwks_is_503_with_retry_after(
    app_connection: Connection, issuer: TokenIssuer
) -> None:
    with client_on(
        app_connection, issuer, auto_token=False, auth_jwks_url=closed_port_url()
    ) as client:
        response = client.get("/api/alice/tasks", headers=bearer(issuer.token("alice")))
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0


def test_a_rotated_key_is_fetched_when_a_token_names_it(
    app_connection: Connection, issuer: TokenIssuer
) -> None:
    with client_on(app_connection, issuer, auto_token=False, auth_jwks_refetch_seconds=0) as client:
        assert client.get("/api/alice/tasks", headers=bearer(issuer.token("alice"))).status_code
        new_key, new_jwk = new_signing_key("rotated")
        original = issuer.jwks.document
        issuer.jwks.document = {"keys": [issuer.public_jwk, new_jwk]}
        try:
            token = issuer.sign(issuer.claims("alice"), kid="rotated", key=new_key)
            response = client.get("/api/alice/tasks", headers=bearer(token))
        finally:
            issuer.jwks.document = original
    assert response.status_code == 200, response.text


def test_unknown_key_ids_do_not_make_the_service_refetch_the_jwks_each_time(
    app_connection: Connection, issuer: TokenIssuer
) -> None:
    stranger = new_signing_key("x")[0]
    with client_on(app_connection, issuer, auto_token=False) as client:
        client.get("/api/alice/tasks", headers=bearer(issuer.token("alice")))
        fetches = issuer.jwks.fetches
        for n in range(20):
            token = issuer.sign(issuer.claims("alice"), kid=f"made-up-{n}", key=stranger)
            assert client.get("/api/alice/tasks", headers=bearer(token)).status_code == 401
    assert issuer.jwks.fetches == fetches


def test_openapi_declares_the_bearer_scheme_on_every_task_operation(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "bearer"}.items() <= next(iter(schemes.values())).items()
    for path, operations in spec["paths"].items():
        if path.startswith("/api/{user_id}/tasks"):
            for operation in operations.values():
                assert operation["security"] == [{name: []} for name in schemes], path
