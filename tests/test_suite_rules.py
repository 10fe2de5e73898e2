"""The suite's own rules: docker tests skip where there is no Docker, and fail where everything is required.

Run as a user without Docker would: pytest on the docker-marked tests with a PATH
that has no docker command. Module-scoped fixtures that start labs must not run
(they would turn each skip into an error).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT

DOCKER_MODULES = ["tests/test_docker_lab.py", "tests/test_capture_docker.py", "tests/test_notebooks.py"]


def run_without_docker(tmp_path, **env: str) -> dict[str, int]:
    """pytest -m docker with no docker on PATH; the counts of its summary line."""
    for tool in ("sh", "bash", "env"):
        (tmp_path / tool).symlink_to(shutil.which(tool))
    clean = {key: value for key, value in os.environ.items()
             if key not in ("CI", "TCPLAB_REQUIRE_DOCKER", "NETLAB_REQUIRE_DOCKER")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "docker", "-p", "no:cacheprovider", *DOCKER_MODULES],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**clean, "PATH": str(tmp_path), **env})
    summary = result.stdout.strip().splitlines()[-1]
    return {word: int(count) for count, word in re.findall(r"(\d+) (\w+)", summary)}


@pytest.mark.slow          # it runs the suite in the suite
def test_without_docker_every_docker_test_skips_and_none_errors(tmp_path):
    counts = run_without_docker(tmp_path)
    assert counts.get("skipped", 0) >= 20
    assert "error" not in counts and "errors" not in counts and "failed" not in counts and "passed" not in counts


@pytest.mark.slow          # it runs the suite in the suite
@pytest.mark.parametrize("required", [{"TCPLAB_REQUIRE_DOCKER": "1"}, {"CI": "true"}])
def test_when_everything_is_required_every_docker_test_fails_and_none_errors(tmp_path, required):
    counts = run_without_docker(tmp_path, **required)
    assert counts.get("failed", 0) >= 20
    assert "error" not in counts and "errors" not in counts and "skipped" not in counts and "passed" not in counts
