"""The lab's image, built on this machine's engine, copied to another engine that lacks it or
has an older one (a swarm lab's nodes, a class's labs on them)."""

from __future__ import annotations

import shlex
import subprocess
import tempfile
import time
from pathlib import Path

from lab.host.engines.docker import Docker, DockerError, engine_args

SAVE_TRIES = 3


def copy_image(node: Docker, image: str, is_current) -> str | None:
    """The image (built on this machine's engine) on ``node``'s engine, unless it is there and
    current: ``docker save -o FILE``, then ``docker -H NODE load -i FILE``. Its ID there.

    The save goes to a file, checked, before any load: piped straight into the load, a save
    that failed reached the node as an empty stream, and the node said only "open
    .../repositories: no such file or directory". Docker 20.10's save has answered
    "reference does not exist" for an image that was there (in CI, twice in two sessions),
    so it is tried again.
    """
    found = node.inspect([image], kind="image")
    if found and is_current(found[0]):
        return found[0].get("Id")
    load_args = ["docker", *engine_args(node.host), "load", "-q", "-i"]
    with tempfile.TemporaryDirectory(prefix="tcplab-image-") as folder:
        saved = Path(folder) / "image.tar"
        node._echo(f"docker save -o {saved} {image} && {shlex.join(load_args)} {saved}")
        for attempt in range(1, SAVE_TRIES + 1):
            save = subprocess.run(["docker", "save", "-o", str(saved), image], capture_output=True, text=True)
            if save.returncode == 0:
                break
            if attempt == SAVE_TRIES:
                raise DockerError(f"could not save {image} to copy it to node {node.host}: "
                                  f"{save.stderr.strip()[-200:]}")
            time.sleep(attempt)
        load = subprocess.run([*load_args, str(saved)], capture_output=True, text=True)
    if load.returncode != 0:
        raise DockerError(f"could not copy {image} to node {node.host}: {load.stderr.strip()[-200:]}")
    loaded = node.inspect([image], kind="image")
    return loaded[0].get("Id") if loaded else None
