"""Every operation against every kind of caller: issue 6's matrix, each cell asserted.

Alice owns a task. Each cell sends one operation on alice's path (or, for "other user's task on
own path", on bob's path naming alice's task) with one kind of token, then checks the status, the
problem body and `WWW-Authenticate` for refusals, and that alice's task is unchanged afterwards.
"""

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import Connection

from tests.auth_support import BASE_URL, TokenIssuer, new_signing_key
from tests.conftest import client_on

Operation = Callable[[TestClient, str, int, dict[str, str]], Response]

OPERATIONS: dict[str, Operation] = {
    "list": lambda c, user, _, h: c.get(f"/api/{user}/tasks", headers=h),
    "create": lambda c, user, _, h: c.post(f"/api/{user}/tasks", json={"title": "new"}, headers=h),
    "read": lambda c, user, task, h: c.get(f"/api/{user}/tasks/{task}", headers=h),
    "update": lambda c, user, task, h: c.put(
        f"/api/{user}/tasks/{task}", json={"title": "changed"}, headers=h
    ),
    "delete": lambda c, user, task, h: c.delete(f"/api/{user}/tasks/{task}", headers=h),
    "toggle": lambda c, user, task, h: c.patch(f"/api/{user}/tasks/{task}/complete", headers=h),
}
OWNER_SUCCESS = {
    "list": 200,
    "create": 201,
    "read": 200,
    "update": 200,
    "delete": 204,
    "toggle": 200,
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())


def hs256_signed_with(secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """HS256 by hand: PyJWT rightly refuses to use a public key as an HMAC secret."""
    signing_input = unsigned({**header, "alg": "HS256"}, claims)
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


def public_key_pem(issuer: TokenIssuer) -> bytes:
    return issuer.private_key.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )


# Each kind of caller: (path user, token maker). Tokens are for alice unless the case says not.
Tokens = Callable[[TokenIssuer], dict[str, str]]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


CALLERS: dict[str, tuple[str, Tokens]] = {
    "owner": ("alice", lambda i: bearer(i.token("alice"))),
    "other_users_token_on_owners_path": ("alice", lambda i: bearer(i.token("bob"))),
    "other_users_task_on_own_path": ("bob", lambda i: bearer(i.token("bob"))),
    "no_token": ("alice", lambda i: {}),
    "expired": ("alice", lambda i: bearer(i.token("alice", lifetime=-120))),
    "forged_signature": (
        "alice",
        lambda i: bearer(i.sign(i.claims("alice"), key=new_signing_key(i.kid)[0])),
    ),
    "alg_none": (
        "alice",
        lambda i: bearer(
            unsigned({"alg": "none", "typ": "JWT", "kid": i.kid}, i.claims("alice")) + "."
        ),
    ),
    "hs256_signed_with_the_public_key": (
        "alice",
        lambda i: bearer(
            hs256_signed_with(public_key_pem(i), {"typ": "JWT", "kid": i.kid}, i.claims("alice"))
        ),
    ),
    "wrong_issuer": (
        "alice",
        lambda i: bearer(i.sign(i.claims("alice", iss="https://evil.example"))),
    ),
    "wrong_audience": (
        "alice",
        lambda i: bearer(i.sign(i.claims("alice", aud="https://other-app.example"))),
    ),
    "unknown_kid": (
        "alice",
        lambda i: bearer(i.sign(i.claims("alice"), kid="retired", key=new_signing_key("x")[0])),
    ),
}
# Why each refused token is refused, as the problem's detail says it.
REASONS = {
    "no_token": "a bearer token is required",
    "expired": "expired",
    "forged_signature": "signature does not verify",
    "alg_none": "algorithm is not accepted",
    "hs256_signed_with_the_public_key": "algorithm is not accepted",
    "wrong_issuer": "issuer",
    "wrong_audience": "audience",
    "unknown_kid": "(kid) is not in the issuer's JWKS",
}


def expected_status(operation: str, caller: str) -> int:
    if caller == "owner":
        return OWNER_SUCCESS[operation]
    if caller == "other_users_token_on_owners_path":
        return 403
    if caller == "other_users_task_on_own_path":
        # Bob may list and create on his own path; alice's task is simply absent there.
        return OWNER_SUCCESS[operation] if operation in {"list", "create"} else 404
    return 401


@pytest.fixture
def bare_client(app_connection: Connection, issuer: TokenIssuer) -> Iterator[TestClient]:
    """Authentication on, and no token unless the test sends one."""
    with client_on(app_connection, issuer, auto_token=False) as client:
        yield client


@pytest.fixture
def alices_task(bare_client: TestClient, issuer: TokenIssuer) -> dict[str, Any]:
    response = bare_client.post(
        "/api/alice/tasks", json={"title": "alice's"}, headers=bearer(issuer.token("alice"))
    )
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def alices_tasks(client: TestClient, issuer: TokenIssuer) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = client.get(
        "/api/alice/tasks", headers=bearer(issuer.token("alice"))
    ).json()
    return tasks


@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_each_operation_answers_each_kind_of_caller_as_specified(
    bare_client: TestClient,
    issuer: TokenIssuer,
    alices_task: dict[str, Any],
    operation: str,
    caller: str,
) -> None:
    path_user, tokens = CALLERS[caller]
    before = alices_tasks(bare_client, issuer)

    response = OPERATIONS[operation](bare_client, path_user, alices_task["id"], tokens(issuer))

    status = expected_status(operation, caller)
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == status
        assert alices_tasks(bare_client, issuer) == before, "a refused request changed data"
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert REASONS[caller] in response.json()["detail"]
    if caller == "other_users_task_on_own_path":
        assert alices_tasks(bare_client, issuer) == before
        if operation == "list":
            assert response.json() == []
        if operation == "create":
            assert response.json()["user_id"] == "bob"


def test_a_request_without_a_token_is_challenged_without_an_error_code(
    bare_client: TestClient,
) -> None:
    response = bare_client.get("/api/alice/tasks")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "authorization", ["Bearer not-a-jwt", "Bearer a.b.c", "Basic YWxpY2U6cHc=", "Bearer", "alice"]
)
def test_a_malformed_authorization_header_is_401(
    bare_client: TestClient, authorization: str
) -> None:
    response = bare_client.get("/api/alice/tasks", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["detail"].startswith("Authentication failed")


def test_a_token_expired_within_the_leeway_is_accepted(
    bare_client: TestClient, issuer: TokenIssuer
) -> None:
    token = issuer.token("alice", lifetime=-10)
    assert bare_client.get("/api/alice/tasks", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("claim", ["sub", "exp", "iat", "iss", "aud"])
def test_a_token_missing_a_required_claim_is_401(
    bare_client: TestClient, issuer: TokenIssuer, claim: str
) -> None:
    claims = issuer.claims("alice")
    del claims[claim]
    response = bare_client.get("/api/alice/tasks", headers=bearer(issuer.sign(claims)))
    assert response.status_code == 401, response.text


def test_a_path_user_and_token_subject_differing_only_in_case_are_different_users(
    bare_client: TestClient, issuer: TokenIssuer
) -> None:
    response = bare_client.get("/api/Alice/tasks", headers=bearer(issuer.token("alice")))
    assert response.status_code == 403


def test_the_better_auth_token_shape_is_accepted(
    bare_client: TestClient, issuer: TokenIssuer
) -> None:
    claims = issuer.claims("u_123", email="a@example.com", name="A", emailVerified=True)
    response = bare_client.get("/api/u_123/tasks", headers=bearer(issuer.sign(claims)))
    assert response.status_code == 200, response.text
    assert BASE_URL in issuer.settings().values()
