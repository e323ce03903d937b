"""The benchmark's pure parts: percentiles, wrk and pgbench output, scripts, tokens, verdicts,
options; and two wrk processes at once against a loopback server (when wrk is installed)."""

import shlex
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest

from bench import pgbench, wrk
from bench.cli import config_from, parser
from bench.dataset import GENERATE_TASKS_SQL, growth_batches
from bench.results import Cell, Latency, LoadResult, PgbenchResult, percentile
from bench.service import AUDIENCE, ISSUER, BenchAuth
from bench.targets import evaluate
from bench.workloads import HEAVY_USER, HEAVY_WORD, WORKLOADS

PAIRS = [("7", 7), ("8", 8)]
TOKENS = {"7": "token-of-7", "8": "token-of-8", HEAVY_USER: "token-of-heavy"}


def _mix(name: str) -> Any:
    return next(w for w in WORKLOADS if w.name == name).mix


def _latency(p50: float, p99: float) -> Latency:
    return Latency(p50_ms=p50, p99_ms=p99, p999_ms=p99, max_ms=p99)


def _cell(workload: str, *, rps: float, p99: float, tps: float = 1000, **fields: Any) -> Cell:
    connections = fields.pop("connections", 16)
    return Cell(
        workload=workload,
        connections=connections,
        tasks=fields.pop("tasks", 1000),
        service=LoadResult(
            requests=int(rps), seconds=1, non_2xx=0, socket_errors=0, latency=_latency(1, p99)
        ),
        pgbench=PgbenchResult(
            transactions=int(tps), seconds=1, tps=tps, failed=0, latency=_latency(0.5, 2)
        ),
        **fields,
    )


def _verdicts(cells: list[Cell], growth: bool = False) -> dict[str, Any]:
    return {v.target: v for v in evaluate(cells, growth=growth)}


def test_percentiles_are_nearest_rank() -> None:
    values = list(range(1, 1001))
    assert percentile(values, 50) == 500
    assert percentile(values, 99) == 990
    assert percentile(values, 99.9) == 999
    assert percentile([5], 99.9) == 5


def test_wrk_results_count_http_and_socket_errors_apart() -> None:
    line = (
        'BENCH_RESULT {"requests": 1000, "duration_us": 2000000, "connect": 1, "read": 2,'
        ' "write": 0, "status": 3, "timeout": 4, "p50_us": 1500, "p99_us": 9000,'
        ' "p999_us": 12000, "max_us": 15000}'
    )
    result = wrk.parse_output("Running 2s test\n" + line + "\n")
    assert result.rps == 500
    assert (result.non_2xx, result.socket_errors) == (3, 7)
    assert result.latency == Latency(p50_ms=1.5, p99_ms=9, p999_ms=12, max_ms=15)


def test_wrk_output_without_a_result_line_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no result line"):
        wrk.parse_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_the_lua_script_embeds_pairs_routes_weights_and_tokens() -> None:
    script = wrk.lua_script(_mix("mixed"), PAIRS, TOKENS, seed=9)
    assert '{"7", 7}' in script
    assert '["7"] = "token-of-7"' in script
    assert '"/api/{user}/tasks/{task}/complete"' in script
    assert "upto = 100" in script
    assert '"Bearer " .. tokens[user]' in script


def test_the_heavy_search_is_sent_as_the_heavy_user() -> None:
    script = wrk.lua_script(_mix("heavy-search"), PAIRS, TOKENS, seed=1)
    assert f'user = "{HEAVY_USER}"' in script
    assert f"q={HEAVY_WORD}&limit=20" in script


def test_pgbench_summary_gives_tps_and_failures() -> None:
    stdout = (
        "number of transactions actually processed: 5000\n"
        "number of failed transactions: 2 (0.040%)\n"
        "tps = 2500.123456 (without initial connection time)\n"
    )
    result = pgbench.parse(stdout, [1_000_000], seconds=2)
    assert (result.transactions, result.failed, result.tps) == (5000, 2, 2500.123456)
    assert result.latency == _latency(1, 1)


