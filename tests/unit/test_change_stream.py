"""Change tokens and the worker's open streams, without a database."""

import asyncio
import json

import pytest
from fastapi.exceptions import RequestValidationError

from api.change_stream import ChangeStreams, StreamsFull, TooManyStreams
from api.change_tokens import ChangeTokens
from api.cursors import CursorCodec
from db.notifications import ChangeListener
from queries.tasks import Position

KEY = b"k" * 32


def tokens() -> ChangeTokens:
    return ChangeTokens(CursorCodec(KEY))


def decode(token: str, user: str = "alice") -> int:
    return tokens().decode(token, user, location="query", field="since")


def test_a_token_gives_back_its_number_to_its_user() -> None:
    assert decode(tokens().encode("alice", 42)) == 42


@pytest.mark.parametrize(
    "token",
    [
        ChangeTokens(CursorCodec(KEY)).encode("bob", 42),  # another user's
        ChangeTokens(CursorCodec(b"o" * 32)).encode("alice", 42),  # another key's
        CursorCodec(KEY).encode(Position(key="x", id=42), "alice"),  # a list cursor
        CursorCodec(KEY).seal(json.dumps(["changes", 1, "alice", "42"]).encode()),
        CursorCodec(KEY).seal(b"not json"),
        "no-dot",
    ],
)
def test_anything_but_this_users_token_is_a_422_naming_its_field(token: str) -> None:
    with pytest.raises(RequestValidationError) as refused:
        decode(token)
    assert refused.value.errors()[0]["loc"] == ("query", "since")


def streams(per_user: int = 2, per_worker: int = 3) -> ChangeStreams:
    listener = ChangeListener("postgresql://nobody@127.0.0.1/none", connect_timeout=1)
    return ChangeStreams(listener, per_user=per_user, per_worker=per_worker, heartbeat_seconds=1)


def test_streams_beyond_the_user_and_worker_limits_are_refused_until_one_closes() -> None:
    open_streams = streams()
    with open_streams.held("alice"), open_streams.held("alice"):
        with pytest.raises(TooManyStreams):
            open_streams.check("alice")
        with open_streams.held("bob"), pytest.raises(StreamsFull):
            open_streams.check("carol")
        open_streams.check("carol")
    open_streams.check("alice")
    assert open_streams.open_streams == 0


def test_a_change_wakes_only_its_users_streams_and_stopping_wakes_all() -> None:
    async def scenario() -> None:
        open_streams = streams()
        with open_streams.held("alice") as alice, open_streams.held("bob") as bob:
            open_streams.listener.wake("alice")
            assert alice.is_set()
            assert not bob.is_set()
            open_streams.stop()
            assert bob.is_set()
            assert open_streams.stopping

    asyncio.run(scenario())
