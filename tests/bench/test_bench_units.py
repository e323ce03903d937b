"""The benchmark's pure parts: percentiles, output parsing, plans and verdicts. No database."""

from collections import Counter
from pathlib import Path

import jwt

from bench import pgbench, report, wrk
from bench.auth import AUDIENCE, ISSUER, BenchAuth
from bench.results import Cell, Latency, LoadResult, PgbenchResult, percentile
from bench.server import Features, features_of
from bench.statements import create_sql, inline, pgbench_script, toggle_sql
from bench.targets import evaluate
from bench.workloads import WORKLOADS, RequestPlan, routes

NO_FEATURES = Features(limit=False, search=False, auth=False)
ALL_FEATURES = Features(limit=True, search=True, auth=True)


def _plan(name: str, features: Features = NO_FEATURES) -> RequestPlan:
    workload = next(w for w in WORKLOADS if w.name == name)
    return RequestPlan(workload, routes(features), [("7", 7), ("8", 8)], {"7": "token-of-7"})


def test_percentiles_are_nearest_rank() -> None:
    values = list(range(1, 1001))
    assert percentile(values, 50) == 500
    assert percentile(values, 99) == 990
    assert percentile(values, 99.9) == 999
    assert percentile([5], 99.9) == 5


def test_features_come_from_the_list_endpoints_parameters_and_security() -> None:
    openapi = {
        "paths": {
            "/api/{user_id}/tasks": {
                "get": {
                    "parameters": [
                        {"name": "user_id", "in": "path"},
                        {"name": "limit", "in": "query"},
                    ]
                }
            }
        }
    }
    assert features_of(openapi) == Features(limit=True, search=False, auth=False)
    assert features_of({}) == NO_FEATURES


def test_the_list_request_asks_for_20_only_when_the_api_takes_a_limit() -> None:
    assert routes(NO_FEATURES)["list"].template == "/api/{user}/tasks?status=pending"
    assert routes(ALL_FEATURES)["list"].template.endswith("status=pending&limit=20")


def test_the_mixed_workload_is_80_percent_reads() -> None:
    chooser = _plan("mixed").chooser(seed=1)
    methods = Counter(chooser.next()[0].method for _ in range(20_000))
    assert 0.78 < methods["GET"] / 20_000 < 0.82


def test_requests_use_the_sampled_pairs() -> None:
    route, path, token = _plan("toggle").chooser(seed=1).next()
    assert route.method == "PATCH"
    assert (path, token) in {
        ("/api/7/tasks/7/complete", "token-of-7"),
        ("/api/8/tasks/8/complete", None),
    }


def test_pgbench_list_script_is_the_services_statement_with_its_page_size() -> None:
    script = pgbench_script("list", ALL_FEATURES, row_security=False)
    assert script is not None
    assert "FROM task_list_v WHERE user_id = :user_id AND NOT completed" in script
    # One row more than the page of 20: the service looks ahead for a next page.
    assert "\\set limit 21" in script
    assert script.rstrip().endswith("LIMIT :limit;")


def test_under_row_security_pgbench_names_the_user_in_the_same_pipeline() -> None:
    script = pgbench_script("get", NO_FEATURES, row_security=True)
    assert script is not None
    lines = script.splitlines()
    pipeline = lines[lines.index("\\startpipeline") : lines.index("\\endpipeline")]
    assert pipeline[1].startswith("SELECT set_config('app.user_id', :user_id, true)")
    assert "set_config('statement_timeout', '5000ms', true)" in pipeline[1]
    assert "FROM task_list_v WHERE user_id = :user_id AND id = :task_id" in pipeline[2]


def test_search_runs_the_list_statement_with_the_word_as_a_literal_pattern() -> None:
    script = pgbench_script("search", ALL_FEATURES, row_security=False)
    assert script is not None
    assert "ILIKE '%milk%'" in script
    assert pgbench_script("search", NO_FEATURES, row_security=False) is None


def test_string_binds_become_literals_and_casts_stay() -> None:
    sql = "SELECT :a, :ab::text, x::int FROM t WHERE y = :a"
    assert (
        inline(sql, {"a": "it's"}) == "SELECT 'it''s', :ab::text, x::int FROM t WHERE y = 'it''s'"
    )