def test_pgbench_latencies_come_from_its_transaction_log(tmp_path: Path) -> None:
    (tmp_path / "pgbench_log.123").write_text("0 1 250 0 1700000000 1\n0 2 failed 0 1 2\n")
    (tmp_path / "pgbench_log.123.1").write_text("1 1 750 0 1700000000 3\n")
    assert sorted(pgbench.read_latencies(tmp_path)) == [250_000, 750_000]


def test_pgbench_names_the_user_and_runs_the_list_in_one_pipeline() -> None:
    lines = pgbench.script("list").splitlines()
    assert "\\set limit 21" in lines  # one row more than the page: the service looks ahead
    pipeline = lines[lines.index("\\startpipeline") + 1 : lines.index("\\endpipeline")]
    assert pipeline[0].startswith("SELECT set_config('app.user_id', :user_id, true)")
    assert "set_config('statement_timeout', '5000ms', true)" in pipeline[0]
    assert "FROM task_list_v WHERE user_id = :user_id AND NOT completed" in pipeline[1]
    assert pipeline[1].endswith("LIMIT :limit;")


def test_pgbench_searches_with_the_word_as_a_literal_pattern() -> None:
    assert "ILIKE '%milk%'" in pgbench.script("search")
    heavy = pgbench.script("heavy_search")
    assert f"ILIKE '%{HEAVY_WORD}%'" in heavy
    assert f"set_config('app.user_id', '{HEAVY_USER}', true)" in heavy
    assert f"user_id = '{HEAVY_USER}'" in heavy
    assert ":user_id" not in heavy


def test_pgbench_writes_are_the_handlers_own_statements_with_pgbench_variables() -> None:
    create, toggle = pgbench.create_sql(), pgbench.toggle_sql()
    assert "INSERT INTO tasks (user_id, id, title," in create
    assert "VALUES (:user_id, (SELECT next_id.last_id \nFROM next_id), 'bench task', NULL" in create
    assert toggle.startswith("UPDATE tasks SET completed=NOT tasks.completed")
    assert "WHERE tasks.user_id = :user_id AND tasks.id = :task_id RETURNING" in toggle
    assert "%(" not in create + toggle


def test_string_binds_become_literals_and_casts_stay() -> None:
    sql = "SELECT :a, :ab::text, x::int FROM t WHERE y = :a"
    inlined = pgbench.inline(sql, {"a": "it's"})
    assert inlined == "SELECT 'it''s', :ab::text, x::int FROM t WHERE y = 'it''s'"


