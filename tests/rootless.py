"""The lab as a user without root runs it: that user's own copy of the project and its own .venv,
on the rootless engines that .ci/rootless-engines starts for it (rootless Docker, Podman's socket)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from tests.helpers import ROOT

USER = os.environ.get("TCPLAB_ROOTLESS_USER", "tcplab-student")
ENGINES = {"rootless-docker": "docker.sock", "podman": "podman.sock"}


def account() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        return None


def docker_host(engine: str) -> str:
    user = account()
    assert user is not None
    return f"unix:///run/user/{user.pw_uid}/{ENGINES[engine]}"


def engines_problem() -> str | None:
    """Why the rootless engines cannot be used here, or None."""
    if os.geteuid() != 0:
        return "it runs the lab as another user: it needs root (bash .ci/rootless-engines sets that user up)"
    if account() is None:
        return f"no user {USER}: bash .ci/rootless-engines makes it and starts its engines"
    for engine in ENGINES:
        if as_user(["docker", "version"], engine, cwd=Path("/"), timeout=30).returncode != 0:
            return f"the {engine} engine of {USER} does not answer: bash .ci/rootless-engines starts it"
    return None


def as_user(argv: list[str], engine: str, cwd: Path, timeout: float = 900,
            extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``argv`` as the rootless user, with only the environment a login of theirs would have."""
    user = account()
    assert user is not None
    env = {"HOME": user.pw_dir, "USER": USER, "XDG_RUNTIME_DIR": f"/run/user/{user.pw_uid}",
           "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DOCKER_HOST": docker_host(engine), "COLUMNS": "80",
           **(extra or {})}
    return subprocess.run(["runuser", "-u", USER, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def project_copy() -> Path:
    """A copy of the project's files (as checked out, with what is not committed yet) in the user's
    home, owned by the user, set up by the user with the README's own `bash .ci/setup`."""
    user = account()
    assert user is not None
    copy = Path(user.pw_dir) / "tcplab"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir()
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            target = copy / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    subprocess.run(["chown", "-R", f"{USER}:", str(copy)], check=True)
    setup = as_user(["bash", ".ci/setup"], "rootless-docker", cwd=copy)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    return copy
