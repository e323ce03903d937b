"""Programs the tests need from Debian's packages, installed by the tests where they can be."""

import os
import shutil
import subprocess
from collections.abc import Callable

APT_SECONDS = 900
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", *args],
        env=os.environ | APT_ENV,
        capture_output=True,
        text=True,
        timeout=APT_SECONDS,
        check=False,
    )


def find_or_install(package: str, found: Callable[[], str | None]) -> tuple[str | None, str]:
    """The program's path (`found()`), installing `package` as root when it is missing; or None
    and the reason it cannot be had."""
    path = found()
    if path is not None:
        return path, ""
    if shutil.which("apt-get") is None:
        return None, f"{package} is not installed and there is no apt-get to install it with"
    if os.geteuid() != 0:
        return None, f"{package} is not installed and installing it needs root (apt-get install)"
    # A fresh machine's package lists may be missing or stale; the install needs current ones.
    update = _apt("update")
    install = _apt("install", "-y", "--no-install-recommends", package)
    path = found()
    if path is None:
        tail = (update.stderr + install.stdout + install.stderr)[-2000:]
        return None, f"apt-get install -y {package} failed (exit {install.returncode}):\n{tail}"
    return path, ""
