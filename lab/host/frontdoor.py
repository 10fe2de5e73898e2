"""Where the lab meets invoke: the task class that turns the lab's errors into one line and an exit code.

Library code raises :class:`lab.errors.LabError` and never exits (a notebook gets
an exception, not invoke's CLI exit type). Every task in tasks.py is made with
``@task`` from here, whose class (``LabTask``) turns, once for all tasks:

* a LabError into invoke's ``Exit`` with its message and code;
* Ctrl-C into "interrupted" and exit code 130 (before a task begins, while invoke
  starts, Ctrl-C ends it quietly with 130: .ci/setup's ``00-tcplab-invoke-interrupt.pth``
  gives invoke's process the default action for SIGINT until a task runs, so Ctrl-C
  in the first tenth of a second prints no traceback from invoke's own imports);
* a closed pipe (``invoke inspect | head``) into a quiet end, exit code 141, as
  Unix tools end when their reader goes;
* anything unexpected into one line, unless ``invoke --debug`` asks for the traceback.
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
import signal

from invoke import Context, Task
from invoke import task as invoke_task
from invoke.exceptions import Exit, UnexpectedExit

from lab.errors import LabError
from lab.host.settings import Lab, from_config
from lab.terminal import SIGPIPE_EXIT, quiet_stdout

LAB_HELP = "act on the lab of this name (default: 'name' in the configuration, INVOKE_LAB_NAME)"


class LabTask(Task):
    """An invoke Task whose failures reach the user as one line (see the module docstring).

    ``on_engine``: the task acts on the lab's engine (up, capture, ...). Where the lab's kind of engine
    goes through a broker (a lab room: lab.host.engines.kinds), it is sent there with its options,
    and the broker runs it, the same task, on the student's own lab."""

    def __init__(self, *args, on_engine: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.on_engine = on_engine

    def __call__(self, *args, **kwargs):
        signal.signal(signal.SIGINT, signal.default_int_handler)     # from here on, Ctrl-C is ours to say
        try:
            if self.on_engine and args and _through_broker(args[0]):
                return _by_broker(self.name, kwargs)
            return super().__call__(*args, **kwargs)
        except LabError as exc:
            raise Exit(exc.message or None, exc.code) from None
        except (Exit, UnexpectedExit):
            raise
        except BrokenPipeError:
            quiet_stdout()
            raise Exit(code=SIGPIPE_EXIT) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", 130) from None
        except Exception as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            raise Exit(f"unexpected error: {type(exc).__name__}: {exc} "
                       "(run 'invoke --debug ...' to see the traceback)") from None


task = functools.partial(invoke_task, klass=LabTask)


def _through_broker(c: Context) -> bool:
    return from_config(c.config, None).kind.through_broker


def _by_broker(name: str, options: dict) -> None:
    """The task run by the room's broker: its output was printed as it came; its exit code is ours."""
    from lab.host.room.client import run_task

    code = run_task(name, options)
    if code:
        raise Exit(code=code)


def help_and_suggestions() -> None:
    """Two things invoke's command line does not do, added where it parses the tasks (invoke has no
    hook for either, so its Program's ``parse_tasks`` is wrapped, once, by tasks.py):

    * ``invoke send --help`` ran the task with "--help" as its message (a positional argument
      takes the next word): a task's ``--help`` or ``-h`` now shows its help and runs nothing;
    * ``invoke captur`` got only "No idea what 'captur' is!": the closest task names are said.
    """
    from invoke.exceptions import ParseError
    from invoke.program import Program

    if getattr(Program.parse_tasks, "lab_wrapped", False):
        return
    original = Program.parse_tasks

    def parse_tasks(self: Program) -> None:
        words = list(self.core.unparsed)
        names = set(self.collection.task_names) | {alias for aliases in self.collection.task_names.values()
                                                   for alias in aliases}
        asks_help = len(words) >= 2 and words[0] in names and bool({"--help", "-h"} & set(words[1:]))
        if asks_help:
            self.core.unparsed = []                  # nothing to run: only the help, as `invoke --help TASK`
        try:
            original(self)
        except ParseError as error:
            raise ParseError(with_suggestion(str(error), sorted(names))) from None
        if asks_help:
            self.args.help.value = words[0]

    parse_tasks.lab_wrapped = True        # type: ignore[attr-defined]
    Program.parse_tasks = parse_tasks     # type: ignore[method-assign]


def with_suggestion(message: str, names: list[str]) -> str:
    """invoke's "No idea what 'X' is!", and the task names closest to X, if any are close."""
    found = re.fullmatch(r"No idea what '(.+)' is!", message)
    if found is None or found[1].startswith("-"):
        return message
    close = difflib.get_close_matches(found[1], names, n=3, cutoff=0.6)
    if not close:
        return f"{message} (invoke --list shows the tasks)"
    return f"{message} Did you mean {' or '.join(repr(name) for name in close)}? (invoke --list shows the tasks)"
"""invoke's ``@task``, making LabTasks."""


def lab_of(c: Context, lab: str | None, **options) -> Lab:
    """The lab a task acts on: the configuration's, or the one ``--lab`` names; ``options``
    are the task's own settings of it (``cc=``), None where not given."""
    return from_config(c.config, lab, **options)
