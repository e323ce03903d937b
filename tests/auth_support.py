"""Test doubles for Better Auth: an Ed25519 key, its JWKS on loopback, and tokens signed with it."""

import json
import re
import threading
import time
import urllib.parse
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import httpx2 as httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

BASE_URL = "http://localhost:3000"
"""Better Auth's defaults: `iss` and `aud` are the app's base URL, the JWKS under /api/auth."""
JWKS_PATH = "/api/auth/jwks"
PATH_USER = re.compile(r"^/api/([^/]+)/")


HANG_LIMIT_SECONDS = 30.0
"""Longest a hanging JwksServer holds a request, should a test forget to release it."""
DRIP_INTERVAL_SECONDS = 0.05

JwksBehaviour = Literal["serve", "hang", "fail", "drip"]


class JwksServer:
    """Serves `document` as JSON at JWKS_PATH on 127.0.0.1, from a thread, counting fetches.

    `behaviour` plays an issuer in trouble: "hang" holds each request without an answer until
    `release()` (or HANG_LIMIT_SECONDS), "fail" answers 500, "drip" sends a byte at a time.
    """

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.fetches = 0
        self.behaviour: JwksBehaviour = "serve"
        self._released = threading.Event()
        self._count_lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != JWKS_PATH:
                    self.send_error(404)
                    return
                with server._count_lock:
                    server.fetches += 1
                behaviour = server.behaviour
                if behaviour == "hang":
                    server._released.wait(HANG_LIMIT_SECONDS)
                    return
                if behaviour == "fail":
                    self.send_error(500)
                    return
                body = json.dumps(server.document).encode()
                if behaviour == "drip":
                    self._drip(body)
                    return
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _drip(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                for byte in body:
                    if server._released.wait(DRIP_INTERVAL_SECONDS):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}{JWKS_PATH}"

    def start(self) -> None:
        self._thread.start()

    def release(self) -> None:
        """Let go of requests held by "hang" or "drip" (new ones are not held any more)."""
        self._released.set()

    def stop(self) -> None:
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def new_signing_key(kid: str) -> tuple[Ed25519PrivateKey, dict[str, Any]]:
    """An Ed25519 key and its public JWK, shaped like the ones Better Auth publishes."""
    private = Ed25519PrivateKey.generate()
    jwk: dict[str, Any] = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
    return private, {**jwk, "kid": kid, "alg": "EdDSA", "use": "sig"}


def claims_for(sub: str, *, lifetime: float = 900, **extra: Any) -> dict[str, Any]:
    """A Better Auth token's registered claims: 15 minutes by default, `iss` = `aud` = base URL."""
    now = int(time.time())
    registered = {"sub": sub, "iat": now, "exp": now + int(lifetime), "iss": BASE_URL}
    return registered | {"aud": BASE_URL} | extra


class TokenIssuer:
    """Plays the frontend's Better Auth: one published signing key, tokens for any user."""

    def __init__(self, jwks: JwksServer) -> None:
        self.jwks = jwks
        self.kid = "test-key-1"
        self.private_key, self.public_jwk = new_signing_key(self.kid)
        jwks.document = {"keys": [self.public_jwk]}
        self._tokens: dict[str, str] = {}

    def settings(self) -> dict[str, Any]:
        return {
            "auth_mode": "jwks",
            "auth_jwks_url": self.jwks.url,
            "auth_issuer": BASE_URL,
            "auth_audience": BASE_URL,
            "auth_algorithms": "EdDSA",
        }

    def claims(self, sub: str, *, lifetime: float = 900, **extra: Any) -> dict[str, Any]:
        return claims_for(sub, lifetime=lifetime, **extra)

    def sign(self, claims: dict[str, Any], *, kid: str | None = None, key: Any = None) -> str:
        return jwt.encode(
            claims,
            key if key is not None else self.private_key,
            algorithm="EdDSA",
            headers={"kid": kid or self.kid},
        )

    def token(self, sub: str, **extra: Any) -> str:
        return self.sign(self.claims(sub, **extra))

    def reusable_token(self, sub: str) -> str:
        """One token per user for the whole run, as a frontend reuses its token until expiry."""
        if sub not in self._tokens:
            self._tokens[sub] = self.sign(self.claims(sub, lifetime=3600))
        return self._tokens[sub]


@contextmanager
def running_issuer() -> Iterator[TokenIssuer]:
    jwks = JwksServer()
    jwks.start()
    try:
        yield TokenIssuer(jwks)
    finally:
        jwks.stop()


class TokenForPathUser(httpx.Auth):
    """Sends the path user's token with every `/api/{user}/...` request that carries none."""

    def __init__(self, issuer: TokenIssuer) -> None:
        self.issuer = issuer

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        match = PATH_USER.match(request.url.path)
        if match and "authorization" not in request.headers:
            user = urllib.parse.unquote(match[1])
            request.headers["Authorization"] = "Bearer " + self.issuer.reusable_token(user)
        yield request
