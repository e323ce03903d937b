"""A cursor whose signature is right but whose payload is not of our shape (only someone holding
the key could make one) is a 422 naming `cursor`, never a 500."""

import json

import pytest
from fastapi.exceptions import RequestValidationError

from api.cursors import CursorCodec, _b64encode

KEY = b"k" * 32


def signed(codec: CursorCodec, payload: object) -> str:
    raw = json.dumps(payload).encode()
    return _b64encode(raw) + "." + _b64encode(codec._sign(raw))


@pytest.mark.parametrize(
    "payload",
    [
        [],
        [1, "b"],
        {"a": 1},
        "text",
        [1, "b", "key", "7"],
        [1, "b", "key", True],
        [1, "b", ["key"], 7],
        [1, "b", "key", 7, "extra"],
    ],
)
def test_a_signed_cursor_of_another_shape_is_invalid_input(payload: object) -> None:
    codec = CursorCodec(KEY)
    with pytest.raises(RequestValidationError) as refused:
        codec.decode(signed(codec, payload), "b")
    assert refused.value.errors()[0]["loc"] == ("query", "cursor")


def test_a_signed_cursor_of_our_shape_decodes() -> None:
    codec = CursorCodec(KEY)
    position = codec.decode(signed(codec, [1, "b", "key", 7]), "b")
    assert (position.key, position.id) == ("key", 7)
