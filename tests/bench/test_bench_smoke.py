"""A smoke run of the load benchmark (tiny dataset, about a second per cell), so it cannot rot."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PERFORMANCE_DOC = PROJECT_ROOT / "docs" / "PERFORMANCE.md"
WORKLOADS = {"list", "get", "search", "head-of-line", "create", "toggle", "mixed"}
# The endpoints these workloads use exist today; the searches wait for `q=` (issue 4).
ALWAYS_AVAILABLE = WORKLOADS - {"search", "head-of-line"}
SMOKE_TIMEOUT_SECONDS = 300
HEAD_OF_LINE_TARGET = "other users' `list` p99 while slow searches run"


def _doc_text() -> str | None:
    return PERFORMANCE_DOC.read_text() if PERFORMANCE_DOC.exists() else None


def _run_smoke(database_url: str, results: Path, *options: str) -> dict[str, Any]:
    """Run `python -m bench --smoke [options]` against the test server; its JSON and the doc."""
    doc_before = _doc_text()
    subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(results), *options],
        cwd=PROJECT_ROOT,
        env=os.environ | {"DATABASE_URL": database_url},
        check=True,
        timeout=SMOKE_TIMEOUT_SECONDS,
    )
    return {"results": json.loads(results.read_text()), "doc_before": doc_before}


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
    assert set(smoke["results"]["workloads"]) == WORKLOADS


@pytest.mark.parametrize("workload", sorted(ALWAYS_AVAILABLE))
def test_every_existing_endpoint_served_requests_without_errors(
    smoke: dict[str, Any], workload: str
) -> None:
    for cell in _cells(smoke, workload):
        assert cell["available"], cell["note"]
        assert cell["requests"] > 0
        assert cell["errors"] == 0


@pytest.mark.parametrize("workload", sorted(ALWAYS_AVAILABLE))
def test_pgbench_measured_the_same_workload(smoke: dict[str, Any], workload: str) -> None:
    for cell in _cells(smoke, workload):
        assert cell["pgbench"]["transactions"] > 0
        assert cell["pgbench"]["failed"] == 0
        assert cell["ratio"] > 0


def test_search_runs_when_the_api_has_it_and_says_why_not_otherwise(
    smoke: dict[str, Any],
) -> None:
    has_search = smoke["results"]["features"]["search"]
    for cell in _cells(smoke, "search"):
        if has_search:
            assert cell["requests"] > 0
            assert cell["errors"] == 0
        else:
            assert cell["note"].startswith("not available")


def test_the_smoke_run_measures_server_cpu_and_memory(smoke: dict[str, Any]) -> None:
    cell = _cells(smoke, "get")[-1]
    assert cell["server_cpu_ms_per_request"] > 0
    assert cell["peak_rss_mb"] > 0


def test_the_smoke_run_leaves_the_performance_doc_alone(smoke: dict[str, Any]) -> None:
    assert _doc_text() == smoke["doc_before"]


def test_head_of_line_runs_both_kinds_of_request_when_the_api_can_search(
    smoke: dict[str, Any],
) -> None:
    (cell,) = _cells(smoke, "head-of-line")
    if not smoke["results"]["features"]["search"]:
        assert cell["note"].startswith("not available")
        return
    assert cell["requests"] > 0
    assert cell["errors"] == 0
    assert cell["slow"]["requests"] > 0
    assert cell["slow"]["socket_errors"] + cell["slow"]["non_2xx"] == 0
    assert cell["slow_connections"] >= 1
    assert cell["pgbench"]["transactions"] > 0, cell["note"]  # the database's own lists meanwhile
    assert cell["pgbench"]["failed"] == 0


def test_the_smoke_run_measures_the_slow_search_and_judges_head_of_line(
    smoke: dict[str, Any],
) -> None:
    results = smoke["results"]
    assert results["dataset"]["heavy_user_tasks"] > 0
    assert results["slow_search"]["user"] == "heavy"
    assert results["slow_search"]["execution_ms"] >= 0
    verdict = next(t for t in results["targets"] if t["target"] == HEAD_OF_LINE_TARGET)
    if results["features"]["search"]:
        assert verdict["status"].startswith(("met", "not met"))


def test_the_growth_smoke_run_measures_before_and_after_growing(
    growth: dict[str, Any],
) -> None:
    results = growth["results"]
    assert results["grown"] is not None, results["note"]
    base, grown = results["base"], results["grown"]
    assert grown["dataset"]["tasks"] == 10 * base["dataset"]["tasks"]
    for run in (base, grown):
        (cell,) = run["workloads"]["get"]
        assert cell["requests"] > 0
        assert cell["errors"] == 0
        assert cell["pgbench"]["failed"] == 0
    assert len(results["targets"]) == 4
    assert growth["doc_before"] == _doc_text()
