"""Change tokens: a position in one user's change sequence, opaque, signed and bound to the user.

Signed with the cursors' key (api/cursors.py, ADR 0005/0009), so every instance on one database
accepts every other's tokens and they survive restarts. The payload names its kind, so a list
cursor is never taken for a change token, and the user, so another user's token is refused:
both, and any altered token, are a 422 naming where the token came from (`since` or
`Last-Event-ID`).
"""

import json

from fastapi.exceptions import RequestValidationError

from api.cursors import CursorCodec, NotSealed, binding
from api.problems import invalid_input

KIND = "changes"
VERSION = 1


def _bound_to(user_id: str) -> str:
    return binding(user_id, {"feed": KIND})


class ChangeTokens:
    def __init__(self, codec: CursorCodec) -> None:
        self._codec = codec

    def encode(self, user_id: str, seq: int) -> str:
        return self._codec.seal(json.dumps([KIND, VERSION, _bound_to(user_id), seq]).encode())

    def decode(self, token: str, user_id: str, *, location: str, field: str) -> int:
        """The sequence number in `token`; a 422 at `location`/`field` if it is not one of this
        user's tokens."""

        def refuse(message: str) -> RequestValidationError:
            return invalid_input(location, field, message)

        try:
            payload = self._codec.unseal(token)
        except NotSealed as refused:
            if refused.altered:
                raise refuse(
                    "was altered; use a token the service returned, or sync from the start"
                ) from None
            raise refuse("is not a change token this service issued") from None
        try:
            kind, version, owner, seq = json.loads(payload)
        except (ValueError, TypeError):
            raise refuse("is not a change token this service issued") from None
        if kind != KIND or version != VERSION or not isinstance(seq, int) or isinstance(seq, bool):
            raise refuse("is not a change token this service issued")
        if owner != _bound_to(user_id):
            raise refuse("belongs to another user; use a token this user's feed returned")
        return seq
