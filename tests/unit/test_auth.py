"""Token verification, the JWKS key cache and the verified-token cache, without a database."""

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import pytest

from api.auth.errors import KeysUnavailable, NotAuthenticated, WrongUser
from api.auth.jwks import MAX_WAITING_REQUESTS, JwksKeys, fetch_json
from api.auth.tokens import Authenticator, Claims, JwksVerifier, Rules, SecretVerifier, TokenCache
from tests.auth_support import HANG_LIMIT_SECONDS, claims_for, new_signing_key, running_issuer

SECRET = "unit-test-secret-" * 4


class FakeJwks:
    """A JWKS endpoint in memory, with a clock the test moves.

    By default a fetch runs inline when the keys start it; `in_threads()` runs it in a thread as
    the service does, and `hanging` holds it until `release()` (or HANG_LIMIT_SECONDS).
    """

    def __init__(self, *jwks: dict[str, Any]) -> None:
        self.document: dict[str, Any] = {"keys": list(jwks)}
        self.fetches = 0
        self.reachable = True
        self.hanging = False
        self.now = 1000.0
        self._released = threading.Event()
        self._threads: list[threading.Thread] = []

    def fetch(self, url: str, timeout: float) -> Any:
        self.fetches += 1
        if self.hanging:
            self._released.wait(HANG_LIMIT_SECONDS)
            raise TimeoutError("timed out")
        if not self.reachable:
            raise OSError("connection refused")
        return self.document

    def keys(self, *, in_threads: bool = False, **options: Any) -> JwksKeys:
        return JwksKeys(
            "https://app.example/api/auth/jwks",
            algorithms=["EdDSA"],
            fetch=self.fetch,
            clock=lambda: self.now,
            spawn=self._in_thread if in_threads else _inline,
            **options,
        )

    def _in_thread(self, job: Callable[[], None]) -> None:
        thread = threading.Thread(target=job, daemon=True)
        self._threads.append(thread)
        thread.start()

    def release(self) -> None:
        """Let hanging fetches fail, and wait for every fetch thread to end."""
        self._released.set()
        for thread in self._threads:
            thread.join(timeout=5)


def _inline(job: Callable[[], None]) -> None:
    job()


@pytest.fixture
def fake() -> Iterator[FakeJwks]:
    """An issuer publishing key `k1`; whatever fetch it still holds is let go after the test."""
    fake = FakeJwks(new_signing_key("k1")[1])
    yield fake
    fake.release()


def test_keys_are_fetched_once_and_then_served_from_the_cache() -> None:
    _, jwk = new_signing_key("k1")
    fake = FakeJwks(jwk)
    keys = fake.keys()

    for _ in range(5):
        assert keys.key_for("k1").key_id == "k1"

    assert fake.fetches == 1


def test_an_unknown_kid_refetches_at_most_once_per_interval() -> None:
    _, jwk = new_signing_key("k1")
    fake = FakeJwks(jwk)
    keys = fake.keys(refetch_seconds=30)
    keys.key_for("k1")
    fake.now += 31

    for _ in range(10):
        with pytest.raises(NotAuthenticated, match="kid"):
            keys.key_for("unknown")

    assert fake.fetches == 2


def test_a_rotated_key_is_found_by_refetching() -> None:
    _, old = new_signing_key("old")
    _, new = new_signing_key("new")
    fake = FakeJwks(old)
    keys = fake.keys(refetch_seconds=30)
    keys.key_for("old")
    fake.document = {"keys": [old, new]}
    fake.now += 31

    assert keys.key_for("new").key_id == "new"


def test_stale_keys_stay_in_service_when_the_refetch_fails() -> None:
    _, jwk = new_signing_key("k1")
    fake = FakeJwks(jwk)
    keys = fake.keys(max_age_seconds=600)
    keys.key_for("k1")
    fake.reachable = False
    fake.now += 601

    assert keys.key_for("k1").key_id == "k1"


def test_an_unreachable_jwks_without_cached_keys_is_unavailable() -> None:
    fake = FakeJwks()
    fake.reachable = False
    with pytest.raises(KeysUnavailable):
        fake.keys().key_for("k1")


