"""`taskapi replica-status`: each read target, its lag, and whether reads go to it."""

import pytest

from api.cli import main
from tests.cluster.conftest import Cluster
from tests.cluster.servers import Server


def status(
    cluster: Cluster,
    replica: Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> list[str]:
    monkeypatch.setenv("DATABASE_URL", cluster.app_url(cluster.primary))
    monkeypatch.setenv("READ_DATABASE_URL", cluster.app_url(replica))
    main(["replica-status"])
    return capsys.readouterr().out.splitlines()


def test_it_shows_a_replaying_replica_in_rotation(
    cluster: Cluster,
    replica: Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cluster.caught_up()
    primary, shown = status(cluster, replica, monkeypatch, capsys)
    assert primary.startswith(f"primary  postgresql://taskapi_app@127.0.0.1:{cluster.primary.port}")
    assert f":{replica.port}/tasks  in rotation  lag 0 ms" in shown


def test_it_shows_a_stopped_replica_out_of_rotation(
    cluster: Cluster,
    replica: Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    replica.stop()
    _, shown = status(cluster, replica, monkeypatch, capsys)
    assert "OUT of rotation" in shown
    assert "(down: " in shown
