"""The signing keys of a JWKS endpoint (Better Auth serves one at `/api/auth/jwks`), cached.

The rules (docs/adr/0011-jwks-fetching.md):
- A cached `kid` answers at once, whatever the issuer is doing; keys past `max_age_seconds` keep
  answering while a refetch runs in the background, and stay in service if it fails.
- A fetch runs in a background thread, one at a time. A request whose `kid` is not cached waits
  for it at most `wait_seconds`; nothing holds a lock across a fetch.
- A fetch starts at most once per `refetch_seconds`, counted from the last attempt whether it
  succeeded or not, so made-up key ids or a failing issuer cannot turn the service into a load
  generator against the issuer. An unknown `kid` in between is refused at once.
"""

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any

import jwt

from api.auth.errors import KeysUnavailable, NotAuthenticated

log = logging.getLogger(__name__)

Fetch = Callable[[str, float], Any]
Spawn = Callable[[Callable[[], None]], None]

MAX_JWKS_BYTES = 1 << 20
"""A JWKS holds a few keys (a few KB); a larger answer is not one."""
MAX_WAITING_REQUESTS = 8
"""Requests waiting for a fetch each hold a thread of the pool (40 in anyio) that write routes
need too; beyond this many, made-up key ids during a hung fetch are answered without waiting."""
READ_CHUNK_BYTES = 16 * 1024


def fetch_json(url: str, timeout: float) -> Any:
    """The JSON at `url`, read within `timeout` seconds in all (not per socket read)."""
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"AUTH_JWKS_URL must be an http(s) URL, not {url!r}")
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"accept": "application/json"})  # noqa: S310
    body = bytearray()
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        # A server dripping bytes would keep a plain read() going, and the fetch in flight, forever.
        while chunk := response.read1(READ_CHUNK_BYTES):
            body += chunk
            if len(body) > MAX_JWKS_BYTES:
                raise ValueError(f"the JWKS is larger than {MAX_JWKS_BYTES} bytes")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the JWKS took longer than {timeout}s to arrive")
    return json.loads(body)


def in_background(job: Callable[[], None]) -> None:
    threading.Thread(target=job, name="jwks-fetch", daemon=True).start()


@dataclass(frozen=True)
class _KeySet:
    """One successful fetch; replaced whole, so a reader never sees half of two fetches."""

    by_kid: dict[str | None, jwt.PyJWK]
    fetched_at: float

    def lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None and len(self.by_kid) == 1:
            return next(iter(self.by_kid.values()))
        return self.by_kid.get(kid)


class JwksKeys:
    def __init__(
        self,
        url: str,
        *,
        algorithms: list[str],
        timeout: float = 5.0,
        refetch_seconds: float = 30.0,
        max_age_seconds: float = 600.0,
        wait_seconds: float = 1.0,
        fetch: Fetch = fetch_json,
        clock: Callable[[], float] = time.monotonic,
        spawn: Spawn = in_background,
    ) -> None:
        self.url = url
        self.algorithms = algorithms
        self.timeout = timeout
        self.refetch_seconds = refetch_seconds
        self.max_age_seconds = max_age_seconds
        self.wait_seconds = wait_seconds
        self._fetch = fetch
        self._clock = clock
        self._spawn = spawn
        self._keys: _KeySet | None = None
        self._attempted_at: float | None = None
        self._in_flight: threading.Event | None = None
        self._waiting = 0
        # Guards the bookkeeping above for microseconds; never held across a fetch or a wait.
        self._lock = threading.Lock()

    def cached_key(self, kid: str | None) -> jwt.PyJWK | None:
        """The key `kid` names if it is at hand, None if a fetch is worth waiting for.

        Never waits. Raises when waiting could not help: an unknown `kid` while no fetch may
        start (NotAuthenticated), or no keys at all (KeysUnavailable).
        """
        keys = self._keys
        key = None if keys is None else keys.lookup(kid)
        fresh = keys is not None and self._clock() - keys.fetched_at <= self.max_age_seconds
        if key is not None and fresh:
            return key
        with self._lock:
            started = self._claim_fetch()
            worth_waiting = self._in_flight is not None
        if started:
            self._spawn(self._refresh)
        if key is not None:
            return key  # past its max age: refreshed in the background, in service meanwhile
        if worth_waiting:
            return None
        raise self._missing(keys)

    def key_for(self, kid: str | None) -> jwt.PyJWK:
        """The key `kid` names, waiting at most `wait_seconds` for a fetch in flight."""
        key = self.cached_key(kid)
        if key is not None:
            return key
        with self._lock:
            in_flight = self._in_flight
            if in_flight is not None and self._waiting >= MAX_WAITING_REQUESTS:
                in_flight = None
            if in_flight is not None:
                self._waiting += 1
        if in_flight is not None:
            try:
                in_flight.wait(self.wait_seconds)
            finally:
                with self._lock:
                    self._waiting -= 1
        keys = self._keys
        key = None if keys is None else keys.lookup(kid)
        if key is None:
            raise self._missing(keys)
        return key

    def _missing(self, keys: _KeySet | None) -> Exception:
        if keys is None:
            return KeysUnavailable(f"the JWKS at {self.url} could not be fetched")
        return NotAuthenticated("the token's signing key (kid) is not in the issuer's JWKS")

    def _claim_fetch(self) -> bool:
        """Whether the caller is to start a fetch: none in flight, and the last began long ago.

        Called under the lock; the caller spawns the fetch after releasing it.
        """
        now = self._clock()
        if self._in_flight is not None:
            return False
        if self._attempted_at is not None and now - self._attempted_at < self.refetch_seconds:
            return False
        self._attempted_at = now
        self._in_flight = threading.Event()
        return True

    def _refresh(self) -> None:
        try:
            document = self._fetch(self.url, self.timeout)
            self._keys = _KeySet(self._usable_keys(document), fetched_at=self._clock())
        except (OSError, ValueError, HTTPException) as exc:
            self._log_failure(exc)
        finally:
            with self._lock:
                done, self._in_flight = self._in_flight, None
            if done is not None:
                done.set()

    def _log_failure(self, exc: Exception) -> None:
        # Once per refetch interval at most: attempts are.
        keys = self._keys
        if keys is None:
            log.error("JWKS fetch from %s failed: %s", self.url, exc)
            return
        log.warning(
            "JWKS refetch from %s failed (%s); keeping the keys fetched %.0fs ago",
            self.url,
            exc,
            self._clock() - keys.fetched_at,
        )

    def _usable_keys(self, document: Any) -> dict[str | None, jwt.PyJWK]:
        """Signing keys whose algorithm is allowed; others (and unparsable ones) are skipped."""
        keys: dict[str | None, jwt.PyJWK] = {}
        for entry in document.get("keys", []) if isinstance(document, dict) else []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry)
            except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                continue
            if key.algorithm_name in self.algorithms:
                keys[entry.get("kid")] = key
        return keys