def test_bench_tokens_are_hs256_jwts_for_the_user() -> None:
    auth = BenchAuth(secret="s" * 48)
    token = auth.token("42")
    claims = jwt.decode(token, auth.secret, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert claims["sub"] == "42"


def test_growth_appends_every_missing_row_once_with_the_loaded_spacing() -> None:
    batches = growth_batches(1_000, 3_500, batch=1_000)
    assert [(b.first, b.last) for b in batches] == [(1_001, 2_000), (2_001, 3_000), (3_001, 3_500)]
    assert {(b.scale, b.owner, b.id_offset) for b in batches} == {(1_000, None, 0)}


def test_the_heavy_word_is_in_no_generated_vocabulary() -> None:
    assert HEAVY_WORD not in GENERATE_TASKS_SQL.text


def test_workloads_run_at_their_own_connection_counts_when_configured() -> None:
    by_name = {w.name: w for w in WORKLOADS}
    assert by_name["head-of-line"].counts((1, 16, 64)) == (16,)
    assert by_name["heavy-search"].counts((1, 16, 64)) == (1, 16)
    assert by_name["head-of-line"].counts((2,)) == (2,)
    assert by_name["list"].counts((1, 16, 64)) == (1, 16, 64)
    assert by_name["head-of-line"].needs_heavy_user
    assert by_name["mixed"].writes


def test_ratio_and_p99_verdicts_say_met_or_by_how_much_not() -> None:
    verdicts = _verdicts([_cell("list", rps=200, tps=1000, p99=12)])
    assert verdicts["`list` rate / pgbench rate, 16 connections"].status == "met"
    assert verdicts["`list` p99, 16 connections"].status == "not met (2.0x over)"
    assert verdicts["`get` p99, 16 connections"].status == "not measured"


def test_head_of_line_compares_lists_during_the_searches_with_lists_alone() -> None:
    searches = LoadResult(requests=5, seconds=1, non_2xx=0, socket_errors=0, latency=None)
    alone = _cell("list", rps=900, p99=10)
    label = "other users' `list` p99 while the heavy user searches / `list` alone"
    for p99, status in ((19, "met"), (25, "not met")):
        during = _cell("head-of-line", rps=800, p99=p99, background=searches)
        assert _verdicts([alone, during])[label].status == status
    without_searches = _cell("head-of-line", rps=800, p99=12)
    assert _verdicts([alone, without_searches])[label].status == "not measured"


def test_heavy_search_is_judged_on_pgbench_p50_at_the_fewest_connections() -> None:
    cells = [_cell("heavy-search", rps=100, p99=5, connections=c) for c in (16, 1)]
    verdict = _verdicts(cells)[
        "`heavy-search` p50 in PostgreSQL (pgbench, fewest connections measured)"
    ]
    assert (verdict.measured, verdict.status) == ("0.50 ms", "met")


def test_growth_compares_p50_and_p99_of_list_and_get_at_two_sizes() -> None:
    cells = [
        _cell("list", rps=1, p99=40, tasks=1_000),
        _cell("list", rps=1, p99=80, tasks=10_000),
        _cell("get", rps=1, p99=20, tasks=1_000),
        _cell("get", rps=1, p99=20, tasks=10_000),
    ]
    verdicts = _verdicts(cells, growth=True)
    p99 = verdicts["`list` p99 at the grown size / at 1,000"]
    assert (p99.measured, p99.status) == ("2.00x (40.00 -> 80.00 ms)", "not met")
    assert verdicts["`get` p99 at the grown size / at 1,000"].status == "met"
    assert {v.status for v in evaluate(cells[::2], growth=True)} == {"not measured"}


@pytest.mark.parametrize(
    "argv",
    [
        ["--growth", "--workloads", "create"],
        ["--growth", "--heavy-user-tasks", "10"],
        ["--growth", "--growth-tasks", "1000"],
        ["--heavy-connections", "0"],
        ["--workloads", "nosuch"],
        ["--tasks", "0"],
        ["--users", "-5"],
        ["--workers", "0"],
        ["--replica", "--workloads", "search"],
    ],
)
def test_options_that_cannot_be_honoured_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        config_from(parser().parse_args(argv), argv)


def test_the_options_the_docs_use_are_accepted() -> None:
    argv = shlex.split(
        "--tasks 100000 --users 1000 --duration 10 --warmup 2 --connections 16 --workloads list,get"
        " --workers 2 --no-doc --no-install --json run.json"
    )
    chosen = config_from(parser().parse_args(argv), argv)
    assert (chosen.tasks, chosen.connections, chosen.workloads) == (100_000, (16,), ("list", "get"))
    assert (chosen.report_path, chosen.install_wrk, chosen.json_path) == (
        None,
        False,
        Path("run.json"),
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200 if self.headers.get("Authorization") else 401)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"[]")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def loopback_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_two_wrk_processes_run_at_once_with_tokens(loopback_url: str, tmp_path: Path) -> None:
    loads = []
    for name, connections in (("list", 2), ("heavy-search", 1)):
        script = tmp_path / f"{name}.lua"
        script.write_text(wrk.lua_script(_mix(name), PAIRS, TOKENS, seed=1))
        loads.append((script, connections))
    binary = shutil.which("wrk")
    assert binary is not None
    ordinary, heavy = wrk.run(binary, loads, url=loopback_url, seconds=1)
    assert ordinary.requests > 0
    assert heavy.requests > 0
    assert ordinary.errors == heavy.errors == 0