def test_keys_of_algorithms_outside_the_allow_list_are_ignored() -> None:
    rsa_like = {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"}
    fake = FakeJwks(rsa_like)
    with pytest.raises(NotAuthenticated):
        fake.keys().key_for("hmac")


def test_a_jwks_url_must_be_http() -> None:
    keys = JwksKeys("file:///etc/passwd", algorithms=["EdDSA"])
    with pytest.raises(KeysUnavailable):
        keys.key_for(None)


def test_a_failed_fetch_counts_toward_the_refetch_interval() -> None:
    fake = FakeJwks()
    fake.reachable = False
    keys = fake.keys(refetch_seconds=30)
    for _ in range(10):
        with pytest.raises(KeysUnavailable):
            keys.key_for("k1")
    fake.now += 31
    with pytest.raises(KeysUnavailable):
        keys.key_for("k1")

    assert fake.fetches == 2


def test_a_failing_issuer_is_asked_once_per_interval_however_many_unknown_kids_arrive(
    fake: FakeJwks,
) -> None:
    keys = fake.keys(refetch_seconds=30)
    keys.key_for("k1")
    fake.reachable = False
    fake.now += 31

    for n in range(40):
        with pytest.raises(NotAuthenticated, match="kid"):
            keys.key_for(f"made-up-{n}")

    assert fake.fetches == 2
    assert keys.key_for("k1").key_id == "k1"


def test_an_unknown_kid_is_refused_without_waiting_while_no_refetch_is_due(
    fake: FakeJwks,
) -> None:
    keys = fake.keys(refetch_seconds=30)
    keys.key_for("k1")
    fake.now += 29

    with pytest.raises(NotAuthenticated, match="kid"):
        keys.cached_key("made-up")
    assert fake.fetches == 1


def test_a_cached_kid_is_answered_at_once_while_a_stale_refresh_hangs(fake: FakeJwks) -> None:
    keys = fake.keys(in_threads=True, max_age_seconds=600, wait_seconds=5)
    keys.key_for("k1")
    fake.hanging = True
    fake.now += 601

    started = time.monotonic()
    for _ in range(20):
        assert keys.key_for("k1").key_id == "k1"
    assert time.monotonic() - started < 1  # not even one 5 s wait
    fake.release()
    assert fake.fetches == 2  # one refresh for all twenty


def test_an_unknown_kid_waits_no_longer_than_the_wait_deadline_for_a_hung_fetch(
    fake: FakeJwks,
) -> None:
    keys = fake.keys(in_threads=True, refetch_seconds=30, wait_seconds=0.2)
    keys.key_for("k1")
    fake.hanging = True
    fake.now += 31

    started = time.monotonic()
    with pytest.raises(NotAuthenticated, match="kid"):
        keys.key_for("rotated")
    assert 0.15 < time.monotonic() - started < 1.5


def test_without_keys_a_hung_issuer_is_unavailable_within_the_wait_deadline() -> None:
    fake = FakeJwks()
    fake.hanging = True
    keys = fake.keys(in_threads=True, wait_seconds=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(KeysUnavailable):
            keys.key_for("k1")
        assert time.monotonic() - started < 1.5
    finally:
        fake.release()


def test_concurrent_requests_for_missing_keys_share_one_fetch() -> None:
    fake = FakeJwks()
    fake.hanging = True
    keys = fake.keys(in_threads=True, wait_seconds=0.3)
    try:
        with ThreadPoolExecutor(6) as pool:
            waits = [pool.submit(keys.key_for, "k1") for _ in range(6)]
            for wait in waits:
                with pytest.raises(KeysUnavailable):
                    wait.result(timeout=5)
    finally:
        fake.release()
    assert fake.fetches == 1


def test_requests_beyond_the_waiting_limit_are_answered_without_waiting(fake: FakeJwks) -> None:
    keys = fake.keys(in_threads=True, refetch_seconds=30, wait_seconds=5)
    keys.key_for("k1")
    fake.hanging = True
    fake.now += 31
    with ThreadPoolExecutor(MAX_WAITING_REQUESTS) as pool:
        waits = [pool.submit(keys.key_for, f"made-up-{n}") for n in range(MAX_WAITING_REQUESTS)]
        deadline = time.monotonic() + 2
        while keys._waiting < MAX_WAITING_REQUESTS and time.monotonic() < deadline:
            time.sleep(0.01)

        started = time.monotonic()
        with pytest.raises(NotAuthenticated):
            keys.key_for("one-more")
        assert time.monotonic() - started < 1  # not the 5 s wait
        fake.release()
        for wait in waits:
            with pytest.raises(NotAuthenticated):
                wait.result(timeout=5)


def test_a_stale_refresh_brings_in_rotated_keys(fake: FakeJwks) -> None:
    keys = fake.keys(max_age_seconds=600)
    keys.key_for("k1")
    fake.document["keys"].append(new_signing_key("k2")[1])
    fake.now += 601

    assert keys.key_for("k1").key_id == "k1"
    key = keys.cached_key("k2")
    assert key is not None
    assert key.key_id == "k2"
    assert fake.fetches == 2


def test_a_jwks_sent_a_byte_at_a_time_is_given_up_after_the_timeout() -> None:
    with running_issuer() as issuer:
        issuer.jwks.behaviour = "drip"
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            fetch_json(issuer.jwks.url, 0.3)
        assert time.monotonic() - started < 1.5


def without(claims: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: value for name, value in claims.items() if name not in names}


def test_a_token_without_kid_uses_the_only_key() -> None:
    private, jwk = new_signing_key("only")
    verifier = JwksVerifier(FakeJwks(jwk).keys(), Rules())
    token = jwt.encode(without(claims_for("alice"), "aud"), private, algorithm="EdDSA")
    assert verifier.verify(token).subject == "alice"


def test_a_token_with_an_audience_is_refused_when_none_is_configured() -> None:
    private, jwk = new_signing_key("only")
    verifier = JwksVerifier(FakeJwks(jwk).keys(), Rules())
    token = jwt.encode(claims_for("alice"), private, algorithm="EdDSA", headers={"kid": "only"})
    with pytest.raises(NotAuthenticated, match="audience"):
        verifier.verify(token)


def test_the_secret_verifier_pins_hs256() -> None:
    verifier = SecretVerifier(SECRET, Rules())
    claims = without(claims_for("alice"), "aud", "iss")
    assert verifier.verify(jwt.encode(claims, SECRET, algorithm="HS256")).subject == "alice"
    with pytest.raises(NotAuthenticated, match="algorithm"):
        verifier.verify(jwt.encode(claims, SECRET, algorithm="HS384"))


class CountingVerifier:
    def __init__(self, expires_at: float, *, needs_io: bool = True) -> None:
        self.calls = 0
        self.expires_at = expires_at
        self.needs_io = needs_io

    def verify_without_io(self, token: str) -> Claims | None:
        return None if self.needs_io else self.verify(token)

    def verify(self, token: str) -> Claims:
        self.calls += 1
        return Claims(subject=token.removeprefix("token-of-"), expires_at=self.expires_at)


def test_a_verified_token_is_not_verified_again_until_it_expires() -> None:
    now = [100.0]
    verifier = CountingVerifier(expires_at=200.0)
    authenticator = Authenticator(verifier, TokenCache(clock=lambda: now[0]))

    for _ in range(3):
        assert authenticator.authorize("alice", "token-of-alice") == "alice"
    now[0] = 200.0
    authenticator.authorize("alice", "token-of-alice")

    assert verifier.calls == 2


def test_the_token_cache_forgets_its_oldest_token_when_full() -> None:
    cache = TokenCache(max_tokens=2, clock=lambda: 0.0)
    for name in ("a", "b", "c"):
        cache.put(name, Claims(subject=name, expires_at=10.0))
    assert [cache.get(name) is not None for name in ("a", "b", "c")] == [False, True, True]


def test_a_cached_token_still_has_to_match_the_path_user() -> None:
    authenticator = Authenticator(CountingVerifier(expires_at=1e12))
    authenticator.authorize("alice", "token-of-alice")
    with pytest.raises(WrongUser):
        authenticator.authorize("bob", "token-of-alice")


def test_a_token_that_needs_keys_fetched_is_left_to_the_thread_pool() -> None:
    authenticator = Authenticator(CountingVerifier(expires_at=1e12, needs_io=True))
    assert authenticator.authorize_without_io("alice", "token-of-alice") is None
    authenticator.authorize("alice", "token-of-alice")
    assert authenticator.authorize_without_io("alice", "token-of-alice") == "alice"


def test_a_token_checked_without_io_is_verified_on_the_spot() -> None:
    verifier = CountingVerifier(expires_at=1e12, needs_io=False)
    authenticator = Authenticator(verifier)
    assert authenticator.authorize_without_io("alice", "token-of-alice") == "alice"
    assert verifier.calls == 1


def test_a_jwks_token_is_verified_without_io_once_its_key_is_cached() -> None:
    private, jwk = new_signing_key("k1")
    fake = FakeJwks(jwk)
    authenticator = Authenticator(JwksVerifier(fake.keys(), Rules()))

    def token(lifetime: float) -> str:
        claims = without(claims_for("alice", lifetime=lifetime), "aud")
        return jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": "k1"})

    assert authenticator.authorize_without_io("alice", token(900)) is None
    assert authenticator.authorize_without_io("alice", token(901)) == "alice"
    assert fake.fetches == 1


def test_an_unknown_kid_is_refused_without_io_while_no_refetch_is_due(fake: FakeJwks) -> None:
    keys = fake.keys()
    keys.key_for("k1")
    authenticator = Authenticator(JwksVerifier(keys, Rules()))
    stranger = new_signing_key("x")[0]
    claims = without(claims_for("alice"), "aud")
    token = jwt.encode(claims, stranger, algorithm="EdDSA", headers={"kid": "made-up"})

    with pytest.raises(NotAuthenticated, match="kid"):
        authenticator.authorize_without_io("alice", token)


def test_the_secret_verifier_never_needs_io() -> None:
    verifier = SecretVerifier(SECRET, Rules())
    token = jwt.encode(without(claims_for("alice"), "aud", "iss"), SECRET, algorithm="HS256")
    claims = verifier.verify_without_io(token)
    assert claims.subject == "alice"


def test_without_a_verifier_the_path_user_is_trusted() -> None:
    assert Authenticator(None).authorize("anyone", None) == "anyone"
