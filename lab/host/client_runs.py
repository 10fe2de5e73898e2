"""Running the client program: one fresh container per `invoke send`, `bulk` or `chat`.

Each run joins the client host's network namespace (lab.host.topology's
"client-run" role), so every run speaks from the same address; the client's exit
code (lab.inside.client's table) becomes the task's.
"""

from __future__ import annotations

import sys
from typing import Sequence

from invoke import Context

from lab.errors import LabError
from lab.host.engines.lab_engines import Engines
from lab.host.settings import Lab
from lab.host.state import require_up
from lab.host.topology import describe


def send(c: Context, lab: Lab, client_args: Sequence[str], tty: bool = False) -> None:
    """Run the client once in a fresh container; its exit code becomes ours.

    ``tty`` (chat, ``--step``) gives it the user's terminal: without one, it would
    wait for an Enter that cannot come.
    """
    if tty and not sys.stdin.isatty():
        raise LabError("--step waits for Enter before each step, and there is no terminal here: run it in one, "
                       "or leave --step out")
    topology = describe(lab)
    engines = Engines(c, lab)
    require_up(engines, topology)
    result = engines.run(topology.launch("client-run", *client_args, tty=tty), check=False, pty=tty)
    if result.exited != 0:
        if not tty and result.stderr.strip():
            print(result.stderr.strip().splitlines()[-1], file=sys.stderr)
        raise LabError(code=result.exited)


def chat(c: Context, lab: Lab) -> None:
    """An interactive client on the user's terminal."""
    if not sys.stdin.isatty():
        raise LabError("chat needs a terminal; to send requests from a script use: invoke send 'ECHO hi'")
    send(c, lab, ["--interactive"], tty=True)
