"""Authentication for the service under test: a shared HS256 secret and one token per user.

The service refuses to start without authentication configured, and production requests carry a
bearer token, so the benchmark runs with it on (AUTH_MODE=secret). Tokens are minted with the
standard library, so the harness does not depend on the service's JWT library.
"""

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

ISSUER = "taskapi-bench"
AUDIENCE = "taskapi"
TOKEN_LIFETIME_SECONDS = 2 * 60 * 60


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass(frozen=True)
class BenchAuth:
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))

    def environment(self) -> dict[str, str]:
        """Settings for `taskapi serve`; explicit, so a developer's .env cannot change them."""
        return {
            "AUTH_MODE": "secret",
            "AUTH_JWT_SECRET": self.secret,
            "AUTH_ISSUER": ISSUER,
            "AUTH_AUDIENCE": AUDIENCE,
        }

    def token(self, user_id: str, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims = {
            "sub": user_id,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": issued,
            "exp": issued + TOKEN_LIFETIME_SECONDS,
        }
        signing_input = (
            _b64url(_json({"alg": "HS256", "typ": "JWT"})) + "." + _b64url(_json(claims))
        )
        signature = hmac.new(self.secret.encode(), signing_input.encode(), hashlib.sha256)
        return signing_input + "." + _b64url(signature.digest())

    def tokens(self, users: Iterable[str]) -> dict[str, str]:
        return {user: self.token(user) for user in set(users)}
