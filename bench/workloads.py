"""The workloads of issue 4 and the HTTP requests each sends (SQL: bench/statements.py)."""

import json
import random
from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate
from typing import Literal

from bench.server import Features

Kind = Literal["list", "get", "create", "toggle", "search", "slow_search"]

LIST_LIMIT = 20
HEAD_OF_LINE = "head-of-line"
SEARCH_WORD = "milk"
SLOW_SEARCH_WORD = "dentist"
"""In no generated title or description, so no page fills early: the heavy user's search has to
look at its rows until none is left (docs/PERFORMANCE.md says what that costs)."""
CREATE_BODY = {"title": "bench task", "due_date": "2026-12-31"}


@dataclass(frozen=True)
class Workload:
    name: str
    mix: tuple[tuple[Kind, int], ...]
    """Request kinds and their weights, over the ordinary users."""
    slow_mix: tuple[tuple[Kind, int], ...] = ()
    """Sent at the same time by a few more connections as the heavy user (head-of-line only)."""

    @property
    def kinds(self) -> tuple[Kind, ...]:
        return tuple(kind for kind, _ in self.mix + self.slow_mix)

    def slow_part(self) -> "Workload":
        """The slow requests as a workload of their own, for a load generator of their own."""
        return Workload(self.name + "-slow", self.slow_mix)


# Reads first: the write workloads add and flip rows, and the reads should see the loaded data.
WORKLOADS = (
    Workload("list", (("list", 1),)),
    Workload("get", (("get", 1),)),
    Workload("search", (("search", 1),)),
    # Other users' lists while the heavy user's slow searches run (issue 4's head-of-line target).
    Workload(HEAD_OF_LINE, (("list", 1),), slow_mix=(("slow_search", 1),)),
    Workload("create", (("create", 1),)),
    Workload("toggle", (("toggle", 1),)),
    # 80% reads, 20% writes.
    Workload("mixed", (("list", 40), ("get", 40), ("create", 10), ("toggle", 10))),
)


def unavailable(workload: Workload, features: Features) -> str | None:
    """Why the service cannot run this workload yet, or None when it can."""
    searches = {"search", "slow_search"} & set(workload.kinds)
    if searches and not features.search:
        return "not available: GET /api/{user_id}/tasks has no `q` parameter in /openapi.json"
    return None


def list_query(features: Features) -> str:
    # The issue asks for the 20 newest pending tasks; `limit` is passed once the API has it.
    return "status=pending" + (f"&limit={LIST_LIMIT}" if features.limit else "")


def search_query(features: Features, word: str = SEARCH_WORD) -> str:
    return f"q={word}" + (f"&limit={LIST_LIMIT}" if features.limit else "")


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    """A path with `{user}` and `{task}` placeholders (the Lua script fills them the same way)."""
    body: bytes | None = None


def routes(features: Features) -> dict[Kind, Route]:
    tasks = "/api/{user}/tasks"
    return {
        "list": Route("GET", tasks + "?" + list_query(features)),
        "get": Route("GET", tasks + "/{task}"),
        "create": Route("POST", tasks, json.dumps(CREATE_BODY, separators=(",", ":")).encode()),
        "toggle": Route("PATCH", tasks + "/{task}/complete"),
        "search": Route("GET", tasks + "?" + search_query(features)),
        "slow_search": Route("GET", tasks + "?" + search_query(features, SLOW_SEARCH_WORD)),
    }


@dataclass(frozen=True)
class RequestPlan:
    """Everything a load generator needs to send one workload's requests."""

    workload: Workload
    routes: dict[Kind, Route]
    pairs: list[tuple[str, int]]
    """Real (user_id, task id) pairs sampled from the database."""
    tokens: dict[str, str]
    """A bearer token per sampled user; empty when the service does not ask for one."""

    def chooser(self, seed: int) -> "RequestChooser":
        return RequestChooser(self, random.Random(seed))  # noqa: S311 -- load, not secrets


class RequestChooser:
    """Draws the next request: a kind by weight, then a random real (user, task) pair."""

    def __init__(self, plan: RequestPlan, rng: random.Random) -> None:
        self._plan = plan
        self._rng = rng
        self._kinds = plan.workload.kinds
        self._cumulative = list(accumulate(weight for _, weight in plan.workload.mix))

    def next(self) -> tuple[Route, str, str | None]:
        """The route, the concrete path and the bearer token (if any) of the next request."""
        pick = self._rng.random() * self._cumulative[-1]
        kind = self._kinds[bisect_left(self._cumulative, pick)]
        user, task = self._rng.choice(self._plan.pairs)
        route = self._plan.routes[kind]
        path = route.template.replace("{user}", user).replace("{task}", str(task))
        return route, path, self._plan.tokens.get(user)
