"""JWKS fetching with the issuer in trouble: a real server process, a real loopback issuer.

The issuer hangs or answers 500 while tokens with made-up key ids arrive (docs/adr/0011).
"""

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from types import TracebackType

import pytest

from tests.auth_support import BASE_URL, TokenIssuer, new_signing_key, running_issuer
from tests.integration.test_cli import clean_environment, serving

PROMPT_SECONDS = 1.0
"""What a request whose key is cached may take, whatever the issuer does (a fetch takes 3 s)."""
FETCH_TIMEOUT = "3"
JUNK_PER_CLIENT = 200


@pytest.fixture
def own_issuer() -> Iterator[TokenIssuer]:
    """An issuer for one server process, so its fetch count and behaviour are the test's alone."""
    with running_issuer() as issuer:
        yield issuer


def server_environment(
    issuer: TokenIssuer, database_url: str, app_database_url: str, **knobs: str
) -> dict[str, str]:
    return clean_environment(
        DATABASE_URL=app_database_url,
        MIGRATION_DATABASE_URL=database_url,
        AUTH_MODE="jwks",
        AUTH_JWKS_URL=issuer.jwks.url,
        AUTH_ISSUER=BASE_URL,
        AUTH_AUDIENCE=BASE_URL,
        AUTH_ALGORITHMS="EdDSA",
        AUTH_JWKS_TIMEOUT_SECONDS=FETCH_TIMEOUT,
        **knobs,
    )


def list_tasks(
    base: str, user: str, token: str, *, new_task: dict[str, str] | None = None
) -> tuple[int, float]:
    """The status of GET /api/{user}/tasks (or a POST of `new_task`) with `token`, and the
    seconds it took."""
    data = None if new_task is None else json.dumps(new_task).encode()
    request = urllib.request.Request(
        f"{base}/api/{user}/tasks",
        data=data,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status: int = response.status
    except urllib.error.HTTPError as refused:
        status = refused.code
    return status, time.monotonic() - started


def as_valid_user(
    base: str, issuer: TokenIssuer, n: int, *, write: bool = False
) -> tuple[int, float]:
    """`list_tasks` with the n-th new token of a real user: a token the service has not seen
    yet (a new login), so the verified-token cache cannot answer for it. A write route runs in
    the thread pool, where requests waiting for a fetch sit too."""
    token = issuer.sign(issuer.claims("valid-user", lifetime=900 + n))
    new_task = {"title": f"written while the issuer hangs ({n})"} if write else None
    return list_tasks(base, "valid-user", token, new_task=new_task)


class MadeUpKids:
    """Clients sending tokens with made-up key ids, back to back, until the block ends."""

    def __init__(self, base: str, issuer: TokenIssuer, *, clients: int) -> None:
        self._stranger = new_signing_key("stranger")[0]
        self._base = base
        self._issuer = issuer
        self._stop = threading.Event()
        self.statuses: list[int] = []
        self._threads = [
            threading.Thread(target=self._send, args=(client,), daemon=True)
            for client in range(clients)
        ]

    def _send(self, client: int) -> None:
        for n in range(JUNK_PER_CLIENT):
            if self._stop.is_set():
                return
            claims = self._issuer.claims("mallory")
            token = self._issuer.sign(claims, kid=f"made-up-{client}-{n}", key=self._stranger)
            self.statuses.append(list_tasks(self._base, "mallory", token)[0])

    def __enter__(self) -> "MadeUpKids":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)


