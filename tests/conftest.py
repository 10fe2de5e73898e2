"""Fixtures shared by the suite; the docker marker's skip-or-fail rule lives here."""

from __future__ import annotations

import pytest

from tests.helpers import ServerProcess


@pytest.fixture
def server():
    """A real lab server on a free loopback port, stopped after the test."""
    proc = ServerProcess()
    yield proc
    proc.terminate()
