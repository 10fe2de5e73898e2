"""Long steps (an image build, bootstrapping a base) as one line that moves, the whole log in a file.

A build prints hundreds of lines a learner has no use for, until one fails. So a
long command runs with its output going to a log file, and the terminal shows
what it is doing now (Docker's "Step 4/9 : RUN ...", debootstrap's "Retrieving
..."), and for how long: rich's Progress, chosen because it redraws one line on a
terminal and prints nothing twice. When it fails, the last lines of the log come
out, with the file's name. ``verbose`` shows everything as it comes instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from lab.terminal import console, say

if TYPE_CHECKING:
    from rich.progress import Progress

TAIL_ON_FAILURE = 15
_DOCKER_STEP = re.compile(r"^(?:Step (\d+/\d+) : (.*)|#\d+ \[[^\]]*?(\d+/\d+)\] (.*))")
_DEBOOTSTRAP = re.compile(r"^I: (.*)")


def docker_build_step(line: str) -> str | None:
    """What a line of ``docker build`` says it is doing, or None (the legacy builder and BuildKit)."""
    found = _DOCKER_STEP.match(line)
    if not found:
        return None
    number, what = (found[1], found[2]) if found[1] else (found[3], found[4])
    return f"step {number}: {what.strip()[:60]}"


def debootstrap_step(line: str) -> str | None:
    found = _DEBOOTSTRAP.match(line)
    return found[1].strip()[:60] if found else None


def log_file(name: str) -> Path:
    """Where a step's whole output goes: the system's temporary folder, a name per step."""
    return Path(tempfile.gettempdir()) / f"tcplab-{os.getuid()}-{name}.log"   # /tmp is shared by the users


def run_logged(argv: Sequence[str], title: str, log_path: Path, step_of: Callable[[str], str | None],
               verbose: bool = False, stdin=None) -> tuple[int, str]:
    """Run ``argv`` showing its progress; (exit code, its last lines when it failed)."""
    if verbose:
        return subprocess.run(list(argv), stdin=stdin).returncode, ""
    tail: deque[str] = deque(maxlen=TAIL_ON_FAILURE)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=stdin,
                                text=True, errors="replace")
        with StepDisplay(title) as show:
            assert proc.stdout is not None          # stdout=PIPE
            for line in proc.stdout:
                log.write(line)
                tail.append(line.rstrip())
                step = step_of(line)
                if step:
                    show(step)
        code = proc.wait()
    return code, "\n".join(tail) if code else ""


class StepDisplay:
    """One moving line on a terminal (rich Progress: spinner, step, elapsed time); elsewhere each
    step printed once."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.progress: Progress | None = None

    def __enter__(self) -> Callable[[str], None]:
        if sys.stdout.isatty():
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                console=console(), transient=False)
            self.progress = progress
            progress.start()
            task = progress.add_task(self.title)
            return lambda step: progress.update(task, description=f"{self.title}: {step}")
        say(self.title)
        return lambda step: print(f"    {step}", flush=True)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()
