"""`invoke notebook`: JupyterLab on notebooks/, studying the learner's capture if one is named."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from invoke import Context

from lab.errors import LabError
from lab.host.options import number
from lab.paths import PROJECT_ROOT


def jupyter_command() -> str:
    """JupyterLab beside this Python (the venv's), else on PATH, else a one-line LabError.

    ``jupyter`` alone is not enough: jupyter_core (which the test extra brings)
    installs it without JupyterLab, and ``jupyter lab`` then fails in many lines.
    """
    beside = Path(sys.executable).with_name("jupyter-lab")
    if beside.exists():
        return str(beside)
    found = shutil.which("jupyter-lab")
    if found:
        return found
    raise LabError("JupyterLab is not installed here: .venv/bin/pip install -e '.[notebooks]'")


def open_notebooks(c: Context, pcaps: list[str] | None = None, port: str | int | None = None,
                   lab_name: str | None = None) -> None:
    """Run JupyterLab on notebooks/ in the foreground (Ctrl-C stops it).

    ``pcaps`` are the ``--pcap`` values, each checked before JupyterLab starts (see
    :func:`capture_variables`). ``lab_name`` is the lab the notebooks' live cells act
    on (03's sockets, 05's crafting): passed to the kernels as INVOKE_LAB_NAME, the
    variable the tasks read.
    """
    port = number(port, "--port", whole=True, low=1, high=65535, default=8888)
    env = {"INVOKE_LAB_NAME": lab_name} if lab_name else {}
    env.update(capture_variables(pcaps or []))
    jupyter = jupyter_command()
    as_root = " --allow-root" if os.geteuid() == 0 else ""   # JupyterLab refuses root without it
    c.run(f"{jupyter} --notebook-dir {PROJECT_ROOT / 'notebooks'} --port {port}{as_root}",
          env=env, pty=True, echo=True)


def capture_variables(pcaps: list[str]) -> dict[str, str]:
    """The environment that hands each notebook its capture, from ``--pcap`` values.

    ``04=FILE`` (a notebook) or ``zero-window=FILE`` (one of the captures a notebook
    studies, for 07 and 08, which study three) must fit what that notebook studies,
    or the task stops here in one line, before JupyterLab starts. A bare ``FILE`` goes
    to every notebook it fits, and the learner is told which.
    """
    from lab.teach.notebook import STUDIES, need_of, variable_for
    from lab.terminal import say

    env: dict[str, str] = {}
    for value in pcaps:
        key, _, file = value.partition("=")
        if not file or not _is_key(key):
            key, file = "", value
        path = _existing(file)
        if not key:
            fits = [number for number, kinds in STUDIES.items() if any(_fits(path, kind, file) for kind in kinds)]
            if not fits:
                raise LabError(f"{file} fits no notebook (each studies its own kind of capture): "
                               "name one with --pcap NN=FILE to hear what it lacks")
            say(f"{file}: studied by notebook{'s' if len(fits) > 1 else ''} {', '.join(fits)}; "
                "the others study their bundled captures")
            env["TCPLAB_PCAP"] = str(path)
            continue
        for bundled in _captures_named(key):
            _, what, how = need_of(bundled)
            if not _fits(path, bundled, file):
                raise LabError(f"{file} lacks what {_studied_by(bundled)} studies ({what}); make one with: {how}")
            env[variable_for(bundled)] = str(path)
    return env


def _fits(path: Path, bundled: str, file: str) -> bool:
    """Whether the capture has what the notebooks studying ``bundled`` need; a file that is
    no capture at all is one line that names it."""
    from lab.teach.notebook import need_of

    try:
        return need_of(bundled)[0](path)
    except LabError as error:
        raise LabError(f"{file}: {error}") from None


def _is_key(key: str) -> bool:
    from lab.teach.notebook import STUDIES

    return key in STUDIES or any(key == Path(kind).stem for kinds in STUDIES.values() for kind in kinds)


def _captures_named(key: str) -> tuple[str, ...]:
    """The bundled capture a key stands for: a notebook's only one, or the one named."""
    from lab.teach.notebook import STUDIES

    if key not in STUDIES:
        return (f"{key}.pcapng",)
    kinds = STUDIES[key]
    if len(kinds) > 1:
        names = ", ".join(f"--pcap {Path(kind).stem}=FILE" for kind in kinds)
        raise LabError(f"notebook {key} studies {len(kinds)} captures: name which, with {names}")
    return kinds


def _studied_by(bundled: str) -> str:
    from lab.teach.notebook import STUDIES

    numbers = [number for number, kinds in STUDIES.items() if bundled in kinds]
    return f"notebook{'s' if len(numbers) > 1 else ''} {', '.join(numbers)}"


def _existing(file: str) -> Path:
    path = Path(file).expanduser().resolve()
    if not path.is_file():
        raise LabError(f"no capture at {file}: make one with invoke capture, or name an existing file")
    return path
