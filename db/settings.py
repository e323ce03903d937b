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
    """An unknown `kid` refetches the JWKS at most this often."""
    auth_jwks_max_age_seconds: float = 600.0
    """Keys older than this are refetched on next use (kept if the refetch fails)."""

    def write_url(self) -> str:
        if self.database_url is None:
            raise RuntimeError("database_url is not set and no embedded server was started")
        return self.database_url

    def read_url(self) -> str:
        return self.read_database_url or self.write_url()

    def migration_url(self) -> str:
        return self.migration_database_url or self.write_url()

    def algorithms(self) -> list[str]:
        return [name.strip() for name in self.auth_algorithms.split(",") if name.strip()]
