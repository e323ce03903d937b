"""The service's configuration, split by concern and read from the environment once.

`Settings` is the whole of it: the database's (db/settings.py), authentication's
(api/auth/settings.py), and the HTTP side's and the change feed's below.
"""

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from api.auth.settings import AuthSettings
from db.settings import FROM_ENVIRONMENT, DatabaseSettings


class ServiceMisconfigured(RuntimeError):
    """The settings contradict each other or are unsafe: the service refuses to start."""


class HttpSettings(BaseSettings):
    model_config = FROM_ENVIRONMENT

    access_log: bool = False
    """Log a line per request (uvicorn's access log); off by default, it costs ~3% CPU a request."""

    # Browsers: origins whose pages may call the API (CORS); see README "Calling it from a browser".
    cors_origins: str | None = None
    """Comma-separated exact origins (`https://app.example.com`); `*` only with AUTH_MODE=none."""

    # HTTP server limits for a public deployment (api/http_server.py, docs/adr/0010).
    http_max_head_bytes: int = Field(default=16 * 1024, ge=1024)
    """Largest request target plus header fields; beyond it 431 and the connection is closed."""
    http_max_headers: int = Field(default=100, ge=1)
    """Most header fields in one request; beyond it 431 and the connection is closed."""
    http_request_timeout_seconds: float = Field(default=10.0, gt=0)
    """Longest a request's head and body may take to arrive, from its first byte; then 408."""
    http_keep_alive_seconds: float = Field(default=5.0, gt=0)
    """An idle connection, fresh or between requests, is closed after this long."""
    http_max_connections: int = Field(default=1000, ge=1)
    """Connections per worker; one beyond gets 503 with Retry-After on arrival, then is closed."""

    def allowed_origins(self) -> list[str]:
        return [origin.strip() for origin in (self.cors_origins or "").split(",") if origin.strip()]


class ChangeFeedSettings(BaseSettings):
    """The change feed and its live stream (docs/adr/0014)."""

    model_config = FROM_ENVIRONMENT

    tombstone_retention_days: float = Field(default=30.0, gt=0)
    """How long a deleted task's tombstone is kept; a change token that may have missed a purged
    one is answered 410 Gone."""
    changes_heartbeat_seconds: float = Field(default=15.0, gt=0)
    """A stream sends a comment this often when idle, and re-reads the feed then."""
    changes_streams_per_user: int = Field(default=10, ge=1)
    """Open change streams one user may hold on one worker; beyond it 429."""
    changes_streams_per_worker: int = Field(default=500, ge=1)
    """Open change streams per worker, for all users; beyond it 503 with Retry-After."""


class Settings(DatabaseSettings, AuthSettings, HttpSettings, ChangeFeedSettings):
    model_config = FROM_ENVIRONMENT

    # Signs list cursors; every process serving one API must share it (docs/adr/0005). Unset:
    # the key migration 0005 stored in the database (ADR 0009). Set: at least 32 bytes.
    cursor_secret: SecretStr | None = None

    # Start-up refusals (api/cli.py): a role that bypasses row-level security sees every user's
    # rows, so `taskapi serve` refuses such a DATABASE_URL or READ_DATABASE_URL unless this is set.
    allow_rls_bypass: bool = False
