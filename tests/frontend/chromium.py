"""Debian's headless Chromium for the browser test: installed when missing, run by process id."""

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests import debian

# Headless on loopback only: no first-run UI, no update or sync traffic leaving the machine.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--metrics-recording-only",
)


def find_or_install() -> tuple[str | None, str]:
    """Chromium's path, installing Debian's `chromium` package when it is missing."""
    return debian.find_or_install("chromium", lambda: shutil.which("chromium"))


@contextmanager
def browsing(chromium: str, url: str, profile: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Chromium showing `url` headless with its own profile, until the block ends; then it is
    stopped by its process id."""
    command = [chromium, *FLAGS, f"--user-data-dir={profile}", url]
    log = (profile.parent / f"{profile.name}.log").open("wb")
    # Its own process group, whose id is the browser's pid: renderers and the zygote go with it.
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield process
    finally:
        stop(process, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            stop(process, signal.SIGKILL)
            process.wait()
        log.close()


def stop(process: subprocess.Popen[bytes], signal_number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal_number)
