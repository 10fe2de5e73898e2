"""Fixtures shared by the suite, and the rule for tests that need more than Python.

A ``docker`` test needs a Docker engine; a ``needs("tshark")`` test needs that
command. Without it the test is skipped with the reason, unless
NETLAB_REQUIRE_DOCKER=1 (CI sets it, after .ci/setup installed everything): then
the missing piece fails the test, so a green CI run means every test really ran.
"""

from __future__ import annotations

import functools
import os
import shutil
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


def missing_piece(request) -> str | None:
    """Why this test cannot run here (no engine, a missing command), or None."""
    if request.node.get_closest_marker("docker") is not None:
        problem = engine_problem()
        if problem:
            return problem
    for marker in request.node.iter_markers("needs"):
        for tool in marker.args:
            if shutil.which(tool) is None:
                return f"{tool} is not installed (bash .ci/setup --test installs it)"
    return None


@pytest.fixture(autouse=True)
def _run_or_skip(request):
    problem = missing_piece(request)
    if problem is None:
        return
    if os.environ.get("NETLAB_REQUIRE_DOCKER") == "1":
        pytest.fail(f"{problem}, and NETLAB_REQUIRE_DOCKER=1 requires every test to run")
    pytest.skip(problem)


@pytest.fixture
def server():
    """A real lab server on a free loopback port, stopped after the test."""
    proc = ServerProcess()
    yield proc
    proc.terminate()


def pytest_terminal_summary(terminalreporter):
    """Precision and recall of each analysis flag against tshark, when the corpus ran."""
    import sys

    corpus = sys.modules.get("tests.test_inspect_corpus")
    if corpus is None or not corpus.SCORES:
        return
    terminalreporter.section("lab.inspect vs tshark: analysis flags over the corpus")
    terminalreporter.write_line(f"{'flag':26} {'tshark':>7} {'ours':>7} {'precision':>10} {'recall':>7}")
    for name, (hits, ours, theirs) in corpus.SCORES.items():
        precision = hits / ours if ours else 1.0
        recall = hits / theirs if theirs else 1.0
        terminalreporter.write_line(f"{name:26} {theirs:7} {ours:7} {precision:10.3f} {recall:7.3f}")
