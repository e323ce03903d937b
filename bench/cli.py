"""`python -m bench`: the load benchmark (see docs/PERFORMANCE.md)."""

import argparse
import logging
import os
import shlex
import signal
import sys
from pathlib import Path
from types import FrameType

from bench import report
from bench.config import BenchConfig, config
from bench.run import run
from bench.workloads import NAMES, REPLICA_NAMES

log = logging.getLogger("bench")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Load-test the service with wrk and pgbench on the same SQL; write a report.",
    )
    add = parser.add_argument
    add("--smoke", action="store_true", help="tiny dataset, ~1 s per cell, no report (for tests)")
    add("--tasks", type=_positive, help="tasks to load (default 1,000,000)")
    add("--users", type=_positive, help="users owning them (default 10,000)")
    add("--duration", type=float, help="measured seconds per cell (default 15)")
    add("--warmup", type=float, help="unmeasured seconds before each service cell (default 2)")
    add("--connections", type=_counts, help="comma-separated, e.g. 1,16,64 (the default)")
    add("--workloads", type=_names, help=f"comma-separated subset of {','.join(NAMES)}")
    add("--heavy-user-tasks", type=_count, help="tasks of the heavy user (default 200,000)")
    add("--heavy-connections", type=_positive, help="its searches in head-of-line (default 2)")
    growth = "instead: list and get, grow the table to --growth-tasks, list and get again"
    add("--growth", action="store_true", help=growth + " (docs/bench-growth.md)")
    add("--growth-tasks", type=_positive, help="tasks after growing (default 10,000,000)")
    replica = "instead: list on the primary alone, then with a streaming replica and tokens"
    add("--replica", action="store_true", help=replica + " (docs/bench-replica.md)")
    add("--workers", type=_positive, help="service workers (default: one per core)")
    add("--no-install", dest="install_wrk", action="store_false", help="never apt-get install wrk")
    add("--json", type=Path, dest="json_path", help="where to write the JSON results")
    add("--report", type=Path, dest="report_path", help="the generated Markdown report's path")
    add("--no-doc", action="store_true", help="write no Markdown report (JSON only)")
    add("--database-name", help="database to (re)create for the run (default taskapi_bench)")
    add("--budget-minutes", type=float, help="skip cells that would end later (default 14)")
    add("--seed", type=int, help="dataset and request randomness (default 42)")
    return parser


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return int(text)


def _count(text: str) -> int:
    return 0 if text == "0" else _positive(text)


def _counts(text: str) -> tuple[int, ...]:
    return tuple(_positive(part) for part in text.split(","))


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split(","))  # checked against the mode's workloads in config_from


def config_from(args: argparse.Namespace, argv: list[str]) -> BenchConfig:
    # Options named as BenchConfig's fields go into it unchanged when given (the two modes pick
    # their defaults in `config`).
    plain = BenchConfig.__dataclass_fields__.keys() - {"smoke", "growth", "replica"}
    overrides = {k: v for k, v in vars(args).items() if k in plain and v is not None}
    if args.no_doc:
        overrides["report_path"] = None
    if args.budget_minutes is not None:
        overrides["budget_seconds"] = args.budget_minutes * 60
    overrides["command"] = shlex.join([".venv/bin/python", "-m", "bench", *argv])
    chosen = config(smoke=args.smoke, growth=args.growth, replica=args.replica, **overrides)
    names = REPLICA_NAMES if chosen.replica else NAMES
    if not set(chosen.workloads or ()) <= set(names):
        raise SystemExit(f"this mode's workloads are {','.join(names)}")
    if chosen.replica and (chosen.growth or os.environ.get("DATABASE_URL")):
        raise SystemExit(
            "--replica copies the benchmark's own server: no --growth, no DATABASE_URL"
        )
    if chosen.growth:
        if not chosen.workloads or not set(chosen.workloads) <= {"list", "get"}:
            raise SystemExit("--growth measures list and get only (--workloads list,get or a part)")
        if chosen.heavy_user_tasks:
            raise SystemExit("--growth loads no heavy user: leave out --heavy-user-tasks")
        if chosen.growth_tasks <= chosen.tasks:
            raise SystemExit(f"--growth-tasks must be more than --tasks ({chosen.tasks:,})")
    return chosen


def _stop_on_sigterm(signum: int, _: FrameType | None) -> None:
    # Unwind like Ctrl-C does, so every `finally` stops what the run started.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)  # the benchmark's own progress; libraries only warn
    argv = sys.argv[1:] if argv is None else argv
    chosen = config_from(parser().parse_args(argv), argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        result = run(chosen)
    except KeyboardInterrupt:
        log.error("interrupted; everything the run started has been stopped")
        sys.exit(130)
    print(report.markdown(result))
    report.write(result, json_path=chosen.json_path, report_path=chosen.report_path)
    log.info("JSON written to %s; report: %s", chosen.json_path, chosen.report_path or "none")
