"""The terminal the lab prints to: a rich Console that never folds tables when piped."""

from __future__ import annotations

import sys


def console():
    """A rich Console; when output is not a terminal, wide enough that tables never fold."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def say(message: str) -> None:
    """Narrate a step as it happens (Mininet's ``*** Starting controller``)."""
    print(f"*** {message}", flush=True)
