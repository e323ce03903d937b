"""Load generators started side by side and stopped by pid, however the wait ends."""

import subprocess
import time


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
            if process.poll() is None:
                process.kill()
                process.wait()
    return outputs
