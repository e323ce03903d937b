"""The service's configuration, read from the environment (and a `.env` file) once."""

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

AuthMode = Literal["jwks", "secret", "none"]
# Better Auth's JWT plugin signs with EdDSA (Ed25519) by default; ES256 and RS256 are its options.
ASYMMETRIC_ALGORITHMS = ("EdDSA", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # Unset means: start the embedded PostgreSQL kept under `data_dir`.
    database_url: str | None = None
    """The service's own connection: a role that owns nothing and cannot bypass row security."""
    # The query side's server; defaults to `database_url` (set it to a replica to split reads).
    read_database_url: str | None = None
    migration_database_url: str | None = None
    """The schema owner's connection, used only to migrate; defaults to `database_url`."""
    data_dir: Path = PROJECT_ROOT / ".data"
    pool_size: int = 10
    max_overflow: int = 10
    statement_timeout_ms: int = Field(default=5000, ge=1)
    """Longest any one statement of the service may run (set per transaction, not per session)."""
    lock_timeout_ms: int = Field(default=2000, ge=1)
    """Longest a statement waits for a row lock before the request fails with 503."""
    pool_pre_ping: bool = True
    """Ping each pooled connection at checkout (one round trip). Off: a zero-cost socket check
    that catches connections the server closed, but not one killed microseconds earlier."""
    pool_recycle_seconds: int = 240
    """Replace pooled connections older than this: under Neon's 5-minute idle suspend."""
    connect_timeout_seconds: int = Field(default=10, ge=1)
    pool_timeout_seconds: float = Field(default=5.0, gt=0)
    """Longest a read waits for a pooled connection before the request fails with 503."""
    prepared_statements: bool = True
    """Prepare the query side's statements on each connection (plan once, send only values).
    Turn off behind a pooler without protocol-level prepared statements (PgBouncer < 1.21)."""
    access_log: bool = False
    """Log a line per request (uvicorn's access log); off by default, it costs ~3% CPU a request."""

    # Authentication (see README "Authentication"). Unset mode: inferred from what is configured.
    auth_mode: AuthMode | None = None
    auth_jwks_url: str | None = None
    auth_issuer: str | None = None
    auth_audience: str | None = None
    auth_algorithms: str = "EdDSA"
    """Comma-separated allow-list for JWKS mode; tokens naming any other `alg` are refused."""
    auth_jwt_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("auth_jwt_secret", "better_auth_secret")
    )
    auth_leeway_seconds: float = 30.0
    auth_jwks_timeout_seconds: float = 5.0
    auth_jwks_refetch_seconds: float = 30.0
    """A JWKS fetch starts at most this often, counted from the last attempt, successful or not."""
    auth_jwks_max_age_seconds: float = 600.0
    """Keys older than this are refreshed in the background and stay in service if that fails."""

    # Signs list cursors; every process serving one API must share it (docs/adr/0005). Unset:
    # the key migration 0005 stored in the database (ADR 0009). Set: at least 32 bytes.
    cursor_secret: SecretStr | None = None

    # Browsers: origins whose pages may call the API (CORS); see README "Calling it from a browser".
    cors_origins: str | None = None
    """Comma-separated exact origins (`https://app.example.com`); `*` only with AUTH_MODE=none."""

    # JWKS fetching (docs/adr/0011): how long a request whose key id is not cached waits for the
    # fetch in flight before it is answered 401 (keys known) or 503 (none yet).
    auth_jwks_wait_seconds: float = Field(default=1.0, ge=0)

    # Start-up refusals (api/cli.py): a role that bypasses row-level security sees every user's
    # rows, so `taskapi serve` refuses such a DATABASE_URL or READ_DATABASE_URL unless this is set.
    allow_rls_bypass: bool = False

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

    # --- Change feed and live stream (issue 13, docs/adr/0014) ---
    tombstone_retention_days: float = Field(default=30.0, gt=0)
    """How long a deleted task's tombstone is kept; a change token that may have missed a purged
    one is answered 410 Gone."""
    changes_heartbeat_seconds: float = Field(default=15.0, gt=0)
    """A stream sends a comment this often when idle, and re-reads the feed then."""
    changes_streams_per_user: int = Field(default=10, ge=1)
    """Open change streams one user may hold on one worker; beyond it 429."""
    changes_streams_per_worker: int = Field(default=500, ge=1)
    """Open change streams per worker, for all users; beyond it 503 with Retry-After."""

    def write_url(self) -> str:
        if self.database_url is None:
            raise RuntimeError("database_url is not set and no embedded server was started")
        return self.database_url

    def read_url(self) -> str:
        return self.read_database_url or self.write_url()

    def migration_url(self) -> str:
        return self.migration_database_url or self.write_url()

    def allowed_origins(self) -> list[str]:
        return [origin.strip() for origin in (self.cors_origins or "").split(",") if origin.strip()]

    def algorithms(self) -> list[str]:
        return [name.strip() for name in self.auth_algorithms.split(",") if name.strip()]
