"""The signing keys of a JWKS endpoint (Better Auth serves one at `/api/auth/jwks`), cached.

Keys are fetched on first use and kept. A token naming an unknown `kid` (the issuer rotated its
key) triggers a refetch, at most once per `refetch_seconds`, so a flood of made-up key ids cannot
turn the service into a load generator against the issuer. Keys older than `max_age_seconds` are
refetched on next use; if that refetch fails the old keys stay in service.
"""

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import jwt

from api.auth.errors import KeysUnavailable, NotAuthenticated

log = logging.getLogger(__name__)

Fetch = Callable[[str, float], Any]


def fetch_json(url: str, timeout: float) -> Any:
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"AUTH_JWKS_URL must be an http(s) URL, not {url!r}")
    request = urllib.request.Request(url, headers={"accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return json.loads(response.read())


class JwksKeys:
    def __init__(
        self,
        url: str,
        *,
        algorithms: list[str],
        timeout: float = 5.0,
        refetch_seconds: float = 30.0,
        max_age_seconds: float = 600.0,
        fetch: Fetch = fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.algorithms = algorithms
        self.timeout = timeout
        self.refetch_seconds = refetch_seconds
        self.max_age_seconds = max_age_seconds
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def key_for(self, kid: str | None) -> jwt.PyJWK:
        """The key a token's `kid` names; refetches (rate-limited) when it is unknown or stale."""
        with self._lock:
            if self._fetched_at is None or self._age() > self.max_age_seconds:
                self._refresh(keep_on_failure=self._fetched_at is not None)
            elif self._lookup(kid) is None and self._age() >= self.refetch_seconds:
                self._refresh(keep_on_failure=False)
            key = self._lookup(kid)
        if key is None:
            raise NotAuthenticated("the token's signing key (kid) is not in the issuer's JWKS")
        return key

    def _age(self) -> float:
        assert self._fetched_at is not None
        return self._clock() - self._fetched_at

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    def _refresh(self, *, keep_on_failure: bool) -> None:
        try:
            document = self._fetch(self.url, self.timeout)
        except (OSError, ValueError) as exc:
            if keep_on_failure:
                log.warning("JWKS refetch from %s failed (%s); keeping the old keys", self.url, exc)
                return
            log.error("JWKS fetch from %s failed: %s", self.url, exc)
            raise KeysUnavailable(f"the JWKS at {self.url} could not be fetched") from exc
        self._keys = self._usable_keys(document)
        self._fetched_at = self._clock()

    def _usable_keys(self, document: Any) -> dict[str | None, jwt.PyJWK]:
        """Signing keys whose algorithm is allowed; others (and unparsable ones) are skipped."""
        keys: dict[str | None, jwt.PyJWK] = {}
        for entry in document.get("keys", []) if isinstance(document, dict) else []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue
            if key.algorithm_name in self.algorithms:
                keys[entry.get("kid")] = key
        return keys
