"""A real primary and streaming replica for the whole run of tests/cluster (see servers.py).

Every test here is marked `cluster`: it runs in `make test` and `.ci/run` like the rest, and
`-m "not cluster"` leaves the cluster unstarted.
"""

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from api.settings import Settings
from db import embedded
from db.migrate import upgrade
from tests.cluster.servers import Server, own, replayed_up_to, start_primary, start_replica

DATABASE = "tasks"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.cluster)


@dataclass
class Cluster:
    workdir: Path
    primary: Server
    replica: Server

    def app_url(self, server: Server) -> str:
        """The tasks database on `server`, as the service's role (loopback trusts it)."""
        return server.url(DATABASE, embedded.APP_ROLE)

    def caught_up(self, replica: Server | None = None) -> None:
        replayed_up_to(replica or self.replica, self.primary)

    @contextmanager
    def another_replica(self, name: str) -> Iterator[Server]:
        """A second replica for one test (promoted, say), stopped and removed after it."""
        server = start_replica(self.primary, self.workdir, name)
        try:
            self.caught_up(server)
            yield server
        finally:
            server.stop()
            shutil.rmtree(server.pgdata, ignore_errors=True)

    def settings(self, *replicas: Server, **overrides: Any) -> Settings:
        """The service on this cluster: writes on the primary, reads on `replicas`."""
        values: dict[str, Any] = {
            "database_url": self.app_url(self.primary),
            "read_database_url": ",".join(self.app_url(replica) for replica in replicas),
            "auth_mode": "none",
            "replica_check_ms": 100,
            "replica_max_lag_ms": 60_000,
            **overrides,
        }
        return Settings(**values)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    workdir = own(Path(tempfile.mkdtemp(prefix="taskapi-cluster-")))
    servers: list[Server] = []
    try:
        servers.append(start_primary(workdir))
        primary = servers[0]
        servers.append(start_replica(primary, workdir, "replica"))
        primary.execute(f'CREATE DATABASE "{DATABASE}"')
        embedded.ensure_app_role(primary.url())
        upgrade(primary.url(DATABASE))  # streamed to the replica like any other write
        cluster = Cluster(workdir, primary, servers[1])
        cluster.caught_up()
        yield cluster
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def replica(cluster: Cluster) -> Iterator[Server]:
    """The replica, running and replaying when the test starts and again when it ends."""
    cluster.replica.start()
    yield cluster.replica
    cluster.replica.start()
    cluster.replica.execute("SELECT pg_wal_replay_resume()")
    cluster.caught_up()
