"""The kinds of problem the service answers with: one stable `type` URI each (RFC 9457).

A program tells problems apart by `type`, never by parsing `detail`. docs/problems.md lists every
kind with its status and what a client should do; a test holds the page and this table together.
"""

from dataclasses import dataclass

from fastapi.exceptions import RequestValidationError

PROBLEM_BASE = "/problems/"
"""`type` URIs are relative to the service (RFC 9457 section 3.1.1); each one serves its entry."""


@dataclass(frozen=True)
class ProblemKind:
    slug: str
    status: int
    title: str
    advice: str
    """What a client should do about it."""

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug


VALIDATION = ProblemKind(
    "validation",
    422,
    "The request is not valid",
    "Correct what `errors` names (location, field, message) and send it again; the same"
    " request will fail the same way.",
)
IDEMPOTENCY_KEY_REUSED = ProblemKind(
    "idempotency-key-reused",
    422,
    "Idempotency-Key used for another request",
    "Use a new Idempotency-Key for a new request; a key belongs to one request for 24 hours.",
)
IDEMPOTENCY_KEY_IN_FLIGHT = ProblemKind(
    "idempotency-key-in-flight",
    409,
    "The request with this Idempotency-Key is still running",
    "Retry the same request with the same key after `Retry-After` seconds; it will replay the"
    " first answer.",
)
NOT_FOUND = ProblemKind(
    "not-found",
    404,
    "Not found",
    "The task (or URL) does not exist for this user; another user's task looks the same. Do not"
    " retry; refresh your list.",
)
CHANGES_GONE = ProblemKind(
    "changes-gone",
    410,
    "Changes since this token are gone",
    "The token predates deletions no longer kept: drop your copy and sync again from the start"
    " (the change feed without `since`), then continue with its `next`.",
)
TOO_MANY_STREAMS = ProblemKind(
    "too-many-streams",
    429,
    "Too many open change streams",
    "Close a stream this user has open (another tab or device) or retry after `Retry-After`"
    " seconds; one stream per client is enough.",
)
METHOD_NOT_ALLOWED = ProblemKind(
    "method-not-allowed",
    405,
    "Method not allowed",
    "Use one of the methods in the `Allow` header.",
)
VERSION_CONFLICT = ProblemKind(
    "version-conflict",
    412,
    "The task has changed",
    "Apply your change to `current` (the task as it is now) and retry with its `ETag` in If-Match.",
)
PAYLOAD_TOO_LARGE = ProblemKind(
    "payload-too-large",
    413,
    "Request body too large",
    "Send a smaller body; a task's JSON fits easily in the limit.",
)
UNSUPPORTED_MEDIA_TYPE = ProblemKind(
    "unsupported-media-type",
    415,
    "Body is not JSON",
    "Send the body as JSON with `Content-Type: application/json`.",
)
UNAUTHENTICATED = ProblemKind(
    "unauthenticated",
    401,
    "Authentication failed",
    "Get a fresh token from the sign-in service (Better Auth's `/api/auth/token`) and send it as"
    " `Authorization: Bearer <token>`.",
)
FORBIDDEN = ProblemKind(
    "forbidden",
    403,
    "Token of another user",
    "Call the paths of the user the token belongs to (its `sub`).",
)
ORIGIN_NOT_ALLOWED = ProblemKind(
    "origin-not-allowed",
    400,
    "Cross-origin request not allowed",
    "Ask the operator to add the page's origin to CORS_ORIGINS, or call the API from an allowed"
    " origin.",
)
HEADERS_TOO_LARGE = ProblemKind(
    "headers-too-large",
    431,
    "Request headers too large",
    "Send fewer or smaller headers; the limits are in the README (Reliability).",
)
REQUEST_TIMEOUT = ProblemKind(
    "request-timeout",
    408,
    "Request not received in time",
    "Send the whole request promptly; the connection was closed and the request was not run.",
)
SERVER_BUSY = ProblemKind(
    "server-busy",
    503,
    "Server busy",
    "Too many connections to this server: retry after `Retry-After` seconds, with back-off.",
)
KEYS_UNAVAILABLE = ProblemKind(
    "keys-unavailable",
    503,
    "Token keys unavailable",
    "The token issuer's keys cannot be fetched: retry after `Retry-After` seconds.",
)
DATABASE_UNAVAILABLE = ProblemKind(
    "database-unavailable",
    503,
    "Database unavailable",
    "Retry after `Retry-After` seconds. Writes that got this answer did not happen; with an"
    " Idempotency-Key a retry is always safe.",
)
INTERNAL_ERROR = ProblemKind(
    "internal-error",
    500,
    "Internal error",
    "Not expected to happen: report it with the `request_id`. Retry only idempotent requests.",
)
HTTP_ERROR = ProblemKind(
    "http-error",
    400,  # or any other status without a kind of its own
    "HTTP error",
    "A status without a more specific kind; `status` and `detail` say what happened.",
)

KINDS: tuple[ProblemKind, ...] = (
    VALIDATION,
    IDEMPOTENCY_KEY_REUSED,
    IDEMPOTENCY_KEY_IN_FLIGHT,
    NOT_FOUND,
    CHANGES_GONE,
    TOO_MANY_STREAMS,
    METHOD_NOT_ALLOWED,
    VERSION_CONFLICT,
    PAYLOAD_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    UNAUTHENTICATED,
    FORBIDDEN,
    ORIGIN_NOT_ALLOWED,
    HEADERS_TOO_LARGE,
    REQUEST_TIMEOUT,
    SERVER_BUSY,
    KEYS_UNAVAILABLE,
    DATABASE_UNAVAILABLE,
    INTERNAL_ERROR,
    HTTP_ERROR,
)
BY_SLUG = {kind.slug: kind for kind in KINDS}
# The kind an error of this status is when nothing more specific was said.
_BY_STATUS = {
    422: VALIDATION,
    409: IDEMPOTENCY_KEY_IN_FLIGHT,
    404: NOT_FOUND,
    410: CHANGES_GONE,
    429: TOO_MANY_STREAMS,
    405: METHOD_NOT_ALLOWED,
    412: VERSION_CONFLICT,
    413: PAYLOAD_TOO_LARGE,
    415: UNSUPPORTED_MEDIA_TYPE,
    401: UNAUTHENTICATED,
    403: FORBIDDEN,
    408: REQUEST_TIMEOUT,
    431: HEADERS_TOO_LARGE,
    503: DATABASE_UNAVAILABLE,
    500: INTERNAL_ERROR,
}


MAX_SHOWN = 60
"""Characters of a client's value or name quoted back in a message: error answers stay small."""


def shown(value: object) -> str:
    """A client's value quoted in a message, cut short."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > MAX_SHOWN:
        text = text[: MAX_SHOWN - 1] + "…"
    return '"' + text + '"'


def kind_for_status(status: int) -> ProblemKind:
    return _BY_STATUS.get(status, HTTP_ERROR)


def invalid_input(location: str, field: str, message: str) -> RequestValidationError:
    """A value checked outside the request models (a cursor, a conditional header, a bound), as
    the same 422 problem as any other invalid input."""
    error = {"type": "value_error", "loc": (location, field), "msg": message, "input": None}
    return RequestValidationError([error])
