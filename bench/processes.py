"""Processes the benchmark starts, stopped by pid however the wait for them ends."""

import logging
import signal
import subprocess
import time
from typing import Any

log = logging.getLogger(__name__)


def stop(process: subprocess.Popen[Any], signum: signal.Signals, timeout: float) -> None:
    """Send `signum` to the pid, then SIGKILL it if it has not exited within `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("pid %s ignored %s; killing it", process.pid, signum.name)
            process.kill()
            process.wait()


def run_at_once(commands: list[list[str]], *, timeout: float) -> list[str]:
    """Start every command, wait for all; their stdouts in order. Leftovers are killed by pid."""
    deadline = time.monotonic() + timeout
    processes: list[subprocess.Popen[str]] = []
    outputs = []
    try:
        for arguments in commands:
            pipe = subprocess.PIPE
            processes.append(subprocess.Popen(arguments, stdout=pipe, stderr=pipe, text=True))  # noqa: S603
        for arguments, process in zip(commands, processes, strict=True):
            stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            if process.returncode not in (0, 2):  # pgbench: 2 when some transactions failed
                raise RuntimeError(f"{arguments[0]} exited {process.returncode}:\n{stderr[-2000:]}")
            outputs.append(stdout)
    finally:
        for process in processes:
            stop(process, signal.SIGKILL, timeout=1)
    return outputs
