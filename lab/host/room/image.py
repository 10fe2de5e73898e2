"""The room's two images, built on the lab's from docker/room.Dockerfile: the students' (JupyterLab, the
notebooks, the lab's host side) and the hub's (that, plus the hub's proxy and the Docker client the
broker's tasks call).

What they add from PyPI (docker/room-requirements.txt) is downloaded as wheels on this machine,
where PyPI answers, into a cache kept between rooms (~/.cache/tcplab/room-wheels/DIGEST), and
installed offline in the build: the build itself needs only Debian's mirror, as the lab's does.
Both images carry the digest of what they were built from; `room up` builds again only what changed.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

from invoke import Context

from lab.errors import LabError
from lab.host.engines.docker import Docker
from lab.host.image import verbose
from lab.host.progress import docker_build_step, log_file, run_logged
from lab.host.room import plan
from lab.host.settings import SOURCE_LABEL
from lab.paths import PROJECT_ROOT as ROOT
from lab.terminal import say

REQUIREMENTS = ROOT / "docker" / "room-requirements.txt"
DOCKERFILE = ROOT / "docker" / "room.Dockerfile"
PYTHON = "3.11"                  # bookworm's, in the image: the wheels are chosen for it, whatever runs here


def sources() -> list[Path]:
    """What the students' image holds of the project (its digest decides a rebuild)."""
    found = [ROOT / "tasks.py", ROOT / "pyproject.toml", REQUIREMENTS, *sorted(ROOT.glob("docker/*")),
             *sorted(ROOT.glob("lab/**/*.py")), *sorted(ROOT.glob("lab/scenarios/*.toml")),
             *sorted(ROOT.glob("notebooks/*.ipynb")), *sorted(p for p in (ROOT / "notebooks" / "data").rglob("*")
                                                              if p.is_file())]
    return sorted(set(found))


def source_digest(lab_image_id: str) -> str:
    digest = hashlib.sha256(lab_image_id.encode() + b"\0")
    for path in sources():
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def wheelhouse() -> Path:
    """The wheels of docker/room-requirements.txt for the image's Python, downloaded once."""
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + platform.machine().encode()).hexdigest()[:12]
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tcplab" / "room-wheels" / key
    if (folder / ".complete").is_file():
        return folder
    partial = folder.with_name(folder.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    machine = platform.machine()
    argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
            "--python-version", PYTHON, "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none",
            *(word for tag in (f"manylinux_2_28_{machine}", f"manylinux2014_{machine}", f"manylinux_2_17_{machine}",
                               "any") for word in ("--platform", tag)),
            "--dest", str(partial), "--requirement", str(REQUIREMENTS)]
    print(f"{sys.executable} -m pip download ... --requirement {REQUIREMENTS.relative_to(ROOT)}", flush=True)
    log_path = log_file("room-wheels")
    code, tail = run_logged(argv, "downloading the room's wheels from PyPI", log_path, _pip_step)
    if code:
        print(tail, file=sys.stderr)
        raise LabError(f"the room's wheels could not be downloaded from PyPI (exit {code}; the whole output is in "
                       f"{log_path}): a room is built where PyPI answers, or with PIP_INDEX_URL set to a mirror")
    (partial / ".complete").write_text("")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def _pip_step(line: str) -> str | None:
    return line.strip()[:60] if line.startswith(("Collecting", "Saved", "Downloading")) else None


def _context(folder: Path) -> Path:
    """The build context: the wheels, the requirements and the project's files the image holds."""
    shutil.copytree(wheelhouse(), folder / "wheels", copy_function=_link_or_copy)
    shutil.copyfile(REQUIREMENTS, folder / "requirements.txt")
    for path in sources():
        target = folder / "tcplab" / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return folder


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _current(docker: Docker, name: str, digest: str) -> bool:
    found = docker.inspect([name], kind="image")
    return bool(found) and ((found[0].get("Config") or {}).get("Labels") or {}).get(SOURCE_LABEL) == digest


def build(c: Context, room: str, lab_image: str, docker: Docker) -> None:
    """The room's two images on ``lab_image`` (built by then), each unless already current."""
    found = docker.inspect([lab_image], kind="image")
    if not found:
        raise LabError(f"the lab's image {lab_image} is missing: room up builds it first")
    digest = source_digest(str(found[0].get("Id")))
    labels = ["--label", f"{plan.ROOM_LABEL}={room}", "--label", f"{SOURCE_LABEL}={digest}"]
    stale = [(target, name) for target, name in (("student", plan.image(room)), ("hub", plan.hub_image(room)))
             if not _current(docker, name, digest)]
    if stale:
        with tempfile.TemporaryDirectory(prefix="tcplab-room-") as folder:
            context = _context(Path(folder))                 # one context (wheels, project) for both
            for target, name in stale:
                docker.run_logged(["build", "--file", str(DOCKERFILE), "--target", target, "--build-arg",
                                   f"LAB_IMAGE={lab_image}", *labels, "--tag", name, str(context)],
                                  f"building {name}", f"build-room-{target}-{room}", docker_build_step, verbose(c))
    say(f"images {plan.image(room)} and {plan.hub_image(room)} are ready")
