"""Ctrl-C that waits: a few steps that must not be cut in half run to their end first.

Python raises KeyboardInterrupt between any two bytecodes, so a Ctrl-C can land
between making a file and noting that it must be removed, or between placing a
capture under its final name and removing its raw copy: either leaves a working
file behind for good. Inside ``held_interrupts()`` a Ctrl-C is only noted; at
the end of the block it is raised (``then_raise``) or left to the caller to read
(``held.interrupted``), once the steps inside are whole.

Keep what runs inside short and bounded: the learner's Ctrl-C waits for it.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


class held_interrupts:   # noqa: N801 - used as a context manager, named as one reads it
    """Notes SIGINT instead of raising it while the block runs (see the module docstring)."""

    def __init__(self, then_raise: bool = True) -> None:
        self.then_raise = then_raise
        self.interrupted = False
        self._restore: Any = None     # the handler to put back at the end; None: none was replaced

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.interrupted = True

    def __enter__(self) -> held_interrupts:
        # Only the main thread may set a handler, and only it receives Python's KeyboardInterrupt.
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, self._note)
            # None: a handler not set from Python; Python's own is what raises KeyboardInterrupt.
            self._restore = previous if previous is not None else signal.default_int_handler
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if self._restore is not None:
            signal.signal(signal.SIGINT, self._restore)
        if self.interrupted and self.then_raise and kind is None:
            raise KeyboardInterrupt
