"""The terminal the lab prints to: a rich Console as wide as the terminal, or as COLUMNS says."""

from __future__ import annotations

import os
import sys

PIPED_WIDTH = 200       # output to a file or a pipe: wide enough that tables never fold


def console():
    """A rich Console: the terminal's width; when output is not a terminal, COLUMNS if set,
    else PIPED_WIDTH. The report adapts its tables and ladders to whatever width it gets.

    When the reader of a pipe goes away (``| head``), rich would end the process with exit
    code 1; this one quiets its output and raises BrokenPipeError, which the task class
    ends as Unix tools end (lab.host.frontdoor)."""
    from rich.console import Console

    class PipeAwareConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError("the reader of the output went away")

    if sys.stdout.isatty():
        return PipeAwareConsole()
    columns = os.environ.get("COLUMNS", "")
    return PipeAwareConsole(width=int(columns) if columns.isdigit() and int(columns) >= 40 else PIPED_WIDTH)


SIGPIPE_EXIT = 128 + 13      # what a shell shows for a program ended by SIGPIPE (as `yes | head` ends)


def quiet_stdout() -> None:
    """The reader of our output went away (``| head``): what is left to print goes nowhere, so that
    the flush at exit does not fail again and print a traceback of its own."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def prose(text: str, first: str = "", then: str = "") -> str:
    """``text`` wrapped at the terminal's width between words (a word is never cut in two), the
    first line after ``first``, the others after ``then``; as it is when the output is not a
    terminal, where the reader's tool folds it."""
    import shutil
    import textwrap

    if not sys.stdout.isatty():
        return first + text
    return textwrap.fill(text, width=shutil.get_terminal_size().columns, initial_indent=first,
                         subsequent_indent=then, break_long_words=False, break_on_hyphens=False)


def say(message: str) -> None:
    """Narrate a step as it happens (Mininet's ``*** Starting controller``), wrapped as prose."""
    print(prose(message, "*** ", "    "), flush=True)
