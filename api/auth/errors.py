"""Authentication failures. They carry no HTTP; `api/errors.py` maps each to its status once."""

from api.settings import ServiceMisconfigured


class AuthError(Exception):
    """Base for every authentication or authorization failure."""


class NotAuthenticated(AuthError):
    """No usable bearer token: missing, malformed, expired, wrongly signed or not for us."""

    def __init__(self, reason: str, *, token_given: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.token_given = token_given


class WrongUser(AuthError):
    """A valid token whose subject is not the user named in the path."""


class KeysUnavailable(AuthError):
    """The JWKS could not be fetched, so no token can be checked right now."""


class AuthNotConfigured(ServiceMisconfigured):
    """The server was started without authentication and without AUTH_MODE=none."""
