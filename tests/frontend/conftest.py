"""A live server as a frontend meets it: a real process with bearer-token authentication on."""

import jwt
import pytest

from tests.auth_support import BASE_URL, claims_for
from tests.contract.test_openapi_contract import server_env

SECRET = "frontend-test-secret-" * 3


def token_for(user: str) -> str:
    """What the frontend's auth library hands the page: an HS256 token for `user`."""
    return jwt.encode(claims_for(user, lifetime=3600), SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def api_env(database_url: str, app_database_url: str) -> dict[str, str]:
    """`taskapi serve`'s environment on the test database, authenticating with a shared secret
    and (until a test adds CORS_ORIGINS) allowing no other origin."""
    env = server_env(
        database_url,
        app_database_url,
        AUTH_JWT_SECRET=SECRET,
        AUTH_ISSUER=BASE_URL,
        AUTH_AUDIENCE=BASE_URL,
    )
    env.pop("CORS_ORIGINS", None)
    return env
