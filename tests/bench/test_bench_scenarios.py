"""The head-of-line and growth scenarios' pure parts: dataset batches, requests, verdicts, report.

No database; the two load generators run against a loopback HTTP server started here.
"""

import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bench import pyload, report, wrk
from bench.cli import config_from, parser
from bench.config import BenchConfig, config
from bench.dataset import HEAVY_USER, LoadStats, Rows, generate_sql, growth_batches
from bench.explain import SearchCost, summarise
from bench.loadgen import Wrk
from bench.results import Cell, Latency, LoadResult
from bench.run import GrowthReport, RunReport, growth_estimate
from bench.server import Features
from bench.targets import evaluate, evaluate_growth, head_of_line_verdict
from bench.workloads import (
    HEAD_OF_LINE,
    SLOW_SEARCH_WORD,
    WORKLOADS,
    RequestPlan,
    routes,
    unavailable,
)

ALL_FEATURES = Features(limit=True, search=True, auth=True)
NO_SEARCH = Features(limit=True, search=False, auth=True)
HEAD_OF_LINE_WORKLOAD = next(w for w in WORKLOADS if w.name == HEAD_OF_LINE)


def _result(p50: float, p99: float, *, rps: float = 100, errors: int = 0) -> LoadResult:
    return LoadResult(
        generator="wrk",
        requests=int(rps),
        seconds=1,
        non_2xx=errors,
        socket_errors=0,
        latency=Latency(p50_ms=p50, p99_ms=p99, p999_ms=p99, max_ms=p99),
    )


def _head_of_line_cell(p99: float, slow: LoadResult | None) -> Cell:
    return Cell(
        workload=HEAD_OF_LINE,
        connections=16,
        service=_result(5, p99, rps=800),
        slow=slow,
        slow_connections=2,
    )


def _stats(tasks: int, heavy: int = 0) -> LoadStats:
    return LoadStats(
        tasks=tasks,
        users=10_000,
        heavy_user_tasks=heavy,
        method="generated",
        insert_seconds=2,
        index_seconds=10,
        vacuum_seconds=1,
    )


def _run_report(cells: list[Cell], tasks: int = 1_000_000, heavy: int = 200_000) -> RunReport:
    return RunReport(
        config=BenchConfig(),
        started_at=datetime(2026, 11, 29, tzinfo=UTC),
        elapsed_seconds=60,
        machine={
            "nproc": 2,
            "cpu": "test",
            "memory_gib": 1,
            "kernel": "6",
            "python": "3.11",
            "load_average_at_start": [0.1],
        },
        postgres={"server_version": "18"},
        dataset=_stats(tasks, heavy),
        generator="wrk",
        features=ALL_FEATURES,
        service_role="taskapi_app, the service's own role",
        row_security=True,
        pgbench_scripts={},
        cells=cells,
        slow_search=SearchCost(
            user=HEAVY_USER,
            word=SLOW_SEARCH_WORD,
            role="taskapi_app",
            execution_ms=54.2,
            rows_examined=200_001,
            rows_returned=0,
            plan="Limit > Sort > Bitmap Heap Scan",
        ),
    )


# The dataset


def test_the_heavy_user_owns_the_ids_after_the_ordinary_tasks() -> None:
    stats = _stats(1_000_000, heavy=200_000)
    assert stats.last_id == 1_200_000
    assert not HEAVY_USER.isdigit()  # no pgbench arithmetic and no sampled pair lands on it


def test_one_owner_rows_name_their_user_and_ordinary_rows_compute_theirs() -> None:
    heavy = generate_sql(Rows(first=1, last=10, id_offset=100, scale=10, owner=HEAVY_USER))
    ordinary = generate_sql(Rows(first=1, last=10, scale=10))
    assert "CAST(:owner AS text)" in heavy
    assert "(1 + (id - 1) % :users)::text" in ordinary
    assert "i + :id_offset AS id" in ordinary


