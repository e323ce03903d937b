"""X-Consistency-Token, the header form of a WAL position (docs/adr/0016): hexadecimal digits of
the 64-bit position, written by the route that wrote and read by the reads that send it back."""

from db.replication import WalPosition

TOKEN_PATTERN = r"^\s*[0-9A-Fa-f]{1,16}\s*$"  # noqa: S105 (a pattern, no secret)
"""As the OpenAPI document states it (\\s as Python reads it, which is what clients' and
fuzzers' generators use)."""


def token_of(position: WalPosition) -> str:
    high, low = position.text.split("/")
    return f"{(int(high, 16) << 32) | int(low, 16):X}"


def position_of(token: str) -> WalPosition:
    """The position a token names; ValueError unless it is 1-16 hex digits (spaces around
    allowed, as the OpenAPI pattern reads)."""
    digits = token.strip()
    if not 1 <= len(digits) <= 16 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise ValueError(f"not a consistency token: {token!r}")
    value = int(digits, 16)
    return WalPosition(f"{value >> 32:X}/{value & 0xFFFFFFFF:X}")
