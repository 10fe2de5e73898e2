"""Helpers the benchmarks share: free ports, waiting for a listener, a result table."""

from __future__ import annotations

import socket
import statistics
import sys
import time

from rich.console import Console
from rich.table import Table

# Wide enough that a table piped to a file or `tail` keeps its columns whole.
console = Console() if sys.stdout.isatty() else Console(width=160)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    out = Table(title=title)
    for column in columns:
        out.add_column(column, justify="right")
    for row in rows:
        out.add_row(*row)
    console.print(out)
