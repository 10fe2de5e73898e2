"""A lab over two Docker engines of one swarm: the server's node and the client's node.

With ``engine = "swarm"`` the lab's network is an attachable overlay (VXLAN between the
nodes) and its containers live on two engines, each reached as the docker CLI reaches
one (``docker -H ENDPOINT`` for unix://, tcp:// or ssh://, ``docker --context NAME``).
Which engine runs the server and which the client is lab.host.placement's answer. The
rest of the lab does not change: every docker command still goes through one object,
:class:`NodeDocker`, which sends it to the engine of the container it is about. The
client host, the client runs and everything that joins the client's namespace (its
sampler, its link emulator) go to the client's node; the overlay network to a manager;
everything else to the server's node. Questions about several containers (``ps``,
``inspect``, ``rm``) go to every engine of the lab and their answers are put together.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Sequence

from invoke import Context
from invoke.runners import Result

from lab.host.docker import Docker, DockerError, engine_args, explain
from lab.host.placement import Placement
from lab.host.settings import Lab

EVERYWHERE = ("ps", "inspect", "rm")
ATTACH_TRIES = 3
ABOUT_A_CONTAINER = ("exec", "logs", "kill", "stop", "start", "top", "port", "wait")


class NodeDocker(Docker):
    """Docker for a lab whose server and client are on two nodes."""

    def __init__(self, c: Context, lab: Lab, echo: bool = True) -> None:
        super().__init__(c, echo)
        self.lab = lab
        self.placement = Placement(self, lab)

    @property
    def server_node(self) -> str:
        return self.placement.server

    @property
    def client_node(self) -> str:
        return self.placement.client

    # --- where a command goes ------------------------------------------------------

    def node_of(self, name: str) -> str:
        """The engine a container of the lab is on, by its name (or the container it joins)."""
        name = name.removeprefix("container:")
        client = f"{self.lab.name}-client"
        on_client = (name == client or name.startswith(f"{client}-") or name.endswith("-to-client")
                     or name == f"{self.lab.name}-sampler-client")
        return self.client_node if on_client else self.server_node

    def route(self, args: Sequence[str]) -> str:
        verb = args[0] if args else ""
        if verb == "run":
            network = _value_of(args, "--network") or ""
            return self.node_of(network if network.startswith("container:") else _value_of(args, "--name") or "")
        if verb in ABOUT_A_CONTAINER:
            target = next((word for word in args[1:] if not word.startswith("-")), "")
            return self.node_of(target)
        if verb == "network" or "--type=network" in args:
            return self.placement.manager
        return self.server_node

    @staticmethod
    def on(node: str, args: Sequence[str]) -> list[str]:
        return [*engine_args(node), *args]

    # --- running ---------------------------------------------------------------------

    def run(self, args: Sequence[str], **kwargs) -> Result:
        if args and args[0] in EVERYWHERE and self._about_containers(args):
            return self._everywhere(args, **kwargs)
        node = self.route(args)
        for attempt in range(ATTACH_TRIES):
            try:
                return super().run(self.on(node, args), **kwargs)
            except DockerError as error:
                # A worker asks the manager for the container's place on the overlay; right after
                # another overlay came or went, that answer can miss the engine's deadline.
                name = _value_of(args, "--name")
                if "attaching to network failed" not in str(error) or attempt + 1 == ATTACH_TRIES or not name:
                    raise
                super().run(self.on(node, ["rm", "--force", name]), quiet=True, check=False, echo=False)
        raise AssertionError("unreachable")

    def popen(self, args: Sequence[str], *rest, **kwargs) -> subprocess.Popen:
        return super().popen(self.on(self.route(args), args), *rest, **kwargs)

    @staticmethod
    def _about_containers(args: Sequence[str]) -> bool:
        kind = next((word.split("=", 1)[1] for word in args if word.startswith("--type=")), None)
        return kind in (None, "container")

    def _everywhere(self, args: Sequence[str], check: bool = True, **kwargs) -> Result:
        """Ask every engine of the lab; put the answers together (JSON lists joined, lines joined);
        a removal succeeds where the container was found on one node or another. A node that
        does not answer (it left the swarm, or its host is down) is remembered in ``unreachable``
        and the others answer alone."""
        results = []
        for node in dict.fromkeys(self.lab.nodes):
            try:
                results.append(super(NodeDocker, self).run(self.on(node, args), check=False, **kwargs))
            except DockerError:
                self.unreachable.add(node)
        if not results:
            raise DockerError(f"no node of the lab answers ({', '.join(self.lab.nodes)}): is the swarm up?")
        verb = args[0]
        if verb == "inspect":
            merged = []
            for result in results:
                try:
                    merged += json.loads(result.stdout or "[]")
                except json.JSONDecodeError:
                    pass
            first = results[0]
            first.stdout = json.dumps(merged)
            first.exited = 0 if merged else max(r.exited for r in results)
            return first
        first = results[0]
        first.stdout = "".join(result.stdout for result in results)
        if verb == "rm":
            names = [word for word in args[1:] if not word.startswith("-")]
            gone = all(any(name in (r.stdout or "") for r in results) for name in names)
            first.exited = 0 if gone or not check else max(r.exited for r in results)
        else:
            first.exited = max(r.exited for r in results)
        if check and first.exited != 0:
            raise DockerError(explain("".join(r.stderr for r in results), shlex.join(["docker", *args])))
        return first

    def subnets_in_use(self) -> list:
        """Every node's networks' subnets: an overlay spans the nodes, and Docker lets it be made
        over a subnet a node's own bridge uses (a bridge lab there), whose containers then never
        attach to it ("context deadline exceeded")."""
        found = []
        for node in dict.fromkeys(self.lab.nodes):
            found += Docker(self.c, host=node, echo=False).subnets_in_use()
        return found

    # --- the image on every node -------------------------------------------------------

    def distribute(self, image: str, is_current) -> None:
        """The lab's image (built on this machine's engine) on each node where it is missing or old."""
        for node in dict.fromkeys((self.server_node, self.client_node)):
            copy_image(Docker(self.c, self.echo, host=node), image, is_current)


SAVE_TRIES = 3


def copy_image(node: Docker, image: str, is_current) -> None:
    """The image (built on this machine's engine) on ``node``'s engine, unless it is there and
    current: ``docker save -o FILE``, then ``docker -H NODE load -i FILE``.

    The save goes to a file, checked, before any load: piped straight into the load, a save
    that failed reached the node as an empty stream, and the node said only "open
    .../repositories: no such file or directory". Docker 20.10's save has answered
    "reference does not exist" for an image that was there (in CI, twice in two sessions),
    so it is tried again.
    """
    found = node.inspect([image], kind="image")
    if found and is_current(found[0]):
        return
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


def _value_of(args: Sequence[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else None


def docker_for(c: Context, lab: Lab, echo: bool = True) -> Docker:
    """The Docker a lab's commands go through: one engine, or its two nodes."""
    return NodeDocker(c, lab, echo) if lab.engine == "swarm" else Docker(c, echo)
