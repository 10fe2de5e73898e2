"""What every invoke task shares: the lab it acts on, and errors as one line."""

from __future__ import annotations

import functools
import logging
from typing import Callable

from invoke import Context
from invoke.exceptions import Exit, UnexpectedExit

from lab.host.settings import Lab, from_config

LAB_HELP = "act on the lab of this name (default: 'name' in invoke.yaml, INVOKE_LAB_NAME)"


def lab_of(c: Context, lab: str | None) -> Lab:
    return from_config(c.config, lab)


def whole_number(value: str | int | None, flag: str, default: int | None = None) -> int | None:
    """A task option's number, or a one-line Exit.

    Options that take numbers are declared as strings: invoke's own parser shows a
    traceback when an int-typed option gets something else.
    """
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise Exit(f"{flag} takes a whole number, got {value!r}") from None
    if number < 0:
        raise Exit(f"{flag} must be 0 or more, got {number}")
    return number


def one_line_errors(task_body: Callable) -> Callable:
    """Turn an unexpected exception into one line; ``invoke --debug`` shows the traceback."""

    @functools.wraps(task_body)
    def wrapper(c, *args, **kwargs):
        try:
            return task_body(c, *args, **kwargs)
        except (Exit, UnexpectedExit):
            raise
        except KeyboardInterrupt:
            raise Exit("interrupted", 130) from None
        except Exception as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            raise Exit(f"unexpected error: {type(exc).__name__}: {exc} "
                       "(run 'invoke --debug ...' to see the traceback)") from None

    return wrapper
