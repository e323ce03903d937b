"""A smoke run of the whole benchmark (tiny dataset, about a second per cell), so it cannot rot.

It needs wrk, which the benchmark installs with apt-get when it runs as root; elsewhere, without
wrk, it is skipped (test_bench_dataset.py still sends every kind of request to the service).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.workloads import NAMES, REPLICA_NAMES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REPORT = PROJECT_ROOT / "docs" / "bench-latest.md"
SMOKE_TIMEOUT_SECONDS = 400
HAS_WRK = shutil.which("wrk") is not None or (os.geteuid() == 0 and shutil.which("apt-get"))

pytestmark = pytest.mark.skipif(not HAS_WRK, reason="no wrk, and no root to apt-get install it")


def _text(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def _run_smoke(database_url: str, results: Path, *options: str) -> dict[str, Any]:
    """`python -m bench --smoke [options]` against the test server; its JSON and the report."""
    before = _text(REPORT)
    subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(results), *options],
        cwd=PROJECT_ROOT,
        env=os.environ | {"DATABASE_URL": database_url},
        check=True,
        timeout=SMOKE_TIMEOUT_SECONDS,
    )
    return {"results": json.loads(results.read_text()), "report_before": before}


@pytest.fixture(scope="module")
def smoke(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run_smoke(database_url, tmp_path_factory.mktemp("bench") / "results.json")


@pytest.fixture(scope="module")
def growth(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`--smoke --growth`, `get` only: the growth path end to end, in a few seconds."""
    results = tmp_path_factory.mktemp("bench") / "growth.json"
    return _run_smoke(database_url, results, "--growth", "--workloads", "get")


def _cells(smoke: dict[str, Any], workload: str) -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = smoke["results"]["workloads"][workload]
    return cells


def test_the_smoke_run_reports_every_workload(smoke: dict[str, Any]) -> None:
    assert tuple(smoke["results"]["workloads"]) == NAMES


@pytest.mark.parametrize("workload", NAMES)
def test_every_workload_served_requests_and_pgbench_ran_its_statements(
    smoke: dict[str, Any], workload: str
) -> None:
    for cell in _cells(smoke, workload):
        assert cell["service"]["requests"] > 0, cell["note"]
        assert cell["errors"] == 0
        assert cell["pgbench"]["transactions"] > 0
        assert cell["pgbench"]["failed"] == 0
        assert cell["ratio"] > 0


def test_the_smoke_run_measures_server_cpu_and_memory(smoke: dict[str, Any]) -> None:
    cell = _cells(smoke, "get")[-1]
    assert cell["server_cpu_ms_per_request"] > 0
    assert cell["peak_rss_mb"] > 0


def test_head_of_line_sends_the_heavy_users_searches_meanwhile(smoke: dict[str, Any]) -> None:
    (cell,) = _cells(smoke, "head-of-line")
    assert cell["background"]["requests"] > 0
    assert cell["background"]["non_2xx"] + cell["background"]["socket_errors"] == 0
    targets = {t["target"]: t for t in smoke["results"]["targets"]}
    verdict = targets["other users' `list` p99 while the heavy user searches / `list` alone"]
    assert verdict["status"].startswith(("met", "not met"))


def test_the_smoke_run_leaves_the_generated_report_alone(smoke: dict[str, Any]) -> None:
    assert _text(REPORT) == smoke["report_before"]


def test_the_growth_smoke_run_measures_before_and_after_growing(growth: dict[str, Any]) -> None:
    results = growth["results"]
    base, grown = results["datasets"]
    assert grown["tasks"] == 10 * base["tasks"]
    cells = results["workloads"]["get"]
    assert [cell["tasks"] for cell in cells] == [base["tasks"], grown["tasks"]]
    for cell in cells:
        assert cell["service"]["requests"] > 0
        assert cell["errors"] == 0
        assert cell["pgbench"]["failed"] == 0
    assert len(results["targets"]) == 4


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`--smoke --replica`: the benchmark's own server and a streaming replica of it."""
    results = tmp_path_factory.mktemp("bench") / "replica.json"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--replica", "--json", str(results)],
        cwd=PROJECT_ROOT,
        env=env,
        check=True,
        timeout=SMOKE_TIMEOUT_SECONDS,
    )
    return {"results": json.loads(results.read_text())}


def test_the_replica_run_reads_from_the_primary_then_mostly_from_the_replica(
    replica: dict[str, Any],
) -> None:
    workloads = replica["results"]["workloads"]
    for name in REPLICA_NAMES:
        alone, paired = workloads[f"{name}, primary only"], workloads[f"{name}, primary + replica"]
        for cell in alone + paired:
            assert cell["rps"] > 0
            assert cell["errors"] == 0
        assert all(cell["replica_share_pct"] < 5 for cell in alone)
    # Its reads on the replica, but for the service's checks of it and the token's writes.
    (listed,) = workloads["list, primary + replica"]
    assert listed["replica_share_pct"] > 80
    (after_writes,) = workloads["list-after-write, primary + replica"]
    assert after_writes["replica_share_pct"] > 0


def test_the_replica_run_stops_and_removes_its_replica(replica: dict[str, Any]) -> None:
    pgdata = Path(replica["results"]["config"]["pgdata"])
    assert not (pgdata.parent / "replica").exists()
