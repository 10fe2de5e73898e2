"""A student's side of a lab room: their tasks and their notebooks' live cells, sent to the room's broker.

In a room the student's JupyterLab has no Docker: the spawner sets ``INVOKE_LAB_ENGINE=room``,
the broker's address (``TCPLAB_BROKER``) and the student's token (``TCPLAB_BROKER_TOKEN``). A task
that acts on the lab (lab.host.frontdoor) then sends its name and options here, and what the broker
streams back is printed as the task prints it on a laptop; the captures it made, signed, land in
the student's captures/. Nothing here is trusted by the broker: it checks every request itself.
"""

from __future__ import annotations

import base64
import codecs
import json
import os
import shutil
import socket
import sys
import termios
import threading
import tty as tty_module
from typing import Any

from lab.errors import LabError
from lab.host.room.requests import INTERACTIVE
from lab.paths import CAPTURES_DIR

ENGINE = "room"
FILE_NAME_CHARACTERS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def in_room() -> bool:
    """True in a room's JupyterLab (the spawner's environment says so)."""
    return os.environ.get("INVOKE_LAB_ENGINE", "").strip().lower() == ENGINE


def _connect() -> socket.socket:
    address = os.environ.get("TCPLAB_BROKER", "")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not os.environ.get("TCPLAB_BROKER_TOKEN"):
        raise LabError("this JupyterLab is not set up for a room (TCPLAB_BROKER and its token are missing): "
                       "ask your instructor")
    try:
        return socket.create_connection((host, int(port)), timeout=30)
    except OSError as error:
        raise LabError(f"the room's broker does not answer ({error.strerror or error}): ask your instructor "
                       "(invoke room status shows it)") from None


def _messages(connection: socket.socket):
    """The broker's answer, one JSON object at a time."""
    connection.settimeout(None)
    with connection.makefile("rb") as stream:
        for line in stream:
            yield json.loads(line)


def _request(message: dict) -> socket.socket:
    connection = _connect()
    connection.sendall(json.dumps({**message, "token": os.environ["TCPLAB_BROKER_TOKEN"]}).encode() + b"\n")
    return connection


def ask(question: str, **arguments: Any) -> dict:
    """A notebook's question to the broker about the student's lab (is-up, craft, in-client): its answer."""
    with _request({"ask": question, **arguments}) as connection:
        for message in _messages(connection):
            if "refused" in message:
                raise LabError(f"the room refused: {message['refused']}")
            return message
    raise LabError("the room's broker closed the connection without an answer")


def run_task(task: str, options: dict[str, Any]) -> int:
    """Run ``invoke TASK`` through the broker: its output here as it comes, its captures into captures/;
    its exit code."""
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    columns = shutil.get_terminal_size((80, 24)).columns
    connection = _request({"task": task, "options": options, "tty": tty, "columns": columns})
    received: dict[str, Any] = {}
    restore = None
    if tty and task in INTERACTIVE:
        restore = termios.tcgetattr(sys.stdin.fileno())
        tty_module.setraw(sys.stdin.fileno())         # as ssh does: each key goes to the task's own terminal
        threading.Thread(target=_type_into, args=(connection,), daemon=True).start()
    try:
        for message in _messages(connection):
            if "out" in message:
                sys.stdout.write(str(message["out"]))
                sys.stdout.flush()
            elif "file" in message:
                _receive(message, received)
            elif "refused" in message:
                raise LabError(f"the room refused: {message['refused']}")
            elif "exit" in message:
                return int(message["exit"])
    finally:
        if restore is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, restore)
        connection.close()
        for stream in received.values():
            stream.close()
    raise LabError("the room's broker ended the task without its exit code: run it again")


def _type_into(connection: socket.socket) -> None:
    """What the student types, key by key, to the task's terminal on the broker (chat, send --step):
    its terminal echoes it and reads Ctrl-D and Ctrl-C as the laptop's would."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    try:
        while True:
            data = os.read(sys.stdin.fileno(), 1024)
            if not data:
                return
            connection.sendall(json.dumps({"in": decoder.decode(data)}).encode() + b"\n")
    except OSError:
        return


def _receive(message: dict, received: dict[str, Any]) -> None:
    """A part of a delivered file, written into captures/ under its own plain name (never through a link)."""
    name = str(message["file"])
    if not name or name.startswith(".") or not set(name) <= FILE_NAME_CHARACTERS or len(name) > 200:
        raise LabError(f"the broker sent a file named {name[:40]!r}: not one the room writes")
    if name not in received:
        CAPTURES_DIR.mkdir(parents=True, exist_ok=True)
        target = CAPTURES_DIR / name
        if target.is_symlink():
            target.unlink()
        received[name] = open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644), "wb")
    received[name].write(base64.b64decode(message["data"]))
    if message.get("last"):
        received.pop(name).close()
