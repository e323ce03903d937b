"""WAL positions: what a committed write leaves behind, and what a replica must have replayed
before a read there can see it (docs/adr/0016).

A position is PostgreSQL's `pg_lsn` in its text form (`16/B374D848`): the write side reads the
primary's WAL insert position right after a commit, which is at or past the end of that
commit's record; a replica whose `pg_last_wal_replay_lsn()` is at or past it shows the write.
"""

import re
from dataclasses import dataclass

_POSITION = re.compile(r"[0-9A-F]{1,8}/[0-9A-F]{1,8}")
POSITION_PATTERN = r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$"
"""A position as text, as a JSON-schema/regex pattern (for whoever receives one from outside)."""

POSITION_NOW_SQL = "SELECT pg_current_wal_insert_lsn()::text"
"""On the primary, after a commit on the same connection: a position at or past that commit."""


@dataclass(frozen=True, order=False)
class WalPosition:
    text: str

    @classmethod
    def parse(cls, text: str) -> "WalPosition":
        canonical = text.upper()
        if not _POSITION.fullmatch(canonical):
            raise ValueError(f"not a WAL position: {text!r}")
        return cls(canonical)

    def __int__(self) -> int:
        high, low = self.text.split("/")
        return (int(high, 16) << 32) | int(low, 16)

    def __str__(self) -> str:
        return self.text
