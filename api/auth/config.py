"""Which authentication the service runs with, decided once from the settings at startup."""

import logging

from api.auth.errors import AuthNotConfigured
from api.auth.jwks import JwksKeys
from api.auth.settings import ASYMMETRIC_ALGORITHMS, AuthMode, AuthSettings
from api.auth.tokens import Authenticator, JwksVerifier, Rules, SecretVerifier, Verifier

log = logging.getLogger(__name__)

NO_AUTH_WARNING = (
    "AUTHENTICATION IS OFF (AUTH_MODE=none): anyone can read and change any user's tasks. "
    "Use this for local development only; set AUTH_JWKS_URL or AUTH_JWT_SECRET for anything else."
)


def auth_mode(settings: AuthSettings) -> AuthMode:
    """AUTH_MODE if set, else whichever of AUTH_JWKS_URL and AUTH_JWT_SECRET is configured."""
    if settings.auth_mode is not None:
        return settings.auth_mode
    configured: list[AuthMode] = []
    if settings.auth_jwks_url:
        configured.append("jwks")
    if settings.auth_jwt_secret is not None:
        configured.append("secret")
    if len(configured) != 1:
        raise AuthNotConfigured(
            "Authentication is not configured: set AUTH_JWKS_URL (Better Auth's JWKS) or "
            "AUTH_JWT_SECRET (shared HS256 secret), or AUTH_MODE=none for local development"
            if not configured
            else "Both AUTH_JWKS_URL and AUTH_JWT_SECRET are set: choose one with AUTH_MODE"
        )
    return configured[0]


def auth_unconfigured(settings: AuthSettings) -> bool:
    """Nothing about authentication is set: no mode, no JWKS URL, no secret."""
    return (settings.auth_mode, settings.auth_jwks_url, settings.auth_jwt_secret) == (None,) * 3


def build_authenticator(settings: AuthSettings) -> Authenticator:
    """The configured authenticator; raises AuthNotConfigured rather than run without one."""
    mode = auth_mode(settings)
    if mode == "none":
        log.warning(NO_AUTH_WARNING)
        return Authenticator(None)
    return Authenticator(_verifier(mode, settings))


def _verifier(mode: AuthMode, settings: AuthSettings) -> Verifier:
    rules = Rules(
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        leeway_seconds=settings.auth_leeway_seconds,
    )
    if mode == "secret":
        if settings.auth_jwt_secret is None:
            raise AuthNotConfigured(
                "AUTH_MODE=secret needs AUTH_JWT_SECRET (or BETTER_AUTH_SECRET)"
            )
        return SecretVerifier(settings.auth_jwt_secret.get_secret_value(), rules)
    if not settings.auth_jwks_url:
        raise AuthNotConfigured("AUTH_MODE=jwks needs AUTH_JWKS_URL")
    algorithms = settings.algorithms()
    refused = [name for name in algorithms if name not in ASYMMETRIC_ALGORITHMS]
    if refused or not algorithms:
        raise AuthNotConfigured(
            f"AUTH_ALGORITHMS may list only {', '.join(ASYMMETRIC_ALGORITHMS)} (got {refused})"
        )
    keys = JwksKeys(
        settings.auth_jwks_url,
        algorithms=algorithms,
        timeout=settings.auth_jwks_timeout_seconds,
        refetch_seconds=settings.auth_jwks_refetch_seconds,
        max_age_seconds=settings.auth_jwks_max_age_seconds,
        wait_seconds=settings.auth_jwks_wait_seconds,
    )
    return JwksVerifier(keys, rules)
