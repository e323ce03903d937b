"""The test cluster itself: the replica streams the primary's writes and refuses its own."""

import psycopg
import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.servers import Server


def test_the_replica_replays_what_the_primary_commits(cluster: Cluster, replica: Server) -> None:
    cluster.primary.execute("CREATE TABLE IF NOT EXISTS streamed (n int)", "tasks")
    cluster.primary.execute("INSERT INTO streamed VALUES (42)", "tasks")
    cluster.caught_up()
    assert (42,) in replica.execute("SELECT n FROM streamed", "tasks")


def test_the_replica_is_read_only(replica: Server) -> None:
    assert replica.execute("SELECT pg_is_in_recovery()") == [(True,)]
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        replica.execute("CREATE TABLE refused (n int)", "tasks")
