"""Fixtures shared by the suite, and the rule for tests marked ``docker``.

A ``docker`` test needs a Docker engine. Without one it is skipped with the reason,
unless NETLAB_REQUIRE_DOCKER=1 (CI sets it): then a missing engine fails the test,
so a green CI run means the Docker tests really ran.
"""

from __future__ import annotations

import functools
import os
import subprocess

import pytest

from tests.helpers import ServerProcess


@functools.lru_cache(maxsize=1)
def engine_problem() -> str | None:
    """Why no Docker engine can be used here, or None when one answers."""
    try:
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                                capture_output=True, text=True, timeout=20)
    except FileNotFoundError:
        return "the docker command is not installed"
    except subprocess.TimeoutExpired:
        return "docker info did not answer within 20 s"
    if result.returncode != 0:
        return f"no Docker engine answers: {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ''}"
    return None


@pytest.fixture(autouse=True)
def _docker_engine_or_skip(request):
    if request.node.get_closest_marker("docker") is None:
        return
    problem = engine_problem()
    if problem is None:
        return
    if os.environ.get("NETLAB_REQUIRE_DOCKER") == "1":
        pytest.fail(f"{problem}, and NETLAB_REQUIRE_DOCKER=1 requires the docker tests to run")
    pytest.skip(problem)


@pytest.fixture
def server():
    """A real lab server on a free loopback port, stopped after the test."""
    proc = ServerProcess()
    yield proc
    proc.terminate()