def test_growth_appends_every_missing_row_once_with_the_loaded_spacing() -> None:
    batches = growth_batches(1_000, 3_500, batch=1_000)
    assert [(b.first, b.last) for b in batches] == [(1_001, 2_000), (2_001, 3_000), (3_001, 3_500)]
    assert {(b.scale, b.owner, b.id_offset) for b in batches} == {(1_000, None, 0)}


def test_growth_is_estimated_from_the_first_load_with_a_margin() -> None:
    assert growth_estimate(_stats(1_000_000), 10_000_000) == pytest.approx(13 * 10 * 1.5)


# Requests


def test_head_of_line_lists_for_ordinary_users_and_searches_for_the_heavy_one() -> None:
    assert HEAD_OF_LINE_WORKLOAD.mix == (("list", 1),)
    slow = HEAD_OF_LINE_WORKLOAD.slow_part()
    assert slow.kinds == ("slow_search",)
    assert slow.name == "head-of-line-slow"
    template = routes(ALL_FEATURES)["slow_search"].template
    assert template == f"/api/{{user}}/tasks?q={SLOW_SEARCH_WORD}&limit=20"


def test_the_slow_search_word_is_in_no_generated_title_or_description() -> None:
    sql = generate_sql(Rows(first=1, last=1, scale=1)).lower()
    assert SLOW_SEARCH_WORD not in sql


def test_head_of_line_needs_the_search_parameter() -> None:
    reason = unavailable(HEAD_OF_LINE_WORKLOAD, NO_SEARCH)
    assert reason is not None
    assert reason.startswith("not available")
    assert unavailable(HEAD_OF_LINE_WORKLOAD, ALL_FEATURES) is None


def test_slow_requests_go_to_the_heavy_user_with_its_token() -> None:
    plan = RequestPlan(
        HEAD_OF_LINE_WORKLOAD.slow_part(),
        routes(ALL_FEATURES),
        [(HEAVY_USER, 1_200_000)],
        {HEAVY_USER: "token-of-heavy"},
    )
    route, path, token = plan.chooser(seed=3).next()
    assert (route.method, token) == ("GET", "token-of-heavy")
    assert path == f"/api/heavy/tasks?q={SLOW_SEARCH_WORD}&limit=20"
    script = wrk.lua_script(plan, max_requests=10, seed=1)
    assert '{"heavy", 1200000}' in script


# Verdicts


def test_head_of_line_is_met_under_20_ms_and_says_by_how_much_otherwise() -> None:
    slow = _result(300, 900, rps=4)
    assert head_of_line_verdict(_head_of_line_cell(12, slow)).status == "met"
    missed = head_of_line_verdict(_head_of_line_cell(50, slow))
    assert missed.status == "not met (2.5x over)"
    assert missed.measured.startswith("50.0 ms (16 connections; meanwhile 2 slow: 4.0 req/s")


def test_head_of_line_is_not_measured_unless_slow_searches_completed() -> None:
    assert head_of_line_verdict(_head_of_line_cell(12, None)).status.startswith("not measured")
    assert head_of_line_verdict(None).status == "not measured (workload not run)"
    skipped = Cell(workload=HEAD_OF_LINE, connections=16, note="skipped: time budget")
    assert head_of_line_verdict(skipped).status == "not measured (skipped: time budget)"


def test_slow_search_errors_count_as_errors() -> None:
    cell = _head_of_line_cell(12, _result(300, 900, rps=4, errors=3))
    verdicts = {v.target: v for v in evaluate([cell])}
    assert verdicts["errors in every workload"].status == "not met"
    assert verdicts["other users' `list` p99 while slow searches run"].status == "met"


def _growth_cell(workload: str, p50: float, p99: float) -> Cell:
    return Cell(workload=workload, connections=16, service=_result(p50, p99))


def test_growth_compares_p50_and_p99_of_list_and_get() -> None:
    base = [_growth_cell("list", 10, 40), _growth_cell("get", 5, 20)]
    grown = [_growth_cell("list", 12, 80), _growth_cell("get", 5, 20)]
    verdicts = evaluate_growth(base, grown, base_tasks=1_000_000, grown_tasks=10_000_000)
    by_label = {v.target: v for v in verdicts}
    p99 = by_label["`list` p99 at 10,000,000 tasks / at 1,000,000, 16 connections"]
    assert (p99.measured, p99.status) == ("2.00x (40.00 -> 80.00 ms)", "not met")
    p50 = by_label["`list` p50 at 10,000,000 tasks / at 1,000,000, 16 connections"]
    assert p50.status == "met"
    assert [v.status for v in verdicts[2:]] == ["met", "met"]


