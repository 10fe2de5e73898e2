"""Which process a capture's container or working file belongs to, and whether it still runs.

A capture started by `invoke capture` leaves things behind if that process is killed
(``kill -9``): its engine's container, and the files it was writing in captures/. Each
carries its owner: the container in a label (a token ``host:pid:start``), each file in
its name (a mark ``o<pid>-<start>-<host>``), so the next capture, or `down`, tells a
dead owner's leftovers from a live capture's whatever became of the container.

The start time (clock ticks since boot, from /proc/PID/stat) tells a live owner from
a later process that was given the same pid; the host tells this machine's captures
from those of another machine sharing the folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket

MARK = re.compile(r"\.o(\d+)-(\d+)-([0-9a-f]{6})\.")


def process_start(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def owner_token(pid: int | None = None) -> str:
    """host:pid:start time of a process (this one by default), for a container's label."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_start(pid)}"


def owner_alive(token: str) -> bool:
    """True if the process a capture container's owner label names still runs, on this host."""
    host, _, rest = token.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit() or started == "?":
        return False
    return process_start(int(pid)) == started


def host_hash() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def owner_mark(pid: int | None = None) -> str:
    """``o<pid>-<start>-<host>``: this process, in the name of a file it writes in captures/."""
    pid = pid or os.getpid()
    return f"o{pid}-{process_start(pid)}-{host_hash()}"


def dead_owner(name: str) -> bool:
    """True if ``name`` carries an owner mark of this host whose process no longer runs (a file
    without a mark, or another host's, is nobody's business here)."""
    found = MARK.search(name)
    if found is None:
        return False
    pid, started, host = found.groups()
    return host == host_hash() and process_start(int(pid)) != started
