"""The write side's positions (db/scope.py, db/replication.py): once a replica has replayed a
commit's position it shows the commit, and a position that cannot be read costs the token,
never the committed write."""

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text

from commands.dispatch import dispatch
from commands.tasks import CreateTask
from db.connections import sqlalchemy_url
from db.scope import COMMITTED_AT, WriteSessions
from tests.cluster.conftest import Cluster
from tests.cluster.servers import Server


@pytest.fixture
def primary_engine(cluster: Cluster) -> Iterator[Engine]:
    engine = create_engine(sqlalchemy_url(cluster.app_url(cluster.primary)))
    yield engine
    engine.dispose()


REPLAY_SECONDS = 30.0


def test_a_replica_at_a_writes_position_shows_the_write(
    cluster: Cluster, replica: Server, primary_engine: Engine
) -> None:
    replica.execute("SELECT pg_wal_replay_pause()")
    writes = WriteSessions(primary_engine, positions=True)
    task = dispatch(CreateTask(user_id="positions", title="where"), writes)
    assert COMMITTED_AT.get() is not None
    visible = "SELECT count(*) FROM tasks WHERE user_id = 'positions' AND id = %s"

    assert replica.execute(visible, "tasks", (task.id,)) == [(0,)]
    replica.execute("SELECT pg_wal_replay_resume()")
    caught_up = "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn"
    position = (str(COMMITTED_AT.get()),)
    deadline = time.monotonic() + REPLAY_SECONDS
    while replica.execute(caught_up, params=position) != [(True,)]:
        assert time.monotonic() < deadline, "the replica did not reach the write's position"
        time.sleep(0.01)
    assert replica.execute(visible, "tasks", (task.id,)) == [(1,)]


def test_a_position_that_cannot_be_read_leaves_the_commit_standing(
    cluster: Cluster, replica: Server, caplog: pytest.LogCaptureFixture
) -> None:
    # A replica cannot say where the primary's WAL is: reading the position fails there.
    engine = create_engine(sqlalchemy_url(cluster.app_url(replica)))
    try:
        writes = WriteSessions(engine, positions=True)
        with writes.as_user("positions") as session:
            session.execute(text("SELECT 1"))
            session.commit()
    finally:
        engine.dispose()
    assert COMMITTED_AT.get() is None
    assert "the position of a committed write could not be read" in caplog.text
