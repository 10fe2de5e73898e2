"""The lab's one error root: a message a user can act on, and the exit code it stands for.

Library code (the host side, the analysis, the teaching helpers) raises
:class:`LabError` or a subclass and never exits: a notebook that calls
``lab.inspect.analyze`` gets an exception it can catch, not invoke's CLI exit type.
Only the front door turns it into an exit: the invoke tasks (lab.host.frontdoor)
and the ``python -m`` entry points print the message as one line and exit with
the code.

What runs inside the containers (lab.inside) keeps errors of its own
(``ProtocolError``, the client's exit codes), because the image carries only
lab/inside.
"""

from __future__ import annotations


class LabError(Exception):
    """Something the user must fix, said in one line; ``code`` is the exit code."""

    def __init__(self, message: str = "", code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message
