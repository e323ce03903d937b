"""`python -m bench`: the load benchmark of issue 4 (see docs/PERFORMANCE.md)."""

import argparse
import logging
import shlex
import signal
import sys
from pathlib import Path
from types import FrameType

from bench import report
from bench.config import BenchConfig, config
from bench.run import GrowthReport, run, run_growth
from bench.workloads import WORKLOADS

log = logging.getLogger("bench")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Load-test the service and pgbench on the same SQL; write a report.",
    )
    add = parser.add_argument
    add("--smoke", action="store_true", help="tiny dataset, ~1 s per cell, no doc (for tests)")
    add("--tasks", type=int, help="tasks to load (default 1,000,000)")
    add("--users", type=int, help="users owning them (default 10,000)")
    add("--duration", type=float, help="measured seconds per cell (default 15)")
    add("--warmup", type=float, help="unmeasured seconds before each service cell (default 2)")
    add("--connections", type=_counts, help="comma-separated, e.g. 1,16,64 (the default)")
    add("--workloads", type=_names, help="comma-separated subset, e.g. get,create (default all)")
    add(
        "--heavy-user-tasks",
        type=_count,
        help="tasks of the heavy user the head-of-line workload searches (default 200,000)",
    )
    add(
        "--slow-connections",
        type=_count,
        help="connections sending the heavy user's slow search in head-of-line (default 2)",
    )
    add(
        "--growth",
        action="store_true",
        help="instead: list and get at 16 connections, grow the table to --growth-tasks,"
        " list and get again; writes its own section of the doc",
    )
    add("--growth-tasks", type=int, help="tasks after growing (default 10,000,000)")
    add("--workers", type=int, help="service workers (default: one per core)")
    add("--generator", choices=("auto", "wrk", "python"), help="load generator (default auto)")
    add("--no-install", action="store_true", help="never apt-get install wrk")
    add("--json", type=Path, dest="json_path", help="where to write the JSON results")
    add("--doc", type=Path, dest="doc_path", help="Markdown file whose table to replace")
    add("--no-doc", action="store_true", help="do not touch docs/PERFORMANCE.md")
    add("--database-name", help="database to (re)create for the run (default taskapi_bench)")
    add("--budget-minutes", type=float, help="skip cells that would end later (default 14)")
    add("--seed", type=int, help="dataset and request randomness (default 42)")
    return parser


def _counts(text: str) -> tuple[int, ...]:
    counts = tuple(int(part) for part in text.split(",") if part.strip())
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("expected positive integers such as 1,16,64")
    return counts


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("expected a count, 0 or more")
    return value


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(set(names) - {workload.name for workload in WORKLOADS})
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown workloads {unknown}; expected a subset of list,get,..."
        )
    return names


# Options whose value goes into BenchConfig unchanged when given.
PLAIN_OPTIONS = (
    "tasks",
    "users",
    "duration",
    "warmup",
    "connections",
    "workloads",
    "heavy_user_tasks",
    "slow_connections",
    "growth_tasks",
    "workers",
    "generator",
    "json_path",
    "doc_path",
    "database_name",
    "seed",
)


def config_from(args: argparse.Namespace, argv: list[str]) -> BenchConfig:
    overrides = {name: getattr(args, name) for name in PLAIN_OPTIONS}
    overrides = {name: value for name, value in overrides.items() if value is not None}
    if args.no_install:
        overrides["install_wrk"] = False
    if args.no_doc:
        overrides["doc_path"] = None
    if args.budget_minutes is not None:
        overrides["budget_seconds"] = args.budget_minutes * 60
    overrides["command"] = shlex.join([".venv/bin/python", "-m", "bench", *argv])
    chosen = config(smoke=args.smoke, growth=args.growth, **overrides)
    _check_growth(chosen)
    return chosen


GROWTH_WORKLOADS = {"list", "get"}


def _check_growth(chosen: BenchConfig) -> None:
    if not chosen.growth:
        return
    if not set(chosen.workloads or ()) <= GROWTH_WORKLOADS or not chosen.workloads:
        raise SystemExit("--growth measures list and get only (--workloads list,get or a part)")
    if chosen.heavy_user_tasks:
        raise SystemExit("--growth loads no heavy user: leave out --heavy-user-tasks")
    if chosen.growth_tasks <= chosen.tasks:
        raise SystemExit(f"--growth-tasks must be more than --tasks ({chosen.tasks:,})")


def _stop_on_sigterm(signum: int, _: FrameType | None) -> None:
    # Unwind like Ctrl-C does, so every `finally` stops what the run started.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    config = config_from(parser().parse_args(argv), argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        result = run_growth(config) if config.growth else run(config)
    except KeyboardInterrupt:
        log.error("interrupted; everything the run started has been stopped")
        sys.exit(130)
    if isinstance(result, GrowthReport):
        print(report.growth_markdown(result))
        report.write_growth_json(result, config.json_path)
    else:
        print(report.markdown_tables(result))
        report.write_json(result, config.json_path)
    log.info("JSON written to %s", config.json_path)
    if config.doc_path is not None and not config.smoke:
        if isinstance(result, GrowthReport):
            report.write_growth_doc(result, config.doc_path)
        else:
            report.write_doc(result, config.doc_path)
        log.info("tables written to %s", config.doc_path)