def test_the_lua_script_sends_each_users_token() -> None:
    script = wrk.lua_script(_plan("get"), max_requests=1, seed=1)
    assert '["7"] = "token-of-7"' in script
    assert 'headers["Authorization"] = "Bearer " .. token' in script


def test_bench_tokens_are_hs256_jwts_for_the_user() -> None:
    auth = BenchAuth(secret="s" * 48)
    claims = jwt.decode(
        auth.token("42"), auth.secret, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER
    )
    assert claims["sub"] == "42"


def test_the_lua_script_embeds_pairs_routes_and_the_request_cap() -> None:
    script = wrk.lua_script(_plan("mixed"), max_requests=123, seed=9)
    assert '{"7", 7}' in script
    assert '"/api/{user}/tasks/{task}/complete"' in script
    assert "local max_requests = 123" in script
    assert "upto = 100" in script


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


def test_pgbench_latencies_come_from_its_transaction_log(tmp_path: Path) -> None:
    (tmp_path / "pgbench_log.123").write_text("0 1 250 0 1700000000 1\n0 2 failed 0 1 2\n")
    (tmp_path / "pgbench_log.123.1").write_text("1 1 750 0 1700000000 3\n")
    assert sorted(pgbench.read_latencies(tmp_path)) == [250_000, 750_000]


def test_pgbench_summary_gives_tps_and_failures() -> None:
    stdout = (
        "number of transactions actually processed: 5000\n"
        "number of failed transactions: 2 (0.040%)\n"
        "tps = 2500.123456 (without initial connection time)\n"
    )
    result = pgbench.parse(stdout, [1_000_000], seconds=2)
    assert (result.transactions, result.failed, result.tps) == (5000, 2, 2500.123456)


def test_the_doc_block_is_replaced_and_the_text_around_it_kept() -> None:
    document = f"# Performance\n\nintro\n\n{report.BEGIN}\nold\n{report.END}\n\nnotes\n"
    updated = report.replace_block(document, f"{report.BEGIN}\nnew\n{report.END}")
    assert "intro" in updated
    assert "notes" in updated
    assert "new" in updated
    assert "old" not in updated


def _cell(workload: str, rps: float, tps: float, p99_ms: float) -> Cell:
    latency = Latency(p50_ms=1, p99_ms=p99_ms, p999_ms=p99_ms, max_ms=p99_ms)
    return Cell(
        workload=workload,
        connections=16,
        service=LoadResult(
            generator="wrk",
            requests=int(rps),
            seconds=1,
            non_2xx=0,
            socket_errors=0,
            latency=latency,
        ),
        pgbench=PgbenchResult(
            transactions=int(tps),
            seconds=1,
            tps=tps,
            failed=0,
            latency=latency,
            db_cpu_ms_per_tx=None,
        ),
    )


def test_verdicts_say_met_or_by_how_much_not() -> None:
    verdicts = {v.target: v for v in evaluate([_cell("list", 200, 1000, 12)])}
    ratio = verdicts["`list` rate / pgbench rate, 16 connections"]
    p99 = verdicts["`list` p99, 16 connections"]
    assert ratio.status == "met"
    assert p99.status == "not met (2.0x over)"
    assert verdicts["`get` p99, 16 connections"].status == "not measured"


def test_pgbench_writes_are_the_handlers_own_statements_with_pgbench_variables() -> None:
    create, toggle = create_sql(), toggle_sql()

    assert create.startswith("WITH next_id AS \n(INSERT INTO task_counters (user_id, last_id)")
    assert "INSERT INTO tasks (user_id, id, title," in create
    assert "VALUES (:user_id, (SELECT next_id.last_id \nFROM next_id), 'bench task', NULL" in create
    assert toggle.startswith("UPDATE tasks SET completed=NOT tasks.completed")
    assert "WHERE tasks.user_id = :user_id AND tasks.id = :task_id RETURNING" in toggle
    assert "%(" not in create + toggle