def test_new_tokens_of_a_valid_user_are_not_delayed_by_made_up_kids_while_the_issuer_hangs(
    own_issuer: TokenIssuer, database_url: str, app_database_url: str
) -> None:
    env = server_environment(
        own_issuer, database_url, app_database_url, AUTH_JWKS_REFETCH_SECONDS="0.5"
    )
    with serving(env) as base:
        assert as_valid_user(base, own_issuer, 0)[0] == 200
        own_issuer.jwks.behaviour = "hang"
        fetches = own_issuer.jwks.fetches

        started = time.monotonic()
        with MadeUpKids(base, own_issuer, clients=4) as junk:
            results = []
            for n in range(1, 31):
                results.append(as_valid_user(base, own_issuer, n, write=n % 2 == 1))
                time.sleep(0.1)
        elapsed = time.monotonic() - started

    assert {status for status, _ in results} == {200, 201}
    assert max(took for _, took in results) < PROMPT_SECONDS
    assert set(junk.statuses) == {401}
    assert len(junk.statuses) >= 20
    # The made-up kids met a hanging fetch, one at a time: each hangs for the fetch timeout.
    asked = own_issuer.jwks.fetches - fetches
    assert 1 <= asked <= elapsed / float(FETCH_TIMEOUT) + 1, (asked, elapsed)


def test_a_failing_issuer_is_asked_at_most_once_per_refetch_interval_however_many_junk_tokens(
    own_issuer: TokenIssuer, database_url: str, app_database_url: str
) -> None:
    stranger = new_signing_key("stranger")[0]
    env = server_environment(
        own_issuer, database_url, app_database_url, AUTH_JWKS_REFETCH_SECONDS="1"
    )
    with serving(env) as base:
        assert as_valid_user(base, own_issuer, 0)[0] == 200
        own_issuer.jwks.behaviour = "fail"
        time.sleep(1.1)  # a refetch is due: the first made-up kid may ask the issuer
        fetches = own_issuer.jwks.fetches
        started = time.monotonic()

        statuses = []
        for n in range(40):
            token = own_issuer.sign(own_issuer.claims("mallory"), kid=f"junk-{n}", key=stranger)
            statuses.append(list_tasks(base, "mallory", token)[0])
            time.sleep(0.05)
        elapsed = time.monotonic() - started

    asked = own_issuer.jwks.fetches - fetches
    assert set(statuses) == {401}
    assert 1 <= asked <= int(elapsed) + 1, (asked, elapsed)


def test_cached_keys_past_their_max_age_keep_verifying_while_the_issuer_hangs(
    own_issuer: TokenIssuer, database_url: str, app_database_url: str
) -> None:
    env = server_environment(
        own_issuer,
        database_url,
        app_database_url,
        AUTH_JWKS_MAX_AGE_SECONDS="1",
        AUTH_JWKS_REFETCH_SECONDS="0.5",
    )
    with serving(env) as base:
        assert as_valid_user(base, own_issuer, 0)[0] == 200
        own_issuer.jwks.behaviour = "hang"
        fetches = own_issuer.jwks.fetches
        time.sleep(1.2)  # past the keys' max age

        results = []
        for n in range(1, 16):
            results.append(as_valid_user(base, own_issuer, n))
            time.sleep(0.2)

    assert {status for status, _ in results} == {200}
    assert max(took for _, took in results) < PROMPT_SECONDS
    assert own_issuer.jwks.fetches > fetches  # a refresh was tried, and did not hold anyone up


def test_without_keys_a_hanging_issuer_is_503_within_the_wait_and_keys_come_once_it_answers(
    own_issuer: TokenIssuer, database_url: str, app_database_url: str
) -> None:
    env = server_environment(
        own_issuer,
        database_url,
        app_database_url,
        AUTH_JWKS_REFETCH_SECONDS="0.5",
        AUTH_JWKS_WAIT_SECONDS="0.5",
    )
    own_issuer.jwks.behaviour = "hang"
    with serving(env) as base:
        first = as_valid_user(base, own_issuer, 0)
        own_issuer.jwks.behaviour = "serve"
        # The hung fetch ends at its timeout (3 s); the next one may start half a second after
        # it began, so within about 4 s a request finds keys.
        later: list[tuple[int, float]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not later or later[-1][0] != 200):
            later.append(as_valid_user(base, own_issuer, len(later) + 1))
            time.sleep(0.2)

    assert first[0] == 503
    assert first[1] < 0.5 + PROMPT_SECONDS
    assert later[-1][0] == 200
    assert {status for status, _ in later} <= {503, 200}
    assert max(took for _, took in later) < 0.5 + PROMPT_SECONDS
