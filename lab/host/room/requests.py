"""What a room's broker accepts from a student, as data: which tasks and options, which notebook
asks, and the bounds on each request.

A student's JupyterLab sends one request a connection: a JSON line naming a task (``capture``)
and its options as the task received them (``{"send": ["ECHO hi"], "kernel": true}``), or a
notebook's ask (``is-up``). The broker checks it against what is here, runs the task as the
student would on a laptop, with their lab named from who they are, never from the request;
anything else is refused in one line. ``--lab`` is never accepted: a student has one lab.

Why the options are listed here and not read from tasks.py: the broker must refuse what a
student may not ask even where a task allows it (a scenario from a file on the broker's disk,
the image build), and tests/test_room_requests.py holds this list to tasks.py's signatures.
"""

from __future__ import annotations

import re
from typing import Any

TEXT, FLAG, TEXTS = "text", "flag", "texts"

TASKS: dict[str, dict[str, str]] = {
    "up": {"cc": TEXT, "verbose": FLAG},
    "down": {},
    "status": {},
    "logs": {"role": TEXT, "follow": FLAG, "tail": TEXT},
    "doctor": {},
    "send": {"message": TEXT, "next": TEXTS, "udp": FLAG, "step": FLAG},
    "bulk": {"nbytes": TEXT},
    "chat": {},
    "capture": {"seconds": TEXT, "count": TEXT, "filter": TEXT, "send": TEXTS, "bulk": TEXT, "name": TEXT,
                "engine": TEXT, "kernel": FLAG, "all_frames": FLAG, "verbose": FLAG},
    "impair": {"target": TEXT, "delay": TEXT, "jitter": TEXT, "distribution": TEXT, "loss": TEXT, "reorder": TEXT,
               "rate": TEXT, "seed": TEXT, "engine": TEXT, "clear": FLAG},
    "scenario": {"name": TEXT, "seed": TEXT, "verbose": FLAG},
    "demo": {"message": TEXTS, "verbose": FLAG},
}
"""Each task a student may run through the broker, and its options (what tasks.py calls them)."""

INTERACTIVE = {"chat", "send"}        # chat, and send --step: the student types into them (key by key)
MAKES_CAPTURES = {"capture", "scenario", "demo"}
ASKS = ("is-up", "craft", "in-client")
SCENARIO_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,40}")          # a bundled scenario, never a path
CLIENT_LINES = (re.compile(r"ss -tan"), re.compile(r"echo 'ECHO [A-Za-z0-9 ]{1,40}' \| nc -N server [0-9]{1,5}"))
"""The shell lines the notebooks run in the client (03's sockets): the broker runs these and no other."""

MAX_REQUEST_BYTES = 16 << 10          # the request line
MAX_TEXT = 300                        # one option's value
MAX_TEXTS = 20                        # a repeated option's values
MAX_INPUT_BYTES = 64 << 10            # what a student types into chat, in all
TASK_SECONDS = 600                    # a task's time, whatever it asked
REQUESTS_PER_MINUTE = 30              # a student's requests (asks included)
AT_ONCE = 2                           # a student's requests running at once
CAPTURES_AT_ONCE = 1                  # of which making captures
MAX_FILE_BYTES = 64 << 20             # a capture (or kernel file) delivered to the workspace


class Refused(Exception):
    """A request the broker will not run; the message is one line for the student."""


def words_of(task: str, options: Any) -> list[str]:
    """The task's command-line words (``--send 'ECHO hi' --kernel``), from options checked against TASKS."""
    if task not in TASKS:
        raise Refused(f"the room does not run '{str(task)[:30]}' for students: it runs "
                      f"{', '.join(sorted(TASKS))}")
    if not isinstance(options, dict):
        raise Refused("options must be a JSON object")
    if options.get("lab") is not None:
        raise Refused("in a room each student has one lab, their own: leave out --lab")
    words = [task]
    for name, value in options.items():
        kind = TASKS[task].get(str(name))
        if value is None or value is False or value == [] or name == "lab":
            continue
        if kind is None:
            raise Refused(f"invoke {task} has no option {str(name)[:30]!r} in a room")
        flag = "--" + name.replace("_", "-")
        if kind == FLAG:
            if value is not True:
                raise Refused(f"--{name} takes no value")
            words.append(flag)
            continue
        values = value if kind == TEXTS and isinstance(value, list) else [value]
        if len(values) > MAX_TEXTS:
            raise Refused(f"--{name} at most {MAX_TEXTS} times")
        # --name=value, never two words: a value like "--lab=x" stays the value it is
        words += [f"{flag}={_text(name, one)}" for one in values]
    if task == "scenario" and not SCENARIO_NAME.fullmatch(str(options.get("name") or "")):
        raise Refused("in a room, scenarios are the bundled ones (invoke scenario list), not files")
    return words


def _text(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Refused(f"--{name} takes text")
    text = str(value)
    if len(text) > MAX_TEXT or any(ord(char) < 32 and char != "\t" for char in text):
        raise Refused(f"--{name} must be one line of at most {MAX_TEXT} characters")
    return text


def check_ask(ask: str, request: dict) -> dict[str, str]:
    """The arguments of a notebook's ask, checked."""
    if ask == "is-up":
        return {}
    if ask == "craft":
        what, line = request.get("what"), request.get("line", "ECHO crafted by hand")
        if what not in ("syn", "connect") or not isinstance(line, str):
            raise Refused("craft makes syn or connect, with a line of text")
        return {"what": what, "line": _text("line", line)}
    if ask == "in-client":
        script = request.get("script")
        if not isinstance(script, str) or not any(pattern.fullmatch(script) for pattern in CLIENT_LINES):
            raise Refused("in a room, the client runs only the lines the notebooks run (ss -tan; echo ... | nc)")
        return {"script": script}
    raise Refused(f"no ask {str(ask)[:30]!r}: the notebooks ask {', '.join(ASKS)}")