def test_growth_is_not_measured_when_the_table_was_not_grown() -> None:
    base = [_growth_cell("list", 10, 40), _growth_cell("get", 5, 20)]
    verdicts = evaluate_growth(base, None, base_tasks=1_000_000, grown_tasks=10_000_000)
    assert {v.status for v in verdicts} == {"not measured"}


def test_the_default_run_points_to_the_growth_run() -> None:
    growth = next(v for v in evaluate([]) if v.target.startswith("`list` and `get` latency"))
    assert "--growth" in growth.status


# EXPLAIN


def _plan_json(execution_ms: float) -> dict[str, Any]:
    heap = {
        "Node Type": "Bitmap Heap Scan",
        "Actual Rows": 0,
        "Actual Loops": 3,
        "Rows Removed by Filter": 66667,
        "Plans": [{"Node Type": "Bitmap Index Scan", "Index Name": "tasks_user_tags_idx"}],
    }
    gather = {"Node Type": "Gather Merge", "Plans": [{"Node Type": "Result", "Plans": [heap]}]}
    limit = {"Node Type": "Limit", "Actual Rows": 0, "Actual Loops": 1, "Plans": [gather]}
    return {"Plan": limit, "Execution Time": execution_ms}


def test_the_slow_search_cost_is_the_median_and_counts_rows_over_all_workers() -> None:
    cost = summarise(
        [_plan_json(90), _plan_json(50), _plan_json(60)], user="heavy", word="x", role="app"
    )
    assert cost.execution_ms == 60
    assert cost.rows_examined == 200_001
    assert cost.rows_returned == 0
    assert cost.plan == (
        "Limit > Gather Merge > Bitmap Heap Scan > Bitmap Index Scan (tasks_user_tags_idx)"
    )


# Report


def test_the_head_of_line_row_names_the_slow_searches_in_its_note() -> None:
    row = report.result_row(_head_of_line_cell(12, _result(300, 900, rps=4)))
    assert "meanwhile 2 connection(s) of the heavy user's slow search: 4.0 req/s" in row
    assert "p50 / p99 300.0 / 900.0 ms, errors 0" in row


def test_the_head_of_line_table_puts_list_alone_next_to_list_meanwhile() -> None:
    alone = Cell(workload="list", connections=16, service=_result(4, 10, rps=900))
    cells = [alone, _head_of_line_cell(12, _result(300, 900, rps=4))]
    table = report.head_of_line_table(_run_report(cells))
    assert table is not None
    lines = table.splitlines()
    assert lines[2].startswith("| other users' `list`, alone (the `list` row) | 16 | 900.0 | 4.00")
    assert lines[3].startswith("| other users' `list`, while the heavy user searches | 16 | 800.0")
    assert lines[4].startswith(f"| the heavy user's search, `q={SLOW_SEARCH_WORD}` | 2 | 4.0")
    assert report.head_of_line_table(_run_report([alone])) is None


def test_the_facts_say_what_the_slow_search_costs() -> None:
    facts = report.facts(_run_report([]))
    assert "plus 200,000 of user `heavy` (head-of-line)" in facts
    assert "costs PostgreSQL 54.2 ms per request (EXPLAIN ANALYZE as taskapi_app" in facts
    assert "examines about 200,000 rows" in facts


