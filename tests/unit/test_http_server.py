"""The descriptor limit `taskapi serve` asks for, checked in child processes with low limits."""

import resource
import subprocess
import sys

import pytest

SHOW_LIMIT_AFTER_ALLOWING = (
    "import resource, sys; from api.http_server import allow_descriptors; "
    "allow_descriptors(int(sys.argv[1])); print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
)


def soft_limit_after_allowing(needed: int, *, soft: int, hard: int) -> tuple[int, str]:
    def lower_limits() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    finished = subprocess.run(
        [sys.executable, "-c", SHOW_LIMIT_AFTER_ALLOWING, str(needed)],
        preexec_fn=lower_limits,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(finished.stdout), finished.stderr


@pytest.fixture
def hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 2000:
        pytest.skip(f"the hard limit on open files here is {hard}")
    return 2000


def test_a_low_soft_limit_on_open_files_is_raised_to_what_the_cap_needs(hard_limit: int) -> None:
    assert soft_limit_after_allowing(1256, soft=300, hard=hard_limit) == (1256, "")


def test_a_hard_limit_below_the_need_raises_the_soft_limit_to_it_and_warns() -> None:
    limit, stderr = soft_limit_after_allowing(1256, soft=300, hard=500)
    assert limit == 500
    assert "HTTP_MAX_CONNECTIONS" in stderr


def test_a_soft_limit_already_high_enough_is_left_alone(hard_limit: int) -> None:
    assert soft_limit_after_allowing(1256, soft=1500, hard=hard_limit) == (1500, "")
