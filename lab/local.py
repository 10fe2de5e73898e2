"""Run the server and the client on this machine, without Docker (a first look)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from invoke import Context
from invoke.exceptions import Exit

TOUR = ["ECHO hello, TCP", "UPPER a byte stream", "TIME"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise Exit(f"the server did not start listening on port {port}")


def demo(c: Context, messages: list[str] | None) -> None:
    """Start a local server, send the messages with the client, stop the server."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "lab.server", "--port", str(port)])
    try:
        _wait_listening(port)
        quoted = " ".join(f"'{m}'" for m in (messages or TOUR))
        c.run(f"{sys.executable} -m lab.client --port {port} {quoted}", echo=True, pty=False)
    finally:
        server.terminate()
        server.wait(5)
