"""Bearer-token authentication (Better Auth JWTs via JWKS, or a shared HS256 secret)."""
