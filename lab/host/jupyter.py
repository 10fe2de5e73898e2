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


def open_notebooks(c: Context, captures: dict[str, str] | None = None, port: str | int | None = None,
                   lab_name: str | None = None) -> None:
    """Run JupyterLab on notebooks/ in the foreground (Ctrl-C stops it).

    ``captures`` is the environment that hands each notebook its capture (from the
    ``--pcap`` values: lab.teach.captures_chosen). ``lab_name`` is the lab the notebooks' live cells act
    on (03's sockets, 05's crafting): passed to the kernels as INVOKE_LAB_NAME, the
    variable the tasks read.
    """
    port = number(port, "--port", whole=True, low=1, high=65535, default=8888)
    env = {"INVOKE_LAB_NAME": lab_name} if lab_name else {}
    env.update(captures or {})
    jupyter = jupyter_command()
    as_root = " --allow-root" if os.geteuid() == 0 else ""   # JupyterLab refuses root without it
    c.run(f"{jupyter} --notebook-dir {PROJECT_ROOT / 'notebooks'} --port {port}{as_root}",
          env=env, pty=True, echo=True)
