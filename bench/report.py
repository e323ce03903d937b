"""The run's report: Markdown (printed, and written whole to its own file) and JSON."""

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.dataset import LoadStats
from bench.results import Cell, Latency, find
from bench.run import Report
from bench.targets import TARGET_CONNECTIONS, Verdict, evaluate
from bench.workloads import HEAVY_MATCHES, HEAVY_USER, HEAVY_WORD, REPLICA_WORKLOADS, ROUTES

RESULT_HEADER = (
    "| workload | conns | req/s | p50 ms | p99 ms | p99.9 ms | errors | pgbench tps"
    " | pgbench p50 / p99 ms | service / pgbench | server CPU ms/req | DB CPU ms/req"
    " (service / pgbench) | worker CPU split % | peak RSS MB/worker | machine busy % | note |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)
LATENCY_HEADER = (
    "| requests | conns | req/s | p50 ms | p99 ms | p99.9 ms | max ms | errors |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|"
)


REPLICA_FACT = (
    "- Replica: a hot standby of the benchmark's server made by `pg_basebackup -R`, streaming on"
    " the same machine; each workload read from the primary alone, then from the replica, inline"
    " reads off in both. What the workloads and the replica's share mean: docs/PERFORMANCE.md"
)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _row(columns: list[str]) -> str:
    return "| " + " | ".join(columns) + " |"


def _latencies(latency: Latency | None, *names: str) -> list[str]:
    return [_num(getattr(latency, name) if latency else None, 2) for name in names]


def _p50_p99(latency: Latency | None) -> str:
    return "-" if latency is None else f"{latency.p50_ms:.2f} / {latency.p99_ms:.2f}"


def result_row(cell: Cell, grown: bool) -> str:
    label = f"{cell.workload} at {cell.tasks:,} tasks" if grown else cell.workload
    service, db, usage, background = cell.service, cell.pgbench, cell.usage, cell.background
    notes = [cell.note] if cell.note else []
    if background is not None:
        searches = f"{background.rps:,.1f} req/s, errors {background.errors}"
        notes.insert(0, f"meanwhile the heavy user's searches: {searches}")
    per_tx = db.db_cpu_ms_per_tx if db else None
    columns = [
        label,
        str(cell.connections),
        _num(service.rps if service else None, 0),
        *_latencies(service.latency if service else None, "p50_ms", "p99_ms", "p999_ms"),
        "-" if service is None else str(service.errors),
        _num(db.tps if db else None, 0),
        _p50_p99(db.latency if db else None),
        _num(cell.ratio, 3),
        _num(cell.server_cpu_ms_per_request, 2),
        f"{_num(cell.db_cpu_ms_per_request, 3)} / {_num(per_tx, 3)}",
        "-" if cell.worker_split is None else "/".join(f"{s:.0f}" for s in cell.worker_split),
        _num(cell.peak_rss_mb, 0),
        _num(usage.machine_busy_pct if usage else None, 0),
        "; ".join(notes),
    ]
    return _row(columns)


def results_table(report: Report) -> str:
    rows = [result_row(cell, grown=len(report.datasets) > 1) for cell in report.cells]
    return "\n".join([RESULT_HEADER, *rows])


def _latency_row(label: str, conns: str, rate: float, latency: Latency | None, errors: int) -> str:
    names = ("p50_ms", "p99_ms", "p999_ms", "max_ms")
    return _row([label, conns, _num(rate), *_latencies(latency, *names), str(errors)])


def head_of_line_table(cells: list[Cell]) -> str | None:
    """Other users' `list` alone and while the heavy user searches, side by side, per count."""
    rows = []
    for during in (c for c in cells if c.workload == "head-of-line" and c.service):
        alone, count = find(cells, "list", during.connections), str(during.connections)
        runs = [
            ("other users' `list`, alone (the `list` row)", count, alone and alone.service),
            ("other users' `list`, while the heavy user searches", count, during.service),
            (f"the heavy user's searches meanwhile, `q={HEAVY_WORD}`", "-", during.background),
        ]
        rows += [_latency_row(label, n, r.rps, r.latency, r.errors) for label, n, r in runs if r]
        if (db := during.pgbench) is not None:
            label = "PostgreSQL's own `list` (pgbench) while a second pgbench searches"
            rows.append(_latency_row(label, count, db.tps, db.latency, db.failed))
    return "\n".join([LATENCY_HEADER, *rows]) if rows else None


def replica_table(cells: list[Cell]) -> str:
    """Each `--replica` workload read from the primary alone and with the replica, side by side."""
    header = (
        "| workload | conns | primary only: req/s, p50 / p99 ms | primary + replica: req/s,"
        " p50 / p99 ms | replica's share of transactions % | errors |\n"
        "|---|---:|---:|---:|---:|---:|"
    )
    rows = []
    for name in (w.name for w in REPLICA_WORKLOADS):
        for alone in (c for c in cells if c.workload == f"{name}, primary only"):
            paired = find(cells, f"{name}, primary + replica", alone.connections)
            share = paired.replica_share_pct if paired else None
            errors = sum(c.errors or 0 for c in (alone, paired) if c)
            runs = [c.service if c else None for c in (alone, paired)]
            figures = [
                f"{r.rps:,.0f}, {_p50_p99(r.latency)}" if r and r.latency else "-" for r in runs
            ]
            rows.append(_row([name, str(alone.connections), *figures, _num(share), str(errors)]))
    return "\n".join([header, *rows])


def verdicts_table(verdicts: list[Verdict]) -> str:
    rows = [_row([v.target, v.required, v.measured, v.status]) for v in verdicts]
    return "\n".join(["| target | required | measured | status |", "|---|---|---|---|", *rows])


def _dataset_fact(data: LoadStats, label: str) -> str:
    heavy = f", plus {data.heavy_user_tasks:,} of user `{HEAVY_USER}` ({HEAVY_MATCHES} of them with"
    heavy += f" `{HEAVY_WORD}` in the title)"
    return (
        f"- {label}: {data.tasks:,} tasks over {data.users:,} users"
        f"{heavy if data.heavy_user_tasks else ''}, written in {data.total_seconds:.1f} s (rows"
        f" {data.insert_seconds:.1f} s, keys and indexes {data.index_seconds:.1f} s, VACUUM"
        f" ANALYZE {data.vacuum_seconds:.1f} s) by {data.method}"
    )


def facts(report: Report) -> str:
    config, machine = report.config, report.machine
    postgres = ", ".join(f"{k}={v}" for k, v in report.postgres.items() if k != "server_version")
    datasets = [_dataset_fact(report.datasets[0], "Dataset")]
    datasets += [_dataset_fact(d, "Then grown") for d in report.datasets[1:]]
    search = ROUTES["heavy_search"].template.replace("{user}", HEAVY_USER)
    pgbench = (
        f"; pgbench -M prepared -j 1, {config.duration:g} s per cell, as taskapi_app, after the"
        " service stops, each transaction naming its user first in one pipelined round trip."
        f" `head-of-line` adds {config.heavy_connections} connection(s) of the heavy user's"
        f" `{search}`, through the service in its cells and as a second pgbench in pgbench's"
    )
    return "\n".join(
        [
            f"- Command: `{config.command}`",
            f"- Date: {report.started_at:%Y-%m-%d %H:%M} UTC; the run took"
            f" {report.elapsed_seconds / 60:.1f} min",
            f"- Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB"
            f" RAM, Linux {machine['kernel']}, Python {machine['python']}; load average at start"
            f" {machine['load_average_at_start']}. Other work may share this machine: `machine"
            " busy %` is the share of all cores busy during each cell, whoever used them.",
            *datasets,
            *([f"- Note: {report.note}"] if report.note else []),
            f"- Service: `taskapi serve --workers {config.workers}`, restarted for each workload,"
            " connected as taskapi_app (row-level security applies); a bearer token (HS256) per"
            " user on every request",
            f"- Load: {report.generator}, one thread, {config.duration:g} s per cell after"
            f" {config.warmup:g} s of warm-up{'' if config.replica else pgbench}",
            f"- PostgreSQL {report.postgres.get('server_version', '?')}: {postgres}",
            *([REPLICA_FACT] if config.replica else []),
        ]
    )


def markdown(report: Report) -> str:
    if report.config.replica:
        replica = "## Primary alone, and with a streaming replica\n\n" + replica_table(report.cells)
        return "\n\n".join([facts(report), replica, "## Results\n\n" + results_table(report)])
    head_of_line = head_of_line_table(report.cells)
    targets = verdicts_table(evaluate(report.cells, growth=report.config.growth))
    parts = [facts(report), "## Results\n\n" + results_table(report)]
    parts += [f"## Head-of-line\n\n{head_of_line}"] if head_of_line else []
    parts += [f"## Targets ({TARGET_CONNECTIONS} connections unless said)\n\n{targets}"]
    return "\n\n".join(parts)


def document(report: Report) -> str:
    """The whole generated file: this run's tables and the pgbench scripts it ran."""
    scripts = [
        f"`{name}`:\n\n```\n{sql.strip()}\n```" for name, sql in report.pgbench_scripts.items()
    ]
    mode = "growth" if report.config.growth else "replica" if report.config.replica else "benchmark"
    title = f"Latest {mode} run"
    notice = "<!-- Generated by `python -m bench`, rewritten whole on every run: do not edit."
    notice += " What the figures mean: docs/PERFORMANCE.md. -->"
    parts = [f"# {title}", notice, markdown(report)]
    parts += ["## pgbench scripts of this run", *scripts] if scripts else []
    return "\n\n".join(parts) + "\n"


def to_json(report: Report) -> dict[str, Any]:
    """Everything the run recorded; Paths and dates become strings when dumped."""
    whole = asdict(report)
    del whole["cells"]
    return whole | {
        "datasets": [asdict(d) | {"total_seconds": d.total_seconds} for d in report.datasets],
        "workloads": {
            name: [cell_json(c) for c in report.cells if c.workload == name]
            for name in dict.fromkeys(c.workload for c in report.cells)
        },
        "targets": [asdict(v) for v in evaluate(report.cells, growth=report.config.growth)],
    }


def cell_json(cell: Cell) -> dict[str, Any]:
    return asdict(cell) | {
        "rps": cell.service.rps if cell.service else None,
        "errors": cell.errors,
        "ratio": cell.ratio,
        "server_cpu_ms_per_request": cell.server_cpu_ms_per_request,
        "db_cpu_ms_per_request": cell.db_cpu_ms_per_request,
        "peak_rss_mb": cell.peak_rss_mb,
        "worker_cpu_split_pct": cell.worker_split,
    }


def write(report: Report, *, json_path: Path, report_path: Path | None) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(to_json(report), indent=2, default=str) + "\n")
    if report_path is not None:
        report_path.write_text(document(report))
