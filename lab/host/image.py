"""Building the lab's image, with or without a container registry.

The image (docker/Dockerfile) is Debian bookworm plus Debian's python3, scapy and
network tools. Its base is ``debian:bookworm-slim`` wherever Docker can pull it.
Where no registry answers (an air-gapped classroom, this project's CI), the lab
makes an equivalent base itself: ``debootstrap --variant=minbase`` writes a minimal
Debian into a folder from Debian's own mirror, and ``docker import`` turns that
folder into an image. The same Dockerfile is then built on it.

The choice, in order, each one cheaper than the next:

1. ``debian:bookworm-slim`` already present;
2. ``tcplab/base:bookworm`` already present (bootstrapped earlier);
3. ``docker pull debian:bookworm-slim``;
4. debootstrap + docker import (about a minute; as root), or mmdebstrap's unshare mode
   + docker import (without root: a rootless engine's user).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from invoke import Context

from lab.errors import LabError
from lab.host.engines.docker import Docker
from lab.host.progress import debootstrap_step, docker_build_step, log_file, run_logged
from lab.host.settings import BASE_IMAGE, LABEL, ROLE_LABEL, SLIM_IMAGE, SOURCE_LABEL, Lab
from lab.host.state import image_names
from lab.paths import PROJECT_ROOT as ROOT
from lab.terminal import say

DEFAULT_MIRROR = "http://deb.debian.org/debian"
INSIDE = ROOT / "lab" / "inside"


def present_images(docker: Docker, names: list[str]) -> set[str]:
    """Which of ``names`` (repo:tag) exist in the engine."""
    found: set[str] = set()
    for image in docker.inspect(names, kind="image"):
        found.update(image_names(image))
    return found & set(names)


def choose_base(c: Context, lab: Lab, docker: Docker) -> str:
    """Find or make the base image; say which path was taken."""
    present = present_images(docker, [SLIM_IMAGE, BASE_IMAGE])
    if SLIM_IMAGE in present:
        say(f"base image: {SLIM_IMAGE} (already here)")
        return SLIM_IMAGE
    if BASE_IMAGE in present:
        say(f"base image: {BASE_IMAGE} (made earlier from Debian's packages)")
        return BASE_IMAGE
    say(f"base image: trying to pull {SLIM_IMAGE}")
    if docker.run(["pull", SLIM_IMAGE], check=False).exited == 0:
        say(f"base image: {SLIM_IMAGE} (pulled)")
        return SLIM_IMAGE
    problem = bootstrap_problem()
    if problem:
        raise LabError(f"no base image: Docker cannot pull {SLIM_IMAGE} (no registry answers) and "
                   f"the lab cannot build one from Debian's packages here ({problem}); fix either one")
    say(f"base image: no registry answers, so building {BASE_IMAGE} from Debian's packages "
        f"with {bootstrap_tool()} (about a minute)")
    bootstrap_base(c, lab, docker, apt_mirror(lab))
    return BASE_IMAGE


def bootstrap_tool() -> str:
    """What writes the base's tree here: debootstrap as root, mmdebstrap's unshare mode without."""
    return "debootstrap" if os.geteuid() == 0 else "mmdebstrap"


def bootstrap_problem() -> str | None:
    """Why neither bootstrap can run here, or None if one can."""
    if shutil.which(bootstrap_tool()) is not None:
        return None
    if bootstrap_tool() == "debootstrap":
        return "install debootstrap: apt-get install debootstrap"
    return "without root it takes mmdebstrap: ask for apt-get install mmdebstrap uidmap"


def apt_mirror(lab: Lab) -> str:
    """The Debian mirror: the configured one, else the one this machine's apt uses."""
    if lab.mirror != "auto":
        return lab.mirror
    sources = [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        match = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.M) or re.search(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s+bookworm\b", text, re.M)
        if match:
            return match.group(1)
    return DEFAULT_MIRROR


def bootstrap_base(c: Context, lab: Lab, docker: Docker, mirror: str) -> None:
    """Write a minimal bookworm and import it as BASE_IMAGE (its hundreds of lines go to a log
    file; the terminal shows what it retrieves or unpacks now).

    As root, debootstrap writes the tree. Without root (rootless Docker, Podman), debootstrap
    refuses: mmdebstrap's unshare mode writes the same tree inside a user namespace, from the
    user's subordinate ids, into a tarball the engine imports.
    """
    workdir = tempfile.mkdtemp(prefix="tcplab-base-")
    rootless = bootstrap_tool() == "mmdebstrap"
    target = os.path.join(workdir, "rootfs.tar" if rootless else "rootfs")
    tool = ["mmdebstrap", "--mode=unshare"] if rootless else ["debootstrap"]
    try:
        command = [*tool, "--variant=minbase", "bookworm", target, mirror]
        print(shlex.join(command), flush=True)
        log_path = log_file(tool[0])
        code, tail = run_logged(command, f"making the base image {BASE_IMAGE} from Debian's packages", log_path,
                                debootstrap_step, verbose(c), stdin=subprocess.DEVNULL)
        if code:
            print(tail, file=sys.stderr)
            raise LabError(f"{tool[0]} failed (exit {code}): the whole output is in {log_path}")
        changes = [f"LABEL {LABEL}={lab.name}", f"LABEL {ROLE_LABEL}=base"]
        if rootless:
            docker.import_archive(target, changes, BASE_IMAGE)
        else:
            docker.import_tree(target, changes, BASE_IMAGE)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def source_digest() -> str:
    """A digest of what the image is built from: the Dockerfile and lab/inside (the build context)."""
    digest = hashlib.sha256()
    for path in [ROOT / "docker" / "Dockerfile", ROOT / "lab" / "__init__.py", *sorted(INSIDE.glob("*.py"))]:
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def is_current(image: dict) -> bool:
    """True when ``image`` (docker inspect's) was built from the code as it is now."""
    labels = (image.get("Config") or {}).get("Labels") or {}
    return labels.get(SOURCE_LABEL) == source_digest()


def build(c: Context, lab: Lab, docker: Docker) -> None:
    """Build the lab's image on a base found or made by choose_base (cached layers reused).

    The image is labelled with the digest of its sources, so that `up` can tell an
    image built from older code (after a git pull) and build it again.
    """
    base = choose_base(c, lab, docker)
    docker.run_logged(["build", "--file", str(ROOT / "docker" / "Dockerfile"), "--build-arg", f"BASE={base}",
                       "--label", lab.label, "--label", f"{SOURCE_LABEL}={source_digest()}",
                       "--tag", lab.image, str(ROOT)],
                      f"building {lab.image} on {base}", f"build-{lab.name}", docker_build_step, verbose(c))
    say(f"image {lab.image} is ready")


def build_unless_current(c: Context, lab: Lab, docker: Docker) -> str | None:
    """The lab's image on ``docker``'s engine, built if it is missing or was built from older code
    (the image a swarm lab or a class copies to its nodes); its ID."""
    found = docker.inspect([lab.image], kind="image")
    if found and is_current(found[0]):
        return found[0].get("Id")
    if found:
        say(f"image {lab.image} was built from older code: building it again")
    build(c, lab, docker)
    built = docker.inspect([lab.image], kind="image")
    return built[0].get("Id") if built else None


def verbose(c: Context) -> bool:
    """--verbose on build, up or demo: show every line of a build instead of its progress."""
    return bool((c.config.get("lab") or {}).get("verbose"))

