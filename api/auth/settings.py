"""Authentication's settings (see README "Authentication"), read from the environment."""

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings

from db.settings import FROM_ENVIRONMENT

AuthMode = Literal["jwks", "secret", "none"]
# Better Auth's JWT plugin signs with EdDSA (Ed25519) by default; ES256 and RS256 are its options.
ASYMMETRIC_ALGORITHMS = ("EdDSA", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256")


class AuthSettings(BaseSettings):
    model_config = FROM_ENVIRONMENT

    # Unset mode: inferred from what is configured.
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
    # JWKS fetching (docs/adr/0011): how long a request whose key id is not cached waits for the
    # fetch in flight before it is answered 401 (keys known) or 503 (none yet).
    auth_jwks_wait_seconds: float = Field(default=1.0, ge=0)

    def algorithms(self) -> list[str]:
        return [name.strip() for name in self.auth_algorithms.split(",") if name.strip()]
