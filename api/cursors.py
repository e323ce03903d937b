"""Keyset cursors for list pages: opaque to clients, signed, and bound to the request they page.

A cursor is `base64url(payload) "." base64url(HMAC-SHA256(secret, payload)[:16])`, where the
payload is the JSON array `[version, binding, sort key, id]`: the position of the last row of the
page, and a digest of the user and every list parameter except `cursor` and `limit`. Changing a
byte breaks the signature; reusing a cursor with other parameters breaks the binding. Both are a
422 naming `cursor`. See docs/adr/0005-keyset-cursors.md.

The secret is CURSOR_SECRET when set (at least 32 bytes), else the key migration 0005 stored in
the database, so every instance on one database agrees and cursors survive restarts (ADR 0009).
"""

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError

from api.problems import invalid_input
from api.settings import Settings
from queries.tasks import Position

VERSION = 1
SIGNATURE_BYTES = 16
MAX_CURSOR_LENGTH = 1024
MIN_SECRET_BYTES = 32
"""As long as the HMAC-SHA256 key it feeds: a shorter one is easier to guess than to forge."""


class CursorSecretTooShort(ValueError):
    pass


class NotSealed(ValueError):
    """A token this service did not sign: malformed, or `altered` after signing."""

    def __init__(self, *, altered: bool) -> None:
        super().__init__("altered" if altered else "malformed")
        self.altered = altered


def configured_secret(settings: Settings) -> bytes | None:
    """CURSOR_SECRET's bytes, None when unset; too short (empty included) is refused."""
    if settings.cursor_secret is None:
        return None
    secret = settings.cursor_secret.get_secret_value().encode()
    if len(secret) < MIN_SECRET_BYTES:
        raise CursorSecretTooShort(
            f"CURSOR_SECRET is {len(secret)} bytes; it needs at least {MIN_SECRET_BYTES}, or leave"
            " it unset to use the key stored in the database"
        )
    return secret


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def binding(user_id: str, parameters: dict[str, Any]) -> str:
    """A short digest of who asked for what; a cursor is valid only for the same digest.

    The digest is of `json.dumps([user_id, parameters], sort_keys=True, separators=(",", ":"))`,
    which orjson writes byte for byte alike, 14x faster, unless the text holds a character
    outside printable ASCII that `json` escapes and orjson does not (non-ASCII and DEL): then
    `json` writes it, so cursors issued before stay valid.
    """
    canonical = orjson.dumps([user_id, parameters], option=orjson.OPT_SORT_KEYS)
    if not canonical.isascii() or b"\x7f" in canonical:
        text = json.dumps([user_id, parameters], sort_keys=True, separators=(",", ":"))
        canonical = text.encode()
    return hashlib.sha256(canonical).hexdigest()[:24]


def invalid_cursor(message: str) -> RequestValidationError:
    return invalid_input("query", "cursor", message)


class CursorCodec:
    """Signs and checks cursors with `secret`, or with the key `secret()` returns, fetched on
    first use: an app then starts without its database, as it does for everything else."""

    def __init__(self, secret: bytes | Callable[[], bytes]) -> None:
        self._secret = secret if isinstance(secret, bytes) else None
        self._fetch = secret if not isinstance(secret, bytes) else None

    def _key(self) -> bytes:
        if self._secret is None:
            assert self._fetch is not None
            # Two first uses at once both fetch the same key; no lock needed.
            self._secret = self._fetch()
        return self._secret

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key(), payload, hashlib.sha256).digest()[:SIGNATURE_BYTES]

    def seal(self, payload: bytes) -> str:
        """`payload`, signed: opaque to clients and impossible for them to alter."""
        return _b64encode(payload) + "." + _b64encode(self._sign(payload))

    def unseal(self, token: str) -> bytes:
        """The payload of a token `seal` made; NotSealed if it was not, or was altered."""
        try:
            encoded_payload, encoded_signature = token.split(".")
            payload = _b64decode(encoded_payload)
            signature = _b64decode(encoded_signature)
        except (ValueError, binascii.Error):
            raise NotSealed(altered=False) from None
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise NotSealed(altered=True)
        return payload

    def encode(self, position: Position, bound_to: str) -> str:
        return self.seal(orjson.dumps([VERSION, bound_to, position.key, position.id]))

    def decode(self, cursor: str, bound_to: str) -> Position:
        """The position in `cursor`; a 422 if it was altered or made for other parameters."""
        try:
            payload = self.unseal(cursor)
        except NotSealed as refused:
            if not refused.altered:
                raise invalid_cursor("is not a cursor this service issued") from None
            raise invalid_cursor(
                "was altered or has expired; start again from the first page without a cursor"
            ) from None
        try:
            version, bound, key, row_id = json.loads(payload)
        except (ValueError, TypeError):
            # Signed but not of our shape: only someone holding the key could make one.
            raise invalid_cursor("is not a cursor this service issued") from None
        if not isinstance(row_id, int) or isinstance(row_id, bool) or not isinstance(key, str):
            raise invalid_cursor("is not a cursor this service issued")
        if version != VERSION or bound != bound_to:
            raise invalid_cursor(
                "was made for different list parameters; send the same parameters as the"
                " request that returned it (only limit may change)"
            )
        return Position(key=key, id=row_id)
