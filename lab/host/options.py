"""Task options, from the strings invoke hands us to what the lab needs, or a one-line LabError.

Options that take numbers are declared as strings in tasks.py: invoke's own parser
shows a traceback when an int-typed option gets something else, so every number
is read here, by :func:`number`, with one wording for every mistake.
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence, overload

from lab.errors import LabError


def number(value: str | int | float | None, flag: str, *, whole: bool = False, low: float = 0,
           high: float | None = None, above: bool = False, default: float | None = None, shown: str | None = None):
    """``value`` as an int (``whole``) or a finite float within [low, high]; None gives ``default``.

    ``above`` makes ``low`` itself unacceptable (a duration of 0 s means nothing).
    """
    if value is None:
        return default
    try:
        parsed = int(value) if whole else float(value)
    except (TypeError, ValueError):
        kind = "a whole number" if whole else "a number"
        raise LabError(f"{flag} takes {kind}, got {value!r}") from None
    if not math.isfinite(parsed):
        raise LabError(f"{flag} takes a finite number, got {shown if shown is not None else value!r}")
    given = (shown or str(value)).strip()   # said as the user wrote it: 100.0001 is not "100"

    def bound(limit: float) -> str:
        return str(int(limit)) if whole else f"{limit:g}"

    if high is not None and not low <= parsed <= high:
        raise LabError(f"{flag} must be between {bound(low)} and {bound(high)}, got {given}")
    if above and parsed <= low:
        raise LabError(f"{flag} must be more than {bound(low)}, got {given}")
    if parsed < low:
        raise LabError(f"{flag} must be {bound(low)} or more, got {given}")
    return parsed


QUANTITY = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z%]*)\s*")
UNITS = {                            # the unit a task takes -> what a person may type, and its factor
    "ms": {"": 1.0, "ms": 1.0, "s": 1000.0},
    "s": {"": 1.0, "s": 1.0, "ms": 0.001, "min": 60.0},
    "%": {"": 1.0, "%": 1.0},
}
EXAMPLES = {"ms": "50, 50ms or 0.05s", "s": "10, 10s, 500ms or 2min", "%": "5 or 5%"}


def quantity(value: str | int | float | None, flag: str, unit: str, **bounds: Any) -> float | None:
    """A number that may carry its unit as a person writes it (``50ms``, ``0.05s``, ``5%``), in
    ``unit``; bounds as for :func:`number`, said in the words the user typed."""
    if value is None or isinstance(value, (int, float)):
        return number(value, flag, **bounds)
    found = QUANTITY.fullmatch(str(value))
    if found is None:
        return number(value, flag, **bounds)          # not a number at all: said as number says it
    if found[2].lower() not in UNITS[unit]:
        raise LabError(f"{flag} takes a number in {unit}, got {value!r}: e.g. {EXAMPLES[unit]}")
    return number(float(found[1]) * UNITS[unit][found[2].lower()], flag, shown=str(value), **bounds)


@overload
def whole_number(value: str | int, flag: str, default: int | None = None) -> int: ...
@overload
def whole_number(value: str | int | None, flag: str, default: int) -> int: ...
@overload
def whole_number(value: str | int | None, flag: str, default: None = None) -> int | None: ...


def whole_number(value: str | int | None, flag: str, default: int | None = None) -> int | None:
    """A count or a size: a whole number, 0 or more (None when neither given nor defaulted)."""
    found = number(value, flag, whole=True, default=default)
    return None if found is None else int(found)


def client_options(messages: Sequence[str], udp: bool = False, step: bool = False, tag: str | None = None) -> list[str]:
    """lab.inside.client's command line for the send task's options; ``tag`` (a student's, from
    lab.course.variant) goes after each ECHO line's text, so that the capture says whose it is."""
    messages = [m for m in messages if m]
    if not messages:
        raise LabError("nothing to send: give a request line, e.g. invoke send 'ECHO hello'")
    if udp and step:
        raise LabError("--step works over TCP only (UDP has no connection to step through)")
    return [*(["--udp"] if udp else []), *(["--step"] if step else []), *with_tag(messages, tag)]


def with_tag(lines: Sequence[str], tag: str | None) -> list[str]:
    """Request lines with ``tag`` after each ECHO line's text (unchanged without a tag)."""
    if not tag:
        return list(lines)
    return [f"{line} {tag}" if line.split(" ", 1)[0].upper() == "ECHO" and tag not in line else line
            for line in lines]


def bulk_options(nbytes: str | int, tag: str | None = None) -> list[str]:
    """lab.inside.client's command line for downloading ``nbytes`` (``tag`` after the byte count)."""
    return ["--bulk", str(whole_number(nbytes, "NBYTES")), *(["--note", tag] if tag else [])]


def exchange_options(send: Sequence[str] | None, bulk: str | None, tag: str | None = None) -> list[str]:
    """The client run a capture records: --send's requests or --bulk's download (not both), or none."""
    if send and bulk is not None:
        raise LabError("--send and --bulk cannot be combined: the client does one or the other")
    if send:
        return client_options(send, tag=tag)
    return bulk_options(bulk, tag) if bulk is not None else []
