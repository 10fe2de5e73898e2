"""`invoke demo`, the lab's main job: bring the lab up, capture a short exchange, explain it."""

from __future__ import annotations

from typing import Sequence

from invoke import Context

from lab.host import lifecycle, status
from lab.host.capture import recorder
from lab.host.capture.request import capture_name, capture_request
from lab.host.options import client_options
from lab.host.settings import Lab
from lab.terminal import console

TOUR = ("ECHO hello, TCP", "UPPER a byte stream", "TIME")


def demo(c: Context, lab: Lab, messages: Sequence[str] | None = None, tag: str | None = None) -> None:
    """Up, a capture of ``messages`` (the tour by default, with a student's ``tag``), its report, the lab's status."""
    from lab.inspect.cli import run as explain

    lifecycle.up(c, lab)
    request = capture_request(client_args=client_options(messages or TOUR, tag=tag), name=f"demo-{capture_name(None)}")
    path = recorder.capture(c, lab, request, console())
    explain(str(path))
    status.status(c, lab)