def test_the_growth_block_has_its_own_markers_and_leaves_the_run_block_alone() -> None:
    base = _run_report([_growth_cell("list", 10, 40)], heavy=0)
    grown = replace(base, dataset=_stats(10_000_000), cells=[_growth_cell("list", 11, 44)])
    growth = GrowthReport(base=base, grown=grown)
    document = (
        f"# Performance\n\n{report.BEGIN}\nrun\n{report.END}\n\n"
        f"{report.GROWTH_BEGIN}\nold\n{report.GROWTH_END}\n"
    )
    updated = report.replace_block(
        document, report.growth_doc_block(growth), report.GROWTH_BEGIN, report.GROWTH_END
    )
    assert f"{report.BEGIN}\nrun\n{report.END}" in updated
    assert "old" not in updated
    assert "| list at 10,000,000 tasks | 16 |" in updated
    assert "1.10x (40.00 -> 44.00 ms)" in updated
    assert report.growth_json(growth)["grown"]["dataset"]["tasks"] == 10_000_000


# Options


def test_growth_defaults_measure_list_and_get_at_16_without_a_heavy_user() -> None:
    chosen = config(smoke=False, growth=True)
    assert (chosen.workloads, chosen.connections, chosen.heavy_user_tasks) == (
        ("list", "get"),
        (16,),
        0,
    )
    assert chosen.database_name != BenchConfig().database_name
    assert chosen.json_path != BenchConfig().json_path


@pytest.mark.parametrize(
    "argv",
    [
        ["--growth", "--workloads", "create"],
        ["--growth", "--heavy-user-tasks", "10"],
        ["--growth", "--growth-tasks", "1000"],
    ],
)
def test_growth_refuses_options_it_cannot_honour(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        config_from(parser().parse_args(argv), argv)


def test_the_heavy_user_and_slow_connections_are_options() -> None:
    argv = ["--heavy-user-tasks", "1000", "--slow-connections", "3"]
    chosen = config_from(parser().parse_args(argv), argv)
    assert (chosen.heavy_user_tasks, chosen.slow_connections) == (1000, 3)


# Two load generators at once, against a loopback server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"[]" if "q=" in self.path else b"{}"
        self.send_response(200 if self.headers.get("Authorization") else 401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def loopback_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _loads() -> list[tuple[RequestPlan, int]]:
    ordinary = RequestPlan(
        HEAD_OF_LINE_WORKLOAD, routes(ALL_FEATURES), [("7", 7)], {"7": "token-of-7"}
    )
    slow = RequestPlan(
        HEAD_OF_LINE_WORKLOAD.slow_part(),
        routes(ALL_FEATURES),
        [(HEAVY_USER, 9)],
        {HEAVY_USER: "token-of-heavy"},
    )
    return [(ordinary, 2), (slow, 1)]


def test_the_python_generator_runs_both_plans_at_once(loopback_port: int) -> None:
    ordinary, slow = pyload.run_together(
        _loads(), port=loopback_port, seconds=0.5, max_requests=200
    )
    for result in (ordinary, slow):
        assert 0 < result.requests <= 200
        assert result.errors == 0
        assert result.seconds < 5


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_two_wrk_processes_run_at_once_and_are_gone_afterwards(
    loopback_port: int, tmp_path: Path
) -> None:
    scripts = []
    for plan, connections in _loads():
        script = tmp_path / f"{plan.workload.name}.lua"
        script.write_text(wrk.lua_script(plan, max_requests=500, seed=1))
        scripts.append((script, connections))
    binary = shutil.which("wrk")
    assert binary is not None
    ordinary, slow = wrk.run_together(
        binary, scripts, url=f"http://127.0.0.1:{loopback_port}", threads=1, seconds=1
    )
    assert ordinary.requests > 0
    assert slow.requests > 0
    assert ordinary.errors == slow.errors == 0


def test_a_new_plan_of_the_same_workload_gets_a_new_wrk_script(tmp_path: Path) -> None:
    # After growing, `list` runs again with pairs drawn from the grown table.
    generator = Wrk("true", replace(BenchConfig(), work_dir=tmp_path))
    before = RequestPlan(HEAD_OF_LINE_WORKLOAD, routes(ALL_FEATURES), [("7", 7)], {})
    after = RequestPlan(HEAD_OF_LINE_WORKLOAD, routes(ALL_FEATURES), [("7", 9_000_007)], {})
    assert '{"7", 7}' in generator._script(before).read_text()
    assert '{"7", 9000007}' in generator._script(after).read_text()
