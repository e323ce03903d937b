"""Bearer-token verification: who a token says the caller is, or why it says nothing.

Two verifiers share one rule set (required claims, issuer, audience, leeway); they differ only in
where the key comes from. The algorithm list is fixed by configuration and never read from the
token: JWKS mode accepts only asymmetric algorithms (and each key only its own), shared-secret
mode only HS256, so neither `alg: none` nor a public key used as an HMAC secret gets through.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import jwt

from api.auth.errors import AuthNotConfigured, NotAuthenticated, WrongUser
from api.auth.jwks import JwksKeys

MIN_SECRET_BYTES = 32
CACHE_MAX_TOKENS = 10_000


@dataclass(frozen=True, kw_only=True)
class Claims:
    subject: str
    expires_at: float


@dataclass(frozen=True, kw_only=True)
class Rules:
    issuer: str | None = None
    audience: str | None = None
    leeway_seconds: float = 30.0

    def required(self) -> list[str]:
        extra = [name for name, value in (("iss", self.issuer), ("aud", self.audience)) if value]
        return ["sub", "exp", "iat", *extra]


class Verifier(Protocol):
    def verify(self, token: str) -> Claims: ...

    def verify_without_io(self, token: str) -> Claims | None:
        """`verify`, run on the event loop; None when it would have to wait for keys."""
        ...


def _decode(token: str, key: Any, algorithms: list[str], rules: Rules) -> Claims:
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            issuer=rules.issuer,
            audience=rules.audience,
            leeway=rules.leeway_seconds,
            options={"require": rules.required(), "verify_sub": True},
        )
    except jwt.ExpiredSignatureError:
        raise NotAuthenticated("the token has expired") from None
    except jwt.InvalidIssuerError:
        raise NotAuthenticated("the token was not issued by the configured issuer") from None
    except jwt.InvalidAudienceError:
        raise NotAuthenticated("the token is not meant for this audience") from None
    except jwt.InvalidAlgorithmError:
        raise NotAuthenticated("the token's algorithm is not accepted") from None
    except jwt.InvalidSignatureError:
        raise NotAuthenticated("the token's signature does not verify") from None
    except jwt.MissingRequiredClaimError as exc:
        raise NotAuthenticated(f"the token lacks the {exc.claim!r} claim") from None
    except jwt.PyJWTError:
        raise NotAuthenticated("the token is malformed or not valid") from None
    subject = payload["sub"]
    if not subject:
        raise NotAuthenticated("the token's subject is empty")
    return Claims(subject=subject, expires_at=float(payload["exp"]))


class SecretVerifier:
    """HS256 tokens signed with a secret shared with the frontend (AUTH_JWT_SECRET)."""

    def __init__(self, secret: str, rules: Rules) -> None:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise AuthNotConfigured(
                f"AUTH_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes long"
            )
        self._secret = secret
        self._rules = rules

    def verify(self, token: str) -> Claims:
        return _decode(token, self._secret, ["HS256"], self._rules)

    def verify_without_io(self, token: str) -> Claims:
        # An HMAC: tens of microseconds, less than a hop to the thread pool.
        return self.verify(token)


class JwksVerifier:
    """Asymmetric tokens checked against the issuer's published keys (AUTH_JWKS_URL)."""

    def __init__(self, keys: JwksKeys, rules: Rules) -> None:
        self._keys = keys
        self._rules = rules

    def verify(self, token: str) -> Claims:
        return self._decode(token, self._keys.key_for(self._kid(token)))

    def verify_without_io(self, token: str) -> Claims | None:
        # No I/O with a cached key; the signature check runs once per token (the cache is first).
        key = self._keys.cached_key(self._kid(token))
        return None if key is None else self._decode(token, key)

    def _kid(self, token: str) -> str | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise NotAuthenticated("the token is malformed or not valid") from None
        if header.get("alg") not in self._keys.algorithms:
            raise NotAuthenticated("the token's algorithm is not accepted")
        kid = header.get("kid")
        return kid if isinstance(kid, str) else None

    def _decode(self, token: str, key: jwt.PyJWK) -> Claims:
        # The key fixes the algorithm: a token may not pick another one for it.
        return _decode(token, key, [key.algorithm_name], self._rules)


class TokenCache:
    """Verified tokens until they expire, so repeat requests skip signature checks."""

    def __init__(
        self, max_tokens: int = CACHE_MAX_TOKENS, clock: Callable[[], float] = time.time
    ) -> None:
        self._max_tokens = max_tokens
        self._clock = clock
        self._claims: dict[str, Claims] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> Claims | None:
        claims = self._claims.get(token)
        if claims is None or claims.expires_at <= self._clock():
            return None
        return claims

    def put(self, token: str, claims: Claims) -> None:
        with self._lock:
            if len(self._claims) >= self._max_tokens:
                # Oldest first: dicts keep insertion order.
                self._claims.pop(next(iter(self._claims)))
            self._claims[token] = claims


class Authenticator:
    """Decides who the caller is for a path's user: the one rule every route goes through."""

    def __init__(self, verifier: Verifier | None, cache: TokenCache | None = None) -> None:
        self._verifier = verifier
        self._cache = cache or TokenCache()

    @property
    def enabled(self) -> bool:
        return self._verifier is not None

    def authorize(self, path_user: str, token: str | None) -> str:
        if self._verifier is None:
            return path_user
        if not token:
            raise NotAuthenticated("a bearer token is required", token_given=False)
        claims = self._cache.get(token)
        if claims is None:
            claims = self._verifier.verify(token)
            self._cache.put(token, claims)
        return self._match(path_user, claims)

    def authorize_without_io(self, path_user: str, token: str | None) -> str | None:
        """`authorize`, unless it would have to wait for keys to be fetched: then None."""
        if self._verifier is None or not token:
            return self.authorize(path_user, token)
        claims = self._cache.get(token)
        if claims is None:
            claims = self._verifier.verify_without_io(token)
            if claims is None:
                return None
            self._cache.put(token, claims)
        return self._match(path_user, claims)

    @staticmethod
    def _match(path_user: str, claims: Claims) -> str:
        if claims.subject != path_user:
            raise WrongUser("the token's subject is not the user in the path")
        return path_user
