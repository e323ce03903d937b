"""Which server answers a read (db/reads.py, db/replicas.py): replicas in rotation in turn, the
primary when a replica is down, lagging or promoted, and the replica again once it is well."""

import asyncio
import time

from sqlalchemy import text

from db.reads import ReadPool
from db.replicas import Replica
from db.replication import POSITION_NOW_SQL, WalPosition
from tests.cluster.conftest import Cluster
from tests.cluster.servers import Server
from tests.readers import with_pool

WHO_ANSWERS = text(
    "SELECT CASE WHEN pg_is_in_recovery() THEN 'replica' ELSE 'primary' END, inet_server_port()"
)
WAIT_SECONDS = 10.0


async def who_answers(pool: ReadPool, after: WalPosition | None = None) -> tuple[str, int]:
    ((role, port),) = await pool.fetch("alice", WHO_ANSWERS, {}, after)
    return str(role), int(port)


async def until(replica: Replica, in_rotation: bool, reason: str = "") -> None:
    """Wait (boundedly) until the background checks put `replica` in or out of rotation."""
    deadline = time.monotonic() + WAIT_SECONDS
    while replica.state.in_rotation != in_rotation or reason not in replica.state.reason:
        assert time.monotonic() < deadline, replica.state
        await asyncio.sleep(0.02)


def test_reads_go_to_the_replica_once_it_is_checked(cluster: Cluster, replica: Server) -> None:
    async def use(pool: ReadPool) -> list[tuple[str, int]]:
        await until(pool.replicas.all[0], in_rotation=True)
        return [await who_answers(pool) for _ in range(3)]

    assert with_pool(cluster.settings(replica), use) == [("replica", replica.port)] * 3


def written(cluster: Cluster) -> WalPosition:
    """The position a write just committed on the primary would carry as its token."""
    cluster.primary.execute("CREATE TABLE IF NOT EXISTS writes (n int)", "tasks")
    cluster.primary.execute("INSERT INTO writes VALUES (1)", "tasks")
    ((position,),) = cluster.primary.execute(POSITION_NOW_SQL)
    return WalPosition.parse(str(position))


def test_a_read_after_a_replayed_position_is_answered_by_the_replica(
    cluster: Cluster, replica: Server
) -> None:
    async def use(pool: ReadPool) -> tuple[str, int]:
        await until(pool.replicas.all[0], in_rotation=True)
        after = written(cluster)
        cluster.caught_up()
        return await who_answers(pool, after)

    assert with_pool(cluster.settings(replica), use) == ("replica", replica.port)


def test_a_read_after_a_position_not_replayed_waits_then_asks_the_primary(
    cluster: Cluster, replica: Server
) -> None:
    async def use(pool: ReadPool) -> tuple[str, float]:
        await until(pool.replicas.all[0], in_rotation=True)
        replica.execute("SELECT pg_wal_replay_pause()")
        after = written(cluster)
        started = time.monotonic()
        role, _ = await who_answers(pool, after)
        return role, time.monotonic() - started

    role, waited = with_pool(cluster.settings(replica, replica_wait_ms=80), use)
    assert role == "primary"
    assert 0.08 <= waited < 1.0


def test_a_read_after_a_position_replayed_while_it_waits_is_answered_by_the_replica(
    cluster: Cluster, replica: Server
) -> None:
    async def use(pool: ReadPool) -> tuple[str, int]:
        await until(pool.replicas.all[0], in_rotation=True)
        replica.execute("SELECT pg_wal_replay_pause()")
        after = written(cluster)
        resume = asyncio.get_running_loop().call_later(
            0.05, replica.execute, "SELECT pg_wal_replay_resume()"
        )
        try:
            return await who_answers(pool, after)
        finally:
            resume.cancel()

    answer = with_pool(cluster.settings(replica, replica_wait_ms=2000), use)
    assert answer == ("replica", replica.port)


def test_without_replicas_every_read_goes_to_the_primary(cluster: Cluster) -> None:
    async def use(pool: ReadPool) -> tuple[str, int]:
        return await who_answers(pool)

    assert with_pool(cluster.settings(), use) == ("primary", cluster.primary.port)


def test_several_replicas_are_used_in_turn(cluster: Cluster, replica: Server) -> None:
    with cluster.another_replica("second") as second:

        async def use(pool: ReadPool) -> set[tuple[str, int]]:
            for each in pool.replicas.all:
                await until(each, in_rotation=True)
            return {await who_answers(pool) for _ in range(4)}

        answers = with_pool(cluster.settings(replica, second), use)
    assert answers == {("replica", replica.port), ("replica", second.port)}


def test_a_stopped_replica_is_left_for_the_primary_and_used_again_when_back(
    cluster: Cluster, replica: Server
) -> None:
    async def use(pool: ReadPool) -> list[str]:
        watched = pool.replicas.all[0]
        await until(watched, in_rotation=True)
        seen = [(await who_answers(pool))[0]]
        replica.stop()
        # Every read answers, from the first one after the stop on: no error reaches a caller.
        seen += [(await who_answers(pool))[0] for _ in range(5)]
        await until(watched, in_rotation=False, reason="down")
        replica.start()
        await until(watched, in_rotation=True)
        seen.append((await who_answers(pool))[0])
        return seen

    assert with_pool(cluster.settings(replica), use) == ["replica"] + ["primary"] * 5 + ["replica"]


def test_a_lagging_replica_is_out_of_rotation_until_it_catches_up(
    cluster: Cluster, replica: Server
) -> None:
    settings = cluster.settings(replica, replica_max_lag_ms=300)

    async def use(pool: ReadPool) -> list[str]:
        watched = pool.replicas.all[0]
        await until(watched, in_rotation=True)
        replica.execute("SELECT pg_wal_replay_pause()")
        cluster.primary.execute("CREATE TABLE IF NOT EXISTS lag_probe (n int)", "tasks")
        cluster.primary.execute("INSERT INTO lag_probe VALUES (1)", "tasks")
        await until(watched, in_rotation=False, reason="lagging")
        seen = [(await who_answers(pool))[0]]
        replica.execute("SELECT pg_wal_replay_resume()")
        await until(watched, in_rotation=True)
        seen.append((await who_answers(pool))[0])
        return seen

    assert with_pool(settings, use) == ["primary", "replica"]


def test_a_promoted_replica_is_out_of_rotation(cluster: Cluster) -> None:
    with cluster.another_replica("promoted") as promoted:

        async def use(pool: ReadPool) -> tuple[str, str]:
            watched = pool.replicas.all[0]
            await until(watched, in_rotation=True)
            promoted.execute("SELECT pg_promote()")
            await until(watched, in_rotation=False, reason="promoted")
            return (await who_answers(pool))[0], watched.state.reason

        role, reason = with_pool(cluster.settings(promoted), use)
    assert role == "primary"
    assert reason.startswith("promoted")


def test_with_the_primary_down_the_replica_keeps_answering_reads(
    cluster: Cluster, replica: Server
) -> None:
    async def use(pool: ReadPool) -> list[str]:
        watched = pool.replicas.all[0]
        await until(watched, in_rotation=True)
        cluster.primary.stop()
        try:
            await until(watched, in_rotation=True, reason="position is unknown")
            return [(await who_answers(pool))[0] for _ in range(3)]
        finally:
            cluster.primary.start()

    settings = cluster.settings(replica, pool_timeout_seconds=0.5)
    assert with_pool(settings, use) == ["replica"] * 3
