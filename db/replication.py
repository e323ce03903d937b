"""WAL positions: what a committed write leaves behind, and what a replica must have replayed
before a read there can see it (docs/adr/0016).

A position is PostgreSQL's `pg_lsn` (`16/B374D848` as PostgreSQL writes it): the write side reads,
right after a commit and on the same connection, a position at or past the end of that commit's
record; a replica whose `pg_last_wal_replay_lsn()` is at or past it shows the write. Clients get
it as a token: the same 64-bit number in hexadecimal (`16B374D848`), letters and digits only.
"""

import re
from dataclasses import dataclass

_POSITION = re.compile(r"[0-9A-F]{1,8}/[0-9A-F]{1,8}")
"""A token as received (surrounding whitespace allowed, as HTTP allows it around a header's
value; a JSON-schema generator also takes `$` to allow a final newline)."""

POSITION_NOW_SQL = (
    "SELECT (CASE WHEN current_setting('synchronous_commit') = 'off'"
    " THEN pg_current_wal_insert_lsn() ELSE pg_current_wal_flush_lsn() END)::text"
)
"""On the primary, after a commit on the same connection: a position at or past that commit.

A commit waits for its record to be flushed (unless synchronous_commit is off), so the flush
position is at or past its end, and never ahead of what a replica can receive. The insert
position is used only when commits do not wait: it is past the commit too, but at a page
boundary it points past the next page's header, where replay may not get until the next write
(the read then waits REPLICA_WAIT_MS and reads from the primary: slower, never wrong)."""


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
