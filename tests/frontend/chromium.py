"""Debian's headless Chromium for the browser test: installed when missing, run by process id."""

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

APT_SECONDS = 900
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
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


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", *args],
        env=os.environ | APT_ENV,
        capture_output=True,
        text=True,
        timeout=APT_SECONDS,
        check=False,
    )


def find_or_install() -> tuple[str | None, str]:
    """Chromium's path, installing Debian's `chromium` package as root when it is missing; or
    None and the reason it cannot be had."""
    found = shutil.which("chromium")
    if found is not None:
        return found, ""
    if shutil.which("apt-get") is None:
        return None, "chromium is not installed and there is no apt-get to install it with"
    if os.geteuid() != 0:
        return None, "chromium is not installed and installing it needs root (apt-get install)"
    # A fresh machine's package lists may be missing or stale; the install needs current ones.
    update = _apt("update")
    install = _apt("install", "-y", "--no-install-recommends", "chromium")
    found = shutil.which("chromium")
    if found is None:
        tail = (update.stderr + install.stdout + install.stderr)[-2000:]
        return None, f"apt-get install -y chromium failed (exit {install.returncode}):\n{tail}"
    return found, ""


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
