"""The workloads and the HTTP request each kind sends (their SQL: bench/pgbench.py)."""

import json
from dataclasses import dataclass
from typing import Literal

Kind = Literal["list", "get", "changes", "create", "toggle", "search", "heavy_search"]
Mix = tuple[tuple[Kind, int], ...]  # request kinds and their weights

LIST_LIMIT = 20
SEARCH_WORD = "milk"
# One user with many tasks (`--heavy-user-tasks`); not a number, so no ordinary pair is it.
HEAVY_USER = "heavy"
# In exactly HEAVY_MATCHES of the heavy user's titles and in no other row (bench/dataset.py).
HEAVY_WORD = "dentist"
HEAVY_MATCHES = 20
CREATE_BODY = {"title": "bench task", "due_date": "2026-12-31"}
TASKS = "/api/{user}/tasks"


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # A path with `{user}`, `{task}`, `{since}` placeholders, filled by wrk
    body: str | None = None
    user: str | None = None  # the one user who sends it (None: a sampled ordinary user)


ROUTES: dict[Kind, Route] = {
    "list": Route("GET", f"{TASKS}?status=pending&limit={LIST_LIMIT}"),
    "get": Route("GET", TASKS + "/{task}"),
    # A client polling its change feed with a current token: the common case, nothing new.
    "changes": Route("GET", "/api/{user}/changes?since={since}"),
    "create": Route("POST", TASKS, json.dumps(CREATE_BODY, separators=(",", ":"))),
    "toggle": Route("PATCH", TASKS + "/{task}/complete"),
    "search": Route("GET", f"{TASKS}?q={SEARCH_WORD}&limit={LIST_LIMIT}"),
    "heavy_search": Route("GET", f"{TASKS}?q={HEAVY_WORD}&limit={LIST_LIMIT}", user=HEAVY_USER),
}
WRITE_KINDS = {"create", "toggle"}


@dataclass(frozen=True)
class Workload:
    name: str
    mix: Mix  # what the cell measures
    # Sent meanwhile on `--heavy-connections` more connections, service and pgbench alike.
    background: Kind | None = None
    # Only these of the configured connection counts (all of them when none is configured).
    connections: tuple[int, ...] = ()
    # `--replica`: reads send an X-Consistency-Token, of a write made before the cell
    # ("replayed") or of the latest write answered meanwhile ("latest").
    consistency: Literal["replayed", "latest"] | None = None

    @property
    def mixes(self) -> list[Mix]:
        """The measured mix, and the background's (on `--heavy-connections`) if it has one."""
        return [self.mix, ((self.background, 1),)] if self.background else [self.mix]

    @property
    def kinds(self) -> set[Kind]:
        return {kind for mix in self.mixes for kind, _ in mix}

    @property
    def needs_heavy_user(self) -> bool:
        return any(ROUTES[kind].user == HEAVY_USER for kind in self.kinds)

    @property
    def writes(self) -> bool:
        """Whether it adds or changes rows (its requests, or the write its token comes from)."""
        return bool(self.kinds & WRITE_KINDS) or self.consistency == "replayed"

    def counts(self, configured: tuple[int, ...]) -> tuple[int, ...]:
        chosen = tuple(c for c in configured if c in self.connections)
        return chosen or configured


# Reads first: the write workloads add and flip rows, and the reads should see the loaded data.
WORKLOADS = (
    Workload("list", (("list", 1),)),
    Workload("get", (("get", 1),)),
    Workload("changes", (("changes", 1),)),
    Workload("search", (("search", 1),)),
    # One user's search among 200,000 tasks for a word in 20 of them: cost should follow matches.
    Workload("heavy-search", (("heavy_search", 1),), connections=(1, 16)),
    # Other users' lists while the heavy user searches: compare with `list` alone.
    Workload("head-of-line", (("list", 1),), background="heavy_search", connections=(16,)),
    Workload("create", (("create", 1),)),
    Workload("toggle", (("toggle", 1),)),
    # 80% reads, 20% writes.
    Workload("mixed", (("list", 40), ("get", 40), ("create", 10), ("toggle", 10))),
)
# `--replica` runs these instead, against the primary alone and with a streaming replica.
REPLICA_WORKLOADS = (
    Workload("list", (("list", 1),)),
    # What the token's check costs when the replica has long replayed the write.
    Workload("list-with-token", (("list", 1),), consistency="replayed"),
    # Read your writes: each list waits for the replica to replay the latest create (or reads
    # from the primary after REPLICA_WAIT_MS).
    Workload("list-after-write", (("create", 1), ("list", 1)), consistency="latest"),
)
NAMES = tuple(workload.name for workload in WORKLOADS)
REPLICA_NAMES = tuple(workload.name for workload in REPLICA_WORKLOADS)
