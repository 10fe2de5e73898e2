"""Fixtures shared by the suite, and the rule for tests that need more than Python.

A ``docker`` test needs a Docker engine; a ``needs("tshark")`` test needs that
command (``needs("root")``: to run as root). Without it the test is skipped with the reason, unless the run requires
everything (TCPLAB_REQUIRE_DOCKER=1, the older NETLAB_REQUIRE_DOCKER=1, or CI=true,
which .ci/run sets after .ci/setup installed everything): then the missing piece
fails the test, so a green CI run means every test really ran.

The check is made in ``pytest_runtest_setup``, before any fixture of the test is
set up: a module-scoped fixture that starts a lab would otherwise run first and
turn a skip into an error.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess

import pytest

from tests.helpers import ServerProcess, remove_test_images

MISSING = pytest.StashKey[str]()


def everything_required() -> bool:
    """True when a missing engine or tool must fail a test instead of skipping it."""
    return ("1" in (os.environ.get("TCPLAB_REQUIRE_DOCKER"), os.environ.get("NETLAB_REQUIRE_DOCKER"))
            or os.environ.get("CI", "").lower() == "true")


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


def missing_piece(item: pytest.Item) -> str | None:
    """Why this test cannot run here (no engine, a missing command), or None."""
    if item.get_closest_marker("docker") is not None:
        problem = engine_problem()
        if problem:
            return problem
    for marker in item.iter_markers("needs"):
        for tool in marker.args:
            if tool == "root":
                if os.geteuid() != 0:
                    return "it needs root (a cluster of engines in namespaces)"
            elif tool == "rootless-engines":
                from tests.rootless import engines_problem

                problem = engines_problem()
                if problem:
                    return problem
            elif shutil.which(tool) is None:
                return f"{tool} is not installed (bash .ci/setup --test installs it)"
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    problem = missing_piece(item)
    if problem is None:
        return
    if everything_required():
        item.stash[MISSING] = problem
        pytest.fail(f"{problem}, and this run requires every test to run (TCPLAB_REQUIRE_DOCKER=1 or CI=true)",
                    pytrace=False)
    pytest.skip(problem)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A required piece that is missing fails the test itself: pytest would count a
    failure in setup as an error of a fixture, which it is not."""
    outcome = yield
    report = outcome.get_result()
    if call.when == "setup" and report.failed and MISSING in item.stash:
        report.when = "call"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Remove the images the docker tests built for their labs (nlt-*)."""
    if engine_problem() is None:
        remove_test_images()


@pytest.fixture
def name(request):
    """A capture name for this test (in captures/, like a learner's); its files are removed afterwards."""
    from lab.paths import CAPTURES_DIR

    stem = "nlt-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:60]
    yield stem
    for leftover in CAPTURES_DIR.glob(f"*{stem}*"):
        leftover.unlink()


@pytest.fixture
def server():
    """A real lab server on a free loopback port, stopped after the test."""
    proc = ServerProcess()
    yield proc
    proc.terminate()


SECONDS_BY_FILE: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Each test's setup, call and teardown, added up by file: where the suite's time goes."""
    test_file = report.nodeid.split("::")[0]
    SECONDS_BY_FILE[test_file] = SECONDS_BY_FILE.get(test_file, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    """Where the time went, by test file; and precision and recall of each analysis flag against
    tshark, when the corpus ran."""
    _time_by_file(terminalreporter)
    _flag_scores(terminalreporter)


def _time_by_file(terminalreporter, shown: int = 15) -> None:
    total = sum(SECONDS_BY_FILE.values())
    if total < 60:          # a quick run: the durations above say enough
        return
    terminalreporter.section("where the time went, by test file (setup + call + teardown)")
    for test_file, seconds in sorted(SECONDS_BY_FILE.items(), key=lambda item: -item[1])[:shown]:
        terminalreporter.write_line(f"{seconds:7.1f} s {seconds / total:4.0%}  {test_file}")
    terminalreporter.write_line(f"{total:7.1f} s in all, {len(SECONDS_BY_FILE)} files")


def _flag_scores(terminalreporter) -> None:
    from tests.corpus_scores import SCORES

    if not SCORES:
        return
    terminalreporter.section("lab.inspect vs tshark: analysis flags over the corpus")
    terminalreporter.write_line(f"{'flag':26} {'tshark':>7} {'ours':>7} {'precision':>10} {'recall':>7}")
    for name, (hits, ours, theirs) in SCORES.items():
        precision = hits / ours if ours else 1.0
        recall = hits / theirs if theirs else 1.0
        terminalreporter.write_line(f"{name:26} {theirs:7} {ours:7} {precision:10.3f} {recall:7.3f}")
