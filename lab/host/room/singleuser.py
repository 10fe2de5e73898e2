"""A student's JupyterLab in a room, as its container starts: the workspace made on first start
(the notebooks to work in, captures/, the student set for the course), then the hub's
``jupyterhub-singleuser`` in this process's place.

The workspace is the student's volume: it outlives the container (a JupyterLab stopped and started
again finds the student's notebooks, answers and captures as they were). Notebooks already there
are never overwritten.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path("/opt/tcplab")


def prepare(workspace: Path) -> None:
    notebooks = workspace / "notebooks"
    notebooks.mkdir(exist_ok=True)
    for source in sorted((PROJECT / "notebooks").glob("*.ipynb")):
        target = notebooks / source.name
        if not target.exists():
            shutil.copyfile(source, target)
    (workspace / "captures").mkdir(exist_ok=True)
    course_text = os.environ.get("TCPLAB_COURSE_TOML", "")
    student = os.environ.get("TCPLAB_STUDENT", "")
    if course_text and student:
        course = workspace / "course.toml"
        course.write_text(course_text)
        subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(PROJECT), "student", student,
                        "--course", str(course)], check=False, stdout=subprocess.DEVNULL)


def main() -> None:
    prepare(Path(os.environ.get("HOME", "/home/student")))
    os.execvp("jupyterhub-singleuser", ["jupyterhub-singleuser", *sys.argv[1:]])


if __name__ == "__main__":
    main()
