"""Reading a file the instructor or a student names (a roster, a map, a course file): never more
than it may hold, and a problem said in one line."""

from __future__ import annotations

from pathlib import Path

from lab.errors import LabError


def read_small(path: Path, limit: int, what: str) -> bytes:
    """Up to ``limit`` bytes of ``path``; a LabError if it cannot be read or holds more."""
    try:
        with open(path, "rb") as stream:
            raw = stream.read(limit + 1)
    except OSError as error:
        raise LabError(f"cannot read {what} {path}: {error.strerror}") from None
    if len(raw) > limit:
        raise LabError(f"{path} is too large to be {what} ({limit:,} bytes at most)")
    return raw
