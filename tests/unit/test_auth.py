"""Token verification, the JWKS key cache and the verified-token cache, without a database."""

from typing import Any

import jwt
import pytest

from api.auth.errors import KeysUnavailable, NotAuthenticated, WrongUser
from api.auth.jwks import JwksKeys
from api.auth.tokens import Authenticator, Claims, JwksVerifier, Rules, SecretVerifier, TokenCache
from tests.auth_support import claims_for, new_signing_key

SECRET = "unit-test-secret-" * 4


class FakeJwks:
    """A JWKS endpoint in memory, with a clock the test moves."""

    def __init__(self, *jwks: dict[str, Any]) -> None:
        self.document: dict[str, Any] = {"keys": list(jwks)}
        self.fetches = 0
        self.reachable = True
        self.now = 1000.0

    def fetch(self, url: str, timeout: float) -> Any:
        self.fetches += 1
        if not self.reachable:
            raise OSError("connection refused")
        return self.document

    def keys(self, **options: Any) -> JwksKeys:
        return JwksKeys(
            "https://app.example/api/auth/jwks",
            algorithms=["EdDSA"],
            fetch=self.fetch,
            clock=lambda: self.now,
            **options,
        )


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
    def __init__(self, expires_at: float, *, may_block: bool = True) -> None:
        self.calls = 0
        self.expires_at = expires_at
        self.may_block = may_block

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


def test_a_token_that_may_need_keys_fetched_is_left_to_the_thread_pool() -> None:
    authenticator = Authenticator(CountingVerifier(expires_at=1e12, may_block=True))
    assert authenticator.authorize_without_io("alice", "token-of-alice") is None
    authenticator.authorize("alice", "token-of-alice")
    assert authenticator.authorize_without_io("alice", "token-of-alice") == "alice"


def test_a_token_checked_without_io_is_verified_on_the_spot() -> None:
    verifier = CountingVerifier(expires_at=1e12, may_block=False)
    authenticator = Authenticator(verifier)
    assert authenticator.authorize_without_io("alice", "token-of-alice") == "alice"
    assert verifier.calls == 1


def test_only_keys_from_the_network_may_block() -> None:
    assert SecretVerifier(SECRET, Rules()).may_block is False
    assert JwksVerifier(FakeJwks(new_signing_key("only")[1]).keys(), Rules()).may_block is True


def test_without_a_verifier_the_path_user_is_trusted() -> None:
    assert Authenticator(None).authorize("anyone", None) == "anyone"
