"""What the learner sees of the docker commands the lab runs: each on one line, and all of them in a log.

Every command that changes something is shown so that any step can be run by hand. Whole,
such a command is over 300 characters, four or five lines of an 80-column terminal, and a
scenario printed eight of them between the capture's summary and the verdict. So on a
terminal each is one line, cut to its width (ending in ``…``); every command is written
whole to ``logs/commands.log`` in the project, with the time, and shown whole with
``--verbose`` (or ``INVOKE_LAB_VERBOSE=1``) and whenever the output is not a terminal
(a file, a pipe, CI), where nothing folds it. Housekeeping (the clean-up after a
scenario, stopping a capture's engine) goes to the log only; if it fails, its error says so.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time

from lab.paths import PROJECT_ROOT, shown

ECHO_FORMAT = "\033[2m{command}\033[0m"       # dim: the lesson is the output, the command is the footnote
LOG = PROJECT_ROOT / "logs" / "commands.log"
LOG_LIMIT = 1 << 20                           # then it starts again, the last one kept as commands.log.1
_LOCK = threading.Lock()
_told_of_log = False


def show(command: str, verbose: bool) -> None:
    """Print ``command`` as the learner should see it now (see the module docstring)."""
    global _told_of_log
    with _LOCK:
        if not sys.stdout.isatty():
            print(command, flush=True)
            return
        width = shutil.get_terminal_size().columns
        line = command if verbose or len(command) <= width else command[:width - 1] + "…"
        print(ECHO_FORMAT.format(command=line), flush=True)
        if line != command and not _told_of_log:
            _told_of_log = True
            print(ECHO_FORMAT.format(command=f"(each command whole: {shown(LOG)}, or --verbose)"[:width]), flush=True)


def record(command: str) -> None:
    """Append ``command`` to the log, with the time; never through a link, never more than LOG_LIMIT."""
    try:
        LOG.parent.mkdir(exist_ok=True)
        if LOG.exists() and not LOG.is_symlink() and LOG.stat().st_size > LOG_LIMIT:
            os.replace(LOG, LOG.with_name(LOG.name + ".1"))
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "a") as log:
            log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {command}\n")
    except OSError:
        pass                                  # a log that cannot be written does not stop the lab
