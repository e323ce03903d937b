"""Cross-origin calls from browser pages (CORS), for the origins in CORS_ORIGINS only.

Bearer tokens, never cookies: no credentials are allowed, so a page can call the API only with a
token its own code holds. Preflights are answered for every path, including those that would be
404 or 405, so the browser shows the API's own answer rather than a CORS failure.
"""

import re

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp

from api.errors import problem_response
from api.problems import ORIGIN_NOT_ALLOWED

ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "If-Match",
    "If-None-Match",
    "Idempotency-Key",
    "Last-Event-ID",
    "X-Consistency-Token",
    "X-Request-ID",
)
EXPOSED_HEADERS = (
    "ETag",
    "Link",
    "Location",
    "Idempotent-Replayed",
    "Retry-After",
    "X-Consistency-Token",
    "X-Request-ID",
)
PREFLIGHT_MAX_AGE_SECONDS = 600
DEVELOPMENT_ORIGIN = "http://localhost:3000"
"""What `make serve` allows when CORS_ORIGINS is unset: Next.js's development server."""

_ORIGIN = re.compile(r"https?://[^/\s:]+(:[0-9]{1,5})?")


def origins_problem(origins: list[str], *, authenticated: bool) -> str | None:
    """Why these CORS_ORIGINS cannot be served, or None when they can."""
    if "*" in origins and authenticated:
        return (
            "CORS_ORIGINS=* lets every web page call the API; it is allowed only with"
            " AUTH_MODE=none. List the frontend's origins instead"
        )
    for origin in origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            return (
                f"CORS_ORIGINS has {origin!r}: an origin is scheme://host[:port] with no path or"
                " trailing slash, e.g. https://app.example.com"
            )
    return None


class Cors(CORSMiddleware):
    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        super().__init__(
            app,
            allow_origins=origins,
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            max_age=PREFLIGHT_MAX_AGE_SECONDS,
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        # Starlette names what failed (origin, method, headers) in a plain-text body.
        refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        return problem_response(
            400,
            f"This cross-origin request is not allowed ({refused}).",
            kind=ORIGIN_NOT_ALLOWED,
        )
